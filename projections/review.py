"""The review read model (R16, R17): the facts the provisional-operation review counts.

Folded from the same record as every other view, by the same runner, so it is rebuilt by a
replay to the same documents. It holds, per State, a timeline of its participation (active or
not, levels named, incident types handled) and the days of its updates, confirmations and
late notices; per communication check, its States, deadline and answer times; per
capacity-building need, its category, offers and lifecycle times; and per day, counts of
consent decisions and of responses that asked for assistance. Never a contact detail, an
indicator or any text: contacts are kept as (level, incident types) only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from domain.capacity import CapacityNeed
from domain.check import (
    CommunicationCheck,
    contact_key,
    hours_between,
    judge,
    judge_contact,
    split_key,
)
from domain.consent import SharingConsent
from domain.delivery import FINAL_OUTCOMES, OUTCOME_OF, Alert
from domain.freshness import late_notice_delay
from domain.notification import Notification
from domain.state_entry import StateEntry, code_of_entry
from projections.directory import Documents

REVIEW_STATE = "review-state"
CHECK = "check"
NEED = "need"
REVIEW_DAY = "review-day"
#: Reachability (issue 17): alerts' final outcomes per day and State (key ``day|STATE``), and
#: each open alert's State, kept from its ``Raised`` for its outcome.
REVIEW_REACH = "review-reach"
REVIEW_ALERT = "review-alert"

Item = Callable[..., None]

#: The version of what this projector writes (the review's documents and history items). Bump it by
#: hand with any change to its output: the server holding the runner lease then rebuilds the views
#: from the record when it starts (``projections.runner.ViewRunner.outdated``).
VERSION = 3  # 2: challenged checks' contacts; 3: alerts' outcomes (issue 17)

#: The consent events the review counts, by the decision they record (R11).
CONSENT_DECISIONS: dict[type, str] = {
    SharingConsent.Requested: "requested",
    SharingConsent.Granted: "granted",
    SharingConsent.Denied: "denied",
    SharingConsent.Revoked: "revoked",
}


class AllDocuments(Protocol):
    def all(self, kind: str) -> list[dict[str, Any]]: ...


def project_review(event: Any, position: int, docs: Documents) -> None:
    """Apply one decoded event to the review documents; other events are ignored."""
    if isinstance(event, StateEntry.Event):
        _state(event, docs)
    elif isinstance(event, CommunicationCheck.Event):
        _check(event, docs)
    elif isinstance(event, CapacityNeed.Event):
        _need(event, docs)
    elif isinstance(event, SharingConsent.Event):
        verb = CONSENT_DECISIONS.get(type(event))
        if verb is not None:  # other consent events (e.g. a consented read) are not decisions
            _count_day(docs, event.timestamp.date().isoformat(), "consents_" + verb)
    elif isinstance(event, Notification.Responded) and event.assistance_requested:
        _count_day(docs, event.timestamp.date().isoformat(), "responses_asking_assistance")
    elif isinstance(event, Alert.Event):
        _reach(event, docs)


def _reach(event: Any, docs: Documents) -> None:
    """Count each alert's final outcome on its day, for its State (never a contact's
    address: the State and the outcome only)."""
    key = str(event.originator_id)
    if isinstance(event, Alert.Raised):
        docs.put(REVIEW_ALERT, key, {"state": event.state})
        return
    outcome = OUTCOME_OF.get(type(event))
    alert = docs.get(REVIEW_ALERT, key)
    if alert is None or outcome is None or outcome not in FINAL_OUTCOMES:
        return
    day = event.timestamp.date().isoformat()
    reach_key = f"{day}|{alert['state']}"
    doc = docs.get(REVIEW_REACH, reach_key) or {"day": day, "state": alert["state"]}
    doc[str(outcome)] = doc.get(str(outcome), 0) + 1
    docs.put(REVIEW_REACH, reach_key, doc)


def _count_day(docs: Documents, day: str, counter: str) -> None:
    doc = docs.get(REVIEW_DAY, day) or {"day": day}
    doc[counter] = doc.get(counter, 0) + 1
    docs.put(REVIEW_DAY, day, doc)


def _state(event: Any, docs: Documents) -> None:
    day = event.timestamp.date().isoformat()
    if isinstance(event, StateEntry.Registered):
        doc: dict[str, Any] = {
            "code": event.code,
            "name": event.name,
            "registered_on": event.effective_on.isoformat(),
            "active": True,
            "contacts": {},
            "timeline": [],
            "updates": [],
            "confirmations": [],
            "late_notices": [],
        }
    else:
        code = code_of_entry(event.originator_id)
        found = docs.get(REVIEW_STATE, code)
        if found is None:  # pragma: no cover - the record always registers first
            raise LookupError(f"review: event for the unregistered entry of {code}")
        doc = found
    contacts: dict[str, Any] = doc["contacts"]
    if isinstance(event, StateEntry.ContactAdded):  # also ContactUpdated
        contacts[event.contact.contact_id] = {
            "level": str(event.contact.level),
            "incident_types": sorted(event.contact.incident_types),
        }
    elif isinstance(event, StateEntry.ContactRemoved):
        contacts.pop(event.contact_id, None)
    elif isinstance(event, StateEntry.AnnuallyConfirmed):
        doc["confirmations"].append(day)
    elif isinstance(event, StateEntry.Withdrawn):
        doc["active"] = False
    elif isinstance(event, StateEntry.Rejoined):
        doc["active"] = True
    if not doc["updates"] or doc["updates"][-1] != day:
        doc["updates"].append(day)
    effective_on = getattr(event, "effective_on", None)
    if effective_on is not None and not isinstance(event, StateEntry.Registered):
        delay = late_notice_delay(effective_on, event.timestamp)
        if delay is not None:  # R5, domain.freshness
            doc["late_notices"].append({"reported_on": day, "delay_days": delay})
    snapshot = {
        "on": day,
        "active": doc["active"],
        "diplomatic": any(c["level"] == "diplomatic" for c in contacts.values()),
        "technical": any(c["level"] == "technical" for c in contacts.values()),
        "incident_types": sorted({t for c in contacts.values() for t in c["incident_types"]}),
    }
    timeline: list[dict[str, Any]] = doc["timeline"]
    if timeline and timeline[-1]["on"] == day:
        timeline[-1] = snapshot
    elif not timeline or {**timeline[-1], "on": day} != snapshot:
        timeline.append(snapshot)
    docs.put(REVIEW_STATE, doc["code"], doc)


def _check(event: Any, docs: Documents) -> None:
    cid = str(event.originator_id)
    at = event.timestamp.isoformat()
    if isinstance(event, CommunicationCheck.Launched):
        docs.put(
            CHECK,
            cid,
            {
                "id": cid,
                "level": event.level,
                "launched_at": at,
                "deadline": event.deadline.isoformat(),
                "states": list(event.states),
                "answers": {},
                "closed_at": None,
                # A challenged check (issue 17): each contact's challenge, by FRA/contact-id.
                "window_hours": event.window_hours,
                "contacts": {
                    k: {"sent_at": None, "undeliverable": None, "confirmed_at": None}
                    for k in event.contacts
                },
            },
        )
        return
    doc = docs.get(CHECK, cid)
    if doc is None:  # pragma: no cover - the record always launches first
        raise LookupError("review: event for an unknown check")
    contacts = doc.setdefault("contacts", {})
    if isinstance(event, CommunicationCheck.Answered):
        doc["answers"][event.state] = at
    elif isinstance(event, CommunicationCheck.ChallengeSent):
        contacts[contact_key(event.state, event.contact_id)]["sent_at"] = at
    elif isinstance(event, CommunicationCheck.ChallengeUndeliverable):
        contacts[contact_key(event.state, event.contact_id)]["undeliverable"] = event.outcome
    elif isinstance(event, CommunicationCheck.ChallengeConfirmed):
        contacts[contact_key(event.state, event.contact_id)]["confirmed_at"] = at
        doc["answers"].setdefault(event.state, at)  # the State's first confirmation
    elif isinstance(event, CommunicationCheck.Closed):
        doc["closed_at"] = at
    docs.put(CHECK, cid, doc)


def contact_results(check: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Each challenged contact of a check document, judged at ``now`` (or at its close, if
    earlier) as the domain judges it (``domain.check.judge_contact``)."""
    launched, deadline = _parse(check["launched_at"]), _parse(check["deadline"])
    if check["closed_at"] is not None:
        now = min(now, _parse(check["closed_at"]))
    rows = []
    for key, c in sorted(check.get("contacts", {}).items()):
        sent = _parse(c["sent_at"]) if c["sent_at"] and _parse(c["sent_at"]) <= now else None
        confirmed = _parse(c["confirmed_at"]) if c["confirmed_at"] else None
        confirmed = confirmed if confirmed is not None and confirmed <= now else None
        state, contact_id = split_key(key)
        result = judge_contact(sent, c["undeliverable"], confirmed, deadline - launched, now)
        rows.append(
            {
                "state": state,
                "contact_id": contact_id,
                "level": check["level"],
                "result": str(result),
                "sent_at": sent.isoformat() if sent else None,
                "confirmed_at": confirmed.isoformat() if confirmed else None,
                "hours_to_answer": (hours_between(confirmed, sent) if confirmed and sent else None),
            }
        )
    return rows


