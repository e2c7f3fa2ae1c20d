"""CommunicationCheck: the Secretariat's test of States' points of contact (R5, R17).

The Secretariat launches a check of the registered States' contacts at one level (R2), all of
them or a listed subset, with a deadline. Each State confirms receipt through one of its
contacts at that level; the time it took is recorded. A State's result is *answered in time*,
*answered late* (after the deadline, while the check is open) or *no answer*; before the
deadline an unanswered State is *awaiting*. The Secretariat closes the check after the
deadline, after which no answer is accepted.

Lifecycle::

    open ──answer (once per State)──▶ open ──close (after the deadline)──▶ closed

A *challenged* check (issue 17; ``Launched`` version 2 lists its ``contacts``) tests the
channel itself: the server sends each contact at the check's level its own challenge code
(``challenge_code``) over its listed channel, at a time spread within a window and within the
contact's hours (``challenge_times``), and records the outcome (``ChallengeSent`` or
``ChallengeUndeliverable``). The State answers by quoting a code (``confirm``): the record
holds the codes' digests only, so a reader of the record cannot answer for a State. Each
contact's deadline runs from when its challenge was sent; its result is one of
:class:`ContactResult`. A State passes if any of its contacts confirmed. Version 1 checks
(no contacts) keep the per-State answer by contact id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import PocdirAggregate
from domain.delivery import DELIVERY_ACTOR
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.hours import next_opening
from domain.taxonomy import check_level
from domain.values import Principal, Role

#: A check's deadline lies at most this far after its launch (a ping, not a survey).
MAX_DEADLINE_DAYS = 30


class CheckResult(StrEnum):
    IN_TIME = "answered in time"
    LATE = "answered late"
    NO_ANSWER = "no answer"
    AWAITING = "awaiting"


def judge(answered_at: datetime | None, deadline: datetime, now: datetime) -> CheckResult:
    """One State's result of a check, judged at ``now``."""
    if answered_at is not None and answered_at <= now:
        return CheckResult.IN_TIME if answered_at <= deadline else CheckResult.LATE
    return CheckResult.AWAITING if now <= deadline else CheckResult.NO_ANSWER


def hours_between(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds() / 3600, 2)


# -- challenge codes ---------------------------------------------------------------------------

#: Crockford's base32: no I, L, O or U, so a code read aloud or retyped is not misread.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: 16 characters of 5 bits: 80 bits, as 4 groups of 4.
CODE_LENGTH = 16
_CODE_BYTES = CODE_LENGTH * 5 // 8
#: What a reader may type for a look-alike (Crockford's decoding).
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_FORM = "16 letters and digits, such as K7QD-3MXA-9TPC-2HWE"


def contact_key(state: str, contact_id: str) -> str:
    """``FRA/contact-id``: how a check names one contact of one State."""
    return f"{state}/{contact_id}"


def split_key(key: str) -> tuple[str, str]:
    state, _, contact_id = key.partition("/")
    return state, contact_id


