"""The composition root: everything is built here from ``Settings``, and nothing connects at
import time. Tests call ``build_application`` with their own settings, clock and ids."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.application import PocDirectory
from domain.clock import Clock
from domain.errors import ValidationError
from domain.signing import RecordSigners
from domain.values import Principal
from infra.channels import Channel
from infra.delivery import (
    Channels,
    DeliveryConfig,
    DeliveryThread,
    DeliveryWorker,
    challenge_secret,
)
from infra.delivery_store import build_delivery_store
from infra.follower import POSITION_POLL_SECONDS, ViewFollower, ViewsBehind
from infra.idempotency import IdempotencyKeys
from infra.keycheck import check_record_key, record_cipher
from infra.lease import DELIVERY_LEASE, LEASE_ERRORS, build_lease
from infra.mail import FileOutbox, SmtpChannel
from infra.note import SignerKey
from infra.settings import Settings, SettingsError
from infra.store import DatabaseTimeout, read_only_sqlite_uri, sqlite_record_absence
from infra.transparency import Transparency, load_signer
from infra.tree_store import build_tree_store
from infra.verify import chained_recorder
from infra.webhook import WebhookChannel, delivery_key_id
from infra.witness_policy import Policy, PolicyInvalid
from projections.queries import ViewQueries
from projections.records import RecordReader
from projections.runner import VIEWS_NAME, ViewRunner
from projections.store import (
    MAIN_TABLES,
    PostgresViewRecorder,
    SQLiteViewRecorder,
    ViewRecorder,
    ViewTables,
)

__all__ = ["ViewsBehind"]

SQLITE_FACTORY = "infra.store:ChainedSQLiteFactory"
POSTGRES_FACTORY = "infra.store:ChainedPostgresFactory"
CIPHER = "eventsourcing.cryptography:AESCipher"


class OpenMode(Enum):
    """How a command opens the record."""

    #: A writer: creates the SQLite file and its directory, and the tables, if missing.
    CREATE = "create"
    #: An existing record only (``RecordMissing`` otherwise); may write to it, e.g. bring
    #: the views or the Merkle tree up to date, creating their tables.
    EXISTING = "existing"
    #: An existing record only, read-only: creates and writes nothing (SQLite opens the file
    #: with ``mode=ro``; no CREATE statement is sent on either backend).
    READ_ONLY = "read_only"


class RecordMissing(Exception):  # noqa: N818 - a state of the world, named for the user
    """There is no pocdir record where the settings point; the message says where and why."""


def record_location(settings: Settings) -> str:
    """Where the record is, for messages: the URL without any password."""
    if settings.backend == "sqlite":
        return settings.database_url
    pg = settings.postgres
    return f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.dbname} (schema {pg.schema})"


def eventsourcing_env(settings: Settings, *, read_only: bool = False) -> dict[str, str]:
    """Translate pocdir settings into the library's configuration keys (and the few keys
    ``infra.store``'s factories add for bounds the library has no key for). ``read_only``: no
    table is created, and SQLite opens the file read-only.

    The library counts lock timeouts in whole seconds: they are rounded up, and the
    statement timeout, which includes lock waits, is the bound that holds."""
    env: dict[str, str] = {}
    statement = settings.db_statement_timeout
    lock_seconds = str(max(1, math.ceil(statement)))
    if settings.backend == "sqlite":
        path = settings.sqlite_path
        env.update(
            PERSISTENCE_MODULE=SQLITE_FACTORY,
            SQLITE_DBNAME=read_only_sqlite_uri(path) if read_only else path,
            SQLITE_LOCK_TIMEOUT=lock_seconds,
            SQLITE_POOL_TIMEOUT=repr(settings.db_pool_timeout),
        )
    else:
        pg = settings.postgres
        env.update(
            PERSISTENCE_MODULE=POSTGRES_FACTORY,
            POSTGRES_DBNAME=pg.dbname,
            POSTGRES_HOST=pg.host,
            POSTGRES_PORT=str(pg.port),
            POSTGRES_USER=pg.user,
            POSTGRES_PASSWORD=pg.password,
            POSTGRES_SCHEMA=pg.schema,
            POSTGRES_POOL_SIZE="4",
            POSTGRES_MAX_OVERFLOW="8",
            # libpq counts whole seconds, and treats less than 2 as 2.
            POSTGRES_CONNECT_TIMEOUT=str(max(2, math.ceil(settings.db_connect_timeout))),
            POSTGRES_POOL_TIMEOUT=repr(settings.db_pool_timeout),
            POSTGRES_STATEMENT_TIMEOUT=repr(statement),
            POSTGRES_LOCK_TIMEOUT=lock_seconds,
            POSTGRES_PRE_PING="y",
        )
    if settings.cipher_key:
        env.update(CIPHER_TOPIC=CIPHER, CIPHER_KEY=settings.cipher_key)
    if read_only:
        env["CREATE_TABLE"] = "false"
    return env


def build_views(
    app: PocDirectory, settings: Settings, tables: ViewTables = MAIN_TABLES
) -> ViewRecorder:
    """The recorder of all the views (the directory's entries, the histories, the review
    facts), in the same database as the record. Views in an earlier layout are emptied
    here, so that the runner rebuilds them from the record.
    ``tables``: the views that are read, or a rebuild's copy (``SHADOW_TABLES``)."""
    factory: Any = app.factory
    view_class = SQLiteViewRecorder if settings.backend == "sqlite" else PostgresViewRecorder
    # With a key, the views' documents are encrypted with the record's own cipher.
    view: ViewRecorder = view_class(
        factory.datastore, tables=tables, cipher=record_cipher(settings)
    )
    if factory.env_create_table():
        view.create_table()  # type: ignore[attr-defined]
    if tables == MAIN_TABLES:
        view.reset_if_old_layout(VIEWS_NAME)
    return view


