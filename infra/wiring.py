"""The composition root: everything is built here from ``Settings``, and nothing connects at
import time. Tests call ``build_application`` with their own settings, clock and ids."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from domain.application import PocDirectory
from domain.clock import Clock
from domain.credential import token_hash
from domain.values import Principal
from infra.keycheck import check_record_key, record_cipher
from infra.settings import Settings
from infra.transparency import Transparency, load_signer
from infra.tree_store import build_tree_store
from projections.queries import DirectoryQueries
from projections.runner import DIRECTORY_VIEW, ViewRunner
from projections.store import (
    MAIN_TABLES,
    PostgresViewRecorder,
    SQLiteViewRecorder,
    ViewRecorder,
    ViewTables,
)

SQLITE_FACTORY = "infra.store:ChainedSQLiteFactory"
POSTGRES_FACTORY = "infra.store:ChainedPostgresFactory"
CIPHER = "eventsourcing.cryptography:AESCipher"


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """Translate pocdir settings into the library's configuration keys."""
    env: dict[str, str] = {}
    if settings.backend == "sqlite":
        env.update(PERSISTENCE_MODULE=SQLITE_FACTORY, SQLITE_DBNAME=settings.sqlite_path)
        env["SQLITE_LOCK_TIMEOUT"] = "30"
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
            POSTGRES_CONNECT_TIMEOUT="5",
            POSTGRES_PRE_PING="y",
            POSTGRES_LOCK_TIMEOUT="30",
        )
    if settings.cipher_key:
        env.update(CIPHER_TOPIC=CIPHER, CIPHER_KEY=settings.cipher_key)
    return env


def build_directory_view(
    app: PocDirectory, settings: Settings, tables: ViewTables = MAIN_TABLES
) -> ViewRecorder:
    """The directory view's recorder, in the same database as the record. A view in an
    earlier layout is emptied here, so that the runner rebuilds it from the record.
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
        view.reset_if_outdated(DIRECTORY_VIEW)
    return view


#: The application whose connections ``open_directory_view``'s view uses. An application
#: closes them when it is collected, so it is kept for as long as that view is in use.
_view_owner: PocDirectory | None = None


def open_directory_view(settings: Settings, tables: ViewTables = MAIN_TABLES) -> ViewRecorder:
    """The directory view alone (or a rebuild's copy of it, ``tables``), with connections of
    its own: what a rebuild's writer process opens (``projections.writer``), once per
    process."""
    global _view_owner
    if _view_owner is not None:
        _view_owner.close()
    _view_owner = build_application(settings)
    return build_directory_view(_view_owner, settings, tables)


def build_view_runner(app: PocDirectory, view: ViewRecorder, settings: Settings) -> ViewRunner:
    """The runner of ``view``, whose rebuilds write from a process of their own."""
    return ViewRunner(app, view, open_writer_view=partial(open_directory_view, settings))


def build_application(
    settings: Settings,
    *,
    clock: Clock | None = None,
    new_id: Callable[[], UUID] = uuid4,
    needs_key: bool = True,
) -> PocDirectory:
    """The application service over the chained store that ``settings`` names, once its
    cipher key is known to be the record's (``infra.keycheck``): a key that is not, or a key
    on a plaintext record, raises ``CipherKeyMismatch``, and so does no key on an encrypted
    record unless ``needs_key`` is False (for what reads the stored bytes only and decodes
    no event: verification, audit export, proofs, checkpoints)."""
    app = PocDirectory(eventsourcing_env(settings), clock=clock, new_id=new_id)
    try:
        check_record_key(app.recorder, settings, needs_key=needs_key)
    except BaseException:
        app.close()
        raise
    return app


def build_transparency(app: PocDirectory, settings: Settings) -> Transparency:
    """Checkpoints and proofs over ``app``'s record, in the same database. Creates the tree
    tables if needed; reads the signing key only when a checkpoint is signed."""
    return Transparency(
        build_tree_store(app.recorder), settings.origin, load_signer(settings.signing_key_file)
    )


MAX_REMEMBERED_PRINCIPALS = 10_000


@dataclass
class Services:
    """What a long-running process (the HTTP server) holds: the application over the record
    and the views that follow it. Reads first bring the views up to date under a lock, so a
    caller always reads its own writes, and two threads never project the same events."""

    settings: Settings
    application: PocDirectory
    view: ViewRecorder
    runner: ViewRunner
    transparency: Transparency
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Growing the Merkle tree is a write; one thread at a time.
    tree_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Authenticated principals by token hash, valid while the record has not grown.
    principals: dict[str, Principal] = field(default_factory=dict)

    def queries(self) -> DirectoryQueries:
        """Queries over the views, caught up with every event recorded so far."""
        self.catch_up()
        return DirectoryQueries(self.view)

    def catch_up(self) -> int:
        """Project every new event into the views; return how many there were."""
        with self.lock:
            try:
                return self.runner.catch_up(from_last=True)
            except IntegrityError:
                # Another process (the CLI) moved the view on; go on from where it is.
                return self.runner.catch_up()

    def authenticate(self, token: str) -> Principal:
        """Bring the views up to date, then authenticate ``token``.

        Authenticated tokens are remembered until the record grows: any new event (and so any
        revocation, whichever process recorded it) empties the memory first, so a revoked
        token is refused on the next request, as when reading the record every time.
        """
        if self.catch_up():
            self.principals.clear()
        key = token_hash(token)
        principal = self.principals.get(key)
        if principal is None:
            principal = self.application.authenticate(token)
            if len(self.principals) >= MAX_REMEMBERED_PRINCIPALS:
                self.principals.clear()
            self.principals[key] = principal
        return principal

    def close(self) -> None:
        self.application.close()


def build_services(
    settings: Settings, *, clock: Clock | None = None, new_id: Callable[[], UUID] = uuid4
) -> Services:
    """Connects to the database: call it when serving starts, never at import time."""
    application = build_application(settings, clock=clock, new_id=new_id)
    try:
        view = build_directory_view(application, settings)
        transparency = build_transparency(application, settings)
    except BaseException:
        application.close()
        raise
    runner = build_view_runner(application, view, settings)
    return Services(settings, application, view, runner, transparency)
