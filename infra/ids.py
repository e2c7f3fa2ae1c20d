"""Which aggregates the record holds, read from the stored records' topics and originator ids
alone (nothing is decoded, so no cipher key is needed): the CLI resolves an id prefix a user
types against these, where the HTTP API takes full ids only."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from domain.capacity import CapacityNeed
from domain.check import CommunicationCheck
from domain.consent import SharingConsent
from domain.credential import Credential
from domain.notification import Notification
from domain.state_entry import StateEntry

#: The event that creates each kind of aggregate, by the name the CLI gives the kind.
CREATED: dict[str, type[DomainEvent]] = {
    "communication check": CommunicationCheck.Launched,
    "credential": Credential.Issued,
    "notification": Notification.Sent,
    "consent": SharingConsent.Requested,
    "capacity-building need": CapacityNeed.Recorded,
    "entry": StateEntry.Registered,
}

#: Records read per query: enough to keep round trips few, small enough to bound memory.
PAGE = 1000


def created_ids(application: Application, *created: type[DomainEvent]) -> Iterator[UUID]:
    """The ids of the aggregates created by one of the ``created`` events, in record order
    (every aggregate kind when none is given)."""
    topics = [get_topic(cls) for cls in created or CREATED.values()]
    start: int | None = None
    while True:
        page = application.recorder.select_notifications(
            start, PAGE, topics=topics, inclusive_of_start=start is None
        )
        if not page:
            return
        for record in page:
            originator = record.originator_id
            yield originator if isinstance(originator, UUID) else UUID(originator)
        start = page[-1].id
