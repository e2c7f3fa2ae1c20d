"""The hash-chained event store on SQLite and PostgreSQL.

Each backend's application recorder is the library's, extended so that every transaction
that inserts events also inserts their links into the ``event_chain`` table, computed from the
last stored link. The guarantees:

* Atomic: events and links are written in one database transaction; if computing or writing a
  link fails, nothing is committed (the library's PostgreSQL recorder would commit in that case,
  so ``insert_events`` is overridden there).
* One order: the write lock that serialises inserts (SQLite's database lock, PostgreSQL's
  ``LOCK TABLE … IN EXCLUSIVE MODE`` from the library's ``_lock_table``) is held while the head
  is read and the links are written, so concurrent writers leave one linear chain, and commit
  order equals position order, so no reader sees a link before its predecessor.
* Gaps: PostgreSQL's sequence skips positions after rollbacks; each link names the previous
  *stored* position rather than ``position - 1``.
* Waiting, not failing, for another process's writes: on SQLite every write transaction
  takes the write lock at ``BEGIN IMMEDIATE`` (``WriteLockingSQLiteDatastore``), so a start-up's
  table creation or any later write waits for another process's writer (the busy timeout)
  instead of failing at once with "database is locked".

Every database wait is bounded (``POCDIR_DB_*`` settings, mapped in ``infra.wiring``): on
PostgreSQL the pool's checkout, the connect, the server's ``statement_timeout`` and
``lock_timeout``, and, for a server that does not answer at all, the client's own wait on the
socket (``BoundedConnection``). A wait that runs out raises ``DatabaseTimeout``, which the
library's retry loops (ten tries on most reads and writes) do not catch, so a request in an
outage is answered once its first wait runs out instead of after ten of them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import psycopg.errors
import psycopg_pool
from eventsourcing.persistence import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteTransaction,
)
from eventsourcing.utils import retry
from psycopg import Connection, Cursor
from psycopg.abc import PQGen
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from domain.errors import EventTooLarge
from infra.chain import (
    GENESIS_LINK,
    GENESIS_POSITION,
    ChainBroken,
    IdSpelling,
    LinkRow,
    MalformedValue,
    StoredRow,
    compute_links,
    record_size,
)
from infra.idempotency import (
    IDEMPOTENCY_TABLE,
    KeyStatements,
    create_table_statements,
    record_in_transaction,
)
from infra.keycheck import ACTIVE, KEY_TABLE, KeyCheck
from infra.settings import DEFAULT_DB_STATEMENT_TIMEOUT, UNANSWERED_GRACE_SECONDS
from infra.statement_store import (
    FIRST_BINDING_SQL,
    STATEMENT_COLUMNS,
    STATEMENTS_TABLE,
    StatementRow,
    create_statements_table,
    insert_statement,
    row_from,
)
from infra.tiles import MAX_ENTRY_BYTES

CHAIN_TABLE = "event_chain"


READ_BATCH = 5000
#: PostgreSQL advisory lock that serialises schema creation across processes.
DDL_LOCK_KEY = 0x706F63646972  # "pocdir"


#: Reads start here, not at 1, so rows forged at zero or negative positions are seen too.
FIRST_POSITION = -(2**63)

EventRow = tuple[int, Any, Any, Any, Any]  # position, originator_id, version, topic, state
#: An event joined with its link: EventRow + (prev_position, leaf_hash, link), None if absent.
LinkedRow = tuple[int, Any, Any, Any, Any, Any, Any, Any]


class DatabaseTimeout(PersistenceError):
    """A database wait ran out its bound: no pooled connection came free, a lock was not
    granted, or a statement did not finish, within the ``POCDIR_DB_*`` settings.

    Deliberately not an ``OperationalError``: the library retries those up to ten times,
    which multiplied every bound by ten. The message names the wait, never a value."""


class ChainedRecorder(Protocol):
    """What verification, audit export and benchmarks need from either backend."""

    #: The text spelling of originator ids in the rows this recorder reads for verification.
    id_spelling: IdSpelling

    def chain_head(self) -> tuple[int, bytes]: ...

    def chain_head_and_size(self) -> tuple[int, bytes, int]: ...
    def count_events_after(self, position: int, limit: int) -> int: ...

    def iter_stored_rows(self, batch: int = READ_BATCH) -> Generator[StoredRow, None, None]: ...

    def walk_linked(
        self, visit: Callable[[Sequence[LinkedRow]], None], batch: int = READ_BATCH
    ) -> int: ...

    def linked_page(self, start: int, limit: int) -> list[LinkedRow]: ...

    def record_absence(self) -> str | None: ...

    def has_rows(self) -> bool: ...

    def statement_rows(
        self, start: int = FIRST_POSITION, limit: int = -1
    ) -> list[StatementRow]: ...

    def first_key_binding(self) -> int | None: ...


def paged(fetch: Callable[[int], Sequence[Any]], batch: int) -> Iterator[Any]:
    """Keyset pagination: ``fetch(start)`` returns up to ``batch`` rows whose first column is
    the position, from ``start`` on, in order."""
    start = FIRST_POSITION
    while True:
        rows = fetch(start)
        yield from rows
        if len(rows) < batch:
            return
        start = rows[-1][0] + 1


def merge_stored_rows(events: Iterator[EventRow], links: Iterator[LinkRow]) -> Iterator[StoredRow]:
    """Every position of the record in order, merging the event table with the chain table,
    so a row missing on either side is reported at its own position."""
    ev, ln = next(events, None), next(links, None)
    while ev is not None or ln is not None:
        if ev is not None and (ln is None or ev[0] < ln.position):
            yield StoredRow(*ev, None, None, None)
            ev = next(events, None)
        elif ln is not None and (ev is None or ln.position < ev[0]):
            yield StoredRow(ln.position, None, None, None, None, *_link_columns(ln))
            ln = next(links, None)
        elif ev is not None and ln is not None:
            yield StoredRow(*ev, *_link_columns(ln))
            ev, ln = next(events, None), next(links, None)


def _link_columns(ln: LinkRow) -> tuple[Any, Any, Any]:
    return ln.prev_position, ln.leaf_hash, ln.link


def _as_bytes(value: Any) -> Any:
    """bytea may come back as memoryview; anything else (a tampered type) is left as is, for
    the verifier to reject."""
    return bytes(value) if isinstance(value, memoryview) else value


class HeadCache:
    """The last link this process committed, to skip reading the head on the next write.

    It is used only when the new events' first position is exactly the cached position + 1:
    positions come from the table's rowid (max + 1) or sequence, so that proves no event was
    stored after the cached one, whose link was committed. Any other case reads the head from
    the table as before. It is set only after a commit and cleared on any failure.
    """

    def __init__(self) -> None:
        self._head: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    def predecessor_of(self, first_position: int) -> tuple[int, bytes] | None:
        head = self._head
        return head if head is not None and first_position == head[0] + 1 else None

    def committed(self, head: tuple[int, bytes]) -> None:
        with self._lock:
            if self._head is None or head[0] > self._head[0]:
                self._head = head

    def forget(self) -> None:
        with self._lock:
            self._head = None


def check_entry_sizes(stored_events: Sequence[StoredEvent]) -> None:
    """Refuse an event whose record, as stored (encrypted and with its metadata), would not
    fit one tlog-tiles entry (``MAX_ENTRY_BYTES``): every record is served as one in the
    entry bundles (``infra.tile_reader``), whose length prefix is a uint16."""
    for event in stored_events:
        size = record_size(event.topic, event.state)
        if size > MAX_ENTRY_BYTES:
            raise EventTooLarge(
                f"this request would record an event of {size:,} bytes as stored (encrypted, "
                f"with its metadata), over the limit of {MAX_ENTRY_BYTES:,} bytes of one "
                "record entry; shorten the texts or send fewer indicators, contacts or "
                "channels in one request"
            )


def link_rows(
    head: tuple[int, bytes], stored_events: Sequence[StoredEvent], positions: Sequence[int]
) -> list[tuple[int, int, bytes, bytes]]:
    """Parameters of the link inserts for new events following ``head``. Called in the
    events' own transaction, so an event refused here (``EventTooLarge``) rolls back all."""
    check_entry_sizes(stored_events)
    rows = compute_links(
        head[0],
        head[1],
        (
            (p, e.originator_id, e.originator_version, e.topic, e.state)
            for p, e in zip(positions, stored_events, strict=True)
        ),
    )
    return [(r.position, r.prev_position, r.leaf_hash, r.link) for r in rows]


