"""Per-State interaction histories (R17 review): the facts of each interaction, never content.

One item per State involved in an event: notifications sent and received with the counterpart,
times to acknowledge and to respond, consents asked, granted, denied or revoked, assistance
asked for, and changes to the entry. No indicator, description, response text or contact
detail is copied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from domain.capacity import CapacityNeed
from domain.check import CommunicationCheck
from domain.consent import SharingConsent
from domain.notification import Notification
from domain.state_entry import StateEntry, code_of_entry
from projections.directory import Documents
from projections.review import review_history

HISTORY = "history"
NOTIFICATION = "notification"
CONSENT = "consent"


def history_key(code: str, position: int) -> str:
    """Keys sort by State, then by position (zero-padded; positions are positive)."""
    return f"{code}:{position:020d}"


def _hours(later: datetime, earlier: str) -> float:
    delta = later - datetime.fromisoformat(earlier)
    return round(delta.total_seconds() / 3600, 2)


def history_reads(event: Any) -> Iterator[tuple[str, str]]:
    """The documents ``project_history`` will ``get`` for ``event`` (see ``directory_reads``)."""
    if isinstance(event, Notification.Event) and not isinstance(event, Notification.Sent):
        yield NOTIFICATION, str(event.originator_id)
    elif isinstance(event, SharingConsent.Event) and not isinstance(
        event, SharingConsent.Requested
    ):
        yield CONSENT, str(event.originator_id)


def project_history(event: Any, position: int, docs: Documents) -> None:
    at = event.timestamp.isoformat()

    def item(code: str, kind: str, **facts: Any) -> None:
        docs.put(
            HISTORY,
            history_key(code, position),
            {"state": code, "position": position, "at": at, "event": kind, **facts},
        )

    if isinstance(event, StateEntry.Event):
        code = (
            event.code
            if isinstance(event, StateEntry.Registered)
            else code_of_entry(event.originator_id)
        )
        facts: dict[str, Any] = {}
        if hasattr(event, "effective_on"):
            facts["effective_on"] = event.effective_on.isoformat()
        item(code, f"entry {type(event).__name__}", **facts)
    elif isinstance(event, Notification.Event):
        _notification(event, position, docs, item)
    elif isinstance(event, SharingConsent.Event):
        _consent(event, docs, item)
    elif isinstance(event, CommunicationCheck.Event | CapacityNeed.Event):
        review_history(event, docs, item)


def _notification(event: Any, position: int, docs: Documents, item: Any) -> None:
    nid = str(event.originator_id)
    at = event.timestamp.isoformat()
    if isinstance(event, Notification.Sent):
        meta = {
            "id": nid,
            "sender": event.sender,
            "recipient": event.recipient,
            "incident_type": event.incident_type,
            "sent_at": at,
            "acknowledged_at": None,
            "first_response_at": None,
            "status": "sent",
        }
        docs.put(NOTIFICATION, nid, meta)
        common = {"notification_id": nid, "incident_type": event.incident_type}
        item(event.sender, "notification sent", counterpart=event.recipient, **common)
        item(event.recipient, "notification received", counterpart=event.sender, **common)
        return
    found = docs.get(NOTIFICATION, nid)
    if found is None:  # pragma: no cover - the record always sends first
        raise LookupError(f"event at position {position} for an unknown notification")
    meta = found
    sender, recipient = meta["sender"], meta["recipient"]
    common = {"notification_id": nid, "incident_type": meta["incident_type"]}
    if isinstance(event, Notification.Acknowledged):
        meta["acknowledged_at"], meta["status"] = at, "acknowledged"
        hours = _hours(event.timestamp, meta["sent_at"])
        item(recipient, "acknowledged", counterpart=sender, hours_to_acknowledge=hours, **common)
        item(
            sender,
            "acknowledgement received",
            counterpart=recipient,
            hours_to_acknowledge=hours,
            **common,
        )
    elif isinstance(event, Notification.Responded):
        first = meta["first_response_at"] is None
        if first:
            meta["first_response_at"] = at
        meta["status"] = "responded"
        timing = {"hours_to_respond": _hours(event.timestamp, meta["sent_at"])} if first else {}
        assistance = {"assistance_requested": True} if event.assistance_requested else {}
        item(recipient, "responded", counterpart=sender, **timing, **assistance, **common)
        item(sender, "response received", counterpart=recipient, **timing, **assistance, **common)
    elif isinstance(event, Notification.Closed):
        meta["status"] = "closed"
        item(sender, "closed", counterpart=recipient, **common)
        item(recipient, "closed by sender", counterpart=sender, **common)
    elif isinstance(event, Notification.Withdrawn):
        meta["status"] = "withdrawn"
        item(sender, "withdrawn", counterpart=recipient, **common)
        item(recipient, "withdrawn by sender", counterpart=sender, **common)
    docs.put(NOTIFICATION, nid, meta)


def _consent(event: Any, docs: Documents, item: Any) -> None:
    cid = str(event.originator_id)
    if isinstance(event, SharingConsent.Requested):
        meta = {
            "id": cid,
            "notification_id": str(event.notification_id),
            "parties": list(event.parties),
            "third_state": event.third_state,
            "requested_at": event.timestamp.isoformat(),
            "granted_by": [event.requested_by],
            "status": _consent_status([event.requested_by], list(event.parties)),
        }
        docs.put(CONSENT, cid, meta)
        verb, actor = "consent requested", event.requested_by
    else:
        found = docs.get(CONSENT, cid)
        if found is None:  # pragma: no cover - the record always requests first
            raise LookupError("consent event for an unknown request")
        meta = found
        verb = {
            SharingConsent.Granted: "consent granted",
            SharingConsent.Denied: "consent denied",
            SharingConsent.Revoked: "consent revoked",
            SharingConsent.ContentRead: "shared exchange read",
        }[type(event)]
        actor = event.reader if isinstance(event, SharingConsent.ContentRead) else event.party
        if isinstance(event, SharingConsent.Granted):
            meta["granted_by"] = sorted({*meta["granted_by"], actor})
            meta["status"] = _consent_status(meta["granted_by"], meta["parties"])
        elif isinstance(event, SharingConsent.Denied | SharingConsent.Revoked):
            meta["status"] = "denied" if isinstance(event, SharingConsent.Denied) else "revoked"
        docs.put(CONSENT, cid, meta)
    for party in meta["parties"]:
        item(
            party,
            verb,
            by=actor,
            counterpart=next(p for p in meta["parties"] if p != party),
            third_state=meta["third_state"],
            notification_id=meta["notification_id"],
            consent_id=cid,
        )


def _consent_status(granted_by: Iterable[str], parties: Iterable[str]) -> str:
    """As ``SharingConsent.status``: effective once every party has granted."""
    return "effective" if set(granted_by) >= set(parties) else "pending"
