"""The record, opened for one command: settings, the application, the views brought up to
date, the transparency service, and the idempotency key a write is recorded with. Every
error on the way ends the command through ``api.cli.errors``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import overload
from uuid import uuid4

from api.cli.console import out, progress
from api.cli.errors import exit_on_error, fail
from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import PocdirError
from domain.idempotency import IdempotencyKey, request_digest
from domain.signing import SignerKind, SigningContext, signing
from domain.values import Principal
from infra.follower import bring_views_up
from infra.lease import build_lease
from infra.settings import Settings
from infra.transparency import Transparency
from infra.verify import chained_recorder, record_is_empty
from infra.wiring import (
    OpenMode,
    build_application,
    build_idempotency_keys,
    build_transparency,
    build_view_runner,
    build_views,
)
from projections.asof import directory_as_of
from projections.queries import ViewQueries


def settings() -> Settings:
    """The ``POCDIR_*`` settings, or exit 2 naming the one that is wrong."""
    with exit_on_error():
        return Settings.from_env()


def open_application(
    clock: SimulatedClock | None = None, mode: OpenMode = OpenMode.CREATE, **kwargs: object
) -> PocDirectory:
    """The record for one command, once its cipher key is known to be the record's (else
    exit 2: a wrong, missing or newly set ``POCDIR_CIPHER_KEY``). A command that only reads
    passes ``OpenMode.READ_ONLY`` or ``OpenMode.EXISTING``: with no record there it exits 2
    having created nothing. ``needs_key=False`` for commands that read the stored bytes only
    and decode no event."""
    config = settings()
    with exit_on_error():
        return build_application(config, clock=clock, mode=mode, **kwargs)  # type: ignore[arg-type]


def fail_if_empty(application: PocDirectory) -> None:
    """An empty record is not "intact": say so and exit 2, for an auditor who mistyped the
    record's location into a database that some writer created."""
    if record_is_empty(chained_recorder(application)):
        fail("the record is empty: no events")


@contextmanager
def command_application(
    clock: SimulatedClock | None = None, mode: OpenMode = OpenMode.CREATE, **kwargs: object
) -> Iterator[PocDirectory]:
    """The record, opened for one command; an error ends the command with its exit code
    (``api.cli.errors``), and the application is closed in every case. The console is the
    Secretariat's: what a command writes is signed with the operator key (``domain.signing``)."""
    application = open_application(clock, mode, **kwargs)
    try:
        with exit_on_error(), signing(SigningContext(SignerKind.SECRETARIAT)):
            yield application
    finally:
        application.close()


def command_key(
    application: PocDirectory, by: Principal, command: str, args: Sequence[object], key: str | None
) -> IdempotencyKey | None:
    """The idempotency key a writing command records with its events: the caller's, or a
    fresh one. ``None`` when this command already ran with the caller's key: that is said on
    stdout and nothing is written again. Exits 2 if the key was used for another command."""
    digest = request_digest(
        [command.encode(), *(json.dumps(a, default=str).encode() for a in args)]
    )
    if key is None:
        return IdempotencyKey(by.ref, str(uuid4()), digest)
    try:
        keyed = IdempotencyKey(by.ref, key, digest)
    except PocdirError as e:
        fail(str(e))
    row = build_idempotency_keys(application, settings()).find(keyed)
    if row is None:
        return keyed
    if row.digest != digest:
        fail("this --idempotency-key was used for a different command; use a new key")
    out.print(
        f"already done: this command ran with this idempotency key (record position "
        f"{row.position}); nothing was written again",
        highlight=False,
    )
    return None


@contextmanager
def views_queries(
    as_of: date | None = None, at_position: int | None = None
) -> Iterator[ViewQueries]:
    """Open the record, bring the views up to date with it, and yield their queries. Reads
    come from the views, never from scanning the event table. With ``as_of`` or
    ``at_position``, the directory is computed from the record as it stood then.

    Up to date without fighting a server: if no server's runner holds the lease, this
    command takes it, catches the views up and gives it back; if one does, it waits (at most
    ``POCDIR_READ_WAIT_SECONDS``, then exit 3) for the views to reach the record's head as
    it was when the command started (``infra.follower.bring_views_up``)."""
    config = settings()
    past = as_of is not None or at_position is not None
    application = open_application(mode=OpenMode.READ_ONLY if past else OpenMode.EXISTING)
    try:
        with exit_on_error():
            if past:
                yield ViewQueries(directory_as_of(application, position=at_position, day=as_of))
                return
            view = build_views(application, config)
            runner = build_view_runner(application, view, config)
            head = application.recorder.max_notification_id() or 0
            with progress() as bar:
                task = bar.add_task("updating views", total=max(head - runner.position, 0))
                bring_views_up(
                    runner,
                    build_lease(application.recorder, config),
                    head,
                    seconds=config.runner_lease_seconds,
                    bound=config.read_wait_seconds,
                    on_progress=lambda _: bar.update(task, advance=1000),
                )
            yield ViewQueries(view)
    finally:
        application.close()


@contextmanager
def transparency(
    mode: OpenMode = OpenMode.EXISTING,
) -> Iterator[tuple[PocDirectory, Transparency]]:
    """The record and its transparency service. ``mode``: a command that only reads opens
    an existing record (``READ_ONLY``: without even the tree's tables); ``checkpoint`` may
    create one. The record's stored bytes only are read: no cipher key is needed."""
    config = settings()
    application = open_application(mode=mode, needs_key=False)
    try:
        with exit_on_error():
            yield (
                application,
                build_transparency(application, config, read_only=mode is OpenMode.READ_ONLY),
            )
    finally:
        application.close()


#: The largest record position or tree size a command takes, as over HTTP: positions are
#: 64-bit in both databases, and a larger number would fail inside the driver.
MAX_POSITION = 2**62


@overload
def bounded(value: int, option: str, low: int = 0) -> int: ...


@overload
def bounded(value: None, option: str, low: int = 0) -> None: ...


def bounded(value: int | None, option: str, low: int = 0) -> int | None:
    """``value`` if it is a position or size the record can hold, else exit 2 saying so."""
    if value is not None and not low <= value <= MAX_POSITION:
        fail(f"{option} must be a whole number from {low} to {MAX_POSITION}")
    return value


def parse_date(value: str | None, option: str) -> date | None:
    """``value`` as a date, or exit 2 saying ``option`` wants one like 2026-01-31."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a date like 2026-01-31, not {value[:20]!r}")