#: ``record_keys`` (``infra.keycheck``): which key encrypts the record. Not part of the chain.
KEY_COLUMNS = (
    "key_check_value {0} PRIMARY KEY, algorithm {0} NOT NULL, check_method {0} NOT NULL, "
    "added_at {0} NOT NULL, status {0} NOT NULL"
)


class KeyConfirmation:
    """The key check of the process's key (set by ``infra.keycheck.check_record_key``),
    confirmed in the transaction of the recorder's first write: the record's active key is
    recorded there if the record has none yet, then compared under the write lock, so two
    processes starting on an empty record with different keys cannot both write."""

    def __init__(self) -> None:
        self.key_check: KeyCheck | None = None
        self.confirmed = False

    def statements(self, table: str, placeholder: str) -> tuple[str, str]:
        values = ", ".join([placeholder] * 5)
        return (
            f"INSERT INTO {table} SELECT {values} WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} WHERE status = '{ACTIVE}')",
            f"SELECT key_check_value, algorithm FROM {table} WHERE status = '{ACTIVE}'",
        )

    def confirm(self, execute: Callable[[str, Sequence[Any]], Any], table: str, ph: str) -> bool:
        """Record and compare the key in the caller's transaction; True if it did so (then
        ``confirmed`` is to be set once that transaction has committed)."""
        ours = self.key_check
        if ours is None or self.confirmed:
            return False
        insert, select = self.statements(table, ph)
        execute(insert, ours.row(datetime.now(UTC).isoformat()))
        rows = execute(select, ())
        active = {KeyCheck(r[0], r[1]) for r in rows}
        if active != {ours}:
            raise ours.refuse(next(iter(active - {ours})))
        return True


def _link_exists(position: int, cause: Exception) -> ChainBroken:
    return ChainBroken(
        position,
        f"a link is already stored at position {position}: the chain table is ahead of the "
        "events; the store needs an audit",
        expected="no link",
        computed=str(cause).splitlines()[0] if str(cause) else "a link",
    )


# -- SQLite ------------------------------------------------------------------------------------

#: The tables a pocdir record has on SQLite (``docs/audit-format.md`` §1 and §4).
SQLITE_RECORD_TABLES = ("stored_events", CHAIN_TABLE)


def _is_memory(path: str) -> bool:
    return path == ":memory:" or "mode=memory" in path


def _sqlite_file(path: str) -> str:
    """The file that ``path`` (a file name or a ``file:`` URI) names."""
    return urlsplit(path).path if path.startswith("file:") else path


def read_only_sqlite_uri(path: str) -> str:
    """A URI that opens ``path`` read-only: SQLite then never creates the file or writes it."""
    if path.startswith("file:"):
        return f"{path}{'&' if '?' in path else '?'}mode=ro"
    return f"file:{quote(path)}?mode=ro"


