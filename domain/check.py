"""CommunicationCheck: the Secretariat's "ping test" of States' points of contact (R5, R17).

The Secretariat launches a check of the registered States' contacts at one level (R2), all of
them or a listed subset, with a deadline. Each State confirms receipt through one of its
contacts at that level; the time it took is recorded. A State's result is *answered in time*,
*answered late* (after the deadline, while the check is open) or *no answer*; before the
deadline an unanswered State is *awaiting*. The Secretariat closes the check after the
deadline, after which no answer is accepted.

Lifecycle::

    open ──answer (once per State)──▶ open ──close (after the deadline)──▶ closed
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
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


def check_secretariat(by: Principal, verb: str) -> None:
    if by.role is not Role.SECRETARIAT:
        raise NotPermitted(f"only the Secretariat {verb} communication checks")


class CommunicationCheck(PocdirAggregate):
    class Launched(PocdirAggregate.Created):
        level: str
        states: tuple[str, ...]
        deadline: datetime

    class Answered(PocdirAggregate.Event):
        state: str
        contact_id: str

        def apply(self, check: CommunicationCheck) -> None:
            check.answers[self.state] = (self.timestamp, self.contact_id)

    class Closed(PocdirAggregate.Event):
        unanswered: tuple[str, ...]

        def apply(self, check: CommunicationCheck) -> None:
            check.closed_at = self.timestamp

    def __init__(self, level: str, states: Iterable[str], deadline: datetime) -> None:
        self.level = level
        self.states = tuple(states)
        self.deadline = deadline
        self.launched_at: datetime = self.created_on
        self.answers: dict[str, tuple[datetime, str]] = {}
        self.closed_at: datetime | None = None

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
    ) -> CommunicationCheck:
        """Precondition: ``states`` are registered, active and have a contact at ``level``
        (the application service checks this across entries)."""
        check_secretariat(by, "launches")
        states = tuple(sorted(set(states)))
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
            actor=by.ref,
            timestamp=at,
        )

    def answer(self, by: Principal, at: datetime, contact_id: str) -> None:
        """The State confirms receipt through ``contact_id``; precondition: the application
        service has checked that this contact of the State is at the check's level."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State answers a communication check")
        if by.state not in self.states:
            raise NotPermitted(f"{by.state} is not part of this check")
        if self.closed_at is not None:
            raise InvalidTransition("this check is closed; it takes no more answers")
        if by.state in self.answers:
            raise InvalidTransition(f"{by.state} has already answered this check")
        self.trigger_event(
            self.Answered, actor=by.ref, timestamp=at, state=by.state, contact_id=contact_id
        )

    def close(self, by: Principal, at: datetime) -> None:
        """After the deadline: the States that have not answered are recorded as no answer."""
        check_secretariat(by, "closes")
        if self.closed_at is not None:
            raise InvalidTransition("this check is already closed")
        if at <= self.deadline:
            raise InvalidTransition("a check closes only after its deadline")
        unanswered = tuple(s for s in self.states if s not in self.answers)
        self.trigger_event(self.Closed, actor=by.ref, timestamp=at, unanswered=unanswered)

    # -- reads ------------------------------------------------------------------------------

    def results(self, now: datetime) -> dict[str, Any]:
        """The check and each State's result as judged at ``now`` (for the Secretariat).
        Names only States, contact ids and times, never a contact detail."""
        at = self.closed_at if self.closed_at is not None and self.closed_at < now else now
        rows = []
        for code in self.states:
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
        return {
            "check_id": str(self.id),
            "level": self.level,
            "launched_at": self.launched_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "judged_at": at.isoformat(),
            "counts": counts,
            "states": rows,
        }
