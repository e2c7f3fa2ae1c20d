"""Per-State interaction histories (R17 review): the facts of each interaction, never content.

One item per State involved in an event: notifications sent and received with the counterpart,
times to acknowledge and to respond, consents asked, granted, denied or revoked, assistance
asked for, escalations and each alert's final outcome (issue 17), and changes to the entry.
No indicator, description, response text or contact detail is copied here (an escalation's
notification metadata and an alert's item name the contact by id only).

Items are rows of facts by field name (``HistoryRow``, read back as ``HistoryItem``), not JSON
documents: they are two thirds of everything a replay writes, are written once and never
read back by the projector, so they are stored in a table of their own with a column per
``HistoryItem`` field (``projections.store``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from domain.capacity import CapacityNeed
from domain.check import CommunicationCheck
from domain.consent import SharingConsent, consent_status
from domain.delivery import FINAL_OUTCOMES, OUTCOME_OF, Alert, Cause
from domain.notification import Notification, status_after
from domain.state_entry import StateEntry, code_of_entry
from projections.directory import Documents
from projections.review import review_history

HISTORY = "history"
NOTIFICATION = "notification"
CONSENT = "consent"
#: An alert's cause and recipient, kept from its ``Raised`` for its outcomes (issue 17).
ALERT = "alert"


#: The version of what this projector writes (history items, notifications' and consents'
#: metadata). Bump it by hand with any change to its output: the server holding the runner lease
#: then rebuilds the views from the record when it starts
#: (``projections.runner.ViewRunner.outdated``).
VERSION = 3


class HistoryItem(NamedTuple):
    """One fact of one State's timeline. ``(state, position)`` is unique: an event names each
    State at most once (a State cannot notify itself, consents are between two parties, a
    check names each State once). Facts that do not apply are ``None`` and left out of
    ``to_dict``.

    The fields are the history table's columns (``HISTORY_FIELDS``, the one list of them):
    the store derives the table from them and names them in every statement, projectors
    add items as ``HistoryRow`` (facts by field name), and items are read back as this
    tuple, so a field added anywhere here shifts no value."""

    state: str
    position: int
    at: str
    event: str
    counterpart: str | None = None
    incident_type: str | None = None
    notification_id: str | None = None
    hours_to_acknowledge: float | None = None
    hours_to_respond: float | None = None
    assistance_requested: bool | None = None
    by: str | None = None
    third_state: str | None = None
    consent_id: str | None = None
    effective_on: str | None = None
    check_id: str | None = None
    level: str | None = None
    deadline: str | None = None
    hours_to_answer: float | None = None
    result: str | None = None
    need_id: str | None = None
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in zip(HISTORY_FIELDS, self, strict=True) if v is not None}


#: The columns of the history table, in ``HistoryItem`` order: the one list of them.
HISTORY_FIELDS: tuple[str, ...] = HistoryItem._fields


#: An item as a projector adds it: its facts by ``HistoryItem`` field name (a fact left out
#: is NULL). Cheaper to make than the named tuple, on the nine events in ten of a real
#: record that add two: the store turns rows into columns, in the writer process during a
#: rebuild.
HistoryRow = dict[str, Any]


class HistoryDocuments(Documents, Protocol):
    """A ``Documents`` store that also takes history items (the runner's batch)."""

    def add_item(self, item: HistoryRow) -> None: ...


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
    elif isinstance(event, Alert.Outcome):
        yield ALERT, str(event.originator_id)


def project_history(event: Any, position: int, docs: HistoryDocuments) -> None:
    at = event.timestamp.isoformat()
    if isinstance(event, Notification.Event):  # most events: checked first
        _notification(event, position, at, docs)
        return
    add = docs.add_item

    def item(code: str, kind: str, **facts: Any) -> None:
        add({"state": code, "position": position, "at": at, "event": kind, **facts})

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
    elif isinstance(event, SharingConsent.Event):
        _consent(event, docs, item)
    elif isinstance(event, CommunicationCheck.Event | CapacityNeed.Event):
        review_history(event, docs, item)
    elif isinstance(event, Alert.Event):
        _alert(event, docs, item)


def _alert(event: Any, docs: HistoryDocuments, item: Any) -> None:
    """Reachability (issue 17): each final outcome of an alert on its State's timeline, as
    ``alert <cause>: <outcome>``, with the contact alerted in ``by`` (``webhook`` for the
    State's webhook) and the notification, consent or check it was about; never an address.
    Deferrals are not listed: the final outcome says whether the contact was reached."""
    key = str(event.originator_id)
    if isinstance(event, Alert.Raised):
        docs.put(
            ALERT,
            key,
            {
                "state": event.state,
                "contact_id": event.contact_id,
                "cause": event.cause,
                "subject": str(event.subject),
            },
        )
        return
    outcome = OUTCOME_OF.get(type(event))
    alert = docs.get(ALERT, key)
    if alert is None or outcome is None or outcome not in FINAL_OUTCOMES:
        return
    subject_field = {
        str(Cause.CONSENT_REQUESTED): "consent_id",
        str(Cause.CHECK_CHALLENGE): "check_id",
        str(Cause.CONTACT_UNVERIFIED): None,
    }.get(alert["cause"], "notification_id")
    facts = {subject_field: alert["subject"]} if subject_field else {}
    item(
        alert["state"],
        f"alert {alert['cause']}: {outcome}",
        by=alert["contact_id"] or "webhook",
        result=str(outcome),
        **facts,
    )


#: For each later event: what the recipient's and the sender's timelines (in that order)
#: call it. The notification's status after it is the domain's (``status_after``).
_AFTER_SENT: dict[type, tuple[str, str]] = {
    Notification.Acknowledged: ("acknowledged", "acknowledgement received"),
    Notification.Responded: ("responded", "response received"),
    Notification.Closed: ("closed by sender", "closed"),
    Notification.Withdrawn: ("withdrawn by sender", "withdrawn"),
}


def _notification(event: Any, position: int, at: str, docs: HistoryDocuments) -> None:
    """Two items per event, one on each party's timeline."""
    nid = str(event.originator_id)
    add = docs.add_item
    if isinstance(event, Notification.Sent):
        sender, recipient, incident_type = event.sender, event.recipient, event.incident_type
        docs.put(
            NOTIFICATION,
            nid,
            {
                "id": nid,
                "sender": sender,
                "recipient": recipient,
                "incident_type": incident_type,
                "sent_at": at,
                "acknowledged_at": None,
                "first_response_at": None,
                "status": status_after(Notification.Sent).value,
                "urgency": event.urgency,
                "acknowledge_by": _iso(event.acknowledge_by),
                "escalations": [],
                "escalation_exhausted": False,
            },
        )
        for code, verb, counterpart in (
            (sender, "notification sent", recipient),
            (recipient, "notification received", sender),
        ):
            add(
                {
                    "state": code,
                    "position": position,
                    "at": at,
                    "event": verb,
                    "counterpart": counterpart,
                    "incident_type": incident_type,
                    "notification_id": nid,
                }
            )
        return
    meta = docs.get(NOTIFICATION, nid)
    if meta is None:  # pragma: no cover - the record always sends first
        raise LookupError(f"event at position {position} for an unknown notification")
    kind = type(event)
    sender, recipient, incident_type = meta["sender"], meta["recipient"], meta["incident_type"]
    if kind is Notification.Escalated or kind is Notification.EscalationExhausted:
        _escalation(event, position, at, meta, docs)
        return
    facts: HistoryRow = {}
    if kind is Notification.Acknowledged:
        meta["acknowledged_at"] = at
        facts["hours_to_acknowledge"] = _hours(event.timestamp, meta["sent_at"])
    elif kind is Notification.Responded:
        if meta["first_response_at"] is None:
            meta["first_response_at"] = at
            facts["hours_to_respond"] = _hours(event.timestamp, meta["sent_at"])
        if event.assistance_requested:
            facts["assistance_requested"] = True
    recipient_verb, sender_verb = _AFTER_SENT[kind]
    meta["status"] = status_after(kind).value
    docs.put(NOTIFICATION, nid, meta)
    for code, verb, counterpart in (
        (recipient, recipient_verb, sender),
        (sender, sender_verb, recipient),
    ):
        add(
            {
                "state": code,
                "position": position,
                "at": at,
                "event": verb,
                "counterpart": counterpart,
                "incident_type": incident_type,
                "notification_id": nid,
                **facts,
            }
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _escalation(
    event: Any, position: int, at: str, meta: dict[str, Any], docs: HistoryDocuments
) -> None:
    """An escalation (or its end) on both parties' timelines, with the new deadline; the
    status does not change. The contact's id is in the notification's metadata only."""
    if isinstance(event, Notification.Escalated):
        meta["acknowledge_by"] = _iso(event.acknowledge_by)
        escalations = meta.setdefault("escalations", [])
        escalations.append({"at": at, "step": event.step, "contact_id": event.contact_id})
        verb, deadline = "escalated", meta["acknowledge_by"]
    else:
        meta["acknowledge_by"] = None
        meta["escalation_exhausted"] = True
        verb, deadline = "escalation exhausted", None
    docs.put(NOTIFICATION, str(event.originator_id), meta)
    for code, counterpart in (
        (meta["recipient"], meta["sender"]),
        (meta["sender"], meta["recipient"]),
    ):
        docs.add_item(
            {
                "state": code,
                "position": position,
                "at": at,
                "event": verb,
                "counterpart": counterpart,
                "incident_type": meta["incident_type"],
                "notification_id": meta["id"],
                "deadline": deadline,
            }
        )


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
            "status": consent_status(event.parties, [event.requested_by]).value,
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
            SharingConsent.KeysShared: "sealed exchange shared",
        }[type(event)]
        actor = event.reader if isinstance(event, SharingConsent.ContentRead) else event.party
        if isinstance(event, SharingConsent.Granted):
            meta["granted_by"] = sorted({*meta["granted_by"], actor})
            meta["status"] = consent_status(meta["parties"], meta["granted_by"]).value
        elif isinstance(event, SharingConsent.Denied):
            meta["status"] = consent_status(meta["parties"], meta["granted_by"], actor).value
        elif isinstance(event, SharingConsent.Revoked):
            status = consent_status(meta["parties"], meta["granted_by"], revoked_by=actor)
            meta["status"] = status.value
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
