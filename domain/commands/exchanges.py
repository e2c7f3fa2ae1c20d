"""The exchanges area: notifications between States (R7) and the consents that share one
with a third State (R11, R12). Who may know of an exchange, and who may read its content,
is checked here on every load (``get_notification_for``, ``read_notification``,
``get_consent_for``), by the rule ``domain.consent`` decides (``exchange_access``,
``SharingConsent.shares_with``, ``SharingConsent.is_visible_to``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.commands.entries import EntryCommands
from domain.consent import ExchangeAccess, SharingConsent, exchange_access
from domain.errors import NotFound, NotPermitted, ValidationError
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state
from domain.notification import Notification, SupportingInformation
from domain.values import Principal, Role, Text


class ExchangeCommands(EntryCommands):
    """Commands and reads on ``Notification`` and ``SharingConsent``."""

    def get_notification(self, notification_id: UUID) -> Notification:
        return self._get(Notification, notification_id, "notification")

    def get_consent(self, consent_id: UUID) -> SharingConsent:
        return self._get(SharingConsent, consent_id, "consent")

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
            self.new_aggregate_id(),
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
        nothing reveals an exchange to a State not party to it (``exchange_access``)."""
        notification = self.get_notification(notification_id)
        if exchange_access(by, notification.parties) is ExchangeAccess.THROUGH_CONSENT:
            raise NotFound("no such notification")
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
        access = exchange_access(by, notification.parties)
        if access is not ExchangeAccess.THROUGH_CONSENT:
            return notification, access is ExchangeAccess.CONTENT
        for consent_id in consent_ids:
            consent = self.get_consent(consent_id)
            if consent.notification_id == notification.id and consent.shares_with(by):
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
        if by.role is not Role.STATE or exchange_access(by, parties) is not ExchangeAccess.CONTENT:
            raise NotFound("no such event")

    def acknowledge_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        return self._change(
            lambda: self.get_notification_for(by, notification_id),
            lambda n, at: n.acknowledge(by, at),
            idempotency=idempotency,
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
        return self._change(
            lambda: self.get_notification_for(by, notification_id),
            lambda n, at: n.respond(by, at, response, assistance_requested),
            idempotency=idempotency,
        )

    def close_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        return self._change(
            lambda: self.get_notification_for(by, notification_id),
            lambda n, at: n.close(by, at),
            idempotency=idempotency,
        )

    def withdraw_notification(
        self, by: Principal, notification_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Notification:
        return self._change(
            lambda: self.get_notification_for(by, notification_id),
            lambda n, at: n.withdraw(by, at),
            idempotency=idempotency,
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
            self.new_aggregate_id(),
            by,
            self.clock.now(),
            notification.id,
            notification.parties,
            third_state,
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

    def grant_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        return self._change(
            lambda: self.get_consent_for(by, consent_id),
            lambda c, at: c.grant(by, at),
            idempotency=idempotency,
        )

    def deny_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        return self._change(
            lambda: self.get_consent_for(by, consent_id),
            lambda c, at: c.deny(by, at),
            idempotency=idempotency,
        )

    def revoke_consent(
        self, by: Principal, consent_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> SharingConsent:
        return self._change(
            lambda: self.get_consent_for(by, consent_id),
            lambda c, at: c.revoke(by, at),
            idempotency=idempotency,
        )
