"""The directory read model: each State's current entry, its freshness (R5) and late notices.

The projector is pure: it turns one domain event into changes of JSON documents, read and
written through a ``Documents`` store. The same code builds the persistent view (through a
tracking recorder, ``projections.store``) and the in-memory views *as of* a past date or
position (``projections.asof``), so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Protocol

from domain.freshness import late_notice_delay
from domain.state_entry import StateEntry, code_of_entry
from domain.verification import ContactVerification, code_of_verification

ENTRY = "entry"


#: The version of what this projector writes (the entries' documents). Bump it by hand with any
#: change to its output: the server holding the runner lease then rebuilds the views from the
#: record when it starts (``projections.runner.ViewRunner.outdated``).
VERSION = 2  # 2: each contact says whether it is ``verified`` (issue 17)


class Documents(Protocol):
    """Where a projector reads and writes documents.

    Contract for projectors: a document changed must be ``put`` back; a store may hand out
    its live object from ``get`` (the runner) or a copy (the in-memory views), so a change
    that is not put is lost in one and not in the other.
    """

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None: ...


def _day(ts: datetime) -> str:
    return ts.date().isoformat()


def directory_reads(event: Any) -> Iterator[tuple[str, str]]:
    """The documents ``project_directory`` will ``get`` for ``event``, so a runner can fetch a
    whole batch's in one query. A key left out here is still read, one query at a time."""
    if isinstance(event, StateEntry.Event) and not isinstance(event, StateEntry.Registered):
        yield ENTRY, code_of_entry(event.originator_id)
    elif isinstance(event, ContactVerification.MarkedUnverified | ContactVerification.Reverified):
        yield ENTRY, code_of_verification(event.originator_id)


def _verify(event: Any, position: int, docs: Documents) -> None:
    """A contact marked unverified (two failed checks in a row) or verified again; the mark
    stays with the contact id through updates of the contact (``unverified``)."""
    code = code_of_verification(event.originator_id)
    doc = docs.get(ENTRY, code)
    if doc is None:  # pragma: no cover - a State's contacts are checked after it registers
        raise LookupError(f"event at position {position} for an unregistered entry")
    unverified: list[str] = doc.setdefault("unverified", [])
    marked = isinstance(event, ContactVerification.MarkedUnverified)
    if marked and event.contact_id not in unverified:
        unverified.append(event.contact_id)
        unverified.sort()
    elif not marked and event.contact_id in unverified:
        unverified.remove(event.contact_id)
    contact = doc["contacts"].get(event.contact_id)
    if contact is not None:
        contact["verified"] = not marked
    docs.put(ENTRY, code, doc)


def project_directory(event: Any, position: int, docs: Documents) -> None:
    """Apply one stored event (already decoded) at ``position`` to the directory documents.
    Events of other aggregates are ignored."""
    if isinstance(event, ContactVerification.MarkedUnverified | ContactVerification.Reverified):
        _verify(event, position, docs)
        return
    if not isinstance(event, StateEntry.Event):
        return
    if isinstance(event, StateEntry.Registered):
        docs.put(
            ENTRY,
            event.code,
            {
                "code": event.code,
                "name": event.name,
                "registered_on": event.effective_on.isoformat(),
                "registered_at": event.timestamp.isoformat(),
                "withdrawn": False,
                "contacts": {},
                "coordination_contact_id": None,
                "preferred": None,
                "version": event.originator_version,
                "position": position,
                "last_update_on": _day(event.timestamp),
                "last_confirmed_on": None,
                "late_notices": [],
                "unverified": [],
            },
        )
        return
    code = code_of_entry(event.originator_id)
    doc = docs.get(ENTRY, code)
    if doc is None:  # pragma: no cover - the record always registers first
        raise LookupError(f"event at position {position} for an unregistered entry")
    doc["version"] = event.originator_version
    doc["position"] = position
    if isinstance(event, StateEntry.ContactAdded):  # also ContactUpdated
        contact = event.contact.to_dict()
        contact["verified"] = contact["contact_id"] not in doc.get("unverified", ())
        doc["contacts"][event.contact.contact_id] = contact
    elif isinstance(event, StateEntry.ContactRemoved):
        doc["contacts"].pop(event.contact_id, None)
    elif isinstance(event, StateEntry.CoordinationContactSet):
        doc["coordination_contact_id"] = event.contact_id
    elif isinstance(event, StateEntry.PreferredChannelSet):
        doc["preferred"] = {"contact_id": event.contact_id, "channel": event.channel_kind}
    elif isinstance(event, StateEntry.AnnuallyConfirmed):
        doc["last_confirmed_on"] = _day(event.timestamp)
    elif isinstance(event, StateEntry.Withdrawn):
        doc["withdrawn"] = True
    elif isinstance(event, StateEntry.Rejoined):
        doc["withdrawn"] = False
    if not isinstance(event, StateEntry.WebhookSet | StateEntry.WebhookRemoved):
        # A webhook is delivery plumbing, not a change of the published entry: it neither
        # shows nor counts as keeping the entry current (R5). Only the ETag moves.
        doc["last_update_on"] = _day(event.timestamp)
    effective_on: date | None = getattr(event, "effective_on", None)
    if effective_on is not None:
        delay = late_notice_delay(effective_on, event.timestamp)
        if delay is not None:  # R5, domain.freshness
            doc["late_notices"].append(
                {
                    "position": position,
                    "change": type(event).__name__,
                    "effective_on": effective_on.isoformat(),
                    "reported_on": _day(event.timestamp),
                    "delay_days": delay,
                }
            )
    docs.put(ENTRY, code, doc)
