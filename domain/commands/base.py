"""What every area of the application service shares: its configuration, the codec, loading
an aggregate, the one load-change-save helper, and the atomic save.

Time comes from the injected clock and new ids from the injected id factory, so a seeded
simulation writes the same record every time.
"""

from __future__ import annotations

import json
import re
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
from domain.members import member_states
from domain.position import report_position
from domain.signing import (
    RecordSigners,
    SignedWrite,
    SignerKind,
    SigningContext,
    current_signing,
    expected_signer,
    operator_fields,
)
from domain.statement import Statement, StatementMalformed, sign_statement

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
        #: The operator's and the server's private keys, set by the composition root.
        self.signers = RecordSigners()
        super().__init__(env)

    def new_aggregate_id(self) -> UUID:
        """The id of an aggregate a command creates: the one the State signed, if a State's
        signed statement is being carried out (the statement names the aggregate before it
        exists), else a new one."""
        context = current_signing()
        if context is not None and context.state_write is not None and not context.written:
            return context.state_write.signed.statement.aggregate
        return self.new_id()

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
        context = current_signing()
        write = None
        saved: tuple[object, ...] = aggregates
        if context is not None or self.signers.any:
            # The events are collected here to sign them; ``save`` takes events as well as
            # aggregates (whose pending events are now collected), in this order.
            pending: list[PocdirAggregate.Event] = [
                e  # type: ignore[misc]
                for a in aggregates
                for e in a.collect_events()
            ]
            if not pending:
                return None
            write = self._signed_write(context, pending, idempotency)
            saved = (*pending, *aggregates)
        kwargs: dict[str, object] = {}
        if idempotency is not None:
            kwargs["idempotency"] = idempotency
        if write is not None:
            kwargs["signed_write"] = write
        try:
            recordings = self.save(*saved, **kwargs)  # type: ignore[arg-type]
        except KeyAlreadyRecorded:
            raise RequestInFlight(
                "another request with this Idempotency-Key was recorded meanwhile; "
                "retry to get its outcome"
            ) from None
        except IntegrityError:
            raise ConcurrentChange(
                "someone else changed this first; read it again and retry"
            ) from None
        if write is not None and context is not None:
            context.written.append(write)
        # ``Recording.notification`` (the library's name): the stored event, with its position.
        positions = [r.notification.id for r in recordings]
        if not positions:
            return None
        last = max(positions)
        report_position(last)
        return last

    def _signed_write(
        self,
        context: SigningContext | None,
        events: list[PocdirAggregate.Event],
        idempotency: IdempotencyKey | None,
    ) -> SignedWrite | None:
        """The statement this save is stored with: the State's own, from the caller's context
        (checked to name these events' aggregate and version), or one the server signs now for
        the Secretariat or for itself, as the events' type says; None for a State's events
        without a statement, or if the server holds no key for that signer (the events are then
        unsigned)."""
        first = events[0]
        if context is not None and context.state_write is not None and not context.written:
            statement = context.state_write.signed.statement
            if first.originator_id != statement.aggregate or (
                statement.expected_version is not None
                and first.originator_version != statement.expected_version + 1
            ):
                raise StatementMalformed(
                    "the statement is about another change",
                    expected=f"{first.originator_id} from version {first.originator_version - 1}",
                    given=f"{statement.aggregate} at version {statement.expected_version}",
                )
            write = context.state_write
        else:
            # Who signs follows from what is recorded (docs/audit-format.md, "Signers"): a
            # State's event without its statement stays unsigned (the gate refused it if the
            # State had to sign).
            kind = expected_signer(type(first).__qualname__)
            key = None if kind is SignerKind.STATE else self.signers.key_for(kind)
            if key is None:
                return None
            state = getattr(first, "state", None)
            statement = Statement.create(
                command=f"{kind.value}.{_command_name(first)}",
                state=state if state in member_states() else None,
                aggregate=first.originator_id,
                expected_version=first.originator_version - 1,
                fields=operator_fields(events),
                idempotency_key=(
                    idempotency.key if idempotency is not None else f"{kind.value}-{uuid4().hex}"
                ),
                created_at=self.clock.now(),
            )
            write = SignedWrite(
                sign_statement(statement, key),
                kind.value,
                key.public_key().public_bytes_raw(),
            )
        write.sealed = self._seal_salts(write)
        return write

    def _seal_salts(self, write: SignedWrite) -> bytes | None:
        """The salts as stored: encrypted under the record's cipher key when it has one."""
        if not write.salts:
            return None
        plain = json.dumps({k: v.hex() for k, v in sorted(write.salts.items())}).encode()
        cipher = self.mapper.cipher
        return cipher.encrypt(plain) if cipher is not None else plain

    @staticmethod
    def check_version(aggregate: PocdirAggregate, expected_version: int | None) -> None:
        """Optimistic concurrency for callers that read first (HTTP ``If-Match``)."""
        if expected_version is not None and aggregate.version != expected_version:
            raise StaleVersion(
                f"the entry is at version {aggregate.version}, not {expected_version}; "
                "read it again and retry"
            )


def _command_name(event: PocdirAggregate.Event) -> str:
    """``state_keys.keys_bound`` for ``StateKeys.KeysBound``: the command part of a statement
    the server signs, named after the event it records."""
    return ".".join(
        re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower()
        for part in type(event).__qualname__.split(".")
    )
