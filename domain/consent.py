"""SharingConsent: sharing one notification's information with a third State (R10, R11).

The consent is effective only while every State party to the exchange has granted it. The
requesting party grants by asking. Any party may deny, which is final, and a party that has
granted may revoke, which ends the consent (a new request is needed to share again).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.values import Principal, Role


class ConsentStatus(StrEnum):
    PENDING = "pending"
    EFFECTIVE = "effective"
    DENIED = "denied"
    REVOKED = "revoked"


class SharingConsent(PocdirAggregate):
    class Requested(PocdirAggregate.Created):
        notification_id: UUID
        parties: tuple[str, ...]
        third_state: str
        requested_by: str

    class Granted(PocdirAggregate.Event):
        party: str

        def apply(self, c: SharingConsent) -> None:
            c.granted_by.add(self.party)

    class Denied(PocdirAggregate.Event):
        party: str

        def apply(self, c: SharingConsent) -> None:
            c.denied_by = self.party

    class Revoked(PocdirAggregate.Event):
        party: str

        def apply(self, c: SharingConsent) -> None:
            c.revoked_by = self.party

    class ContentRead(PocdirAggregate.Event):
        """The third State read the shared exchange (R12: every access is accounted for)."""

        reader: str

    def __init__(
        self,
        notification_id: UUID,
        parties: tuple[str, ...],
        third_state: str,
        requested_by: str,
    ) -> None:
        self.notification_id = notification_id
        self.parties = tuple(parties)
        self.third_state = third_state
        self.requested_by = requested_by
        self.granted_by: set[str] = {requested_by}
        self.denied_by: str | None = None
        self.revoked_by: str | None = None

    @property
    def status(self) -> ConsentStatus:
        if self.denied_by is not None:
            return ConsentStatus.DENIED
        if self.revoked_by is not None:
            return ConsentStatus.REVOKED
        if self.granted_by >= set(self.parties):
            return ConsentStatus.EFFECTIVE
        return ConsentStatus.PENDING

    @property
    def is_effective(self) -> bool:
        return self.status is ConsentStatus.EFFECTIVE

    @classmethod
    def request(
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        notification_id: UUID,
        parties: tuple[str, str],
        third_state: str,
    ) -> SharingConsent:
        """A party asks to share the exchange with ``third_state``; asking is its own grant."""
        party = cls.party_of(by, parties)
        if third_state in parties:
            raise ValidationError("the third State must not be a party to the exchange")
        return cls._create(
            cls.Requested,
            id=id,
            notification_id=notification_id,
            parties=tuple(parties),
            third_state=third_state,
            requested_by=party,
            actor=by.ref,
            timestamp=at,
        )

    def grant(self, by: Principal, at: datetime) -> None:
        party = self.party_of(by, self.parties)
        self.check_open()
        if party in self.granted_by:
            raise InvalidTransition(f"{party} has already granted this consent")
        self.trigger_event(self.Granted, actor=by.ref, timestamp=at, party=party)

    def deny(self, by: Principal, at: datetime) -> None:
        """Final: a denied consent can never become effective."""
        party = self.party_of(by, self.parties)
        self.check_open()
        if party in self.granted_by:
            raise InvalidTransition(f"{party} has granted this consent; revoke it instead")
        self.trigger_event(self.Denied, actor=by.ref, timestamp=at, party=party)

    def revoke(self, by: Principal, at: datetime) -> None:
        """A party withdraws its grant; sharing stops at once."""
        party = self.party_of(by, self.parties)
        self.check_open()
        if party not in self.granted_by:
            raise InvalidTransition(f"{party} has not granted this consent; deny it instead")
        self.trigger_event(self.Revoked, actor=by.ref, timestamp=at, party=party)

    def record_read(self, by: Principal, at: datetime) -> None:
        """The third State reads the exchange; only while every party's grant stands."""
        if by.role is not Role.STATE or by.state != self.third_state:
            raise NotPermitted("only the third State named by a consent reads through it")
        if not self.is_effective:
            raise NotPermitted(f"this consent is {self.status}, not effective; nothing is shared")
        self.trigger_event(self.ContentRead, actor=by.ref, timestamp=at, reader=by.state)

    def is_visible_to(self, by: Principal) -> bool:
        """Parties always see their consents; the third State only while it is effective,
        since a pending request would tell it of an exchange the parties have not shared."""
        if by.role is not Role.STATE:
            return by.role is Role.SECRETARIAT
        if by.state in self.parties:
            return True
        return by.state == self.third_state and self.is_effective

    def check_open(self) -> None:
        if self.status in (ConsentStatus.DENIED, ConsentStatus.REVOKED):
            raise InvalidTransition(f"this consent was {self.status}; that is final")

    @staticmethod
    def party_of(by: Principal, parties: tuple[str, ...]) -> str:
        if by.role is not Role.STATE or by.state not in parties:
            raise NotPermitted("only a State party to the exchange decides on sharing it (R11)")
        return by.state