def sqlite_record_absence(path: str) -> str | None:
    """Why there is no pocdir record at ``path``, or None if there is one, found without
    creating anything (the file is opened read-only, and only if it exists).

    Raises the library's ``OperationalError`` if the file exists but cannot be read as a
    database (a directory, a file that is not a database, no permission)."""
    if _is_memory(path):
        return "an in-memory database holds no record"
    file = _sqlite_file(path)
    if not os.path.lexists(file):
        return "the file does not exist"
    try:
        with closing(sqlite3.connect(read_only_sqlite_uri(path), uri=True)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error as e:
        raise OperationalError(f"cannot read {file} as an SQLite database: {e}") from e
    names = {name for (name,) in rows}
    for table in SQLITE_RECORD_TABLES:
        if table not in names:
            return f"the database has no pocdir record (no table {table})"
    return None


def _stored_text(data: bytes) -> str | MalformedValue:
    """SQLite text as stored: SQLite does not check that text is UTF-8, and Python's default
    decoding raises for the whole read (reported as an unreachable database). A value that
    does not decode is kept for the verifier to report at its position."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return MalformedValue("text", data)


@contextmanager
def text_as_stored(c: SQLiteCursor) -> Iterator[None]:
    """Within a read of the record for verification, decode text with ``_stored_text``."""
    conn = c.sqlite_cursor.connection
    previous = conn.text_factory
    conn.text_factory = _stored_text
    try:
        yield
    finally:
        conn.text_factory = previous


def _fetch_all(c: SQLiteCursor, sql: str, params: Sequence[Any]) -> list[Any]:
    c.execute(sql, params)
    return list(c.fetchall())


class KeyCheckedRecorder:
    """What both backends' recorders share of the key check: ``key_check`` is set by
    ``infra.keycheck.check_record_key`` and confirmed on the recorder's first write."""

    keys: KeyConfirmation

    @property
    def key_check(self) -> KeyCheck | None:
        return self.keys.key_check

    @key_check.setter
    def key_check(self, value: KeyCheck | None) -> None:
        self.keys.key_check, self.keys.confirmed = value, False


class ChainedSQLiteApplicationRecorder(KeyCheckedRecorder, SQLiteApplicationRecorder):
    """SQLite recorder that links every event in the transaction that inserts it."""

    #: Ids are read as stored, in the ``TEXT`` column, where pocdir writes ``UUID.hex``.
    id_spelling = IdSpelling.HEX

    def __init__(
        self,
        datastore: SQLiteDatastore,
        events_table_name: str = "stored_events",
        chain_table_name: str = CHAIN_TABLE,
    ) -> None:
        self.chain_table_name = chain_table_name
        self.head_cache = HeadCache()
        self.idempotency_statements = KeyStatements(IDEMPOTENCY_TABLE, "?")
        self.keys = KeyConfirmation()
        self._first_binding: int | None = None
        super().__init__(datastore, events_table_name)
        self.select_head_statement = (
            f"SELECT position, link FROM {chain_table_name} ORDER BY position DESC LIMIT 1"
        )
        self.insert_link_statement = f"INSERT INTO {chain_table_name} VALUES (?,?,?,?)"
        self.select_links_page = (
            f"SELECT position, prev_position, leaf_hash, link FROM {chain_table_name} "
            "WHERE position >= ? ORDER BY position LIMIT ?"
        )
        self.select_events_page = (
            f"SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {events_table_name} WHERE rowid >= ? ORDER BY rowid LIMIT ?"
        )
        self.select_linked_page = (
            "SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, "
            "c.prev_position, c.leaf_hash, c.link "
            f"FROM {events_table_name} e LEFT JOIN {chain_table_name} c ON c.position = e.rowid "
            "WHERE e.rowid >= ? ORDER BY e.rowid LIMIT ?"
        )
        self.count_links_statement = f"SELECT COUNT(*) FROM {chain_table_name}"
        self.select_head_and_size_statement = (
            f"SELECT c.position, c.link, (SELECT COUNT(*) FROM {events_table_name} "
            f"WHERE rowid <= c.position) FROM {chain_table_name} c "
            "ORDER BY c.position DESC LIMIT 1"
        )
        self.has_rows_statement = (
            f"SELECT EXISTS (SELECT 1 FROM {events_table_name}) "
            f"OR EXISTS (SELECT 1 FROM {chain_table_name})"
        )
        self.count_events_after_statement = (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {events_table_name} WHERE rowid > ? LIMIT ?)"
        )

    def count_events_after(self, position: int, limit: int) -> int:
        """How many events are stored after ``position``, counting no further than ``limit``
        (so the answer costs at most ``limit`` index entries, however far behind)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.count_events_after_statement, (position, limit))
            return int(c.fetchone()[0])

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.chain_table_name} ("
            "position INTEGER PRIMARY KEY, "
            "prev_position INTEGER NOT NULL, "
            "leaf_hash BLOB NOT NULL, "
            "link BLOB NOT NULL)"
        )
        statements += create_table_statements(IDEMPOTENCY_TABLE, "BLOB", "REAL")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} ({KEY_COLUMNS.format('TEXT')}) WITHOUT ROWID"
        )
        statements.append(create_statements_table(STATEMENTS_TABLE, "BLOB"))
        return statements

    def idempotency_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction for the idempotency-key table (``infra.idempotency``)."""
        return self.datastore.transaction(commit=True)

    def _table_exists(self, c: SQLiteCursor, table: str) -> bool:
        c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return c.fetchone() is not None

    def first_key_binding(self) -> int | None:
        """The position of the record's first key binding, if any (kept once found: it
        never changes)."""
        if self._first_binding is None:
            with self.datastore.transaction(commit=False) as c:
                if not self._table_exists(c, STATEMENTS_TABLE):
                    return None
                c.execute(FIRST_BINDING_SQL.format(table=STATEMENTS_TABLE))
                row = c.fetchone()
            self._first_binding = None if row is None or row[0] is None else int(row[0])
        return self._first_binding

    def statement_rows(self, start: int = FIRST_POSITION, limit: int = -1) -> list[StatementRow]:
        """The stored statements from position ``start`` on, in position order, at most
        ``limit`` (all with -1; none in a record from before them)."""
        with self.datastore.transaction(commit=False) as c:
            if not self._table_exists(c, STATEMENTS_TABLE):
                return []
            c.execute(
                f"SELECT {STATEMENT_COLUMNS} FROM {STATEMENTS_TABLE} "
                "WHERE first_position >= ? ORDER BY first_position LIMIT ?",
                (start, limit),
            )
            return [row_from(tuple(r)) for r in c.fetchall()]

    def active_key(self) -> KeyCheck | None:
        """The record's active key check, or None (no row, or no table: nothing created)."""
        with self.datastore.transaction(commit=False) as c:
            if not self._table_exists(c, KEY_TABLE):
                return None
            c.execute(
                f"SELECT key_check_value, algorithm FROM {KEY_TABLE} WHERE status = ?", (ACTIVE,)
            )
            row = c.fetchone()
        return KeyCheck(row[0], row[1]) if row else None

    def first_event_state(self) -> bytes | None:
        """The stored state of the record's first event, or None if it has none."""
        with self.datastore.transaction(commit=False) as c:
            if not self._table_exists(c, self.events_table_name):
                return None
            c.execute(f"SELECT state FROM {self.events_table_name} ORDER BY rowid LIMIT 1")
            row = c.fetchone()
        return bytes(row[0]) if row and isinstance(row[0], bytes | memoryview) else None

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert events and their links in one transaction; nothing is committed if linking
        fails. Inserting first takes SQLite's write lock, so the head read next is the last
        committed one and no other writer can interleave until this transaction ends."""
        try:
            with self.datastore.transaction(commit=True) as c:
                positions = self._insert_events(c, stored_events, **kwargs)
                links = self._insert_links(c, stored_events, positions) if positions else None
                head = (links[-1][0], links[-1][3]) if links else None
                key = kwargs.get("idempotency")
                if key is not None and positions:
                    record_in_transaction(c, self.idempotency_statements, key, positions[0])
                write = kwargs.get("signed_write")
                if write is not None and links:
                    insert_statement(c, STATEMENTS_TABLE, "?", write, links)
                confirmed = bool(positions) and self.keys.confirm(
                    partial(_fetch_all, c), KEY_TABLE, "?"
                )
        except BaseException:
            self.head_cache.forget()
            raise
        if head is not None:
            self.head_cache.committed(head)
        if confirmed:
            self.keys.confirmed = True
        return positions

    def _insert_links(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], positions: Sequence[int]
    ) -> list[tuple[int, int, bytes, bytes]]:
        head = self.head_cache.predecessor_of(positions[0])
        if head is None:
            c.execute(self.select_head_statement)
            row = c.fetchone()
            head = (row[0], bytes(row[1])) if row else (GENESIS_POSITION, GENESIS_LINK)
        rows = link_rows(head, stored_events, positions)
        try:
            c.executemany(self.insert_link_statement, rows)
        except sqlite3.IntegrityError as e:
            raise _link_exists(positions[0], e) from e
        return rows

    def chain_head(self) -> tuple[int, bytes]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_head_statement)
            head = c.fetchone()
        return (head[0], bytes(head[1])) if head else (GENESIS_POSITION, GENESIS_LINK)

    def chain_head_and_size(self) -> tuple[int, bytes, int]:
        """The chain head and the number of events up to it, from one statement (one
        snapshot). Positions are not a count: they may have gaps."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_head_and_size_statement)
            row = c.fetchone()
        if row is None:
            return GENESIS_POSITION, GENESIS_LINK, 0
        return int(row[0]), bytes(row[1]), int(row[2])

    def walk_linked(
        self, visit: Callable[[Sequence[LinkedRow]], None], batch: int = READ_BATCH
    ) -> int:
        """Pass every event joined with its link, page by page in position order, to
        ``visit``, from one read transaction; return the number of links in that snapshot
        (more links than events means a link without its event)."""
        with self.datastore.transaction(commit=False) as c, text_as_stored(c):

            def page(start: int) -> Sequence[Any]:
                c.execute(self.select_linked_page, (start, batch))
                rows = c.fetchall()
                visit(rows)
                return rows

            for _ in paged(page, batch):
                pass
            c.execute(self.count_links_statement)
            return int(c.fetchone()[0])

    def linked_page(self, start: int, limit: int) -> list[LinkedRow]:
        """Up to ``limit`` events from position ``start`` on, each joined with its link (a
        page of the record as stored, for auditors reading it over HTTP)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_linked_page, (start, limit))
            return [tuple(r) for r in c.fetchall()]  # type: ignore[misc]

    def has_rows(self) -> bool:
        """Whether any event or link row is stored, at any position."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.has_rows_statement)
            return bool(c.fetchone()[0])

    def record_absence(self) -> str | None:
        """Why this database holds no pocdir record, or None (see ``sqlite_record_absence``,
        which a read-only command calls before it opens the record at all)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            names = {row[0] for row in c.fetchall()}
        for table in (self.events_table_name, self.chain_table_name):
            if table not in names:
                return f"the database has no pocdir record (no table {table})"
        return None

    def iter_stored_rows(self, batch: int = READ_BATCH) -> Generator[StoredRow, None, None]:
        """The whole record, from one read transaction (one WAL snapshot), so events
        committed meanwhile are neither half-seen nor reported as faults. Originator ids are
        yielded as stored (hex text), so any other spelling is caught, and text that is not
        UTF-8 as a ``MalformedValue``."""
        with self.datastore.transaction(commit=False) as c, text_as_stored(c):

            def fetch(statement: str) -> Callable[[int], Sequence[Any]]:
                def page(start: int) -> Sequence[Any]:
                    c.execute(statement, (start, batch))
                    return c.fetchall()

                return page

            yield from merge_stored_rows(
                (tuple(r) for r in paged(fetch(self.select_events_page), batch)),
                (LinkRow(*r) for r in paged(fetch(self.select_links_page), batch)),
            )


class CheckedSQLiteConnectionPool(SQLiteConnectionPool):
    """The library's pool, except that a file that cannot be read as a database (not a
    database at all, say) raises the library's ``OperationalError`` like any other database
    error: the library lets the ``sqlite3`` error of its first statement escape."""

    def _create_connection(self) -> SQLiteConnection:
        try:
            return super()._create_connection()
        except sqlite3.Error as e:
            raise OperationalError(f"cannot read {self.db_name} as an SQLite database: {e}") from e


#: How a write transaction begins on SQLite: with the write lock, waiting for it.
BEGIN_WRITE = "BEGIN IMMEDIATE"
#: How a read transaction begins: a snapshot at its first read, no lock on writers.
BEGIN_READ = "BEGIN"


class WriteLockingSQLiteTransaction(SQLiteTransaction):
    """The library's transaction, except that a write transaction takes SQLite's write lock
    at ``BEGIN IMMEDIATE``.

    Why: the library begins every transaction with a plain (deferred) ``BEGIN``, so a write
    transaction that reads before it writes (``CREATE TABLE IF NOT EXISTS`` of a table that
    exists reads the schema; so do ``INSERT OR IGNORE`` and any SELECT) holds a read snapshot
    when it first writes. If another process has committed since, SQLite cannot upgrade that
    snapshot to the write lock, and answers "database is locked" at once (``SQLITE_BUSY``,
    without calling the busy handler, so the busy timeout never applies). Every start-up's
    table creation is such a transaction, and it failed whenever a running server's runner
    wrote at the same moment. Taken at ``BEGIN``, the lock is waited for (for the busy
    timeout, ``SQLITE_LOCK_TIMEOUT``) like any other, and the transaction's reads see the
    latest commit. Reads keep a deferred ``BEGIN``: in WAL mode they never wait for writers.
    """

    def __init__(
        self, connection: SQLiteConnection, *, commit: bool = False, read_only: bool = False
    ) -> None:
        super().__init__(connection, commit=commit)
        self.begin = BEGIN_WRITE if commit and not read_only else BEGIN_READ

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.begin)
        except sqlite3.Error as e:
            # Raised as the library raises errors from within a transaction, so callers
            # (retries, the lease's holder, the HTTP error handlers) see one kind of error.
            cursor.sqlite_cursor.close()
            if isinstance(e, sqlite3.OperationalError):
                raise OperationalError(e) from e
            if isinstance(e, sqlite3.DatabaseError):
                raise DatabaseError(e) from e
            raise PersistenceError(e) from e
        return cursor


class WriteLockingSQLiteDatastore(SQLiteDatastore):
    """The library's datastore, whose write transactions (``commit=True``) begin with
    ``BEGIN IMMEDIATE`` (``WriteLockingSQLiteTransaction``). Every pocdir SQLite store (the
    record, the views, the Merkle tree, the lease, the idempotency keys, the statements, and
    the library's own table creation) writes through ``transaction``, so this is the one
    place where SQLite's transactions begin. A read-only record (``mode=ro``) takes no
    write lock."""

    def __init__(self, db_name: str, **kwargs: Any) -> None:
        super().__init__(db_name, **kwargs)
        query = urlsplit(db_name).query if db_name.startswith("file:") else ""
        self.read_only = "ro" in parse_qs(query).get("mode", [])

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        transaction = partial(WriteLockingSQLiteTransaction, read_only=self.read_only)
        with (
            self.get_connection(commit=commit) as conn,
            transaction(conn, commit=commit) as curs,
            curs,
        ):
            yield curs


class ChainedSQLiteFactory(SQLiteFactory):
    """The library's factory, with its in-process writer lock waited for no longer than
    ``POOL_TIMEOUT`` (its busy timeout, ``SQLITE_LOCK_TIMEOUT``, bounds the wait for another
    process's write lock, which every write transaction takes at its start:
    ``WriteLockingSQLiteDatastore``)."""

    application_recorder_class = ChainedSQLiteApplicationRecorder
    #: Environment key for the seconds a writer waits for this process's other writer.
    POOL_TIMEOUT = "SQLITE_POOL_TIMEOUT"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        library = self.datastore
        pool = library.pool
        pool_timeout = self.env.get(self.POOL_TIMEOUT)
        self.datastore = WriteLockingSQLiteDatastore(
            pool.db_name,
            lock_timeout=pool.lock_timeout,
            single_row_tracking=library.single_row_tracking,
            originator_id_type=library.originator_id_type,
        )
        self.datastore.pool.close()  # unused: replaced by the checked pool below
        self.datastore.pool = CheckedSQLiteConnectionPool(
            db_name=pool.db_name,
            lock_timeout=pool.lock_timeout,
            pool_size=pool.pool_size,
            max_overflow=pool.max_overflow,
            pool_timeout=float(pool_timeout) if pool_timeout else pool.pool_timeout,
            max_age=pool.max_age,
            pre_ping=pool.pre_ping,
        )
        pool.close()  # unused: it has opened no connection yet


# -- PostgreSQL --------------------------------------------------------------------------------


class ChainedPostgresApplicationRecorder(KeyCheckedRecorder, PostgresApplicationRecorder):
    """PostgreSQL recorder that links every event in the transaction that inserts it."""

    #: Ids are ``uuid`` values, read as such or as ``::text`` (the canonical form).
    id_spelling = IdSpelling.CANONICAL

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        chain_table_name: str = CHAIN_TABLE,
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.check_identifier_length(chain_table_name)
        self.chain_table_name = chain_table_name
        self.head_cache = HeadCache()
        self.keys = KeyConfirmation()
        self._first_binding: int | None = None
        # The library's lock statements and NOTIFY, sent in one round trip (no parameters).
        self.lock_and_notify_statement = SQL("; ").join(
            [
                *self.lock_table_statements,
                SQL("NOTIFY {0}").format(Identifier(self.channel_name)),
            ]
        )
        table = Identifier(self.datastore.schema), Identifier(chain_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                "position bigint PRIMARY KEY, "
                "prev_position bigint NOT NULL, "
                "leaf_hash bytea NOT NULL, "
                "link bytea NOT NULL)"
            ).format(*table)
        )
        self.key_table = f'"{self.datastore.schema}"."{KEY_TABLE}"'
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {0}.{1} (" + KEY_COLUMNS.format("text") + ")").format(
                Identifier(self.datastore.schema), Identifier(KEY_TABLE)
            )
        )
        self.select_head_statement = SQL(
            "SELECT position, link FROM {0}.{1} ORDER BY position DESC LIMIT 1"
        ).format(*table)
        self.insert_link_statement = SQL("INSERT INTO {0}.{1} VALUES (%s, %s, %s, %s)").format(
            *table
        )
        self.select_links_page = SQL(
            "SELECT position, prev_position, leaf_hash, link FROM {0}.{1} "
            "WHERE position >= %s ORDER BY position LIMIT %s"
        ).format(*table)
        events = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        self.select_events_page = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {0}.{1} WHERE notification_id >= %s ORDER BY notification_id LIMIT %s"
        ).format(*events)
        # The page of events is chosen first, then joined with its links: written as one
        # join, PostgreSQL plans a merge join that reads the chain from position 1, so each
        # page cost more the further into the record it was (a mirror of 1M events: 4x).
        self.select_linked_page = SQL(
            "SELECT e.notification_id, e.originator_id::text, e.originator_version, e.topic, "
            "e.state, c.prev_position, c.leaf_hash, c.link "
            "FROM (SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {0}.{1} WHERE notification_id >= %s ORDER BY notification_id LIMIT %s) e "
            "LEFT JOIN {2}.{3} c ON c.position = e.notification_id "
            "ORDER BY e.notification_id"
        ).format(*events, *table)
        self.count_links_statement = SQL("SELECT COUNT(*) FROM {0}.{1}").format(*table)
        self.select_head_and_size_statement = SQL(
            "SELECT c.position, c.link, (SELECT COUNT(*) FROM {0}.{1} e "
            "WHERE e.notification_id <= c.position) FROM {2}.{3} c "
            "ORDER BY c.position DESC LIMIT 1"
        ).format(*events, *table)
        keys_table = f"{_quoted(self.datastore.schema)}.{_quoted(IDEMPOTENCY_TABLE)}"
        self.idempotency_statements = KeyStatements(keys_table)
        self.sql_create_statements += [
            Composed([SQL(ddl)])  # type: ignore[arg-type]  # from quoted identifiers only
            for ddl in create_table_statements(keys_table, "bytea", "double precision")
        ]
        self.has_rows_statement = SQL(
            "SELECT EXISTS (SELECT 1 FROM {0}.{1}) OR EXISTS (SELECT 1 FROM {2}.{3})"
        ).format(*events, *table)
        self.statements_table = f"{_quoted(self.datastore.schema)}.{_quoted(STATEMENTS_TABLE)}"
        self.sql_create_statements.append(
            Composed([SQL(create_statements_table(self.statements_table, "bytea"))])  # type: ignore[arg-type]  # quoted identifiers only
        )
        self.count_events_after_statement = SQL(
            "SELECT COUNT(*) AS n FROM "
            "(SELECT 1 FROM {0}.{1} WHERE notification_id > %s LIMIT %s) AS after"
        ).format(*events)

    def idempotency_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction for the idempotency-key table (``infra.idempotency``)."""
        return self.datastore.transaction(commit=True)

    def has_rows(self) -> bool:
        """Whether any event or link row is stored, at any position."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self.has_rows_statement)
            row = c.fetchone()
        return bool(row and row[0])

    def record_absence(self) -> str | None:
        """Why the schema holds no pocdir record, or None; reads the catalogue only, so a
        read-only command creates no schema and no table."""
        schema = self.datastore.schema
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if c.fetchone() is None:
                return f"the schema {schema} does not exist"
            for table in (self.events_table_name, self.chain_table_name):
                c.execute(
                    "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                    (schema, table),
                )
                if c.fetchone() is None:
                    return f"the schema {schema} has no pocdir record (no table {table})"
        return None

    def count_events_after(self, position: int, limit: int) -> int:
        """How many events are stored after ``position``, counting no further than ``limit``
        (PostgreSQL's positions have gaps, so this is not a difference of positions)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.count_events_after_statement, (position, limit), prepare=True)
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes starting at once would race on CREATE … IF NOT EXISTS and
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): take turns.
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        super()._create_table(curs)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert events and their links in one transaction.

        Overridden because the library's version catches exceptions inside its pipeline block
        and re-raises them after the transaction block has exited, which commits the events
        even when linking them failed. Here any exception propagates through the transaction
        block, which rolls back. The database-functions insert mode takes no table lock, so
        it is refused.
        """
        if self.datastore.enable_db_functions:
            raise ProgrammingError(
                "the database-functions insert mode takes no table lock; the chain needs one"
            )
        try:
            with (
                self.datastore.get_connection() as conn,
                conn.transaction(),
                conn.cursor() as curs,
            ):
                self._insert_events(curs, stored_events, **kwargs)
                if not stored_events:
                    return []
                # The library's EXCLUSIVE table lock (see its _lock_table) serialises writers
                # until commit, so commit order is position order.
                curs.execute(self.lock_and_notify_statement, prepare=False)
                PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events)
                positions = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
                if positions is None or len(positions) != len(stored_events):
                    raise ProgrammingError("did not get a position for every inserted event")
                links = self._insert_links(curs, stored_events, positions)
                head = links[-1][0], links[-1][3]
                key = kwargs.get("idempotency")
                if key is not None:
                    record_in_transaction(curs, self.idempotency_statements, key, positions[0])
                write = kwargs.get("signed_write")
                if write is not None:
                    insert_statement(curs, self.statements_table, "%s", write, links)
                confirmed = self.keys.confirm(self._fetch_in(curs), self.key_table, "%s")
        except BaseException:
            self.head_cache.forget()
            raise
        self.head_cache.committed(head)
        if confirmed:
            self.keys.confirmed = True
        return positions

    @staticmethod
    def _fetch_in(curs: Cursor[DictRow]) -> Callable[[str, Sequence[Any]], Any]:
        def execute(sql: str, params: Sequence[Any]) -> Any:
            curs.execute(sql.encode(), params, prepare=False)  # type: ignore[call-overload]
            return [tuple(r.values()) for r in curs.fetchall()] if curs.description else []

        return execute

    def _exists(self, curs: Cursor[DictRow], table: str) -> bool:
        curs.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) AS t",
            (self.datastore.schema, table),
        )
        row = curs.fetchone()
        return row is not None and row["t"] is not None

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def first_key_binding(self) -> int | None:
        """The position of the record's first key binding, if any (kept once found: it
        never changes)."""
        if self._first_binding is None:
            with self.datastore.transaction(commit=False) as curs:
                if not self._exists(curs, STATEMENTS_TABLE):
                    return None
                sql = FIRST_BINDING_SQL.format(table=self.statements_table).replace("%", "%%")
                curs.execute(sql.encode())  # type: ignore[call-overload]
                row = curs.fetchone()
            value = None if row is None else next(iter(row.values()))
            self._first_binding = None if value is None else int(value)
        return self._first_binding

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def statement_rows(self, start: int = FIRST_POSITION, limit: int = -1) -> list[StatementRow]:
        """The stored statements from position ``start`` on, in position order, at most
        ``limit`` (all with -1; none in a record from before them)."""
        with self.datastore.transaction(commit=False) as curs:
            if not self._exists(curs, STATEMENTS_TABLE):
                return []
            select = (
                f"SELECT {STATEMENT_COLUMNS} FROM {self.statements_table} "
                "WHERE first_position >= %s ORDER BY first_position LIMIT %s"
            )
            curs.execute(select.encode(), (start, None if limit < 0 else limit))  # type: ignore[call-overload]
            return [row_from(tuple(r.values())) for r in curs.fetchall()]

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def active_key(self) -> KeyCheck | None:
        """The record's active key check, or None (no row, or no table: nothing created)."""
        with self.datastore.transaction(commit=False) as curs:
            if not self._exists(curs, KEY_TABLE):
                return None
            select = f"SELECT key_check_value, algorithm FROM {self.key_table} WHERE status = %s"
            curs.execute(select.encode(), (ACTIVE,))  # type: ignore[call-overload]
            row = curs.fetchone()
        return KeyCheck(row["key_check_value"], row["algorithm"]) if row else None

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def first_event_state(self) -> bytes | None:
        """The stored state of the record's first event, or None if it has none."""
        with self.datastore.transaction(commit=False) as curs:
            if not self._exists(curs, self.events_table_name):
                return None
            curs.execute(
                SQL("SELECT state FROM {0}.{1} ORDER BY notification_id LIMIT 1").format(
                    Identifier(self.datastore.schema), Identifier(self.events_table_name)
                )
            )
            row = curs.fetchone()
        return bytes(row["state"]) if row and row["state"] is not None else None

    def _insert_links(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        positions: Sequence[int],
    ) -> list[tuple[int, int, bytes, bytes]]:
        head = self.head_cache.predecessor_of(positions[0])
        if head is None:
            curs.execute(self.select_head_statement, prepare=True)
            row = curs.fetchone()
            head = (
                (row["position"], bytes(row["link"])) if row else (GENESIS_POSITION, GENESIS_LINK)
            )
        rows = link_rows(head, stored_events, positions)
        try:
            if len(rows) == 1:
                curs.execute(self.insert_link_statement, rows[0], prepare=True)
            else:
                curs.executemany(self.insert_link_statement, rows)
        except psycopg.errors.UniqueViolation as e:
            raise _link_exists(positions[0], e) from e
        return rows

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def chain_head(self) -> tuple[int, bytes]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_head_statement, prepare=True)
            head = curs.fetchone()
        return (head["position"], bytes(head["link"])) if head else (GENESIS_POSITION, GENESIS_LINK)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def chain_head_and_size(self) -> tuple[int, bytes, int]:
        """The chain head and the number of events up to it, from one statement (one
        snapshot). Positions come from a sequence that skips values after a rollback, so
        they are not a count."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(self.select_head_and_size_statement, prepare=True)
            row = curs.fetchone()
        if row is None:
            return GENESIS_POSITION, GENESIS_LINK, 0
        return int(row[0]), bytes(row[1]), int(row[2])

    def walk_linked(
        self, visit: Callable[[Sequence[LinkedRow]], None], batch: int = READ_BATCH
    ) -> int:
        """Pass every event joined with its link (ids as text), page by page in position
        order, to ``visit``, from one REPEATABLE READ snapshot; return the number of links."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row, binary=True) as curs,  # bytea as raw bytes
        ):
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

            def page(start: int) -> Sequence[Any]:
                curs.execute(self.select_linked_page, (start, batch), prepare=True)
                rows = curs.fetchall()
                visit(rows)
                return rows

            for _ in paged(page, batch):
                pass
            curs.execute(self.count_links_statement)
            row = curs.fetchone()
            return int(row[0]) if row else 0

    def linked_page(self, start: int, limit: int) -> list[LinkedRow]:
        """Up to ``limit`` events from position ``start`` on, each joined with its link."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(self.select_linked_page, (start, limit), prepare=True)
            return [
                tuple(_as_bytes(v) for v in row)  # type: ignore[misc]
                for row in curs.fetchall()
            ]

    def iter_stored_rows(self, batch: int = READ_BATCH) -> Generator[StoredRow, None, None]:
        """The whole record from one REPEATABLE READ snapshot, so events committed meanwhile
        are neither half-seen nor reported as faults."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

            def fetch(statement: Composed) -> Callable[[int], Sequence[Any]]:
                def page(start: int) -> Sequence[Any]:
                    curs.execute(statement, (start, batch))
                    return curs.fetchall()

                return page

            yield from merge_stored_rows(
                (
                    (p, oid, v, topic, _as_bytes(state))
                    for p, oid, v, topic, state in paged(fetch(self.select_events_page), batch)
                ),
                (
                    LinkRow(p, prev, _as_bytes(leaf), _as_bytes(link))
                    for p, prev, leaf, link in paged(fetch(self.select_links_page), batch)
                ),
            )


