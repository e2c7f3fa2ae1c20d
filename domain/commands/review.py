"""The review area: what the Secretariat and the States record about how the provisional
operation works, communication checks (R17) and capacity-building needs (R16)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.capacity import CapacityNeed
from domain.check import CommunicationCheck, check_secretariat
from domain.commands.exchanges import ExchangeCommands
from domain.errors import InvalidTransition, NotFound, NotPermitted, ValidationError
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state
from domain.taxonomy import check_level
from domain.values import Principal, Role, Text


class ReviewCommands(ExchangeCommands):
    """Commands and reads on ``CommunicationCheck`` and ``CapacityNeed``."""

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
        idempotency: IdempotencyKey | None = None,
    ) -> CommunicationCheck:
        """The Secretariat pings every registered State with a contact at ``level``, or the
        listed ones (each must be registered, not withdrawn, with a contact at that level)."""
        check_secretariat(by, "launches")
        level = str(check_level(level))
        if states is None:
            codes = [
                e.code
                for e in self.registered_states()
                if any(c.level == level for c in e.contacts.values())
            ]
        else:
            codes = []
            for code in states:
                try:
                    entry = self.get_active_entry(code)
                except NotFound:
                    raise ValidationError(f"{code[:10]} is not registered") from None
                except InvalidTransition as e:
                    raise ValidationError(str(e)) from None
                if not any(c.level == level for c in entry.contacts.values()):
                    raise ValidationError(f"{entry.code} has no contact at the {level} level")
                codes.append(entry.code)
        check = CommunicationCheck.launch(
            self.new_id(), by, self.clock.now(), level, codes, deadline
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

    def close_check(
        self, by: Principal, check_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CommunicationCheck:
        return self._change(
            lambda: self.get_check(check_id),
            lambda c, at: c.close(by, at),
            idempotency=idempotency,
        )

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
