"""Reads of the views: entries, route lookup (R3, R4), pending updates (R5), histories.

Everything here reads the view, never the event table. Deadlines are judged against a date
given by the caller (from the injectable clock), so a simulated year shows real statuses.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from domain.consent import may_see_consent, shares_with
from domain.errors import NotFound, ValidationError
from domain.freshness import freshness, next_due_on
from domain.members import check_member_state, member_states
from domain.routing import route_contacts
from domain.taxonomy import check_incident_type, check_level
from projections.directory import ENTRY
from projections.history import CONSENT, HISTORY_FIELDS, NOTIFICATION

#: Columns of a history export, in order: where and when first, then every other field of
#: ``HistoryItem`` in its order. Every item has a subset of them.
_LEADING = ("position", "at", "state")
HISTORY_COLUMNS = (*_LEADING, *(f for f in HISTORY_FIELDS if f not in _LEADING))


@dataclass(frozen=True)
class Route:
    state: str
    incident_type: str
    level: str
    contacts: list[dict[str, Any]]
    fell_back_to_coordination_contact: bool


class ReadableViews(Protocol):
    """What the queries read: the persistent views (``projections.store``) or views in
    memory (``projections.asof``)."""

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]: ...

    def history(
        self, state: str, start: str | None = None, end: str | None = None
    ) -> list[dict[str, Any]]: ...


class ViewQueries:
    """Reads over the persistent views, or over the directory computed as of a past date."""

    def __init__(self, view: ReadableViews) -> None:
        self.view = view

    def entries(self) -> list[dict[str, Any]]:
        """Current entries of States that take part (withdrawn entries are gone)."""
        return [d for d in self.view.all(ENTRY) if not d["withdrawn"]]

    def entry(self, code: str) -> dict[str, Any]:
        doc = self.view_entry(code)
        if doc["withdrawn"]:
            raise NotFound(f"{doc['code']} has no entry in the directory")
        return doc

    def view_entry(self, code: str) -> dict[str, Any]:
        """A registered State's entry, withdrawn or not (for the State itself)."""
        code = check_member_state(code)
        doc = self.view.get(ENTRY, code)
        if doc is None:
            raise NotFound(f"{code} has no entry in the directory")
        return doc

    def route(self, code: str, incident_type: str, level: str = "technical") -> Route:
        """Whom to reach at ``code`` about ``incident_type``, in the order R4 gives
        (``domain.routing.route_contacts``); says when it fell back to the coordination
        contact."""
        doc = self.entry(code)
        incident_type = check_incident_type(incident_type)
        level = str(check_level(level))
        ordered, fell_back = route_contacts(
            doc["code"],
            doc["contacts"],
            incident_type,
            level,
            doc["coordination_contact_id"],
            doc["preferred"],
        )
        return Route(doc["code"], incident_type, level, ordered, fell_back)

    def history(
        self, code: str, start: date | None = None, end: date | None = None
    ) -> list[dict[str, Any]]:
        """A State's timeline, optionally limited to the days ``start``..``end`` inclusive."""
        code = check_member_state(code)
        if start is not None and end is not None and start > end:
            raise ValidationError("the period's start is after its end")
        return self.view.history(
            code,
            start.isoformat() if start is not None else None,
            end.isoformat() if end is not None else None,
        )

    def inbox(self, code: str) -> list[dict[str, Any]]:
        """Metadata of the notifications ``code`` received, oldest first (no content)."""
        return self._notifications(code, "notification received")

    def outbox(self, code: str) -> list[dict[str, Any]]:
        """Metadata of the notifications ``code`` sent, oldest first (no content)."""
        return self._notifications(code, "notification sent")

    def _notifications(self, code: str, event: str) -> list[dict[str, Any]]:
        ids = [i["notification_id"] for i in self.history(code) if i["event"] == event]
        found = self.view.get_many(NOTIFICATION, ids)
        return [found[i] for i in ids if i in found]

    def exchanges(self) -> list[dict[str, Any]]:
        """Metadata of every notification (who, when, status), for the Secretariat."""
        return sorted(self.view.all(NOTIFICATION), key=lambda d: (d["sent_at"], d["id"]))

    def consents(self, code: str | None = None) -> list[dict[str, Any]]:
        """Consents ``code`` may know of (``domain.consent.may_see_consent``: those it is
        party to, and those naming it as third State while they are effective); every
        consent when ``code`` is None (the Secretariat's view)."""
        docs = self.view.all(CONSENT)
        if code is not None:
            state = check_member_state(code)
            docs = [
                d
                for d in docs
                if may_see_consent(state, d["parties"], d["third_state"], d["status"])
            ]
        return sorted(docs, key=lambda d: (d["requested_at"], d["id"]))

    def consents_sharing(self, notification_id: str, state: str | None) -> Iterator[str]:
        """Ids of the consents that share notification ``notification_id`` with ``state``
        (``domain.consent.shares_with``, R11). A generator: the view is read only if the
        caller iterates, which the application does only for a State not party to it."""
        for d in self.view.all(CONSENT):
            if d["notification_id"] == notification_id and shares_with(
                d["third_state"], d["status"], state
            ):
                yield d["id"]

    def pending(self, today: date) -> dict[str, Any]:
        """R5 for every registered State: last update or confirmation, next due date, status;
        late change notices; and member States that never registered (R1 participation)."""
        if not isinstance(today, date):
            raise ValidationError("today must be a date")
        docs = self.view.all(ENTRY)
        states = []
        for d in docs:
            if d["withdrawn"]:
                continue
            last = date.fromisoformat(d["last_update_on"])
            states.append(
                {
                    "state": d["code"],
                    "name": d["name"],
                    "last_update_on": last.isoformat(),
                    "next_due_on": next_due_on(last).isoformat(),
                    "status": str(freshness(last, today)),
                }
            )
        registered = {d["code"] for d in docs}
        return {
            "as_of": today.isoformat(),
            "states": states,
            "late_notices": [
                {"state": d["code"], **notice} for d in docs for notice in d["late_notices"]
            ],
            "never_registered": [
                {"state": code, "name": name}
                for code, name in member_states().items()
                if code not in registered
            ],
        }


def history_csv(items: list[dict[str, Any]]) -> str:
    """A history as CSV, one row per item, with the fixed ``HISTORY_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow({k: item.get(k, "") for k in HISTORY_COLUMNS})
    return buffer.getvalue()
