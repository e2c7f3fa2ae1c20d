"""CapacityNeed: a State's capacity-building need and the assistance offered against it (R16).

R16: PoCs in developing and developed States should work with equivalent effectiveness; a
State that lacks the capacity to respond can ask for assistance, and needs are recorded and
reviewed. A need is in one documented category (``CAPACITY_CATEGORIES``, docs/taxonomy.md)
with text under R6. It may cite a notification the State is party to (a response that asked
for assistance). Other States offer assistance; the State accepts one offer.

Lifecycle::

    open ──accept an offer──▶ matched ──fulfil──▶ fulfilled
     │                          │
     └────────withdraw──────────┴──▶ withdrawn

Only the needing State accepts, fulfils or withdraws (R10: all cooperation is voluntary);
only another State offers, and only while the need is open.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.values import Principal, Role, Text

#: Capacity-building categories. Codes are fixed once published: reviewers count by them.
CAPACITY_CATEGORIES: dict[str, str] = {
    "incident-handling": "Setting up or strengthening incident handling (a CERT/CSIRT function)",
    "forensics": "Digital forensics and malware analysis",
    "training": "Training of point-of-contact staff, exercises and simulations",
    "tooling": "Technical tools and infrastructure for detection and response",
    "secure-communication": "Protected channels and equipment to take part in exchanges (R14)",
    "legal-policy": "Legal, policy and institutional frameworks for responding to incidents",
    "language-support": "Translation and language support for exchanges (R6)",
    "other": "Anything not covered above",
}


def check_capacity_category(value: str) -> str:
    if value not in CAPACITY_CATEGORIES:
        raise ValidationError(
            f"unknown capacity-building category {value[:40]!r}; "
            f"use one of: {', '.join(CAPACITY_CATEGORIES)}"
        )
    return value


class NeedStatus(StrEnum):
    OPEN = "open"
    MATCHED = "matched"
    FULFILLED = "fulfilled"
    WITHDRAWN = "withdrawn"


def _state_of(by: Principal, verb: str) -> str:
    if by.role is not Role.STATE or by.state is None:
        raise NotPermitted(f"only a State {verb}")
    return by.state


class CapacityNeed(PocdirAggregate):
    class Recorded(PocdirAggregate.Created):
        state: str
        category: str
        text: Text
        notification_id: UUID | None

    class AssistanceOffered(PocdirAggregate.Event):
        by_state: str
        text: Text

        def apply(self, need: CapacityNeed) -> None:
            need.offers[self.by_state] = self.timestamp
            need.offer_texts[self.by_state] = self.text

    class OfferAccepted(PocdirAggregate.Event):
        offering_state: str

        def apply(self, need: CapacityNeed) -> None:
            need.status = need_status_after(need.status, type(self))
            need.matched_with = self.offering_state

    class Fulfilled(PocdirAggregate.Event):
        def apply(self, need: CapacityNeed) -> None:
            need.status = need_status_after(need.status, type(self))

    class Withdrawn(PocdirAggregate.Event):
        def apply(self, need: CapacityNeed) -> None:
            need.status = need_status_after(need.status, type(self))

    def __init__(self, state: str, category: str, text: Text, notification_id: UUID | None) -> None:
        self.state = state
        self.category = category
        self.text = text
        self.notification_id = notification_id
        self.status = need_status([CapacityNeed.Recorded])
        self.offers: dict[str, datetime] = {}
        self.offer_texts: dict[str, Text] = {}
        self.matched_with: str | None = None

    def offer_texts_for(self, by: Principal) -> dict[str, Text]:
        """The offers' texts ``by`` may read, by offering State (R16, within R11 and R13): an
        offer is addressed to the State in need, which reads every offer's text to choose
        one; the offering State reads its own. No one else does, the Secretariat and
        reviewers included: they see that an offer was made, never what it says."""
        if by.role is not Role.STATE or by.state is None:
            return {}
        if by.state == self.state:
            return dict(self.offer_texts)
        return {s: t for s, t in self.offer_texts.items() if s == by.state}

    @classmethod
    def record(
        cls,
        id: UUID,  # noqa: A002
        by: Principal,
        at: datetime,
        category: str,
        text: Text,
        notification_id: UUID | None = None,
    ) -> CapacityNeed:
        """Precondition: the application service has checked that the State is registered
        and, if ``notification_id`` is given, that it is party to that notification."""
        state = _state_of(by, "records its capacity-building needs")
        return cls._create(
            cls.Recorded,
            id=id,
            state=state,
            category=check_capacity_category(category),
            text=text,
            notification_id=notification_id,
            actor=by.ref,
            timestamp=at,
        )

    def offer(self, by: Principal, at: datetime, text: Text) -> None:
        offering = _state_of(by, "offers assistance")
        if offering == self.state:
            raise ValidationError("a State cannot offer assistance against its own need")
        if self.status is not NeedStatus.OPEN:
            raise InvalidTransition(f"this need is {self.status}; it takes no more offers")
        if offering in self.offers:
            raise InvalidTransition(f"{offering} has already offered assistance for this need")
        self.trigger_event(
            self.AssistanceOffered, actor=by.ref, timestamp=at, by_state=offering, text=text
        )

    def accept(self, by: Principal, at: datetime, offering_state: str) -> None:
        self.check_owner(by, "accepts an offer")
        if self.status is not NeedStatus.OPEN:
            raise InvalidTransition(f"this need is {self.status}; only an open need is matched")
        if offering_state not in self.offers:
            raise InvalidTransition(f"{offering_state[:10]} has not offered assistance")
        self.trigger_event(
            self.OfferAccepted, actor=by.ref, timestamp=at, offering_state=offering_state
        )

    def fulfil(self, by: Principal, at: datetime) -> None:
        self.check_owner(by, "marks a need fulfilled")
        if self.status is not NeedStatus.MATCHED:
            raise InvalidTransition(f"this need is {self.status}; only a matched need is fulfilled")
        self.trigger_event(self.Fulfilled, actor=by.ref, timestamp=at)

    def withdraw(self, by: Principal, at: datetime) -> None:
        self.check_owner(by, "withdraws a need")
        if self.status not in (NeedStatus.OPEN, NeedStatus.MATCHED):
            raise InvalidTransition(f"this need is {self.status}; that is final")
        self.trigger_event(self.Withdrawn, actor=by.ref, timestamp=at)

    def check_owner(self, by: Principal, verb: str) -> None:
        if by.role is not Role.STATE or by.state != self.state:
            raise NotPermitted(f"only the State that recorded the need {verb}")


#: The lifecycle (module docstring): the status a need takes after each event that changes
#: it; an offer (``AssistanceOffered``) leaves it as it was.
STATUS_AFTER: dict[type[PocdirAggregate.Event], NeedStatus] = {
    CapacityNeed.Recorded: NeedStatus.OPEN,
    CapacityNeed.OfferAccepted: NeedStatus.MATCHED,
    CapacityNeed.Fulfilled: NeedStatus.FULFILLED,
    CapacityNeed.Withdrawn: NeedStatus.WITHDRAWN,
}


def need_status_after(status: NeedStatus, event_class: type[PocdirAggregate.Event]) -> NeedStatus:
    """The status of a need that was ``status`` after an event of ``event_class`` (the command
    that triggered the event has checked the transition)."""
    return STATUS_AFTER.get(event_class, status)


def need_status(event_classes: Iterable[type[PocdirAggregate.Event]]) -> NeedStatus:
    """The status of a need after these events, in the order they happened (the review report
    judges a need by the events recorded by the end of its period)."""
    status = NeedStatus.OPEN
    for event_class in event_classes:
        status = need_status_after(status, event_class)
    return status