#: The application whose connections ``open_views``'s view uses. An application
#: closes them when it is collected, so it is kept for as long as that view is in use.
_view_owner: PocDirectory | None = None


def open_views(settings: Settings, tables: ViewTables = MAIN_TABLES) -> ViewRecorder:
    """The views alone (or a rebuild's copy of them, ``tables``), with connections of
    their own: what a rebuild's writer process opens (``projections.writer``), once per
    process."""
    global _view_owner
    if _view_owner is not None:
        _view_owner.close()
    _view_owner = build_application(settings)
    return build_views(_view_owner, settings, tables)


def build_view_runner(app: RecordReader, view: ViewRecorder, settings: Settings) -> ViewRunner:
    """The runner of ``view`` over the record ``app`` reads (the application, or anything
    else with its stored events and views' decoder), whose rebuilds write from a process of
    their own."""
    return ViewRunner(app, view, open_writer_view=partial(open_views, settings))


def build_application(
    settings: Settings,
    *,
    clock: Clock | None = None,
    new_id: Callable[[], UUID] = uuid4,
    mode: OpenMode = OpenMode.CREATE,
    needs_key: bool = True,
) -> PocDirectory:
    """The application service over the chained store that ``settings`` names.

    ``mode`` says whether the record may be created (a writer, the default) or must exist
    (``RecordMissing`` otherwise, having created nothing: no file, directory, schema or
    table), and whether it is opened read-only (``OpenMode``).

    The record is returned once its cipher key is known to be the record's
    (``infra.keycheck``): a key that is not, or a key on a plaintext record, raises
    ``CipherKeyMismatch``, and so does no key on an encrypted record unless ``needs_key`` is
    False (for what reads the stored bytes only and decodes no event: verification, audit
    export, proofs, checkpoints)."""
    signers = record_signers(settings)
    app = _open(settings, clock, new_id, mode)
    try:
        check_record_key(app.recorder, settings, needs_key=needs_key)
    except BaseException:
        app.close()
        raise
    app.signers = signers
    app.acknowledgement_deadlines = settings.ack_deadlines
    app.check_window_hours = settings.check_window_hours
    return app


def record_signers(settings: Settings) -> RecordSigners:
    """The operator's and the server's private keys, read from their files now, so that a
    missing or unreadable file stops the process at start, not at the first write."""

    def load(path: Path | None) -> Ed25519PrivateKey | None:
        return None if path is None else SignerKey.load(path).private_key()

    return RecordSigners(
        operator=load(settings.operator_key_file), server=load(settings.signing_key_file)
    )


