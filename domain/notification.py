"""Notification: one State tells another about an ICT security incident (R7-R10, R16).

Lifecycle::

    sent ──acknowledge──▶ acknowledged ──respond──▶ responded ──respond──▶ responded
     │                        │                        │
     └─withdraw─▶ withdrawn   └───────close───────────┴──close──▶ closed

Only the recipient acknowledges (once) and responds; only the sender closes or withdraws, and
withdraws only before acknowledgement. Every other transition raises ``InvalidTransition``
(or ``NotPermitted`` for the wrong party).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.indicators import Indicator, parse_indicators
from domain.taxonomy import check_incident_type
from domain.values import Principal, Role, Text

#: R8, recorded with every notification.
NO_IMPLIED_RESPONSIBILITY = (
    "Notifying a State of malicious activity from its territory does not imply that State's "
    "responsibility."
)
#: R9, recorded with every acknowledgement.
ACKNOWLEDGEMENT_IS_NOT_CONCURRENCE = (
    "Acknowledging receipt does not mean agreeing with the content of the notification."
)


class NotificationStatus(StrEnum):
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    RESPONDED = "responded"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class SupportingInformation:
    """R7: all relevant supporting information, with structured, validated indicators."""

    indicators: tuple[Indicator, ...]
    text: Text | None = None

    @classmethod
    def parse(
        cls, indicators: Iterable[Mapping[str, Any]], text: Text | None = None
    ) -> SupportingInformation:
        parsed = parse_indicators(indicators)
        if not parsed and text is None:
            raise ValidationError(
                "supporting information is required (R7): give indicators of compromise, "
                "a text, or both"
            )
        return cls(parsed, text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupportingInformation:
        text = data.get("text")
        return cls.parse(data.get("indicators", []), Text.from_dict(text) if text else None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "indicators": [i.to_dict() for i in self.indicators],
            "text": self.text.to_dict() if self.text else None,
        }


class Notification(PocdirAggregate):
    """An exchange between a sender and a recipient State."""

    class Sent(PocdirAggregate.Created):
        sender: str
        recipient: str
        incident_type: str
        description: Text
        supporting_information: SupportingInformation
        good_faith_attested: bool
        statement: str

    class Acknowledged(PocdirAggregate.Event):
        statement: str

        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))
            n.acknowledged_at = self.timestamp

    class Responded(PocdirAggregate.Event):
        response: Text
        assistance_requested: bool

        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))
            n.response_log.append((self.timestamp, self.response, self.assistance_requested))
            n.assistance_requested = n.assistance_requested or self.assistance_requested

    class Closed(PocdirAggregate.Event):
        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))

    class Withdrawn(PocdirAggregate.Event):
        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))

    def __init__(
        self,
        sender: str,
        recipient: str,
        incident_type: str,
        description: Text,
        supporting_information: SupportingInformation,
        good_faith_attested: bool,
        statement: str,
    ) -> None:
        self.sender = sender
        self.recipient = recipient
        self.incident_type = incident_type
        self.description = description
        self.supporting_information = supporting_information
        self.good_faith_attested = good_faith_attested
        self.statement = statement
        self.status = status_after(Notification.Sent)
        self.acknowledged_at: datetime | None = None
        self.response_log: list[tuple[datetime, Text, bool]] = []
        self.assistance_requested = False

    @property
    def responses(self) -> int:
        return len(self.response_log)

    @property
    def parties(self) -> tuple[str, str]:
        return (self.sender, self.recipient)

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def send(  # noqa: PLR0913
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        recipient: str,
        incident_type: str,
        description: Text,
        supporting_information: SupportingInformation,
        good_faith_attested: bool,
    ) -> Notification:
        """R7: the sender attests good faith and gives supporting information."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State sends notifications")
        if recipient == by.state:
            raise ValidationError("a State cannot notify itself; name another State")
        if good_faith_attested is not True:
            raise ValidationError(
                "a notification is made in good faith (R7): set good_faith_attested to true"
            )
        return cls._create(
            cls.Sent,
            id=id,
            sender=by.state,
            recipient=recipient,
            incident_type=check_incident_type(incident_type),
            description=description,
            supporting_information=supporting_information,
            good_faith_attested=True,
            statement=NO_IMPLIED_RESPONSIBILITY,
            actor=by.ref,
            timestamp=at,
        )

    def acknowledge(self, by: Principal, at: datetime) -> None:
        """R9: acknowledgement of receipt, once, by the recipient; it is not concurrence."""
        self.check_is(by, self.recipient, "acknowledges")
        if self.status is not NotificationStatus.SENT:
            raise InvalidTransition(f"cannot acknowledge a notification that is {self.status}")
        self.trigger_event(
            self.Acknowledged,
            actor=by.ref,
            timestamp=at,
            statement=ACKNOWLEDGEMENT_IS_NOT_CONCURRENCE,
        )

    def respond(
        self, by: Principal, at: datetime, response: Text, assistance_requested: bool = False
    ) -> None:
        """R10: the recipient decides how and what to respond; it may ask for assistance (R16)."""
        self.check_is(by, self.recipient, "responds")
        if self.status not in (NotificationStatus.ACKNOWLEDGED, NotificationStatus.RESPONDED):
            hint = " acknowledge it first" if self.status is NotificationStatus.SENT else ""
            raise InvalidTransition(
                f"cannot respond to a notification that is {self.status};{hint}"
            )
        self.trigger_event(
            self.Responded,
            actor=by.ref,
            timestamp=at,
            response=response,
            assistance_requested=bool(assistance_requested),
        )

    def close(self, by: Principal, at: datetime) -> None:
        self.check_is(by, self.sender, "closes")
        if self.status not in (NotificationStatus.ACKNOWLEDGED, NotificationStatus.RESPONDED):
            hint = "; withdraw it instead" if self.status is NotificationStatus.SENT else ""
            raise InvalidTransition(f"cannot close a notification that is {self.status}{hint}")
        self.trigger_event(self.Closed, actor=by.ref, timestamp=at)

    def withdraw(self, by: Principal, at: datetime) -> None:
        self.check_is(by, self.sender, "withdraws")
        if self.status is not NotificationStatus.SENT:
            raise InvalidTransition(
                f"cannot withdraw a notification that is {self.status}; only before acknowledgement"
            )
        self.trigger_event(self.Withdrawn, actor=by.ref, timestamp=at)

    def check_is(self, by: Principal, party: str, verb: str) -> None:
        if by.role is not Role.STATE or by.state != party:
            role = "recipient" if party == self.recipient else "sender"
            raise NotPermitted(f"only the {role} {verb} a notification")


#: The lifecycle (module docstring): what a notification's status is after each of its
#: events. The aggregate and the views' projector both read it, so they cannot disagree.
STATUS_AFTER: dict[type[PocdirAggregate.Event], NotificationStatus] = {
    Notification.Sent: NotificationStatus.SENT,
    Notification.Acknowledged: NotificationStatus.ACKNOWLEDGED,
    Notification.Responded: NotificationStatus.RESPONDED,
    Notification.Closed: NotificationStatus.CLOSED,
    Notification.Withdrawn: NotificationStatus.WITHDRAWN,
}


def status_after(event_class: type[PocdirAggregate.Event]) -> NotificationStatus:
    """The status of a notification after an event of ``event_class`` (every notification
    event sets it; the command that triggered the event has checked the transition)."""
    return STATUS_AFTER[event_class]
