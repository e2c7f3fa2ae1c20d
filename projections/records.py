"""What the projections read of the record, and nothing more: the stored events after a
position, decoded for the views.

The runner and the views as of a past date depend on this protocol, not on the application
service: ``PocDirectory`` satisfies it (``recorder`` and ``facts_mapper``), and so does any
object with those two members, such as a benchmark's wrapper that caps or times them.

Names: eventsourcing calls a stored event with its position a ``Notification``
(``select_notifications``, ``max_notification_id``). That is not pocdir's Notification
aggregate (R7); in pocdir's own names it is a *record* (``Record``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.persistence import Notification, StoredEvent

#: A stored event with its position in the record (``.id``): the library's ``Notification``.
Record = Notification


class StoredRecords(Protocol):
    """Selects stored events in position order (the library's ``ApplicationRecorder``)."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Record]:
        """At most ``limit`` records from position ``start`` (after it, unless
        ``inclusive_of_start``) up to ``stop`` (inclusive)."""
        ...


class ViewsDecoder(Protocol):
    """Decodes a stored event for the views (content withheld: ``domain.codec``)."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any: ...


class RecordReader(Protocol):
    """The record as the projections read it: its stored events, and their decoder for the
    views (``PocDirectory.facts_mapper``)."""

    @property
    def recorder(self) -> StoredRecords: ...

    @property
    def facts_mapper(self) -> ViewsDecoder: ...
