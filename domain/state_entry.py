"""StateEntry: one UN member State's entry in the directory (R1-R6, R15).

Only the State itself changes or withdraws its entry (R15): every command checks that the
acting principal acts for this State before any event is triggered.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import PocdirAggregate, check_effective_on
from domain.errors import AlreadyExists, InvalidTransition, NotFound, NotPermitted
from domain.members import check_member_state, member_states
from domain.values import ChannelKind, Contact, Principal, Role
from domain.webhook import check_webhook_url

MAX_CONTACTS = 50


def state_entry_id(code: str) -> UUID:
    """The entry's id is derived from its ISO 3166-1 alpha-3 code, so each State has one."""
    return uuid5(NAMESPACE_URL, f"urn:pocdir:state-entry:{code.upper()}")


@cache
def _entry_codes() -> dict[UUID, str]:
    return {state_entry_id(code): code for code in member_states()}


def code_of_entry(entry_id: UUID) -> str:
    """The State code whose entry has this id (ids are derived from codes)."""
    return _entry_codes()[entry_id]


def check_acts_for(principal: Principal, code: str) -> None:
    """R15 (docs/domain.md#r15): only the State itself changes its own entry.
    Decided here only: every command on an entry calls it, and so does the HTTP dependency
    for a State's own entry before anything else."""
    if principal.role is not Role.STATE or principal.state != code:
        raise NotPermitted(f"only {code} itself may change or withdraw its entry (R15)")


def check_reads_own_history(principal: Principal, code: str) -> None:
    """A State reads only its own interaction history (docs/access.md). Reading is not
    changing, so this is not R15's check and does not answer with its message."""
    if principal.role is not Role.STATE or principal.state != code:
        raise NotPermitted(
            f"a State reads only its own interaction history; you may not read {code[:10]}'s"
        )


