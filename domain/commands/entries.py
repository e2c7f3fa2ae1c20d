"""The entries area: a State registers, keeps its contacts current, confirms its entry each
year (R5), withdraws and rejoins (``domain.state_entry``)."""

from __future__ import annotations

from datetime import date, datetime

from domain.commands.base import RecordService
from domain.errors import AlreadyExists, InvalidTransition
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state, member_states
from domain.state_entry import StateEntry, state_entry_id
from domain.values import Contact, Principal


def _effective(effective_on: date | None, at: datetime) -> date:
    """A change takes effect on the date the State gives, or today."""
    return effective_on or at.date()


class EntryCommands(RecordService):
    """Commands and reads on ``StateEntry``."""

    def get_entry(self, code: str) -> StateEntry:
        code = check_member_state(code)
        return self._get(StateEntry, state_entry_id(code), f"entry for {code}")

    def get_active_entry(self, code: str) -> StateEntry:
        """The entry of a registered State that has not withdrawn."""
        entry = self.get_entry(code)
        if entry.withdrawn:
            raise InvalidTransition(f"{entry.code} has withdrawn from the directory")
        return entry

    def registered_states(self) -> list[StateEntry]:
        """Entries of every registered State that has not withdrawn, in code order."""
        entries = []
        for code in sorted(member_states()):
            if state_entry_id(code) in self.repository:
                entry = self.get_entry(code)
                if not entry.withdrawn:
                    entries.append(entry)
        return entries

    def register_state(
        self,
        by: Principal,
        code: str,
        effective_on: date | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        code = check_member_state(code)
        if state_entry_id(code) in self.repository:
            raise AlreadyExists(f"{code} is already registered")
        entry = StateEntry.register(code, by, self.clock.now(), effective_on)
        self._save(entry, idempotency=idempotency)
        return entry

    def add_contact(
        self,
        by: Principal,
        code: str,
        contact: Contact,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.add_contact(contact, by, at, _effective(effective_on, at)),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def update_contact(
        self,
        by: Principal,
        code: str,
        contact: Contact,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.update_contact(contact, by, at, _effective(effective_on, at)),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def remove_contact(
        self,
        by: Principal,
        code: str,
        contact_id: str,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.remove_contact(contact_id, by, at, _effective(effective_on, at)),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def set_coordination_contact(
        self,
        by: Principal,
        code: str,
        contact_id: str,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.set_coordination_contact(
                contact_id, by, at, _effective(effective_on, at)
            ),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def set_preferred_channel(
        self,
        by: Principal,
        code: str,
        contact_id: str,
        channel_kind: str,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.set_preferred_channel(
                contact_id, channel_kind, by, at, _effective(effective_on, at)
            ),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def confirm_entry(
        self,
        by: Principal,
        code: str,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.confirm(by, at),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def withdraw_entry(
        self,
        by: Principal,
        code: str,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.withdraw(by, at, _effective(effective_on, at)),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def rejoin(
        self,
        by: Principal,
        code: str,
        effective_on: date | None = None,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.rejoin(by, at, _effective(effective_on, at)),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def set_webhook(
        self,
        by: Principal,
        code: str,
        url: str,
        expected_version: int | None = None,
        *,
        allow_private: bool = False,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        """The State's one webhook for alerts (issue 17); ``allow_private`` is the test
        setting ``POCDIR_WEBHOOK_ALLOW_PRIVATE``, passed in by the caller that reads it."""
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.set_webhook(url, by, at, allow_private=allow_private),
            expected_version=expected_version,
            idempotency=idempotency,
        )

    def remove_webhook(
        self,
        by: Principal,
        code: str,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change(
            lambda: self.get_entry(code),
            lambda e, at: e.remove_webhook(by, at),
            expected_version=expected_version,
            idempotency=idempotency,
        )
