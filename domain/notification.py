"""Notification: one State tells another about an ICT security incident (R7-R10, R16).

Lifecycle::

    sent ──acknowledge──▶ acknowledged ──respond──▶ responded ──respond──▶ responded
     │                        │                        │
     └─withdraw─▶ withdrawn   └───────close───────────┴──close──▶ closed

Only the recipient acknowledges (once) and responds; only the sender closes or withdraws, and
withdraws only before acknowledgement. Every other transition raises ``InvalidTransition``
(or ``NotPermitted`` for the wrong party).

A notification is **plain** (its description and supporting information in the event, as
before issue 15) or **sealed** (``send_sealed``): its content is one envelope
(``domain.envelope``) that only the parties' keys open, and its responses are sealed too
(``respond_sealed``). The server checks what it can without keys: the format, that the
envelope is for this notification (and response index) and addressed to exactly the parties.
Which form a State must use is decided with the parties' keys (``check_form``).

A notification has an **urgency** (``Urgency``) and, since issue 17, an acknowledgement
deadline written into its ``Sent`` event (``acknowledge_by``, and the duration it was computed
from, ``deadline_seconds``), so a later change of the settings cannot alter a replay. When the
deadline passes while it is still ``sent``, the server records an escalation to the next
contact of the recipient's route (``escalate``, ``domain.escalation``) with a new deadline of
the same duration, or that no contact is left (``exhaust_escalation``). Escalations do not
change the status; acknowledgement (or withdrawal) stops them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, cast
from uuid import UUID

from domain.base import PocdirAggregate
from domain.delivery import DELIVERY_ACTOR
from domain.envelope import check_sealed
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


class Urgency(StrEnum):
    """How soon the recipient must acknowledge (issue 17): each has its own deadline."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


#: The deadlines when the composition root gives none (``POCDIR_ACK_DEADLINES``'s default).
DEFAULT_ACKNOWLEDGEMENT_DEADLINES: Mapping[Urgency, timedelta] = MappingProxyType(
    {
        Urgency.URGENT: timedelta(hours=2),
        Urgency.HIGH: timedelta(hours=12),
        Urgency.NORMAL: timedelta(hours=72),
    }
)


