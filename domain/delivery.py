"""Delivery of alerts (issue 17): the record says when delivery began, and what became of
every alert.

Two aggregates, both recorded by the server itself (signed with its key, like a consented
read):

* ``DeliverySwitch``, one per record: ``Enabled`` says from which point of the record on alerts
  are sent (the delivery worker starts after this event, never from the beginning, so that
  enabling delivery on an old record does not mail a year of history) and publishes the
  delivery key that signs webhooks.
* ``Alert``, one per recipient and cause (its id derives from its Message-ID): ``Raised`` names
  the cause, the State and the contact id (never an address), then one outcome after another:
  ``Deferred`` (tried again later), and one final outcome, ``Sent``, ``Refused`` (at SMTP
  time: the address does not exist), ``GaveUp`` (deferred too often) or ``NotDeliverable``
  (the contact has only a phone or secure channel, which are for people to use).

Bounce reports that arrive later by mail are not read: a message that was accepted and
bounced afterwards stays ``Sent`` (docs/delivery.md says so).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition

#: The actor of every event the delivery worker records.
DELIVERY_ACTOR = "server:delivery"
DELIVERY_SWITCH_ID = uuid5(NAMESPACE_URL, "urn:pocdir:delivery")


class Cause(StrEnum):
    """What called for an alert (its event in the record)."""

    NOTIFICATION_RECEIVED = "notification received"
    RESPONSE_RECEIVED = "response received"
    CONSENT_REQUESTED = "consent requested"
    CHECK_CHALLENGE = "communication check"
    ESCALATION = "escalation"
    CONTACT_UNVERIFIED = "contact unverified"


class AlertOutcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    REFUSED = "refused"
    GAVE_UP = "given up"
    NOT_DELIVERABLE = "not deliverable automatically"


#: The outcomes after which an alert is not tried again.
FINAL_OUTCOMES = frozenset(
    {AlertOutcome.SENT, AlertOutcome.REFUSED, AlertOutcome.GAVE_UP, AlertOutcome.NOT_DELIVERABLE}
)
#: The final outcomes that mean the contact was not reached (a check's "unreachable").
UNREACHED = frozenset({AlertOutcome.REFUSED, AlertOutcome.GAVE_UP})


def alert_id(message_id: str) -> UUID:
    """An alert's aggregate id, from its Message-ID: a retry finds the same alert."""
    return uuid5(NAMESPACE_URL, f"urn:pocdir:alert:{message_id}")


class DeliverySwitch(PocdirAggregate):
    class Enabled(PocdirAggregate.Created):
        #: The raw Ed25519 public key that signs webhook requests (RFC 9421).
        delivery_key: bytes
        key_id: str

    def __init__(self, delivery_key: bytes, key_id: str) -> None:
        self.delivery_key = delivery_key
        self.key_id = key_id

    @classmethod
    def enable(cls, at: datetime, delivery_key: bytes, key_id: str) -> DeliverySwitch:
        return cls._create(
            cls.Enabled,
            id=DELIVERY_SWITCH_ID,
            delivery_key=delivery_key,
            key_id=key_id,
            actor=DELIVERY_ACTOR,
            timestamp=at,
        )


class Alert(PocdirAggregate):
    """One alert to one contact (or one State's webhook) for one cause."""

    class Raised(PocdirAggregate.Created):
        message_id: str
        cause: str
        #: The aggregate the cause is about (a notification, a consent, a check).
        subject: UUID
        state: str
        #: The contact alerted; None for a State's webhook.
        contact_id: str | None
        channel: str

    class Outcome(PocdirAggregate.Event):
        attempt: int
        #: The reply's code and short reason (``"550 5.1.1"``), never an address.
        detail: str

        def apply(self, alert: Alert) -> None:
            alert.outcome = OUTCOME_OF[type(self)]
            alert.attempts = self.attempt
            alert.last_at = self.timestamp

    class Deferred(Outcome):
        pass

    class Sent(Outcome):
        pass

    class Refused(Outcome):
        pass

    class GaveUp(Outcome):
        pass

    class NotDeliverable(Outcome):
        pass

    def __init__(
        self,
        message_id: str,
        cause: str,
        subject: UUID,
        state: str,
        contact_id: str | None,
        channel: str,
    ) -> None:
        self.message_id, self.cause, self.subject = message_id, cause, subject
        self.state, self.contact_id, self.channel = state, contact_id, channel
        self.outcome: AlertOutcome | None = None
        self.attempts = 0
        self.last_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.outcome in FINAL_OUTCOMES

    @classmethod
    def raise_alert(  # noqa: PLR0913
        cls,
        at: datetime,
        message_id: str,
        cause: Cause,
        subject: UUID,
        state: str,
        contact_id: str | None,
        channel: str,
    ) -> Alert:
        return cls._create(
            cls.Raised,
            id=alert_id(message_id),
            message_id=message_id,
            cause=str(cause),
            subject=subject,
            state=state,
            contact_id=contact_id,
            channel=channel,
            actor=DELIVERY_ACTOR,
            timestamp=at,
        )

    def record(self, at: datetime, outcome: AlertOutcome, detail: str) -> None:
        """One attempt's outcome. A final outcome ends the alert: nothing follows it."""
        self.check_open()
        self.trigger_event(
            EVENT_OF[outcome],
            actor=DELIVERY_ACTOR,
            timestamp=at,
            attempt=self.attempts + 1,
            detail=detail[:120],
        )

    def check_open(self) -> None:
        if self.final:
            raise InvalidTransition(f"alert {self.message_id} is already {self.outcome}")


EVENT_OF: dict[AlertOutcome, type[Alert.Outcome]] = {
    AlertOutcome.DEFERRED: Alert.Deferred,
    AlertOutcome.SENT: Alert.Sent,
    AlertOutcome.REFUSED: Alert.Refused,
    AlertOutcome.GAVE_UP: Alert.GaveUp,
    AlertOutcome.NOT_DELIVERABLE: Alert.NotDeliverable,
}
OUTCOME_OF: dict[type[Alert.Outcome], AlertOutcome] = {v: k for k, v in EVENT_OF.items()}
