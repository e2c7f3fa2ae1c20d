"""ContactVerification: which of a State's contacts the directory marks unverified (issue 17).

A communication check that tests the channel gives each contact a result (``domain.check``).
A contact that is unreachable or does not answer in two closed checks in a row is marked
unverified in the directory until it passes a check again (confirmed in time or late). Results
that say nothing of the contact (not sent, not deliverable automatically) leave its count as it
is. The rule is decided here only (:meth:`ContactVerification.count`); the check's close calls
it for every State in the check, and the application saves the check and every changed
verification in one write, so a record never shows a close without its marks.

One aggregate per State, with an id derived from its code, so its events need no lookup.
Recorded as part of the Secretariat's close (``domain.signing.SECRETARIAT_TOPICS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import PocdirAggregate
from domain.check import FAILED_RESULTS, PASSED_RESULTS, ContactResult
from domain.members import member_states

#: Failed checks in a row after which a contact is unverified.
FAILURES_TO_UNVERIFY = 2


def verification_id(code: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"urn:pocdir:verification:{code.upper()}")


@cache
def _verification_codes() -> dict[UUID, str]:
    return {verification_id(code): code for code in member_states()}


def code_of_verification(verification: UUID) -> str:
    """The State code whose verification aggregate has this id (``KeyError`` if none)."""
    return _verification_codes()[verification]


class ContactVerification(PocdirAggregate):
    class Started(PocdirAggregate.Created):
        state: str

    class Counted(PocdirAggregate.Event):
        """A closed check's results for this State's contacts that change a count: the
        contacts that failed it, and those that passed it after failing before."""

        check_id: UUID
        failed: tuple[str, ...]
        passed: tuple[str, ...]

        def apply(self, v: ContactVerification) -> None:
            for contact_id in self.failed:
                v.failures[contact_id] = v.failures.get(contact_id, 0) + 1
            for contact_id in self.passed:
                v.failures.pop(contact_id, None)

    class MarkedUnverified(PocdirAggregate.Event):
        """The State's contact failed two checks in a row (the delivery worker alerts the
        State, ``domain.alerts``: hence ``state`` on the event)."""

        state: str
        contact_id: str
        check_id: UUID

        def apply(self, v: ContactVerification) -> None:
            v.unverified.add(self.contact_id)

    class Reverified(PocdirAggregate.Event):
        state: str
        contact_id: str
        check_id: UUID

        def apply(self, v: ContactVerification) -> None:
            v.unverified.discard(self.contact_id)

    def __init__(self, state: str) -> None:
        self.state = state
        #: Consecutive failed checks per contact id (absent: none).
        self.failures: dict[str, int] = {}
        self.unverified: set[str] = set()

    @classmethod
    def start(cls, state: str, actor: str, at: datetime) -> ContactVerification:
        return cls._create(
            cls.Started, id=verification_id(state), state=state, actor=actor, timestamp=at
        )

    def count(
        self, check_id: UUID, results: Iterable[tuple[str, str]], actor: str, at: datetime
    ) -> None:
        """Apply one closed check's results (contact id, ``ContactResult``) of this State:
        records nothing if no count changes."""
        failed, passed = [], []
        for contact_id, raw in sorted(results):
            result = ContactResult(raw)
            if result in FAILED_RESULTS:
                failed.append(contact_id)
            elif result in PASSED_RESULTS and (
                self.failures.get(contact_id) or contact_id in self.unverified
            ):
                passed.append(contact_id)
        if not failed and not passed:
            return
        self.trigger_event(
            self.Counted,
            actor=actor,
            timestamp=at,
            check_id=check_id,
            failed=tuple(failed),
            passed=tuple(passed),
        )
        for contact_id in failed:
            if (
                self.failures[contact_id] >= FAILURES_TO_UNVERIFY
                and contact_id not in self.unverified
            ):
                self.trigger_event(
                    self.MarkedUnverified,
                    actor=actor,
                    timestamp=at,
                    state=self.state,
                    contact_id=contact_id,
                    check_id=check_id,
                )
        for contact_id in passed:
            if contact_id in self.unverified:
                self.trigger_event(
                    self.Reverified,
                    actor=actor,
                    timestamp=at,
                    state=self.state,
                    contact_id=contact_id,
                    check_id=check_id,
                )