def _render(value: bytes) -> str:
    number = int.from_bytes(value, "big")
    chars = [CODE_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_LENGTH))]
    text = "".join(chars)
    return "-".join(text[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def challenge_code(secret: bytes, check_id: UUID, state: str, contact_id: str) -> str:
    """The challenge code of one contact in one check: an HMAC under the server's secret, so
    the server can send it again (a resend after a crash carries the same code) without
    storing it, and nobody without the secret can derive it from the record."""
    message = f"pocdir-challenge-v1\n{check_id}\n{state}\n{contact_id}".encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return _render(mac[:_CODE_BYTES])


def normalise_code(raw: str) -> str:
    """A code as typed (any case, spaces, hyphens, O for 0, I or L for 1) in its canonical
    form; ``ValidationError`` if it cannot be a code."""
    text = "".join(ch for ch in raw.upper() if ch not in " -\t").translate(_LOOK_ALIKES)
    if len(text) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in text):
        raise ValidationError(
            f"a challenge code is {_CODE_FORM}; copy it from the message your contact received"
        )
    return "-".join(text[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def code_digest(check_id: UUID, code: str) -> str:
    """What the record holds of a code (never the code itself)."""
    canonical = normalise_code(code).encode()
    return (
        "sha256:" + hashlib.sha256(b"pocdir-challenge\x00" + check_id.bytes + canonical).hexdigest()
    )


def challenge_times(
    check_id: UUID,
    launched_at: datetime,
    window_hours: int,
    contacts: Mapping[str, tuple[str, str]],
) -> dict[str, datetime]:
    """When each contact's challenge may be sent at the earliest (``contacts`` maps
    ``FRA/contact-id`` to its (hours, time zone)): a deterministic offset within the window
    from the launch, so the sends are spread and a replay gives the same times, then the next
    opening of the contact's hours, so that no time zone is always woken at night."""
    window = max(window_hours, 0) * 3600
    times = {}
    for key, (hours, time_zone) in sorted(contacts.items()):
        digest = hashlib.sha256(b"pocdir-spread\x00" + check_id.bytes + key.encode()).digest()
        offset = int.from_bytes(digest[:8], "big") % window if window else 0
        times[key] = next_opening(hours, time_zone, launched_at + timedelta(seconds=offset))
    return times


class Undeliverable(StrEnum):
    """Why the server recorded that a contact's challenge cannot reach it."""

    REFUSED = "refused"
    GIVEN_UP = "given up"
    NOT_AUTOMATIC = "not deliverable automatically"


class ContactResult(StrEnum):
    """One contact's result in a challenged check."""

    IN_TIME = "confirmed in time"
    LATE = "confirmed late"
    UNREACHABLE = "unreachable"
    NO_ANSWER = "no answer"
    AWAITING = "awaiting"
    NOT_SENT = "not sent"
    NOT_AUTOMATIC = "not deliverable automatically"


#: The results that count against a contact (two closed checks in a row: unverified), and
#: those that verify it again (``domain.verification``).
FAILED_RESULTS = frozenset({ContactResult.UNREACHABLE, ContactResult.NO_ANSWER})
PASSED_RESULTS = frozenset({ContactResult.IN_TIME, ContactResult.LATE})


@dataclass(frozen=True)
class Challenge:
    sent_at: datetime
    digest: str


def check_secretariat(by: Principal, verb: str) -> None:
    if by.role is not Role.SECRETARIAT:
        raise NotPermitted(f"only the Secretariat {verb} communication checks")


class CommunicationCheck(PocdirAggregate):
    class Launched(PocdirAggregate.Created):
        """Version 2 adds the challenged ``contacts`` (``FRA/contact-id``, sorted) and the
        spread window; a version 1 check had neither and is answered per State."""

        class_version = 2

        level: str
        states: tuple[str, ...]
        deadline: datetime
        contacts: tuple[str, ...]
        window_hours: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["contacts"] = ()
            state["window_hours"] = 0

    class Answered(PocdirAggregate.Event):
        state: str
        contact_id: str

        def apply(self, check: CommunicationCheck) -> None:
            check.answers[self.state] = (self.timestamp, self.contact_id)

    class ChallengeSent(PocdirAggregate.Event):
        """The server: the mail server (or webhook) accepted this contact's challenge at the
        event's timestamp. Carries the code's digest, never the code."""

        state: str
        contact_id: str
        digest: str

        def apply(self, check: CommunicationCheck) -> None:
            key = contact_key(self.state, self.contact_id)
            check.challenges[key] = Challenge(self.timestamp, self.digest)

    class ChallengeUndeliverable(PocdirAggregate.Event):
        """The server: this contact's challenge cannot reach it (``Undeliverable``)."""

        state: str
        contact_id: str
        outcome: str

        def apply(self, check: CommunicationCheck) -> None:
            check.undeliverable[contact_key(self.state, self.contact_id)] = self.outcome

    class ChallengeConfirmed(PocdirAggregate.Event):
        """The State quoted the code sent to this contact."""

        state: str
        contact_id: str

        def apply(self, check: CommunicationCheck) -> None:
            check.confirmed[contact_key(self.state, self.contact_id)] = self.timestamp

    class Closed(PocdirAggregate.Event):
        """Version 2 adds each challenged contact's result at the close."""

        class_version = 2

        unanswered: tuple[str, ...]
        contact_results: tuple[tuple[str, str, str], ...]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["contact_results"] = ()

        def apply(self, check: CommunicationCheck) -> None:
            check.closed_at = self.timestamp
            check.closed_results = tuple((s, c, r) for s, c, r in self.contact_results)

    def __init__(
        self,
        level: str,
        states: Iterable[str],
        deadline: datetime,
        contacts: Iterable[str] = (),
        window_hours: int = 0,
    ) -> None:
        self.level = level
        self.states = tuple(states)
        self.deadline = deadline
        self.contacts = tuple(contacts)
        self.window_hours = window_hours
        self.launched_at: datetime = self.created_on
        self.answers: dict[str, tuple[datetime, str]] = {}
        self.challenges: dict[str, Challenge] = {}
        self.undeliverable: dict[str, str] = {}
        self.confirmed: dict[str, datetime] = {}
        self.closed_at: datetime | None = None
        #: Each challenged contact's (state, contact id, result) as judged at the close.
        self.closed_results: tuple[tuple[str, str, str], ...] = ()

    @property
    def challenged(self) -> bool:
        """Whether this check tests the channel (challenge codes) rather than taking an
        answer per State."""
        return bool(self.contacts)

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def launch(
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        level: str,
        states: Iterable[str],
        deadline: datetime,
        contacts: Iterable[str] = (),
        window_hours: int = 0,
    ) -> CommunicationCheck:
        """Precondition: ``states`` are registered, active and have a contact at ``level``,
        and ``contacts`` are every contact at ``level`` of those States (the application
        service checks this across entries). No contacts: a version 1 style check."""
        check_secretariat(by, "launches")
        states = tuple(sorted(set(states)))
        keys = tuple(sorted(set(contacts)))
        if any(split_key(k)[0] not in states or not split_key(k)[1] for k in keys):
            raise ValidationError("a challenged contact must be FRA/contact-id of a listed State")
        if window_hours < 0:
            raise ValidationError("the spread window must be 0 or more hours")
        if not states:
            raise ValidationError("a check needs at least one State with a contact at that level")
        if deadline.tzinfo is None:
            raise ValidationError("the deadline needs a time zone (e.g. 2026-01-31T12:00:00Z)")
        if deadline <= at:
            raise ValidationError("the deadline must be after the launch")
        if deadline - at > timedelta(days=MAX_DEADLINE_DAYS):
            raise ValidationError(f"the deadline must be within {MAX_DEADLINE_DAYS} days")
        return cls._create(
            cls.Launched,
            id=id,
            level=str(check_level(level)),
            states=states,
            deadline=deadline,
            contacts=keys,
            window_hours=window_hours,
            actor=by.ref,
            timestamp=at,
        )

    @property
    def duration(self) -> timedelta:
        """From the launch to the deadline: each contact has this long from its challenge."""
        return self.deadline - self.launched_at

    def contact_deadline(self, key: str) -> datetime | None:
        """A contact's own deadline: its challenge's sending time plus the check's duration;
        None while its challenge has not been sent."""
        sent = self.challenges.get(key)
        return None if sent is None else sent.sent_at + self.duration

    @property
    def last_close(self) -> datetime:
        """After this, a challenged check may be closed whatever its contacts' state: the
        deadline, plus the spread window, plus the check's duration again."""
        return self.deadline + timedelta(hours=self.window_hours) + self.duration

    def has_outcome(self, state: str, contact_id: str) -> bool:
        """Whether the server has recorded this contact's challenge as sent or undeliverable
        (the delivery worker asks before it records one)."""
        key = contact_key(state, contact_id)
        return key in self.challenges or key in self.undeliverable

    def _check_outcome(self, state: str, contact_id: str) -> str:
        key = contact_key(state, contact_id)
        if key not in self.contacts:
            raise ValidationError(f"{key[:80]} is not a contact challenged by this check")
        if self.has_outcome(state, contact_id):
            raise InvalidTransition(f"the challenge of {key[:80]} already has an outcome")
        if self.closed_at is not None:
            raise InvalidTransition("this check is closed; it records no more challenges")
        return key

    def challenge_sent(self, at: datetime, state: str, contact_id: str, digest: str) -> None:
        """The server: the challenge of ``state/contact_id`` was accepted for delivery at
        ``at`` (the mail server's acceptance), with the code's ``digest``."""
        self._check_outcome(state, contact_id)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ValidationError("a challenge's digest is 'sha256:' and 64 hex digits")
        self.trigger_event(
            self.ChallengeSent,
            actor=DELIVERY_ACTOR,
            timestamp=at,
            state=state,
            contact_id=contact_id,
            digest=digest,
        )

    def challenge_undeliverable(
        self, at: datetime, state: str, contact_id: str, outcome: str
    ) -> None:
        """The server: the challenge of ``state/contact_id`` cannot be delivered
        (``Undeliverable``: refused, given up, or not deliverable automatically)."""
        self._check_outcome(state, contact_id)
        try:
            reason = Undeliverable(outcome)
        except ValueError:
            raise ValidationError(
                "an undeliverable outcome is one of " + ", ".join(u.value for u in Undeliverable)
            ) from None
        self.trigger_event(
            self.ChallengeUndeliverable,
            actor=DELIVERY_ACTOR,
            timestamp=at,
            state=state,
            contact_id=contact_id,
            outcome=str(reason),
        )

    def confirm(self, by: Principal, at: datetime, code: str) -> str:
        """The State quotes the code one of its contacts received; returns that contact's id.
        A code that is not one sent to the State's contacts is refused (``ValidationError``),
        one already used too (``InvalidTransition``); neither records anything."""
        state = self._check_state_answers(by)
        if not self.challenged:
            raise ValidationError(
                "this check takes an answer by contact id, not a code (POST /checks/{id}/answer)"
            )
        digest = code_digest(self.id, code)
        key = next(
            (
                k
                for k, c in self.challenges.items()
                if split_key(k)[0] == state and hmac.compare_digest(c.digest, digest)
            ),
            None,
        )
        if key is None:
            raise ValidationError(
                f"this code is not one of the codes sent to {state}'s contacts for this check; "
                "copy it from the message"
            )
        if key in self.confirmed:
            raise InvalidTransition(
                f"this code has already been used: {key} confirmed it at "
                f"{self.confirmed[key].isoformat()}"
            )
        contact_id = split_key(key)[1]
        self.trigger_event(
            self.ChallengeConfirmed, actor=by.ref, timestamp=at, state=state, contact_id=contact_id
        )
        return contact_id

    def _check_state_answers(self, by: Principal) -> str:
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State answers a communication check")
        if by.state not in self.states:
            raise NotPermitted(f"{by.state} is not part of this check")
        if self.closed_at is not None:
            raise InvalidTransition("this check is closed; it takes no more answers")
        return by.state

    def answer(self, by: Principal, at: datetime, contact_id: str) -> None:
        """The State confirms receipt through ``contact_id``; precondition: the application
        service has checked that this contact of the State is at the check's level."""
        state = self._check_state_answers(by)
        if self.challenged:
            raise ValidationError(
                "this check tests each contact's channel: answer with the code your contact "
                "received (POST /checks/{id}/answers, or pocdir-state check answer CHECK_ID CODE)"
            )
        if state in self.answers:
            raise InvalidTransition(f"{state} has already answered this check")
        self.trigger_event(
            self.Answered, actor=by.ref, timestamp=at, state=state, contact_id=contact_id
        )

    def close(self, by: Principal, at: datetime) -> None:
        """After the deadline: the States that have not answered are recorded as no answer.
        A challenged check closes once every contact's result is settled (confirmed,
        undeliverable, or its own deadline passed), or after ``last_close`` in any case, so
        that a challenge the server never sent cannot keep it open for ever."""
        check_secretariat(by, "closes")
        if self.closed_at is not None:
            raise InvalidTransition("this check is already closed")
        if at <= self.deadline:
            raise InvalidTransition("a check closes only after its deadline")
        if self.challenged and at <= self.last_close:
            pending = [k for k in self.contacts if not self._settled(k, at)]
            if pending:
                raise InvalidTransition(
                    f"{len(pending)} contact(s) have not had their full time to answer (their "
                    "challenge is not sent yet, or its deadline has not passed); the check "
                    "closes when it has, or after "
                    f"{self.last_close.isoformat()} in any case (deadline + "
                    f"{self.window_hours} h window + the check's duration)"
                )
        rows = self.contact_rows(at) if self.challenged else []
        if self.challenged:
            passed = {r["state"] for r in rows if r["result"] in PASSED_RESULTS}
            unanswered = tuple(s for s in self.states if s not in passed)
        else:
            unanswered = tuple(s for s in self.states if s not in self.answers)
        self.trigger_event(
            self.Closed,
            actor=by.ref,
            timestamp=at,
            unanswered=unanswered,
            contact_results=tuple((r["state"], r["contact_id"], r["result"]) for r in rows),
        )

    def _settled(self, key: str, at: datetime) -> bool:
        if key in self.undeliverable or key in self.confirmed:
            return True
        deadline = self.contact_deadline(key)
        return deadline is not None and at > deadline

        # -- reads ------------------------------------------------------------------------------

    def contact_result(self, key: str, at: datetime) -> ContactResult:
        """One challenged contact's result, judged at ``at``."""
        sent = self.challenges.get(key)
        confirmed = self.confirmed.get(key)
        if confirmed is not None and confirmed > at:
            confirmed = None
        return judge_contact(
            sent.sent_at if sent is not None and sent.sent_at <= at else None,
            self.undeliverable.get(key),
            confirmed,
            self.duration,
            at,
        )

    def contact_rows(self, at: datetime) -> list[dict[str, Any]]:
        """Each challenged contact's result at ``at``: ids, times and hours, never a detail."""
        rows = []
        for key in self.contacts:
            state, contact_id = split_key(key)
            sent = self.challenges.get(key)
            confirmed = self.confirmed.get(key)
            confirmed = confirmed if confirmed is not None and confirmed <= at else None
            rows.append(
                {
                    "state": state,
                    "contact_id": contact_id,
                    "level": self.level,
                    "result": str(self.contact_result(key, at)),
                    "sent_at": sent.sent_at.isoformat() if sent else None,
                    "confirmed_at": confirmed.isoformat() if confirmed else None,
                    "hours_to_answer": (
                        hours_between(confirmed, sent.sent_at) if confirmed and sent else None
                    ),
                }
            )
        return rows

    def results(self, now: datetime) -> dict[str, Any]:
        """The check and each State's result as judged at ``now`` (for the Secretariat), and
        for a challenged check each contact's. Names only States, contact ids and times,
        never a contact detail."""
        at = self.closed_at if self.closed_at is not None and self.closed_at < now else now
        contacts = self.contact_rows(at) if self.challenged else []
        rows = []
        for code in self.states:
            if self.challenged:
                own = [r for r in contacts if r["state"] == code]
                rows.append(state_row(code, own, closed=self.closed_at is not None))
                continue
            answered = self.answers.get(code)
            answered_at = answered[0] if answered else None
            result = judge(answered_at, self.deadline, at)
            rows.append(
                {
                    "state": code,
                    "result": str(result),
                    "answered_at": answered_at.isoformat() if answered_at else None,
                    "contact_id": answered[1] if answered else None,
                    "hours_to_answer": (
                        hours_between(answered_at, self.launched_at) if answered_at else None
                    ),
                }
            )
        counts = {str(r): sum(1 for row in rows if row["result"] == r) for r in CheckResult}
        shaped: dict[str, Any] = {
            "check_id": str(self.id),
            "level": self.level,
            "launched_at": self.launched_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "judged_at": at.isoformat(),
            "counts": counts,
            "states": rows,
            "challenged": self.challenged,
        }
        if self.challenged:
            shaped["window_hours"] = self.window_hours
            shaped["contact_counts"] = {
                str(r): sum(1 for row in contacts if row["result"] == r) for r in ContactResult
            }
            shaped["contacts"] = contacts
        return shaped


def judge_contact(
    sent_at: datetime | None,
    undeliverable: str | None,
    confirmed_at: datetime | None,
    duration: timedelta,
    now: datetime,
) -> ContactResult:
    """One challenged contact's result at ``now``; decided here only (the check's results,
    its close and the review view all ask). Its deadline is ``sent_at + duration``."""
    if confirmed_at is not None and sent_at is not None:
        in_time = confirmed_at <= sent_at + duration
        return ContactResult.IN_TIME if in_time else ContactResult.LATE
    if undeliverable is not None:
        if undeliverable == Undeliverable.NOT_AUTOMATIC:
            return ContactResult.NOT_AUTOMATIC
        return ContactResult.UNREACHABLE
    if sent_at is None:
        return ContactResult.NOT_SENT
    return ContactResult.AWAITING if now <= sent_at + duration else ContactResult.NO_ANSWER


def state_row(state: str, contacts: list[dict[str, Any]], *, closed: bool) -> dict[str, Any]:
    """A State's row of a challenged check, from its contacts' rows: it passes if any of its
    contacts confirmed (the earliest confirmation in time is its answer); it awaits while one
    may still answer (a challenge not sent counts only while the check is open)."""
    confirmed = sorted(
        (r for r in contacts if r["confirmed_at"] is not None), key=lambda r: r["confirmed_at"]
    )
    results = {r["result"] for r in contacts}
    if ContactResult.IN_TIME in results:
        result = CheckResult.IN_TIME
    elif ContactResult.LATE in results:
        result = CheckResult.LATE
    elif ContactResult.AWAITING in results or (not closed and ContactResult.NOT_SENT in results):
        result = CheckResult.AWAITING
    else:
        result = CheckResult.NO_ANSWER
    first = next((r for r in confirmed if r["result"] == ContactResult.IN_TIME), None)
    first = first or (confirmed[0] if confirmed else None)
    return {
        "state": state,
        "result": str(result),
        "answered_at": first["confirmed_at"] if first else None,
        "contact_id": first["contact_id"] if first else None,
        "hours_to_answer": first["hours_to_answer"] if first else None,
    }


def confirmed_row(
    check: CommunicationCheck, state: str, code: str, now: datetime
) -> dict[str, Any]:
    """What a State is told after its code confirmed a contact: that contact's result only."""
    digest = code_digest(check.id, code)
    key = next(k for k, c in check.challenges.items() if c.digest == digest)
    confirmed = check.confirmed[key]
    return {
        "state": state,
        "contact_id": split_key(key)[1],
        "result": str(check.contact_result(key, max(now, confirmed))),
        "confirmed_at": confirmed.isoformat(),
    }
