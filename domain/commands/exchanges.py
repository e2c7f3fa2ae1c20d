"""The exchanges area: notifications between States (R7) and the consents that share one
with a third State (R11, R12). Who may know of an exchange, and who may read its content,
is checked here on every load (``get_notification_for``, ``read_notification``,
``get_consent_for``), by the rule ``domain.consent`` decides (``exchange_access``,
``SharingConsent.shares_with``, ``SharingConsent.is_visible_to``).

A notification is plain or sealed (``domain.notification``). Which one a State must send is
decided here, where the States' keys are at hand: a sender whose keys are bound
(``domain.state_keys``) seals, and a sealed notification needs the recipient's keys bound,
since the sender's client seals to the key the record holds for it.

Every notification carries an urgency, and the acknowledgement deadline for it from
``acknowledgement_deadlines`` (set by the composition root from ``POCDIR_ACK_DEADLINES``) is
written into its ``Sent`` event. ``escalate_notification`` is what the delivery worker calls
when a deadline passes: the next contact comes from the recipient's current entry
(``domain.escalation``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.commands.entries import EntryCommands
from domain.consent import ExchangeAccess, SharedKeys, SharingConsent, exchange_access
from domain.envelope import Envelope
from domain.errors import AlreadyExists, NotFound, NotPermitted, ValidationError
from domain.escalation import escalation_route, first_step, next_step
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state
from domain.notification import (
    DEFAULT_ACKNOWLEDGEMENT_DEADLINES,
    Notification,
    SupportingInformation,
    Urgency,
    check_urgency,
)
from domain.signing import current_signing
from domain.state_keys import state_keys_id
from domain.values import Principal, Role, Text


class ExchangeCommands(EntryCommands):
    """Commands and reads on ``Notification`` and ``SharingConsent``."""

    #: How long the recipient has to acknowledge, per urgency; the composition root sets it
    #: from ``POCDIR_ACK_DEADLINES`` (``infra.wiring.build_application``).
    acknowledgement_deadlines: Mapping[Urgency, timedelta] = DEFAULT_ACKNOWLEDGEMENT_DEADLINES

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
        urgency: str | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Notification:
        """R7: both States must be in the directory; the recipient must not have withdrawn.
        A sender whose keys are bound must seal its content (``send_sealed_notification``).
        ``urgency`` (default ``normal``) sets the acknowledgement deadline."""
        level = check_urgency(urgency)
        sender, recipient = self._check_parties(by, recipient)
        if self.has_keys(sender):
            raise ValidationError(
                f"{sender} has an encryption key bound: encrypt the notification with the "
                "State client and send it as envelope; the server takes no plain content "
                "from it"
            )
        notification = Notification.send(
            self.new_aggregate_id(),
            by,
            self.clock.now(),
            recipient,
            incident_type,
            description,
            SupportingInformation.parse(indicators, supporting_text),
            good_faith_attested,
            level,
            self.acknowledgement_deadlines[level],
        )
        self._save(notification, idempotency=idempotency)
        return notification

    def send_sealed_notification(  # noqa: PLR0913
        self,
        by: Principal,
        recipient: str,
        incident_type: str,
        envelope: bytes,
        good_faith_attested: bool = False,
        *,
        notification_id: UUID | None = None,
        urgency: str | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Notification:
        """R7 with the content sealed by the sender's client to both parties' keys. The new
        notification's id is the one the State signed (``_sealed_notification_id``); the
        envelope must be sealed for it. ``urgency`` as for ``send_notification``."""
        level = check_urgency(urgency)
        _, recipient = self._check_parties(by, recipient)
        if not self.has_keys(recipient):
            raise ValidationError(
                f"{recipient} has no encryption key bound, so nothing can be sealed to it: "
                "send this notification in plain text, or wait until its keys are bound"
            )
        notification_id = self._sealed_notification_id(notification_id, envelope)
        if notification_id in self.repository:
            raise AlreadyExists(f"notification {notification_id} exists already; seal for a new id")
        notification = Notification.send_sealed(
            notification_id,
            by,
            self.clock.now(),
            recipient,
            incident_type,
            envelope,
            good_faith_attested,
            level,
            self.acknowledgement_deadlines[level],
        )
        self._save(notification, idempotency=idempotency)
        return notification

    def _sealed_notification_id(self, given: UUID | None, envelope: bytes) -> UUID:
        """A sealed notification's id: the aggregate the State's signed statement names (the
        gate checked it); else ``given`` (a body's ``id``); else the one the envelope was
        sealed for. A ``given`` id other than the statement's is refused."""
        context = current_signing()
        if context is not None and context.state_write is not None and not context.written:
            signed = context.state_write.signed.statement.aggregate
            if given is not None and given != signed:
                raise ValidationError(
                    f"id {given} is not the notification the signed statement names ({signed}); "
                    "leave id out or give that one"
                )
            return signed
        return given if given is not None else Envelope.from_bytes(envelope).notification

    def _check_parties(self, by: Principal, recipient: str) -> tuple[str, str]:
        """Both States of a new notification are in the directory, the recipient active:
        (sender, recipient)."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State sends notifications")
        self.get_active_entry(by.state)
        recipient = check_member_state(recipient)
        try:
            self.get_active_entry(recipient)
        except NotFound:
            raise ValidationError(f"{recipient} is not registered in the directory") from None
        return by.state, recipient

    def has_keys(self, code: str) -> bool:
        """Whether ``code``'s keys are bound (``domain.state_keys``): every bound key set has
        an encryption key."""
        return state_keys_id(code) in self.repository

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
        notification, readable, _ = self.read_exchange(by, notification_id, consent_ids)
        return notification, readable

    def read_exchange(
        self, by: Principal, notification_id: UUID, consent_ids: Iterable[UUID] = ()
    ) -> tuple[Notification, bool, SharedKeys | None]:
        """``read_notification``, with the keys shared with a third State reading a sealed
        exchange through a consent (``SharingConsent.keys_shared_with``: only while it is
        effective); None for a party, the Secretariat, or before any share. Of several
        effective consents, one that shared keys is preferred."""
        notification = self.get_notification(notification_id)
        access = exchange_access(by, notification.parties)
        if access is not ExchangeAccess.THROUGH_CONSENT:
            return notification, access is ExchangeAccess.CONTENT, None
        sharing = [
            consent
            for consent in map(self.get_consent, consent_ids)
            if consent.notification_id == notification.id and consent.shares_with(by)
        ]
        if not sharing:
            raise NotFound("no such notification")
        consent = next((c for c in sharing if c.shared_keys is not None), sharing[0])
        consent.record_read(by, self.clock.now())
        self._save(consent)
        return notification, True, consent.keys_shared_with(by)

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

    def respond_sealed_to_notification(
        self,
        by: Principal,
        notification_id: UUID,
        envelope: bytes,
        assistance_requested: bool = False,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> Notification:
        """R10 for a sealed notification: the response sealed by the recipient's client."""
        return self._change(
            lambda: self.get_notification_for(by, notification_id),
            lambda n, at: n.respond_sealed(by, at, envelope, assistance_requested),
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

    # -- escalation (issue 17) --------------------------------------------------------------

    def escalation_route_of(self, notification: Notification) -> list[dict[str, Any]]:
        """The recipient's escalation route for this notification, from its entry as it is
        now (``domain.escalation.escalation_route``)."""
        entry = self.get_entry(notification.recipient)
        preferred = (
            None
            if entry.preferred is None
            else {"contact_id": entry.preferred[0], "channel": entry.preferred[1].value}
        )
        return escalation_route(
            {cid: c.to_dict() for cid, c in entry.contacts.items()},
            notification.incident_type,
            entry.coordination_contact_id,
            preferred,
        )

    def first_alert_contact(self, notification: Notification) -> tuple[int, dict[str, Any]]:
        """(route index, contact) the first alert of ``notification`` goes to: the route's
        first contact, or for an urgent one the first whose hours covered the sending time.
        ``NotFound`` if the recipient lists no contact to alert."""
        return first_step(
            self.escalation_route_of(notification),
            notification.urgency is Urgency.URGENT,
            notification.created_on,
        )

    def escalate_notification(self, notification_id: UUID) -> Notification | None:
        """What the delivery worker calls when a deadline may have passed: if the
        notification is overdue now (still ``sent``, its deadline past), record the next
        contact of the recipient's route after the last one reached (``Escalated``, with a
        new deadline of the recorded duration), or that none is left
        (``EscalationExhausted``), and return it; else record nothing and return None. The
        server signs what it records (``domain.signing.SERVER_TOPICS``)."""
        at = self.clock.now()
        notification = self.get_notification(notification_id)
        if not notification.is_overdue(at):
            return None
        urgent = notification.urgency is Urgency.URGENT
        route = self.escalation_route_of(notification)
        after = notification.escalation_step
        if after is None:
            start = next_step(route, -1, urgent, notification.created_on)
            after = -1 if start is None else start[0]
        step = next_step(route, after, urgent, at)
        if step is None:
            notification.exhaust_escalation(at, after)
        else:
            notification.escalate(at, step[0], step[1]["contact_id"])
        self._save(notification)
        return notification

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

    def share_consented(
        self,
        by: Principal,
        consent_id: UUID,
        content_key: bytes,
        response_keys: Sequence[bytes],
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> SharingConsent:
        """R11 for a sealed exchange: a party records the content key and each response's key
        wrapped to the third State's encryption key, once the consent is effective."""

        def share(consent: SharingConsent, at: datetime) -> None:
            notification = self.get_notification(consent.notification_id)
            if not notification.sealed:
                raise ValidationError(
                    "this exchange is plain: there are no keys to share; the third State reads "
                    "it through the effective consent"
                )
            if not self.has_keys(consent.third_state):
                raise ValidationError(
                    f"{consent.third_state} has no encryption key bound; nothing can be "
                    "wrapped to it"
                )
            consent.share(by, at, content_key, response_keys, notification.responses)

        return self._change(
            lambda: self.get_consent_for(by, consent_id), share, idempotency=idempotency
        )
