"""The application service: the one way commands reach the record.

Every command loads the aggregates it needs, checks the rules across them (for example that
both States of a notification are registered), and saves the new events in one atomic write.
Time comes from the injected clock and new ids from the injected id factory, so a seeded
simulation writes the same record every time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from functools import cached_property
from typing import Any, Final, TypeVar, final
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper, Transcoding
from eventsourcing.utils import Environment, get_topic

from domain.base import PocdirAggregate
from domain.capacity import CapacityNeed
from domain.check import CommunicationCheck, check_secretariat
from domain.clock import Clock, SystemClock
from domain.consent import SharingConsent
from domain.credential import (
    NO_LABEL,
    TOKEN_PREFIX,
    Credential,
    credential_id,
    new_token,
    token_hash,
)
from domain.errors import (
    AlreadyExists,
    ConcurrentChange,
    InvalidTransition,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    StaleVersion,
    ValidationError,
)
from domain.idempotency import IdempotencyKey, KeyAlreadyRecorded, RequestInFlight
from domain.members import check_member_state, member_states
from domain.notification import Notification, SupportingInformation
from domain.position import report_position
from domain.state_entry import StateEntry, state_entry_id
from domain.taxonomy import check_level
from domain.values import Contact, Principal, Role, Text

A = TypeVar("A", bound=PocdirAggregate)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def _value_transcoding(cls: Any, name: str) -> Transcoding:
    """Store a frozen value object as its ``to_dict`` form, rebuilt through ``from_dict``."""

    class _ValueAsDict(Transcoding):
        type = cls

        def encode(self, obj: Any) -> Any:
            return obj.to_dict()

        def decode(self, data: Any) -> Any:
            return cls.from_dict(data)

    _ValueAsDict.name = name
    return _ValueAsDict()


@final
class WithheldContent:
    """What an exchange's content (a description, a response, a text, supporting information
    with its indicators) decodes to in events read for the views (``facts_mapper``).

    Why: the views hold the facts of an interaction, never its content, and are read by the
    Secretariat and by reviewers, who never read content. Withholding it when decoding makes
    that structural, not a matter of each projector leaving it alone. It is also nearly half
    of the cost of decoding a record: indicators are validated and normalised again on every
    read, and a rebuild decodes every event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<withheld content>"


#: The one instance: content fields of facts-decoded events are this object.
WITHHELD: Final = WithheldContent()
#: The transcodings (by stored name) whose values are an exchange's content.
CONTENT_TRANSCODINGS: Final = ("text", "supporting_information")


class _WithheldTranscoding(Transcoding):
    """Decodes content to ``WITHHELD`` without reading it; refuses to encode, so that an
    event decoded for the views can never be stored back in place of the real one."""

    type = WithheldContent

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, obj: Any) -> Any:
        raise TypeError("withheld content cannot be stored: this event was decoded for the views")

    def decode(self, data: Any) -> WithheldContent:
        return WITHHELD


