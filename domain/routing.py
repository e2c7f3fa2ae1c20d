"""Routing by incident (R3, R4; docs/domain.md#r4): whom to reach at a State, and in what order.

Decided here only; the directory's route query (``projections.queries``) calls it on the view's
copy of an entry. It works on contacts in their recorded form (``Contact.to_dict``), so it
needs no aggregate to be loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.errors import NotFound


def route_contacts(
    code: str,
    contacts: Mapping[str, Mapping[str, Any]],
    incident_type: str,
    level: str,
    coordination_contact_id: str | None,
    preferred: Mapping[str, str] | None,
) -> tuple[list[dict[str, Any]], bool]:
    """R4: the contacts of ``code`` at ``level`` that handle ``incident_type``, in order: the
    one with the preferred channel (R3), then the coordination contact, then the others by id;
    the preferred channel comes first in its contact's channels. When none handles the type,
    the coordination contact alone, and ``True`` (the route fell back to it); ``NotFound`` if
    there is none either."""
    preferred = preferred or {}
    matching = [
        c for c in contacts.values() if c["level"] == level and incident_type in c["incident_types"]
    ]
    fell_back = not matching
    if fell_back:
        if coordination_contact_id is None or coordination_contact_id not in contacts:
            raise NotFound(
                f"{code} has no contact for {incident_type} at the {level} level "
                "and no coordination contact"
            )
        matching = [contacts[coordination_contact_id]]

    def rank(c: Mapping[str, Any]) -> tuple[int, str]:
        if c["contact_id"] == preferred.get("contact_id"):
            return (0, c["contact_id"])
        if c["contact_id"] == coordination_contact_id:
            return (1, c["contact_id"])
        return (2, c["contact_id"])

    ordered = [_with_preferred_channel_first(c, preferred) for c in sorted(matching, key=rank)]
    return ordered, fell_back


def _with_preferred_channel_first(
    contact: Mapping[str, Any], preferred: Mapping[str, str]
) -> dict[str, Any]:
    if contact["contact_id"] != preferred.get("contact_id"):
        return dict(contact)
    channels = sorted(contact["channels"], key=lambda ch: ch["kind"] != preferred["channel"])
    return {**contact, "channels": channels, "preferred_channel": preferred["channel"]}
