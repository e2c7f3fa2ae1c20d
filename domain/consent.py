"""SharingConsent: sharing one notification's information with a third State (R10, R11).

The consent is effective only while every State party to the exchange has granted it. The
requesting party grants by asking. Any party may deny, which is final, and a party that has
granted may revoke, which ends the consent (a new request is needed to share again).

This module is where R11 (docs/domain.md#r11-mutual-consent-for-third-parties) is decided:
who may see an exchange (``exchange_access``), when a consent is effective
(``consent_status``), whom it shares the exchange with (``shares_with``) and who may know of
it (``may_see_consent``). The aggregate, the application service, the views' queries and the
routers call these functions, on aggregates or on view documents alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
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


def consent_status(
    parties: Iterable[str],
    granted_by: Iterable[str],
    denied_by: str | None = None,
    revoked_by: str | None = None,
) -> ConsentStatus:
    """R11: a denial or a revocation is final; otherwise the consent is effective once every
    party has granted it, and pending until then."""
    if denied_by is not None:
        return ConsentStatus.DENIED
    if revoked_by is not None:
        return ConsentStatus.REVOKED
    if set(granted_by) >= set(parties):
        return ConsentStatus.EFFECTIVE
    return ConsentStatus.PENDING


def shares_with(third_state: str, status: str, state: str | None) -> bool:
    """R11: a consent shares its exchange with ``state`` only if ``state`` is the third State
    it names and it is effective (every party's grant stands)."""
    return state is not None and state == third_state and status == ConsentStatus.EFFECTIVE


def may_see_consent(state: str, parties: Collection[str], third_state: str, status: str) -> bool:
    """A State knows of a consent if it is a party to it, or while it shares the exchange
    with it: a pending request would tell the third State of an exchange the parties have not
    shared."""
    return state in parties or shares_with(third_state, status, state)


class ExchangeAccess(StrEnum):
    """What a principal may see of an exchange (a notification), by ``exchange_access``."""

    #: its content: a State party to it
    CONTENT = "content"
    #: who, when and status, never content: the Secretariat
    METADATA = "metadata"
    #: nothing, unless a consent ``shares_with`` it (R11); until then it does not exist for it
    THROUGH_CONSENT = "through consent"


def exchange_access(by: Principal, parties: Collection[str]) -> ExchangeAccess:
    """Who may see an exchange between ``parties`` (R11, docs/access.md). Only States and the
    Secretariat see exchanges (``NotPermitted`` for any other role)."""
    if by.role is Role.SECRETARIAT:
        return ExchangeAccess.METADATA
    if by.role is not Role.STATE:
        raise NotPermitted("only States and the Secretariat see exchanges")
    if by.state in parties:
        return ExchangeAccess.CONTENT
    return ExchangeAccess.THROUGH_CONSENT


def check_may_read_stored_records(by: Principal, *, encrypted_at_rest: bool) -> None:
    """Whether ``by`` may read the record's stored events whoever's exchange they are: the
    tlog-tiles entry bundles a mirror copies (issue 16). The auditor may, as the audit bundle
    already gives it; a State only when the record is encrypted at rest (R13), so that it
    receives ciphertext and metadata (positions, ids, versions, event types) and never the
    content of an exchange it is not party to (R11, R12). ``NotPermitted`` otherwise."""
    if by.role is Role.AUDITOR:
        return
    if by.role is not Role.STATE:
        raise NotPermitted("only the auditor and States read the record's stored events")
    if not encrypted_at_rest:
        raise NotPermitted(
            "this record is stored in clear (no POCDIR_CIPHER_KEY), so its entry bundles "
            "would show every exchange's content: they are for the auditor only; hash tiles "
            "and the checkpoint stay available (R11, R12)"
        )


@dataclass(frozen=True)
class SharedKeys:
    """What a consent shares of a sealed exchange: the content key and each response's key,
    wrapped to the third State (``SharingConsent.KeysShared``)."""

    content: bytes
    responses: tuple[bytes, ...]


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

    class KeysShared(PocdirAggregate.Event):
        """A party shared a sealed exchange with the third State (issue 15): the content key
        and the key of each response so far, each wrapped by the party's client to the third
        State's encryption key (HPKE; the server cannot unwrap them). A later share, after
        more responses, replaces an earlier one."""

        party: str
        content_key: bytes
        response_keys: tuple[bytes, ...]

        def apply(self, c: SharingConsent) -> None:
            c.shared_keys = SharedKeys(self.content_key, tuple(self.response_keys))

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
        #: The keys a party shared (``share``), served to the third State while effective.
        self.shared_keys: SharedKeys | None = None

    @property
    def status(self) -> ConsentStatus:
        return consent_status(self.parties, self.granted_by, self.denied_by, self.revoked_by)

    @property
    def is_effective(self) -> bool:
        return self.status is ConsentStatus.EFFECTIVE

    def shares_with(self, by: Principal) -> bool:
        """This consent lets ``by`` read its exchange (``shares_with``)."""
        return by.role is Role.STATE and shares_with(self.third_state, self.status, by.state)

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

    def share(
        self,
        by: Principal,
        at: datetime,
        content_key: bytes,
        response_keys: Sequence[bytes],
        responses: int,
    ) -> None:
        """R11: a party records the keys of a sealed exchange wrapped to the third State,
        once the consent is effective: the content key and one key per response so far
        (``responses``). The wrapped keys are opaque to the server."""
        party = self.party_of(by, self.parties)
        if not self.is_effective:
            raise InvalidTransition(
                f"this consent is {self.status}, not effective: every party must grant it "
                "before anything is shared"
            )
        if len(response_keys) != responses:
            raise ValidationError(
                f"the exchange has {responses} response(s); send one wrapped key per response "
                f"in wrapped_keys.responses, in order (got {len(response_keys)})"
            )
        self.trigger_event(
            self.KeysShared,
            actor=by.ref,
            timestamp=at,
            party=party,
            content_key=bytes(content_key),
            response_keys=tuple(bytes(k) for k in response_keys),
        )

    def keys_shared_with(self, by: Principal) -> SharedKeys | None:
        """The shared keys, to the third State and only while the consent is effective."""
        return self.shared_keys if self.shares_with(by) else None

    def record_read(self, by: Principal, at: datetime) -> None:
        """The third State reads the exchange; only while every party's grant stands."""
        if not self.shares_with(by):
            if by.role is not Role.STATE or by.state != self.third_state:
                raise NotPermitted("only the third State named by a consent reads through it")
            raise NotPermitted(f"this consent is {self.status}, not effective; nothing is shared")
        self.trigger_event(self.ContentRead, actor=by.ref, timestamp=at, reader=by.state)

    def is_visible_to(self, by: Principal) -> bool:
        """Parties always see their consents; the third State only while it is effective,
        since a pending request would tell it of an exchange the parties have not shared."""
        if by.role is not Role.STATE or by.state is None:
            return by.role is Role.SECRETARIAT
        return may_see_consent(by.state, self.parties, self.third_state, self.status)

    def check_open(self) -> None:
        if self.status in (ConsentStatus.DENIED, ConsentStatus.REVOKED):
            raise InvalidTransition(f"this consent was {self.status}; that is final")

    @staticmethod
    def party_of(by: Principal, parties: tuple[str, ...]) -> str:
        if by.role is not Role.STATE or by.state not in parties:
            raise NotPermitted("only a State party to the exchange decides on sharing it (R11)")
        return by.state