def _quoted(identifier: str) -> str:
    """A PostgreSQL identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


#: Seconds a statement waits for a free pooled connection before the library's retry loop
#: (10 tries) tries again. The library waits its whole connect timeout (5 s) per try, which
#: made a request during an outage take 50 s to fail; with this, about 7 s.
POOL_WAIT_SECONDS = 0.5
#: Environment keys of the bounds the library has no key for (seconds, decimal).
POSTGRES_POOL_TIMEOUT = "POSTGRES_POOL_TIMEOUT"
POSTGRES_STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT"
#: PostgreSQL's own "ran out of time" errors: a statement or a lock wait cancelled by the
#: server's timeouts, a connect that timed out, a checkout that found no free connection.
_TIMEOUTS: tuple[type[Exception], ...] = (
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.ConnectionTimeout,
    psycopg_pool.PoolTimeout,
)


class BoundedConnection(Connection[DictRow]):
    """A connection whose every wait on the server ends after ``wait_seconds``.

    The server's ``statement_timeout`` cancels a slow statement, but a server that does not
    answer at all (a hung host, a stopped process, a network that drops packets) cancels
    nothing, and a socket read would wait forever: psycopg has no client-side statement
    timeout, so its one wait primitive is given one. A wait that runs out closes the
    connection (its state is unknown; the pool discards it) and raises ``DatabaseTimeout``.
    """

    wait_seconds: float = DEFAULT_DB_STATEMENT_TIMEOUT + UNANSWERED_GRACE_SECONDS

    def wait(
        self,
        gen: PQGen[Any],
        interval: float = 0.1,
        timeout: float | None = None,
    ) -> Any:
        bound = self.wait_seconds if timeout is None else min(timeout, self.wait_seconds)
        try:
            return super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout:  # the documented outcome of ``timeout``
            self.close()
            raise DatabaseTimeout(
                f"the database did not answer within {bound:g} s (POCDIR_DB_STATEMENT_TIMEOUT)"
            ) from None


@cache
def bounded_connection_class(wait_seconds: float) -> type[BoundedConnection]:
    """The connection class of pools whose waits end after ``wait_seconds``."""
    return type("BoundedConnection", (BoundedConnection,), {"wait_seconds": wait_seconds})


class BoundedPostgresDatastore(PostgresDatastore):
    """The library's datastore, whose timeouts raise ``DatabaseTimeout`` rather than the
    ``OperationalError`` its recorders' retry loops would try again ten times."""

    @contextmanager
    def get_connection(self) -> Iterator[Connection[DictRow]]:
        try:
            with super().get_connection() as conn:
                yield conn
        except OperationalError as e:
            if isinstance(e.__cause__, _TIMEOUTS):
                raise DatabaseTimeout(_timeout_message(e.__cause__)) from e.__cause__
            raise


