"""Escalation (issue 17, part 3): whom an unacknowledged notification's alert goes to next.

Decided here only, on contacts in their recorded form (``Contact.to_dict``), so the delivery
worker, the application service and the tests share one rule:

* the **route** is the recipient's technical-level route for the incident type (R4,
  ``domain.routing.route_contacts``: the preferred channel's contact, then the coordination
  contact, then the others by id), then the coordination contact, then the diplomatic-level
  contacts by id, each contact once. Its first element is where the first alert goes;
* the **next step** after an index is the next contact on the route; for an urgent
  notification, the next one whose hours cover the present (``domain.hours.covers``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.errors import NotFound
from domain.hours import covers
from domain.routing import route_contacts
from domain.taxonomy import Level


def escalation_route(
    contacts: Mapping[str, Mapping[str, Any]],
    incident_type: str,
    coordination_contact_id: str | None,
    preferred: Mapping[str, str] | None,
) -> list[dict[str, Any]]:
    """The recipient's escalation route (module docstring), each contact once. Empty only if
    the entry lists no technical contact for the type, no coordination contact and no
    diplomatic contact."""
    try:
        technical, _ = route_contacts(
            "the recipient",
            contacts,
            incident_type,
            Level.TECHNICAL.value,
            coordination_contact_id,
            preferred,
        )
    except NotFound:
        technical = []
    route = list(technical)
    if coordination_contact_id is not None and coordination_contact_id in contacts:
        route.append(dict(contacts[coordination_contact_id]))
    route += [
        dict(c)
        for c in sorted(contacts.values(), key=lambda c: str(c["contact_id"]))
        if c["level"] == Level.DIPLOMATIC.value
    ]
    seen: set[str] = set()
    once: list[dict[str, Any]] = []
    for contact in route:
        if contact["contact_id"] not in seen:
            seen.add(contact["contact_id"])
            once.append(contact)
    return once


def next_step(
    route: Sequence[Mapping[str, Any]], after_step: int, urgent: bool, at: datetime
) -> tuple[int, dict[str, Any]] | None:
    """The (index, contact) that follows index ``after_step`` on ``route``; None when the
    route is exhausted. For an urgent notification, the first of the following contacts
    whose hours cover ``at``; if none of them does, the one that follows anyway (an urgent
    alert is not held back for office hours: someone must be told)."""
    rest = [(i, route[i]) for i in range(max(after_step + 1, 0), len(route))]
    if not rest:
        return None
    if urgent:
        for index, contact in rest:
            if covers(contact["hours"], contact["time_zone"], at):
                return index, dict(contact)
    index, contact = rest[0]
    return index, dict(contact)


def first_step(
    route: Sequence[Mapping[str, Any]], urgent: bool, at: datetime
) -> tuple[int, dict[str, Any]]:
    """Where the first alert goes: the route's first contact, or for an urgent notification
    its first contact whose hours cover ``at`` (the first contact if none does).
    ``NotFound`` for an empty route."""
    step = next_step(route, -1, urgent, at)
    if step is None:
        raise NotFound("the recipient's entry lists no contact to alert")
    return step