class PocDirectory(Application[UUID]):
    """pocdir's application service over the hash-chained record."""

    name = "pocdir"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.new_id = new_id
        super().__init__(env)

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:  # type: ignore[override]
        """Configuration comes only from the composition root, never from ``os.environ``,
        so settings are read in one place (``infra.settings``)."""
        return Environment(name, dict(env or {}))

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:  # type: ignore[override]
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(_value_transcoding(Text, "text"))
        transcoder.register(_value_transcoding(Contact, "contact"))
        transcoder.register(_value_transcoding(SupportingInformation, "supporting_information"))

    @cached_property
    def facts_mapper(self) -> Mapper[UUID]:
        """Decodes stored events for the views: as ``mapper`` does (same cipher, same
        compressor, same transcodings), except that content decodes to ``WITHHELD``
        (``WithheldContent``). Read-only: it refuses to encode withheld content."""
        transcoder = self.factory.transcoder()
        if not isinstance(transcoder, JSONTranscoder):  # pragma: no cover - configuration
            raise TypeError("the views decode events with the JSON transcoder only")
        self.register_transcodings(transcoder)
        for name in CONTENT_TRANSCODINGS:
            transcoder.register(_WithheldTranscoding(name))
        return self.factory.mapper(transcoder=transcoder)

    # -- loading ----------------------------------------------------------------------------

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no such {what}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no such {what}")
        return aggregate

    def get_entry(self, code: str) -> StateEntry:
        code = check_member_state(code)
        return self._get(StateEntry, state_entry_id(code), f"entry for {code}")

    def get_active_entry(self, code: str) -> StateEntry:
        """The entry of a registered State that has not withdrawn."""
        entry = self.get_entry(code)
        if entry.withdrawn:
            raise InvalidTransition(f"{entry.code} has withdrawn from the directory")
        return entry

    def get_notification(self, notification_id: UUID) -> Notification:
        return self._get(Notification, notification_id, "notification")

    def get_consent(self, consent_id: UUID) -> SharingConsent:
        return self._get(SharingConsent, consent_id, "consent")

    def _save(
        self, *aggregates: PocdirAggregate, idempotency: IdempotencyKey | None = None
    ) -> int | None:
        """Save the aggregates' new events in one transaction, with the caller's idempotency
        key if it sent one (written in that same transaction, ``domain.idempotency``).

        Return the record position of the last event written (None if there was none to
        write), and report it to the caller's position sink (``domain.position``): the
        positions come from the insert itself, so a concurrent writer cannot be mistaken for
        this one."""
        try:
            if idempotency is None:
                recordings = self.save(*aggregates)
            else:
                recordings = self.save(*aggregates, idempotency=idempotency)
        except KeyAlreadyRecorded:
            raise RequestInFlight(
                "another request with this Idempotency-Key was recorded meanwhile; "
                "retry to get its outcome"
            ) from None
        except IntegrityError:
            raise ConcurrentChange(
                "someone else changed this first; read it again and retry"
            ) from None
        positions = [r.notification.id for r in recordings]
        if not positions:
            return None
        last = max(positions)
        report_position(last)
        return last

    @staticmethod
    def check_version(aggregate: PocdirAggregate, expected_version: int | None) -> None:
        """Optimistic concurrency for callers that read first (HTTP ``If-Match``)."""
        if expected_version is not None and aggregate.version != expected_version:
            raise StaleVersion(
                f"the entry is at version {aggregate.version}, not {expected_version}; "
                "read it again and retry"
            )

    # -- StateEntry -------------------------------------------------------------------------

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

    def _change_entry(
        self,
        by: Principal,
        code: str,
        change: Callable[[StateEntry, datetime, date], None],
        effective_on: date | None = None,
        expected_version: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        """Load the entry, check the caller's version, apply ``change(entry, at, effective_on)``
        (``effective_on`` defaults to today) and save."""
        at = self.clock.now()
        entry = self.get_entry(code)
        self.check_version(entry, expected_version)
        change(entry, at, effective_on or at.date())
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.add_contact(contact, by, at, on),
            effective_on,
            expected_version,
            idempotency,
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.update_contact(contact, by, at, on),
            effective_on,
            expected_version,
            idempotency,
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.remove_contact(contact_id, by, at, on),
            effective_on,
            expected_version,
            idempotency,
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.set_coordination_contact(contact_id, by, at, on),
            effective_on,
            expected_version,
            idempotency,
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.set_preferred_channel(contact_id, channel_kind, by, at, on),
            effective_on,
            expected_version,
            idempotency,
        )

    def confirm_entry(
        self,
        by: Principal,
        code: str,
        expected_version: int | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateEntry:
        return self._change_entry(
            by, code, lambda e, at, _: e.confirm(by, at), None, expected_version, idempotency
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.withdraw(by, at, on),
            effective_on,
            expected_version,
            idempotency,
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
        return self._change_entry(
            by,
            code,
            lambda e, at, on: e.rejoin(by, at, on),
            effective_on,
            expected_version,
            idempotency,
        )

    # -- Notification -----------------------------------------------------------------------

    def send_notification(  # noqa: PLR0913
        self,
        by: Principal,
        recipient: str,
        incident_type: str,
        description: Text,
        indicators: Iterable[Mapping[str, Any]] = (),
        supporting_text: Text | None = None,
        good_faith_attested: bool = False,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> Notification:
        """R7: both States must be in the directory; the recipient must not have withdrawn."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State sends notifications")
        self.get_active_entry(by.state)
        recipient = check_member_state(recipient)
        try:
            self.get_active_entry(recipient)
        except NotFound:
            raise ValidationError(f"{recipient} is not registered in the directory") from None
        notification = Notification.send(
            self.new_id(),
            by,
            self.clock.now(),
            recipient,
            incident_type,
            description,
            SupportingInformation.parse(indicators, supporting_text),
            good_faith_attested,
        )
        self._save(notification, idempotency=idempotency)
        return notification

    def get_notification_for(self, by: Principal, notification_id: UUID) -> Notification:
        """The notification, if ``by`` may know it exists: its parties and the Secretariat
        (which sees metadata only). To any other State it does not exist (``NotFound``), so
        nothing reveals an exchange to a State not party to it."""
        notification = self.get_notification(notification_id)
        if by.role is Role.STATE and not notification.is_party(by):
            raise NotFound("no such notification")
        if by.role not in (Role.STATE, Role.SECRETARIAT):
            raise NotPermitted("only States and the Secretariat see exchanges")
        return notification

    def read_notification(
        self, by: Principal, notification_id: UUID, consent_ids: Iterable[UUID] = ()
    ) -> tuple[Notification, bool]:
        """The notification and whether ``by`` may read its content.

        Parties read it. A third State reads it through an effective consent among
        ``consent_ids`` that names it, and that reading is recorded on the consent (R11, R12).
        The Secretariat gets metadata only (``False``). Anyone else: ``NotFound``.
        """
        notification = self.get_notification(notification_id)
        if by.role is Role.SECRETARIAT:
            return notification, False
        if by.role is not Role.STATE:
            raise NotPermitted("only States and the Secretariat see exchanges")
        if notification.is_party(by):
            return notification, True
        for consent_id in consent_ids:
            consent = self.get_consent(consent_id)
            if (
                consent.notification_id == notification.id
                and consent.third_state == by.state
                and consent.is_effective
            ):
                consent.record_read(by, self.clock.now())
                self._save(consent)
                return notification, True
        raise NotFound("no such notification")

    def check_party_to_exchange(self, by: Principal, aggregate_id: UUID) -> None:
        """``aggregate_id`` is a notification or consent that ``by``'s State is party to;
        anything else does not exist for it (``NotFound``), as for reads of exchanges."""
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound("no such event") from None
        parties = aggregate.parties if isinstance(aggregate, Notification | SharingConsent) else ()
        if by.role is not Role.STATE or by.state not in parties:
            raise NotFound("no such event")

    def _change_notification(
        self,
        by: Principal,
        notification_id: UUID,
        change: Callable[[Notification], None],
        idempotency: IdempotencyKey | None,
    ) -> Notification:
        notification = self.get_notification_for(by, notification_id)
        change(notification)
        self._save(notification, idempotency=idempotency)
        return notification

    def acknowledge_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        at = self.clock.now()
        return self._change_notification(
            by, notification_id, lambda n: n.acknowledge(by, at), idempotency
        )

    def respond_to_notification(
        self,
        by: Principal,
        notification_id: UUID,
        response: Text,
        assistance_requested: bool = False,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> Notification:
        at = self.clock.now()
        return self._change_notification(
            by,
            notification_id,
            lambda n: n.respond(by, at, response, assistance_requested),
            idempotency,
        )

    def close_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        at = self.clock.now()
        return self._change_notification(
            by, notification_id, lambda n: n.close(by, at), idempotency
        )

    def withdraw_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        at = self.clock.now()
        return self._change_notification(
            by, notification_id, lambda n: n.withdraw(by, at), idempotency
        )

    # -- SharingConsent ---------------------------------------------------------------------

    def request_consent(
        self,
        by: Principal,
        notification_id: UUID,
        third_state: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> SharingConsent:
        """R11: ask the other party to share this exchange with a registered third State."""
        notification = self.get_notification_for(by, notification_id)
        third_state = check_member_state(third_state)
        try:
            self.get_active_entry(third_state)
        except NotFound:
            raise ValidationError(f"{third_state} is not registered in the directory") from None
        consent = SharingConsent.request(
            self.new_id(), by, self.clock.now(), notification.id, notification.parties, third_state
        )
        self._save(consent, idempotency=idempotency)
        return consent

    def get_consent_for(self, by: Principal, consent_id: UUID) -> SharingConsent:
        """The consent, if ``by`` may know of it (``SharingConsent.is_visible_to``)."""
        consent = self.get_consent(consent_id)
        if not consent.is_visible_to(by):
            if by.role in (Role.AUDITOR, Role.REVIEWER):
                raise NotPermitted("only States and the Secretariat see consents")
            raise NotFound("no such consent")
        return consent

    def _change_consent(
        self,
        by: Principal,
        consent_id: UUID,
        change: Callable[[SharingConsent], None],
        idempotency: IdempotencyKey | None,
    ) -> SharingConsent:
        consent = self.get_consent_for(by, consent_id)
        change(consent)
        self._save(consent, idempotency=idempotency)
        return consent

    def grant_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        at = self.clock.now()
        return self._change_consent(by, consent_id, lambda c: c.grant(by, at), idempotency)

    def deny_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        at = self.clock.now()
        return self._change_consent(by, consent_id, lambda c: c.deny(by, at), idempotency)

    def revoke_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        at = self.clock.now()
        return self._change_consent(by, consent_id, lambda c: c.revoke(by, at), idempotency)

    # -- Credentials ------------------------------------------------------------------------

    def issue_credential(
        self,
        by: Principal,
        role: Role,
        state: str | None = None,
        *,
        label: str = NO_LABEL,
        idempotency: IdempotencyKey | None = None,
    ) -> tuple[Credential, str]:
        """Issue a credential; the token is returned once and only its hash is recorded.
        ``label`` names the office or function that holds it, never a person."""
        token = new_token()
        credential = Credential.issue(by, self.clock.now(), token, role, state, label)
        self._save(credential, idempotency=idempotency)
        return credential, token

    def revoke_credential(
        self, by: Principal, credential_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Credential:
        credential = self._get(Credential, credential_id, "credential")
        credential.revoke(by, self.clock.now())
        self._save(credential, idempotency=idempotency)
        return credential

    def credentials(self, by: Principal) -> list[Credential]:
        """Every credential ever issued, revoked or not, in the order issued: so that the
        Secretariat can find the one to revoke (``pocdir principals list``). Read from the
        record, as authentication is, through the library's topic filter over the stored
        events: no view holds credentials, and the Secretariat's console is their one reader."""
        if by.role is not Role.SECRETARIAT:
            raise NotPermitted("only the Secretariat lists credentials")
        topics = [get_topic(Credential.Issued)]
        found: list[Credential] = []
        start = 0
        while page := self.recorder.select_notifications(
            start, 1000, topics=topics, inclusive_of_start=False
        ):
            found += [self._get(Credential, UUID(str(r.originator_id)), "credential") for r in page]
            start = page[-1].id
        return found

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token stands for; ``NotAuthenticated`` for an unknown,
        malformed or revoked token. Reads the record, so a revocation counts at once."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise NotAuthenticated("the bearer token is malformed")
        try:
            credential = self._get(Credential, credential_id(token), "credential")
        except NotFound:
            raise NotAuthenticated("the bearer token is not known") from None
        if not hmac.compare_digest(credential.token_hash, token_hash(token)):
            raise NotAuthenticated("the bearer token is not known")
        if credential.revoked:
            raise NotAuthenticated("the bearer token was revoked")
        return credential.principal

    # -- Review of the provisional operation: communication checks, capacity (R16, R17) -----

    def get_check(self, check_id: UUID) -> CommunicationCheck:
        return self._get(CommunicationCheck, check_id, "communication check")

    def get_need(self, need_id: UUID) -> CapacityNeed:
        return self._get(CapacityNeed, need_id, "capacity-building need")

    def registered_states(self) -> list[StateEntry]:
        """Entries of every registered State that has not withdrawn, in code order."""
        entries = []
        for code in sorted(member_states()):
            if state_entry_id(code) in self.repository:
                entry = self.get_entry(code)
                if not entry.withdrawn:
                    entries.append(entry)
        return entries

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
        check = self.get_check(check_id)
        check.close(by, self.clock.now())
        self._save(check, idempotency=idempotency)
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
            self.new_id(), by, self.clock.now(), category, text, notification_id
        )
        self._save(need, idempotency=idempotency)
        return need

    def _change_need(
        self,
        need_id: UUID,
        change: Callable[[CapacityNeed], None],
        idempotency: IdempotencyKey | None,
    ) -> CapacityNeed:
        need = self.get_need(need_id)
        change(need)
        self._save(need, idempotency=idempotency)
        return need

    def offer_assistance(
        self, by: Principal, need_id: UUID, text: Text, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State offers assistance")
        self.get_active_entry(by.state)
        at = self.clock.now()
        return self._change_need(need_id, lambda n: n.offer(by, at, text), idempotency)

    def accept_offer(
        self,
        by: Principal,
        need_id: UUID,
        offering_state: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> CapacityNeed:
        at = self.clock.now()
        code = check_member_state(offering_state)
        return self._change_need(need_id, lambda n: n.accept(by, at, code), idempotency)

    def fulfil_need(
        self, by: Principal, need_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        at = self.clock.now()
        return self._change_need(need_id, lambda n: n.fulfil(by, at), idempotency)

    def withdraw_need(
        self, by: Principal, need_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> CapacityNeed:
        at = self.clock.now()
        return self._change_need(need_id, lambda n: n.withdraw(by, at), idempotency)