def _open(
    settings: Settings, clock: Clock | None, new_id: Callable[[], UUID], mode: OpenMode
) -> PocDirectory:
    if mode is OpenMode.CREATE:
        _make_sqlite_directory(settings)
        return PocDirectory(eventsourcing_env(settings), clock=clock, new_id=new_id)
    if settings.backend == "sqlite":
        _raise_if_missing(settings, sqlite_record_absence(settings.sqlite_path))
    probe = PocDirectory(eventsourcing_env(settings, read_only=True), clock=clock, new_id=new_id)
    try:
        _raise_if_missing(settings, chained_recorder(probe).record_absence())
    except BaseException:
        probe.close()
        raise
    if mode is OpenMode.READ_ONLY:
        return probe
    probe.close()
    return PocDirectory(eventsourcing_env(settings), clock=clock, new_id=new_id)


def _raise_if_missing(settings: Settings, absence: str | None) -> None:
    if absence is not None:
        raise RecordMissing(f"no record at {record_location(settings)}: {absence}")


def _make_sqlite_directory(settings: Settings) -> None:
    """A writer creates the SQLite file's directory (SQLite creates the file itself)."""
    if settings.backend != "sqlite":
        return
    path = settings.sqlite_path
    if path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def build_transparency(
    app: PocDirectory, settings: Settings, *, read_only: bool = False
) -> Transparency:
    """Checkpoints and proofs over ``app``'s record, in the same database. Creates the tree
    tables if needed, unless ``read_only`` (then a record without them has no checkpoints);
    reads the signing key only when a checkpoint is signed."""
    return Transparency(
        build_tree_store(app.recorder, create=not read_only),
        settings.origin,
        load_signer(settings.signing_key_file),
        witnesses=tuple(server_witnesses(settings).witnesses.values()),
    )


def server_witnesses(settings: Settings) -> Policy:
    """The witnesses of ``POCDIR_WITNESS_POLICY_FILE`` (a policy with no witness and quorum
    none without it); a file that cannot be read or parsed is a ``SettingsError``."""
    if settings.witness_policy_file is None:
        return Policy((), quorum=None)
    try:
        return Policy.load(settings.witness_policy_file)
    except PolicyInvalid as e:
        raise SettingsError(f"POCDIR_WITNESS_POLICY_FILE: {e}") from None


MAX_REMEMBERED_PRINCIPALS = 10_000


