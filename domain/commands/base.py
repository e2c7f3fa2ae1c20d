"""What every area of the application service shares: its configuration, the codec, loading
an aggregate, the one load-change-save helper, and the atomic save.

Time comes from the injected clock and new ids from the injected id factory, so a seeded
simulation writes the same record every time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from typing import TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper
from eventsourcing.utils import Environment

from domain import codec
from domain.base import PocdirAggregate
from domain.clock import Clock, SystemClock
from domain.errors import ConcurrentChange, NotFound, StaleVersion
from domain.idempotency import IdempotencyKey, KeyAlreadyRecorded, RequestInFlight
from domain.position import report_position

A = TypeVar("A", bound=PocdirAggregate)


class RecordService(Application[UUID]):
    """The application over the hash-chained record, without any area's commands."""

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
        codec.register_transcodings(transcoder)

    @cached_property
    def facts_mapper(self) -> Mapper[UUID]:
        """Decodes stored events for the views: as ``mapper`` does (same cipher, same
        compressor, same transcodings), except that content decodes to ``WITHHELD``
        (``domain.codec.WithheldContent``). Read-only: it refuses to encode withheld content."""
        return codec.facts_mapper(self.factory, self.register_transcodings)

    # -- loading ----------------------------------------------------------------------------

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no such {what}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no such {what}")
        return aggregate

    # -- changing ---------------------------------------------------------------------------

    def _change(
        self,
        load: Callable[[], A],
        change: Callable[[A, datetime], None],
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> A:
        """The one load-change-save of a command on one aggregate: take the time now, ``load``
        the aggregate (which raises what the caller may not see or change), check the
        caller's version (``check_version``), apply ``change(aggregate, at)`` and save, with
        the caller's idempotency key (``_save``)."""
        at = self.clock.now()
        aggregate = load()
        self.check_version(aggregate, expected_version)
        change(aggregate, at)
        self._save(aggregate, idempotency=idempotency)
        return aggregate

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
        # ``Recording.notification`` (the library's name): the stored event, with its position.
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