def check_urgency(urgency: str | None) -> Urgency:
    """``urgency`` as an ``Urgency`` (None is ``normal``); ``ValidationError`` otherwise."""
    if urgency is None:
        return Urgency.NORMAL
    try:
        return Urgency(urgency)
    except ValueError:
        raise ValidationError(
            f"urgency must be one of {', '.join(u.value for u in Urgency)}, "
            f"not {str(urgency)[:20]!r}"
        ) from None


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
        """Version 2 (issue 15) added ``envelope``: a sealed notification has its content
        there, and no ``description`` or ``supporting_information``; a plain one has those
        and ``envelope`` None. Version 3 (issue 17) added ``urgency``, ``acknowledge_by`` and
        ``deadline_seconds`` (the duration ``acknowledge_by`` is ``sent + ``, which every
        escalation's new deadline reuses, so a replay needs no settings). Older events are
        upcast when read, never rewritten: they are ``normal`` with no deadline, and never
        escalate."""

        class_version = 3

        sender: str
        recipient: str
        incident_type: str
        description: Text | None
        supporting_information: SupportingInformation | None
        good_faith_attested: bool
        statement: str
        envelope: bytes | None
        urgency: str
        acknowledge_by: datetime | None
        deadline_seconds: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["envelope"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["urgency"] = Urgency.NORMAL.value
            state["acknowledge_by"] = None
            state["deadline_seconds"] = None

    class Acknowledged(PocdirAggregate.Event):
        statement: str

        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))
            n.acknowledged_at = self.timestamp

    class Responded(PocdirAggregate.Event):
        """Version 2 (issue 15) added ``envelope``: a sealed response has its text there and
        ``response`` None; a plain one the reverse. Version 1 events are upcast when read."""

        class_version = 2

        response: Text | None
        assistance_requested: bool
        envelope: bytes | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["envelope"] = None

        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))
            # The command records exactly one of the two: the envelope if sealed, else the text.
            given: Text | bytes = (
                self.envelope if self.envelope is not None else cast(Text, self.response)
            )
            n.response_log.append((self.timestamp, given, self.assistance_requested))
            n.assistance_requested = n.assistance_requested or self.assistance_requested

    class Closed(PocdirAggregate.Event):
        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))

    class Withdrawn(PocdirAggregate.Event):
        def apply(self, n: Notification) -> None:
            n.status = status_after(type(self))

    class Escalated(PocdirAggregate.Event):
        """The deadline passed unacknowledged: the alert goes to the recipient's contact
        ``contact_id``, at ``step`` of its escalation route, with a new deadline. Recorded
        by the server (``DELIVERY_ACTOR``); the status does not change."""

        step: int
        contact_id: str
        acknowledge_by: datetime

        def apply(self, n: Notification) -> None:
            n.escalation_step = self.step
            n.acknowledge_by = self.acknowledge_by
            n.escalations.append((self.timestamp, self.step, self.contact_id))

    class EscalationExhausted(PocdirAggregate.Event):
        """The deadline passed and no contact is left after ``step``: nothing more escalates
        (the notification stays ``sent`` until acknowledged or withdrawn)."""

        step: int

        def apply(self, n: Notification) -> None:
            n.acknowledge_by = None
            n.escalation_exhausted = True

    def __init__(
        self,
        sender: str,
        recipient: str,
        incident_type: str,
        description: Text | None,
        supporting_information: SupportingInformation | None,
        good_faith_attested: bool,
        statement: str,
        envelope: bytes | None = None,
        urgency: str = Urgency.NORMAL.value,
        acknowledge_by: datetime | None = None,
        deadline_seconds: int | None = None,
    ) -> None:
        self.sender = sender
        self.recipient = recipient
        self.incident_type = incident_type
        self.description = description
        self.supporting_information = supporting_information
        self.good_faith_attested = good_faith_attested
        self.statement = statement
        #: The sealed content (``domain.envelope``), or None for a plain notification.
        self.envelope = envelope
        self.status = status_after(Notification.Sent)
        self.acknowledged_at: datetime | None = None
        #: (time, the response: its text if plain, its envelope if sealed, assistance asked)
        self.response_log: list[tuple[datetime, Text | bytes, bool]] = []
        self.assistance_requested = False
        self.urgency = Urgency(urgency)
        #: When the recipient must have acknowledged; None: no deadline (before issue 17,
        #: or the escalation route is exhausted).
        self.acknowledge_by = acknowledge_by
        #: The deadline's duration as recorded at sending (None before issue 17).
        self.deadline_seconds = deadline_seconds
        #: The route index of the last escalation; None until the first (the first alert's
        #: contact is ``ExchangeCommands.first_alert_contact``'s).
        self.escalation_step: int | None = None
        #: (time, route index, contact id) of each escalation, in order.
        self.escalations: list[tuple[datetime, int, str]] = []
        self.escalation_exhausted = False

    @property
    def sealed(self) -> bool:
        """Its content is an envelope only the parties' keys open (``send_sealed``)."""
        return self.envelope is not None

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
        urgency: Urgency = Urgency.NORMAL,
        deadline: timedelta = DEFAULT_ACKNOWLEDGEMENT_DEADLINES[Urgency.NORMAL],
    ) -> Notification:
        """R7: the sender attests good faith and gives supporting information. The recipient
        must acknowledge within ``deadline`` (the application's for ``urgency``)."""
        sender = cls.check_sender(by, recipient, good_faith_attested)
        return cls._sent(
            id,
            by,
            at,
            sender,
            recipient,
            incident_type,
            description,
            supporting_information,
            None,
            urgency,
            deadline,
        )

    @classmethod
    def send_sealed(  # noqa: PLR0913
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        recipient: str,
        incident_type: str,
        envelope: bytes,
        good_faith_attested: bool,
        urgency: Urgency = Urgency.NORMAL,
        deadline: timedelta = DEFAULT_ACKNOWLEDGEMENT_DEADLINES[Urgency.NORMAL],
    ) -> Notification:
        """R7 with the content sealed by the sender's client: the envelope must be for this
        notification's id and addressed to exactly the sender and the recipient
        (``domain.envelope.check_sealed``); the client validated the content before sealing."""
        sender = cls.check_sender(by, recipient, good_faith_attested)
        check_sealed(envelope, id, (sender, recipient))
        return cls._sent(
            id, by, at, sender, recipient, incident_type, None, None, envelope, urgency, deadline
        )

    @classmethod
    def _sent(  # noqa: PLR0913
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        sender: str,
        recipient: str,
        incident_type: str,
        description: Text | None,
        supporting_information: SupportingInformation | None,
        envelope: bytes | None,
        urgency: Urgency,
        deadline: timedelta,
    ) -> Notification:
        """The one ``Sent`` of both forms: plain content, or an envelope (never both). The
        deadline is written into the event, so that a replay needs no settings."""
        urgency = check_urgency(urgency)
        seconds = check_deadline(deadline)
        return cls._create(
            cls.Sent,
            id=id,
            sender=sender,
            recipient=recipient,
            incident_type=check_incident_type(incident_type),
            description=description,
            supporting_information=supporting_information,
            good_faith_attested=True,
            statement=NO_IMPLIED_RESPONSIBILITY,
            envelope=envelope,
            urgency=urgency.value,
            acknowledge_by=at + timedelta(seconds=seconds),
            deadline_seconds=seconds,
            actor=by.ref,
            timestamp=at,
        )

    @staticmethod
    def check_sender(by: Principal, recipient: str, good_faith_attested: bool) -> str:
        """R7: a State notifies another State, in good faith; returns the sender's code."""
        if by.role is not Role.STATE or by.state is None:
            raise NotPermitted("only a State sends notifications")
        if recipient == by.state:
            raise ValidationError("a State cannot notify itself; name another State")
        if good_faith_attested is not True:
            raise ValidationError(
                "a notification is made in good faith (R7): set good_faith_attested to true"
            )
        return by.state

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
        """R10: the recipient decides how and what to respond; it may ask for assistance (R16).
        A sealed notification takes sealed responses only (``respond_sealed``)."""
        self.check_may_respond(by)
        if self.sealed:
            raise ValidationError(
                "this notification is sealed: seal the response to both parties with the State "
                "client and send it as envelope"
            )
        self._responded(by, at, assistance_requested, response=response)

    def respond_sealed(
        self, by: Principal, at: datetime, envelope: bytes, assistance_requested: bool = False
    ) -> None:
        """R10 with the response sealed by the recipient's client: an envelope for this
        notification and this response's index (the number of responses so far), addressed
        to exactly the two parties. Only a sealed notification takes one."""
        self.check_may_respond(by)
        if not self.sealed:
            raise ValidationError(
                "this notification is plain: send the response as text, not as an envelope"
            )
        check_sealed(envelope, self.id, self.parties, response=self.responses)
        self._responded(by, at, assistance_requested, envelope=envelope)

    def _responded(
        self,
        by: Principal,
        at: datetime,
        assistance_requested: bool,
        *,
        response: Text | None = None,
        envelope: bytes | None = None,
    ) -> None:
        """The one ``Responded`` of both forms: the text if plain, the envelope if sealed."""
        self.trigger_event(
            self.Responded,
            actor=by.ref,
            timestamp=at,
            response=response,
            assistance_requested=bool(assistance_requested),
            envelope=envelope,
        )

    def check_may_respond(self, by: Principal) -> None:
        self.check_is(by, self.recipient, "responds")
        if self.status not in (NotificationStatus.ACKNOWLEDGED, NotificationStatus.RESPONDED):
            hint = " acknowledge it first" if self.status is NotificationStatus.SENT else ""
            raise InvalidTransition(
                f"cannot respond to a notification that is {self.status};{hint}"
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

    def escalate(
        self, at: datetime, step: int, contact_id: str, acknowledge_by: datetime | None = None
    ) -> None:
        """Record that the alert goes to ``contact_id`` (index ``step`` of the recipient's
        escalation route), by the server. The new deadline is ``at`` plus the duration
        recorded at sending, unless ``acknowledge_by`` is given (it must be later than ``at``)."""
        seconds = self.check_overdue(at)
        new_deadline = acknowledge_by or at + timedelta(seconds=seconds)
        if new_deadline <= at:
            raise ValidationError("an escalation's acknowledge_by must be later than its time")
        self.trigger_event(
            self.Escalated,
            actor=DELIVERY_ACTOR,
            timestamp=at,
            step=step,
            contact_id=contact_id,
            acknowledge_by=new_deadline,
        )

    def exhaust_escalation(self, at: datetime, step: int) -> None:
        """Record that the deadline passed with no contact left after ``step``."""
        self.check_overdue(at)
        self.trigger_event(self.EscalationExhausted, actor=DELIVERY_ACTOR, timestamp=at, step=step)

    def is_overdue(self, at: datetime) -> bool:
        """Still unacknowledged (``sent``) with a deadline that ``at`` is past."""
        return (
            self.status is NotificationStatus.SENT
            and self.acknowledge_by is not None
            and at > self.acknowledge_by
        )

    def check_overdue(self, at: datetime) -> int:
        """An escalation is due (``is_overdue``); returns the recorded deadline's seconds.
        ``InvalidTransition`` otherwise: acknowledged, withdrawn or closed, no deadline (sent
        before deadlines, or the route is exhausted), or the deadline not passed yet."""
        if self.status is not NotificationStatus.SENT:
            raise InvalidTransition(f"a notification that is {self.status} does not escalate")
        if self.acknowledge_by is None or self.deadline_seconds is None:
            raise InvalidTransition("this notification has no acknowledgement deadline")
        if at <= self.acknowledge_by:
            raise InvalidTransition(
                f"the acknowledgement deadline {self.acknowledge_by.isoformat()} has not passed"
            )
        return self.deadline_seconds

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


def check_deadline(deadline: timedelta) -> int:
    """A deadline's whole seconds, at least one minute and at most a year."""
    seconds = int(deadline.total_seconds())
    if not 60 <= seconds <= 366 * 86400:
        raise ValidationError("an acknowledgement deadline must be between 1 minute and a year")
    return seconds


def status_after(event_class: type[PocdirAggregate.Event]) -> NotificationStatus:
    """The status of a notification after an event of ``event_class`` (every notification
    event sets it; the command that triggered the event has checked the transition)."""
    return STATUS_AFTER[event_class]