def _need(event: Any, docs: Documents) -> None:
    nid = str(event.originator_id)
    at = event.timestamp.isoformat()
    if isinstance(event, CapacityNeed.Recorded):
        docs.put(
            NEED,
            nid,
            {
                "id": nid,
                "state": event.state,
                "category": event.category,
                "cites_notification": event.notification_id is not None,
                "recorded_at": at,
                "offers": [],
                "matched_at": None,
                "matched_with": None,
                "fulfilled_at": None,
                "withdrawn_at": None,
            },
        )
        return
    doc = docs.get(NEED, nid)
    if doc is None:  # pragma: no cover - the record always records first
        raise LookupError("review: event for an unknown need")
    if isinstance(event, CapacityNeed.AssistanceOffered):
        doc["offers"].append({"state": event.by_state, "at": at})
    elif isinstance(event, CapacityNeed.OfferAccepted):
        doc["matched_at"], doc["matched_with"] = at, event.offering_state
    elif isinstance(event, CapacityNeed.Fulfilled):
        doc["fulfilled_at"] = at
    elif isinstance(event, CapacityNeed.Withdrawn):
        doc["withdrawn_at"] = at
    docs.put(NEED, nid, doc)


def review_history(event: Any, docs: Documents, item: Item) -> None:
    """Per-State history items of checks and capacity-building (facts only, never text).
    Called by the history projector before ``project_review`` sees the same event."""
    if isinstance(event, CommunicationCheck.Event):
        cid = str(event.originator_id)
        if isinstance(event, CommunicationCheck.Launched):
            for code in event.states:
                item(
                    code,
                    "check launched",
                    check_id=cid,
                    level=event.level,
                    deadline=event.deadline.isoformat(),
                )
            return
        check = docs.get(CHECK, cid) or {}
        if isinstance(event, CommunicationCheck.Answered):
            launched = _parse(check["launched_at"])
            result = judge(event.timestamp, _parse(check["deadline"]), event.timestamp)
            item(
                event.state,
                "check answered",
                check_id=cid,
                level=check["level"],
                hours_to_answer=hours_between(event.timestamp, launched),
                result=str(result),
            )
        elif isinstance(event, CommunicationCheck.ChallengeConfirmed):
            sent = check["contacts"][contact_key(event.state, event.contact_id)]["sent_at"]
            duration = _parse(check["deadline"]) - _parse(check["launched_at"])
            judged = judge_contact(_parse(sent), None, event.timestamp, duration, event.timestamp)
            item(
                event.state,
                "check contact confirmed",
                check_id=cid,
                level=check["level"],
                hours_to_answer=hours_between(event.timestamp, _parse(sent)),
                result=str(judged),
            )
        elif isinstance(event, CommunicationCheck.ChallengeUndeliverable):
            item(
                event.state,
                "check challenge undeliverable",
                check_id=cid,
                level=check["level"],
                result=event.outcome,
            )
        elif isinstance(event, CommunicationCheck.Closed):
            for code in event.unanswered:
                item(code, "check closed: no answer", check_id=cid, level=check["level"])
        return
    nid = str(event.originator_id)
    if isinstance(event, CapacityNeed.Recorded):
        cited = {"notification_id": str(event.notification_id)} if event.notification_id else {}
        item(event.state, "capacity need recorded", need_id=nid, category=event.category, **cited)
        return
    need = docs.get(NEED, nid) or {}
    owner, common = need["state"], {"need_id": nid, "category": need["category"]}
    if isinstance(event, CapacityNeed.AssistanceOffered):
        item(event.by_state, "assistance offered", counterpart=owner, **common)
        item(owner, "assistance offer received", counterpart=event.by_state, **common)
    elif isinstance(event, CapacityNeed.OfferAccepted):
        item(owner, "need matched", counterpart=event.offering_state, **common)
        item(event.offering_state, "offer accepted", counterpart=owner, **common)
    elif isinstance(event, CapacityNeed.Fulfilled):
        item(owner, "need fulfilled", counterpart=need["matched_with"], **common)
        item(need["matched_with"], "assisted need fulfilled", counterpart=owner, **common)
    elif isinstance(event, CapacityNeed.Withdrawn):
        item(owner, "need withdrawn", **common)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def check_summaries(view: AllDocuments, state: str | None = None) -> list[dict[str, Any]]:
    """Every communication check, oldest first, from the view: level, launch, deadline, how
    many States and answers, closing time. With ``state``, only the checks that include it,
    each saying whether that State has answered (and nothing of the others' answers)."""
    checks = sorted(view.all(CHECK), key=lambda c: (c["launched_at"], c["id"]))
    rows = []
    for c in checks:
        if state is not None and state not in c["states"]:
            continue
        row: dict[str, Any] = {
            "check_id": c["id"],
            "level": c["level"],
            "launched_at": c["launched_at"],
            "deadline": c["deadline"],
            "closed_at": c["closed_at"],
        }
        if state is None:
            row.update(states=len(c["states"]), answers=len(c["answers"]))
        else:
            row["answered_at"] = c["answers"].get(state)
        rows.append(row)
    return rows