class BoundedLock:
    """A lock that a thread waits for no longer than ``timeout`` seconds, then gives up with
    ``DatabaseTimeout`` (503). What it guards is database work, itself bounded; without this,
    requests queued behind a holder stuck in an outage would wait one bound each, in turn."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout, self.what = timeout, what
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self.timeout):
            raise DatabaseTimeout(
                f"{self.what} did not come free within {self.timeout:g} s (POCDIR_DB_POOL_TIMEOUT)"
            )

    def __exit__(self, *_: object) -> None:
        self._lock.release()


@dataclass(frozen=True)
class Readiness:
    """What ``/ready`` reports once the database has answered."""

    lag_events: int
    max_lag_events: int
    #: How old the oldest event not yet in the views is, in seconds (0 when none is).
    lag_seconds: float
    #: Whether this process's runner holds the lease, i.e. is the one writing the views.
    holds_runner_lease: bool
    #: Whether the views were built by this code's projectors (``ViewRunner.outdated``).
    views_current: bool = True
    #: Whether this process's runner is rebuilding them meanwhile.
    rebuilding: bool = False

    @property
    def ready(self) -> bool:
        """Views that lag too far, or that are being rebuilt (or wait to be, by the
        lease's holder) because other projectors wrote them, are not fit to serve."""
        fresh = self.views_current and not self.rebuilding
        return fresh and self.lag_events <= self.max_lag_events


@dataclass
class Services:
    """What a long-running process (the HTTP server) holds: the application over the record,
    the views that follow it, the runner that keeps them following it (``infra.follower``,
    writing only while this process holds the runner lease), and the idempotency keys.

    Requests never project: they read the views as they are, or wait for a position
    (``wait_for_position``)."""

    settings: Settings
    application: PocDirectory
    view: ViewRecorder
    runner: ViewRunner
    transparency: Transparency
    keys: IdempotencyKeys
    follower: ViewFollower
    #: The delivery worker's thread, if the server has a delivery key (issue 17).
    delivery: DeliveryThread | None = None
    #: Growing the Merkle tree is a write; one thread of this process at a time (the tree
    #: store serialises writers across processes in the database: ``infra.tree_store``).
    tree_lock: BoundedLock = field(init=False)

    def __post_init__(self) -> None:
        self.tree_lock = BoundedLock(self.settings.db_pool_timeout, "the Merkle tree")

    def queries(self) -> ViewQueries:
        """Queries over the views once they have reached the record's head as it is now:
        for a caller outside a request (a benchmark's set-up, a script), which has no
        position to send. The runner projects; this waits for it while it makes progress
        (``POCDIR_READ_WAIT_SECONDS`` without any is ``ViewsBehind``)."""
        head = self.application.recorder.max_notification_id() or 0
        self.wait_for_position(head, while_progressing=True)
        return ViewQueries(self.view)

    def views_position(self) -> int:
        """The record position the views have reached."""
        return self.view.max_tracking_id(VIEWS_NAME) or 0

    def wait_for_position(
        self, wanted: int, bound: float | None = None, *, while_progressing: bool = False
    ) -> int:
        """Wait until the views have reached record position ``wanted``, at most ``bound``
        seconds (``POCDIR_READ_WAIT_SECONDS``), then return their position; raise
        ``ViewsBehind`` past the bound, and ``ValidationError`` for a position the record
        does not have (it would never be reached). ``while_progressing``: the bound starts
        again whenever the views move on (a long catch-up that is not stuck)."""
        bound = self.settings.read_wait_seconds if bound is None else bound
        reached = self.views_position()
        if reached >= wanted:
            return reached
        head = self.application.recorder.max_notification_id() or 0
        if wanted > head:
            raise ValidationError(
                f"Pocdir-Min-Position {wanted} is past the record's last position {head}; "
                "send a position from a Pocdir-Position header"
            )
        deadline = time.monotonic() + bound
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ViewsBehind(wanted, reached, bound)
            self.follower.wake()
            self.follower.wait(min(remaining, POSITION_POLL_SECONDS))
            now = self.views_position()
            if now >= wanted:
                return now
            if while_progressing and now > reached:
                deadline = time.monotonic() + bound
            reached = now

    def readiness(self) -> Readiness:
        """Whether this server can serve: bounded reads of the record and of the views'
        position, never a write. The lag is the number of events recorded after the views'
        position, counted no further than one past the allowed lag, and the age of the
        oldest of them (from its timestamp: the same for every server, whichever projects);
        and whether the views are this code's or being rebuilt (one more read of one row)."""
        allowed = self.settings.ready_max_lag_events
        position = self.views_position()
        lag = chained_recorder(self.application).count_events_after(position, allowed + 1)
        seconds = 0.0
        if lag:
            oldest = self.application.recorder.select_notifications(
                position, 1, inclusive_of_start=False
            )
            if oldest:
                event: Any = self.application.facts_mapper.to_domain_event(oldest[0])
                stamp: datetime = event.timestamp
                seconds = max(0.0, (datetime.now(UTC) - stamp).total_seconds())
        follower = self.follower.state
        return Readiness(
            lag_events=lag,
            max_lag_events=allowed,
            lag_seconds=round(seconds, 3),
            holds_runner_lease=follower.holds_lease,
            views_current=not self.runner.outdated(),
            rebuilding=follower.rebuilding,
        )

    def authenticate(self, token: str) -> Principal:
        """The principal ``token`` stands for, read from the record itself on every request
        (one read of one aggregate). Nothing is remembered between requests and nothing
        depends on the views, so a revocation recorded by any process, however far this
        process's views have caught up, is refused on the next request."""
        return self.application.authenticate(token)

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        self.follower.stop()
        self.application.close()


def build_follower(
    application: PocDirectory, runner: ViewRunner, settings: Settings
) -> ViewFollower:
    """The runner thread of a server (not started): the record's lease, its head, the poll."""
    return ViewFollower(
        runner,
        build_lease(application.recorder, settings),
        lambda: application.recorder.max_notification_id() or 0,
        settings.runner_poll_seconds,
        step_errors=LEASE_ERRORS,
    )


def build_services(
    settings: Settings, *, clock: Clock | None = None, new_id: Callable[[], UUID] = uuid4
) -> Services:
    """Connects to the database, and starts the projection runner's thread: call it when
    serving starts, never at import time."""
    application = build_application(settings, clock=clock, new_id=new_id)
    try:
        view = build_views(application, settings)
        transparency = build_transparency(application, settings)
        runner = build_view_runner(application, view, settings)
        follower = build_follower(application, runner, settings)
        delivery = build_delivery_thread(application, settings)
    except BaseException:
        application.close()
        raise
    keys = build_idempotency_keys(application, settings)
    services = Services(
        settings, application, view, runner, transparency, keys, follower, delivery
    )
    follower.start()
    if delivery is not None:
        delivery.start()
    return services


def build_idempotency_keys(app: PocDirectory, settings: Settings) -> IdempotencyKeys:
    """The record's idempotency-key table; stored answers are encrypted with the record's
    cipher when ``POCDIR_CIPHER_KEY`` is set."""
    recorder: Any = app.recorder
    return IdempotencyKeys(
        recorder,
        record_cipher(settings),
        timedelta(hours=settings.idempotency_retention_hours),
        lease=settings.db_wait_bound,
    )


def delivery_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The delivery key of ``POCDIR_DELIVERY_KEY_FILE`` (None without it), read now, so that
    an unreadable file stops the process at start."""
    path = settings.delivery_key_file
    return None if path is None else SignerKey.load(path).private_key()


def build_mail_channel(settings: Settings) -> Channel:
    """SMTP when ``POCDIR_SMTP_HOST`` is set, else the file outbox ``POCDIR_OUTBOX_DIR``."""
    if settings.smtp_host is None:
        return FileOutbox(settings.outbox_dir, settings.sender)
    password = None
    if settings.smtp_password_file is not None:
        try:
            password = settings.smtp_password_file.read_text().strip()
        except OSError as e:
            raise SettingsError(
                f"POCDIR_SMTP_PASSWORD_FILE: cannot read {settings.smtp_password_file}: "
                f"{e.strerror}"
            ) from None
    return SmtpChannel(
        settings.smtp_host,
        settings.smtp_port,
        settings.sender,
        starttls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=password,
        ca_file=settings.smtp_ca_file,
    )


def build_delivery_worker(
    app: PocDirectory, settings: Settings, key: Ed25519PrivateKey
) -> DeliveryWorker:
    """The delivery worker over ``app``'s record, with its queue in the same database."""
    store = build_delivery_store(app.recorder, settings.backend)
    webhook = WebhookChannel(
        key,
        delivery_key_id(key.public_key()),
        allow_private=settings.webhook_allow_private,
    )
    return DeliveryWorker(
        app,
        store,
        Channels(mail=build_mail_channel(settings), webhook=webhook),
        DeliveryConfig(
            domain=settings.sender.rpartition("@")[2],
            retry_seconds=settings.delivery_retry_seconds,
            max_attempts=settings.delivery_max_attempts,
            fault=settings.delivery_fault,
        ),
        challenge_secret(key.private_bytes_raw()),
    )


def build_delivery_thread(app: PocDirectory, settings: Settings) -> DeliveryThread | None:
    """The server's delivery thread (not started), if it has a delivery key; it sends only
    once delivery is enabled for the record, and while this process holds the lease."""
    key = delivery_key(settings)
    if key is None:
        return None
    return DeliveryThread(
        build_delivery_worker(app, settings, key),
        build_lease(app.recorder, settings, DELIVERY_LEASE),
        settings.delivery_poll_seconds,
        step_errors=LEASE_ERRORS,
    )