def _timeout_message(cause: BaseException) -> str:
    if isinstance(cause, psycopg_pool.PoolTimeout):
        return "no database connection came free in time (POCDIR_DB_POOL_TIMEOUT)"
    if isinstance(cause, psycopg.errors.ConnectionTimeout):
        return "the database did not accept a connection in time (POCDIR_DB_CONNECT_TIMEOUT)"
    return "a statement or lock wait ran out of time (POCDIR_DB_STATEMENT_TIMEOUT)"


class ChainedPostgresFactory(PostgresFactory):
    """The library's factory, with every wait bounded.

    The library builds its datastore inside its constructor and has no key for the pool's
    checkout timeout (it uses the connect timeout, per try), for the connect timeout of the
    connections themselves, or for a statement timeout; they are set here, on the pool that
    has not opened yet, from ``POSTGRES_CONNECT_TIMEOUT``, ``POSTGRES_POOL_TIMEOUT`` and
    ``POSTGRES_STATEMENT_TIMEOUT``."""

    application_recorder_class = ChainedPostgresApplicationRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # Same state, one method more: the library has no hook for the datastore's class.
        self.datastore.__class__ = BoundedPostgresDatastore
        pool = self.datastore.pool
        pool.timeout = float(self.env.get(POSTGRES_POOL_TIMEOUT) or pool.timeout)
        kwargs = pool.kwargs
        if not isinstance(kwargs, dict):
            raise ProgrammingError("the library's pool no longer takes connection keywords")
        connect_timeout = self.env.get(self.POSTGRES_CONNECT_TIMEOUT)
        if connect_timeout:  # the library uses it for checkouts only, not for connecting
            kwargs["connect_timeout"] = int(connect_timeout)
        statement_timeout = self.env.get(POSTGRES_STATEMENT_TIMEOUT)
        if statement_timeout:
            seconds = float(statement_timeout)
            kwargs["options"] = f"-c statement_timeout={max(1, round(seconds * 1000))}"
            pool.connection_class = bounded_connection_class(seconds + UNANSWERED_GRACE_SECONDS)
