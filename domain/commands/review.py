"""The review area: what the Secretariat and the States record about how the provisional
operation works, communication checks (R17) and capacity-building needs (R16)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.capacity import CapacityNeed
from domain.check import (
    CommunicationCheck,
    challenge_times,
    check_secretariat,
    contact_key,
    split_key,
)
from domain.commands.exchanges import ExchangeCommands
from domain.errors import InvalidTransition, NotFound, NotPermitted, ValidationError
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state
from domain.taxonomy import check_level
from domain.values import Principal, Role, Text
from domain.verification import ContactVerification, verification_id

#: The spread window of a check's challenges when the composition root sets none.
DEFAULT_CHECK_WINDOW_HOURS = 4


class ReviewCommands(ExchangeCommands):
    """Commands and reads on ``CommunicationCheck`` and ``CapacityNeed``."""

    #: Hours over which a check's challenges are spread (``POCDIR_CHECK_WINDOW_HOURS``, set
    #: by the composition root, ``infra.wiring``).
    check_window_hours: int = DEFAULT_CHECK_WINDOW_HOURS

    def get_check(self, check_id: UUID) -> CommunicationCheck:
        return self._get(CommunicationCheck, check_id, "communication check")

    def get_need(self, need_id: UUID) -> CapacityNeed:
        return self._get(CapacityNeed, need_id, "capacity-building need")

    def launch_check(
        self,
        by: Principal,
        level: str,
        deadline: datetime,
        states: Iterable[str] | None = None,
        *,
        challenge: bool = True,
        idempotency: IdempotencyKey | None = None,
    ) -> CommunicationCheck:
        """The Secretariat checks every registered State with a contact at ``level``, or the
        listed ones (each must be registered, not withdrawn, with a contact at that level).

        The check challenges every contact at ``level`` of those States (the delivery worker
        sends the codes, spread over ``check_window_hours``); ``challenge=False`` launches a
        check answered per State by contact id, as before issue 17."""
        check_secretariat(by, "launches")
        level = str(check_level(level))
        entries = []
        if states is None:
            entries = [
                e
                for e in self.registered_states()
                if any(c.level == level for c in e.contacts.values())
            ]
        else:
            for code in states:
                try:
                    entry = self.get_active_entry(code)
                except NotFound:
                    raise ValidationError(f"{code[:10]} is not registered") from None
                except InvalidTransition as e:
                    raise ValidationError(str(e)) from None
                if not any(c.level == level for c in entry.contacts.values()):
                    raise ValidationError(f"{entry.code} has no contact at the {level} level")
                entries.append(entry)
        contacts = (
            [
                contact_key(e.code, c.contact_id)
                for e in entries
                for c in e.contacts.values()
                if c.level == level
            ]
            if challenge
            else []
        )
        check = CommunicationCheck.launch(
            self.new_id(),
            by,
            self.clock.now(),
            level,
            [e.code for e in entries],
            deadline,
            contacts,
            self.check_window_hours if challenge else 0,
        )
        self._save(check, idempotency=idempotency)
        return check

    def answer_check(
        self,
        by: Principal,
        check_id: UUID,
        contact_id: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> CommunicationCheck:
        """A State confirms receipt of the check through its contact ``contact_id``."""
        check = self.get_check(check_id)
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State answers a communication check")
        entry = self.get_entry(by.state)
        contact = entry.contacts.get(contact_id)
        if contact is None or contact.level != check.level:
            raise ValidationError(
                f"{entry.code} has no {check.level} contact {contact_id[:63]!r}; "
                "answer through a contact at the check's level"
            )
        check.answer(by, self.clock.now(), contact_id)
        self._save(check, idempotency=idempotency)
        return check

    def answer_check_code(
        self,
        by: Principal,
        check_id: UUID,
        code: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> CommunicationCheck:
        """A State quotes the challenge code one of its contacts received: that contact is
        confirmed (``CommunicationCheck.confirm``)."""

        def confirm(check: CommunicationCheck, at: datetime) -> None:
            check.confirm(by, at, code)

        return self._change(lambda: self.get_check(check_id), confirm, idempotency=idempotency)

    def challenge_outcome(  # noqa: PLR0913
        self,
        check_id: UUID,
        state: str,
        contact_id: str,
        at: datetime,
        *,
        digest: str | None,
        outcome: str | None,
    ) -> CommunicationCheck:
        """The delivery worker's outcome of one challenge: sent (``digest`` of its code, ``at``
        the mail server's acceptance) or undeliverable (``outcome``). Applied to the loaded
        check and returned UNSAVED: the worker saves it with its own events in one write."""
        if (digest is None) == (outcome is None):
            raise ValidationError("a challenge's outcome is either sent (a digest) or an outcome")
        check = self.get_check(check_id)
        if digest is not None:
            check.challenge_sent(at, state, contact_id, digest)
        elif outcome is not None:
            check.challenge_undeliverable(at, state, contact_id, outcome)
        return check

    def challenge_schedule(self, check_id: UUID) -> dict[str, datetime]:
        """When each challenged contact's code may be sent at the earliest
        (``domain.check.challenge_times``), from the contacts' hours as the entries hold them
        now; a contact since removed is left out."""
        check = self.get_check(check_id)
        hours: dict[str, tuple[str, str]] = {}
        for key in check.contacts:
            code, contact_id = split_key(key)
            contact = self.get_entry(code).contacts.get(contact_id)
            if contact is not None:
                hours[key] = (contact.hours, contact.time_zone)
        return challenge_times(check.id, check.launched_at, check.window_hours, hours)

    def get_verification(self, code: str) -> ContactVerification | None:
        """A State's contact verification marks; None before its first counted check."""
        try:
            return self._get(ContactVerification, verification_id(code), "verification")
        except NotFound:
            return None

    def close_check(
        self, by: Principal, check_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CommunicationCheck:
        """Close the check and, for a challenged one, count each contact's result towards
        its verification (``domain.verification``): the check and every changed verification
        are saved in one write."""
        at = self.clock.now()
        check = self.get_check(check_id)
        check.close(by, at)
        changed: list[ContactVerification] = []
        results: dict[str, list[tuple[str, str]]] = {}
        for code, contact_id, result in check.closed_results:
            results.setdefault(code, []).append((contact_id, result))
        for code, rows in sorted(results.items()):
            verification = self.get_verification(code) or ContactVerification.start(
                code, by.ref, at
            )
            before = len(verification.pending_events)  # a new one holds its Started
            verification.count(check.id, rows, by.ref, at)
            if len(verification.pending_events) > before:
                changed.append(verification)
        self._save(check, *changed, idempotency=idempotency)
        return check

    def check_results(self, by: Principal, check_id: UUID) -> dict[str, Any]:
        """The Secretariat reads a check's per-State results, judged now."""
        check_secretariat(by, "reads the results of")
        return self.get_check(check_id).results(self.clock.now())

    def record_need(
        self,
        by: Principal,
        category: str,
        text: Text,
        notification_id: UUID | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> CapacityNeed:
        """R16: a registered State records a capacity-building need, optionally citing a
        notification it is party to (typically one whose response asked for assistance)."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State records its capacity-building needs")
        self.get_active_entry(by.state)
        if notification_id is not None:
            self.get_notification_for(by, notification_id)  # a party only (else NotFound)
        need = CapacityNeed.record(
            self.new_aggregate_id(), by, self.clock.now(), category, text, notification_id
        )
        self._save(need, idempotency=idempotency)
        return need

    def offer_assistance(
        self, by: Principal, need_id: UUID, text: Text, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State offers assistance")
        self.get_active_entry(by.state)
        return self._change(
            lambda: self.get_need(need_id),
            lambda n, at: n.offer(by, at, text),
            idempotency=idempotency,
        )

    def accept_offer(
        self,
        by: Principal,
        need_id: UUID,
        offering_state: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> CapacityNeed:
        code = check_member_state(offering_state)
        return self._change(
            lambda: self.get_need(need_id),
            lambda n, at: n.accept(by, at, code),
            idempotency=idempotency,
        )

    def fulfil_need(
        self, by: Principal, need_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        return self._change(
            lambda: self.get_need(need_id),
            lambda n, at: n.fulfil(by, at),
            idempotency=idempotency,
        )

    def withdraw_need(
        self, by: Principal, need_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        return self._change(
            lambda: self.get_need(need_id),
            lambda n, at: n.withdraw(by, at),
            idempotency=idempotency,
        )