class StateEntry(PocdirAggregate):
    """The current entry of one State, rebuilt from its events."""

    class Registered(PocdirAggregate.Created):
        code: str
        name: str
        effective_on: date

    class ContactAdded(PocdirAggregate.Event):
        contact: Contact
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            entry.contacts[self.contact.contact_id] = self.contact
            entry.last_changed_on = self.effective_on

    class ContactUpdated(ContactAdded):
        pass

    class ContactRemoved(PocdirAggregate.Event):
        contact_id: str
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            del entry.contacts[self.contact_id]
            entry.last_changed_on = self.effective_on

    class CoordinationContactSet(PocdirAggregate.Event):
        contact_id: str
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            entry.coordination_contact_id = self.contact_id
            entry.last_changed_on = self.effective_on

    class PreferredChannelSet(PocdirAggregate.Event):
        contact_id: str
        channel_kind: str
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            entry.preferred = (self.contact_id, ChannelKind(self.channel_kind))
            entry.last_changed_on = self.effective_on

    class AnnuallyConfirmed(PocdirAggregate.Event):
        """The State confirms, without change, that its entry is current (R5)."""

        def apply(self, entry: StateEntry) -> None:
            entry.last_confirmed_at = self.timestamp

    class Withdrawn(PocdirAggregate.Event):
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            entry.withdrawn = True

    class Rejoined(PocdirAggregate.Event):
        effective_on: date

        def apply(self, entry: StateEntry) -> None:
            entry.withdrawn = False

    class WebhookSet(PocdirAggregate.Event):
        """The State's webhook, where alerts about its entry are POSTed (issue 17). Not part of
        the published directory: other States never read it."""

        url: str

        def apply(self, entry: StateEntry) -> None:
            entry.webhook = self.url

    class WebhookRemoved(PocdirAggregate.Event):
        def apply(self, entry: StateEntry) -> None:
            entry.webhook = None

    def __init__(self, code: str, name: str, effective_on: date) -> None:
        self.code = code
        self.name = name
        self.registered_on = effective_on
        self.contacts: dict[str, Contact] = {}
        self.coordination_contact_id: str | None = None
        self.preferred: tuple[str, ChannelKind] | None = None
        self.last_changed_on: date = effective_on
        self.last_confirmed_at: datetime | None = None
        self.withdrawn = False
        #: The one webhook URL the State registered (``set_webhook``), or None.
        self.webhook: str | None = None

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def register(
        cls, code: str, by: Principal, at: datetime, effective_on: date | None = None
    ) -> StateEntry:
        """R1: a UN member State joins the directory. Raises if it is not one."""
        code = check_member_state(code)
        check_acts_for(by, code)
        effective_on = effective_on or at.date()
        check_effective_on(effective_on, at)
        return cls._create(
            cls.Registered,
            id=state_entry_id(code),
            code=code,
            name=member_states()[code],
            effective_on=effective_on,
            actor=by.ref,
            timestamp=at,
        )

    def add_contact(
        self, contact: Contact, by: Principal, at: datetime, effective_on: date
    ) -> None:
        self.check_changeable(by, at, effective_on)
        if contact.contact_id in self.contacts:
            raise AlreadyExists(
                f"{self.code} already has contact {contact.contact_id!r}; update it instead"
            )
        if len(self.contacts) >= MAX_CONTACTS:
            raise InvalidTransition(f"an entry holds at most {MAX_CONTACTS} contacts")
        self._trigger(self.ContactAdded, by, at, contact=contact, effective_on=effective_on)

    def update_contact(
        self, contact: Contact, by: Principal, at: datetime, effective_on: date
    ) -> None:
        self.check_changeable(by, at, effective_on)
        self.check_has_contact(contact.contact_id)
        if self.contacts[contact.contact_id] == contact:
            raise InvalidTransition("the contact is unchanged; to confirm it, confirm the entry")
        if (
            self.preferred is not None
            and self.preferred[0] == contact.contact_id
            and not contact.has_channel(self.preferred[1])
        ):
            raise InvalidTransition(
                f"contact {contact.contact_id!r} carries the preferred {self.preferred[1]} "
                "channel; keep it or set another preferred channel first"
            )
        self._trigger(self.ContactUpdated, by, at, contact=contact, effective_on=effective_on)

    def remove_contact(
        self, contact_id: str, by: Principal, at: datetime, effective_on: date
    ) -> None:
        self.check_changeable(by, at, effective_on)
        self.check_has_contact(contact_id)
        if contact_id == self.coordination_contact_id:
            raise InvalidTransition(
                f"{contact_id!r} is the coordination contact; set another one first"
            )
        if self.preferred is not None and self.preferred[0] == contact_id:
            raise InvalidTransition(
                f"{contact_id!r} carries the preferred channel; set another one first"
            )
        self._trigger(self.ContactRemoved, by, at, contact_id=contact_id, effective_on=effective_on)

    def set_coordination_contact(
        self, contact_id: str, by: Principal, at: datetime, effective_on: date
    ) -> None:
        """R3: the one contact to reach when no other handles the matter."""
        self.check_changeable(by, at, effective_on)
        self.check_has_contact(contact_id)
        if self.coordination_contact_id == contact_id:
            raise InvalidTransition(f"{contact_id!r} is already the coordination contact")
        self._trigger(
            self.CoordinationContactSet, by, at, contact_id=contact_id, effective_on=effective_on
        )

    def set_preferred_channel(
        self, contact_id: str, channel_kind: str, by: Principal, at: datetime, effective_on: date
    ) -> None:
        """R3: the channel through which the State prefers communications to start."""
        self.check_changeable(by, at, effective_on)
        self.check_has_contact(contact_id)
        try:
            kind = ChannelKind(channel_kind)
        except ValueError:
            raise InvalidTransition(
                f"unknown channel kind {channel_kind[:20]!r}; use email, phone or secure"
            ) from None
        if not self.contacts[contact_id].has_channel(kind):
            raise InvalidTransition(f"contact {contact_id!r} has no {kind} channel")
        if self.preferred == (contact_id, kind):
            raise InvalidTransition("that is already the preferred channel")
        self._trigger(
            self.PreferredChannelSet,
            by,
            at,
            contact_id=contact_id,
            channel_kind=str(kind),
            effective_on=effective_on,
        )

    def confirm(self, by: Principal, at: datetime) -> None:
        """R5: the annual confirmation that the entry is current, without change."""
        self.check_changeable(by, at, at.date())
        if not self.contacts:
            raise InvalidTransition("add at least one contact before confirming the entry")
        self._trigger(self.AnnuallyConfirmed, by, at)

    def withdraw(self, by: Principal, at: datetime, effective_on: date) -> None:
        """R1/R15: participation is voluntary; only the State withdraws its own entry."""
        self.check_changeable(by, at, effective_on)
        self._trigger(self.Withdrawn, by, at, effective_on=effective_on)

    def rejoin(self, by: Principal, at: datetime, effective_on: date) -> None:
        check_acts_for(by, self.code)
        check_effective_on(effective_on, at)
        if not self.withdrawn:
            raise InvalidTransition(f"{self.code} has not withdrawn")
        self._trigger(self.Rejoined, by, at, effective_on=effective_on)

    def set_webhook(
        self, url: str, by: Principal, at: datetime, *, allow_private: bool = False
    ) -> None:
        """R15: only the State itself says where its alerts are POSTed; one URL, replacing
        any earlier one. ``allow_private`` admits loopback and private literal addresses
        (``POCDIR_WEBHOOK_ALLOW_PRIVATE``, tests only)."""
        self.check_changeable(by, at, at.date())
        url = check_webhook_url(url, allow_private=allow_private)
        if self.webhook == url:
            raise InvalidTransition("that is already the entry's webhook")
        self._trigger(self.WebhookSet, by, at, url=url)

    def remove_webhook(self, by: Principal, at: datetime) -> None:
        """R15: the State stops its webhook alerts; its other channels stay."""
        self.check_changeable(by, at, at.date())
        if self.webhook is None:
            raise InvalidTransition(f"{self.code} has no webhook to remove")
        self._trigger(self.WebhookRemoved, by, at)

    # -- guards -----------------------------------------------------------------------------

    def check_changeable(self, by: Principal, at: datetime, effective_on: date) -> None:
        check_acts_for(by, self.code)
        check_effective_on(effective_on, at)
        if self.withdrawn:
            raise InvalidTransition(f"{self.code} has withdrawn; rejoin first")

    def check_has_contact(self, contact_id: str) -> None:
        if contact_id not in self.contacts:
            raise NotFound(f"{self.code} has no contact {contact_id!r}")

    def _trigger(
        self, event_class: type[PocdirAggregate.Event], by: Principal, at: datetime, **kw: Any
    ) -> None:
        self.trigger_event(event_class, actor=by.ref, timestamp=at, **kw)
