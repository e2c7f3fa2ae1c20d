"""Persistent views: JSON documents and history items in the record's own database, written
together with their tracking position in one transaction (exactly once), on SQLite and on
PostgreSQL.

Documents (entries, notifications' and consents' metadata, review facts) are canonical JSON,
read and changed by the projectors. History items are typed rows in a table of their own
(``HISTORY_TABLE``, one column per ``HistoryItem`` field): they are most of what a replay
writes, and inserting columns costs far less than serialising and upserting documents.

A third table holds one row: the projectors' versions that built the views
(``record_versions``; ``projections.runner.ViewRunner.outdated`` compares them with the
code's). A rebuild writes a copy of all three tables and swaps it in (``swap_in``).

Each backend's view recorder is a subclass of the library's ``TrackingRecorder`` for that
backend, so the tracking table and its "never go backwards" guarantee are the library's:
a batch whose tracking position does not advance raises ``IntegrityError`` and rolls back
with its document changes.
"""

from __future__ import annotations

import base64
import functools
import json
import typing
from collections.abc import Callable, Iterable
from functools import partial
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import Cipher, IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

from projections.history import HISTORY, HISTORY_FIELDS, HistoryItem, HistoryRow, history_key

VIEW_TABLE = "view_documents"
HISTORY_TABLE = "view_history"
VERSIONS_TABLE = "view_versions"


class ViewTables(NamedTuple):
    """The tables of one copy of the views."""

    documents: str
    history: str
    #: One row: the projectors' versions this copy was built with (``record_versions``).
    #: It is swapped in with the copy, so the views always say which code built them.
    versions: str


#: The views that are read.
MAIN_TABLES = ViewTables(VIEW_TABLE, HISTORY_TABLE, VERSIONS_TABLE)
#: Where a rebuild writes, until it has succeeded and is swapped in (``swap_in``), so that
#: a rebuild that fails leaves the views as they were.
SHADOW_TABLES = ViewTables(*(f"{table}_rebuild" for table in MAIN_TABLES))
#: The shadow's tracking name is the view's with this suffix.
SHADOW_SUFFIX = "~rebuild"
#: SQL types of the history columns by their Python type, per backend (SQLite has no
#: boolean: 1 or NULL).
_SQL_TYPES: dict[type, tuple[str, str]] = {
    str: ("TEXT", "text"),
    int: ("INTEGER", "bigint"),
    float: ("REAL", "double precision"),
    bool: ("INTEGER", "boolean"),
}


def _history_column_types() -> dict[str, tuple[tuple[str, str], bool]]:
    """Each history column's SQL types (SQLite, PostgreSQL) and whether it may be NULL,
    from ``HistoryItem``'s own annotations: a field added there gets its column here."""
    columns = {}
    for name, hint in typing.get_type_hints(HistoryItem).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = bool(args)
        columns[name] = (_SQL_TYPES[args[0] if nullable else hint], nullable)
    return columns


#: SQLite page cache of a connection writing the view (negative: KiB). The default 2 MB
#: cannot hold the pages a batch touches in a view of millions of documents, and spilling
#: them mid-transaction made each batch's upserts several times slower.
VIEW_CACHE_KIB = -262144

#: (kind, key) -> document, or None to delete it.
Changes = dict[tuple[str, str], dict[str, Any] | None]


class Rows(NamedTuple):
    """One batch, ready to write: documents to upsert (kind, key, canonical JSON), keys to
    delete, and history items to insert."""

    upserts: list[tuple[str, str, str]]
    deletes: list[tuple[str, str]]
    items: list[HistoryRow]
    #: The position the batch follows: the write fails (``IntegrityError``) unless the view
    #: is still there, so a runner that missed another process's write (or a rebuild's
    #: swap) never projects an event twice. None: not checked.
    after: int | None = None


def _history_columns(backend: int) -> str:
    """The history table's column definitions (``backend``: 0 SQLite, 1 PostgreSQL)."""
    types = _history_column_types()
    return ", ".join(
        f"{name} {types[name][0][backend]}"
        + (' COLLATE "C"' if backend and name == "state" else "")
        + ("" if types[name][1] else " NOT NULL")
        for name in HISTORY_FIELDS
    )


_HISTORY_FIELD_SET = frozenset(HISTORY_FIELDS)
_ITEM_ORDER = itemgetter("state", "position")


def _by_columns(items: list[HistoryRow]) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """``items`` in (state, position) order, as the values of the fields each names, grouped
    by those fields: each value goes to its own field's column, and a column an item leaves
    out defaults to NULL. (Binding costs per parameter, and a notification's item names
    7 to 10 of the 21 fields.) A field ``HistoryItem`` does not have is refused."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for item in sorted(items, key=_ITEM_ORDER):
        groups.setdefault(tuple(item), []).append(tuple(item.values()))
    unknown = {name for columns in groups for name in columns} - _HISTORY_FIELD_SET
    if unknown:
        raise ValueError(f"history items name fields HistoryItem does not have: {unknown}")
    return groups


def _item_document(item: HistoryItem) -> tuple[str, str, str]:
    """A history item as ``dump`` shows it: the (kind, key, canonical JSON) the view held
    when items were documents, so dumps stay comparable across that change."""
    return HISTORY, history_key(item.state, item.position), dumps(item.to_dict())


def _canonical_encoder() -> Callable[[Any], str]:
    """``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, with
    its C encoder made once instead of on every call (half the cost of a small document;
    the same encoder, so the same bytes)."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C encoder
        return partial(json.dumps, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoder = c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring, None, ":", ",", True, False, True
    )
    return lambda doc: "".join(encoder(doc, 0))


_encode = _canonical_encoder()


def dumps(doc: dict[str, Any]) -> str:
    """Documents are stored as canonical JSON, so equal views are byte-identical."""
    return _encode(doc)


def split_changes(changes: Changes, items: list[HistoryRow], after: int | None = None) -> Rows:
    """Rows to upsert (kind, key, canonical JSON), keys to delete and items to insert.
    Serialising here, not when the rows are written, leaves the caller free to change the
    documents afterwards. ``items`` is taken as it is: the caller adds none afterwards."""
    upserts: list[tuple[str, str, str]] = []
    deletes: list[tuple[str, str]] = []
    encode = _encode
    for (kind, key), doc in changes.items():
        if doc is None:
            deletes.append((kind, key))
        else:
            upserts.append((kind, key, encode(doc)))
    return Rows(upserts, deletes, items, after)


def _check_follows(tracking: Tracking, after: int | None, current: int | None) -> None:
    """Refuse a batch that does not follow the view's position (see ``Rows.after``)."""
    if after is not None and (current or 0) != after:
        raise IntegrityError(
            f"{tracking.application_name} is at position {current or 0}, not {after}: "
            "another process moved it; read its position again"
        )


#: Per-connection staging table for a batch's upserts on PostgreSQL (emptied on commit).
STAGING_TABLE = "pg_temp.pocdir_view_staging"


class ViewRecorder(Protocol):
    tables: ViewTables

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def write_batch(self, tracking: Tracking, rows: Rows) -> None: ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]: ...

    def history(
        self, state: str, start: str | None = None, end: str | None = None
    ) -> list[dict[str, Any]]: ...

    def dump(self) -> list[tuple[str, str, str]]: ...

    def reset(self, application_name: str) -> None: ...

    def reset_if_old_layout(self, application_name: str) -> bool: ...

    def stored_versions(self) -> str | None:
        """The projectors' versions these views were built with (``record_versions``); None
        for views built before views had versions, or emptied since."""
        ...

    def record_versions(self, versions: str) -> None:
        """Say that these views are built by projectors of ``versions`` (``ViewRunner``)."""
        ...

    def open_shadow(self, application_name: str) -> ViewRecorder: ...

    def swap_in(self, shadow: ViewRecorder, shadow_name: str, application_name: str) -> bool: ...


def _history_filter(
    placeholder: str, state: str | None, start: str | None, end: str | None
) -> tuple[str, list[str]]:
    """The ``WHERE`` clause (or nothing) and its parameters for ``_select_history``."""
    conditions, params = [], []
    for condition, value in (
        ("state = {}", state),
        ("substr(at, 1, 10) >= {}", start),
        ("substr(at, 1, 10) <= {}", end),
    ):
        if value is not None:
            conditions.append(condition.format(placeholder))
            params.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


class _ViewBackend:
    """What both backends' view recorders derive from their own primitives.

    With a ``cipher`` (the record's, when ``POCDIR_CIPHER_KEY`` is set), every document is
    stored encrypted: entries hold contact details, and with a key set nothing confidential
    may be written to the database in clear (R13). History items stay in clear: they are
    the facts the review queries by column (States, times, types, ids), never a contact
    detail or any content. Kinds and keys (State codes, ids, days) stay in clear too, so
    that documents are still found by them."""

    cipher: Cipher | None = None
    tables: ViewTables
    datastore: Any

    def _new_shadow(self) -> Any:
        """This view's shadow recorder (``SHADOW_TABLES``), its tables created."""
        shadow: Any = type(self)(self.datastore, tables=SHADOW_TABLES, cipher=self.cipher)  # type: ignore[call-arg]
        shadow.create_table()
        return shadow

    def _check_shadow(self, shadow: ViewRecorder) -> None:
        if shadow.tables == self.tables:
            raise ValueError("swap_in takes this view's shadow, not the view itself")

    def _seal(self, upserts: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        cipher = self.cipher
        if cipher is None:
            return upserts
        b64 = base64.b64encode
        return [
            (kind, key, SEALED + b64(cipher.encrypt(doc.encode())).decode("ascii"))
            for kind, key, doc in upserts
        ]

    def _unseal(self, stored: str) -> str:
        if self.cipher is None:
            return stored
        if not stored.startswith(SEALED):
            raise ValueError("a view document is not encrypted: the view needs a rebuild")
        return self.cipher.decrypt(base64.b64decode(stored[len(SEALED) :])).decode()

    def _load(self, stored: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self._unseal(stored))
        return loaded

    def _sample_document(self) -> str | None:
        raise NotImplementedError

    def write_batch(self, tracking: Tracking, rows: Rows) -> None:
        raise NotImplementedError

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def reset(self, application_name: str) -> None:
        raise NotImplementedError

    def _select_history(
        self, state: str | None, start: str | None, end: str | None
    ) -> list[HistoryItem]:
        """Items, in (state, position) order, of ``state`` (or of every State) on the days
        ``start``..``end`` inclusive (ISO dates; ``None``: unbounded)."""
        raise NotImplementedError

    def _dump_documents(self) -> list[tuple[str, str, str]]:
        raise NotImplementedError

    def _holds_kind(self, kind: str) -> bool:
        raise NotImplementedError

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.get_many(kind, [key]).get(key)

    def history(
        self, state: str, start: str | None = None, end: str | None = None
    ) -> list[dict[str, Any]]:
        """``state``'s timeline in position order, limited to the days ``start``..``end``
        (inclusive ISO dates) when given; each item without the facts that do not apply."""
        return [item.to_dict() for item in self._select_history(state, start, end)]

    def dump(self) -> list[tuple[str, str, str]]:
        """The whole view as (kind, key, canonical JSON) rows in (kind, key) order, history
        items included as the documents they once were: equal views give equal dumps."""
        items = map(_item_document, self._select_history(None, None, None))
        return sorted([*self._dump_documents(), *items])

    def reset_if_old_layout(self, application_name: str) -> bool:
        """Empty a view written before history items had a table of their own (they were
        documents of kind ``history``), or whose documents are not encrypted as this
        recorder's cipher says (written before views were encrypted); the runner then
        rebuilds it from the record, which is the only source of truth. Returns whether
        it did."""
        sample = self._sample_document()
        layout_ok = sample is None or sample.startswith(SEALED) == (self.cipher is not None)
        if layout_ok and not self._holds_kind(HISTORY):
            return False
        self.reset(application_name)
        return True


#: How a document encrypted with the record's cipher starts (then base64 of the cipher's
#: output: nonce, tag, ciphertext). A view in the other form (plain JSON under a key, or
#: encrypted documents without one) is in an earlier layout, and is rebuilt.
SEALED = "aes-gcm:"

#: The versions table's one row (``id`` 1): the same definition on both backends.
_VERSIONS_COLUMNS = "id integer PRIMARY KEY CHECK (id = 1), versions text NOT NULL"

#: Rows per SQLite ``INSERT`` (at most 21 parameters each, under SQLite's limit of 32,766).
SQLITE_ROWS_PER_INSERT = 1000


@functools.lru_cache(maxsize=64)
def _sqlite_insert(table: str, columns: tuple[str, ...], rows: int, on_conflict: str) -> str:
    """One statement for many rows: SQLite inserts them all in one call that releases the
    interpreter lock once, where ``executemany`` took it back after every row (and waited
    for it while the runner's other thread was projecting)."""
    row = "(" + ",".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({','.join(columns)}) VALUES {','.join([row] * rows)} {on_conflict}"
    )


def _sqlite_insert_all(
    c: Any, table: str, columns: tuple[str, ...], rows: list[Any], on_conflict: str = ""
) -> None:
    """Insert ``rows`` (tuples of ``columns``) in statements of ``SQLITE_ROWS_PER_INSERT``."""
    for i in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        chunk = rows[i : i + SQLITE_ROWS_PER_INSERT]
        statement = _sqlite_insert(table, columns, len(chunk), on_conflict)
        c.execute(statement, [v for row in chunk for v in row])


def _sqlite_insert_items(c: Any, table: str, items: list[HistoryRow]) -> None:
    for columns, rows in _by_columns(items).items():
        _sqlite_insert_all(c, table, columns, rows)


def _sqlite_item(row: Any) -> HistoryItem:
    """A stored history row (its columns selected in ``HISTORY_FIELDS`` order) as an item:
    SQLite stores ``True`` as 1."""
    item = HistoryItem._make(row)
    if item.assistance_requested is not None:
        return item._replace(assistance_requested=bool(item.assistance_requested))
    return item


class SQLiteViewRecorder(_ViewBackend, SQLiteTrackingRecorder):
    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        tables: ViewTables = MAIN_TABLES,
        cipher: Cipher | None = None,
        **kwargs: Any,
    ) -> None:
        self.tables, self.cipher = tables, cipher
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.tables.documents} ("
            "kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {self.tables.history} ({_history_columns(0)}, "
            "PRIMARY KEY (state, position)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {self.tables.versions} ({_VERSIONS_COLUMNS})",
        ]

    def write_batch(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete documents, insert history items and advance ``tracking``, in
        one transaction."""
        upserts, deletes, items, after = rows
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA cache_size = {VIEW_CACHE_KIB}")
            if after is not None:
                # A write first, so the transaction holds the write lock before it reads.
                c.execute(
                    "UPDATE tracking SET notification_id = notification_id "
                    "WHERE application_name = ?",
                    (tracking.application_name,),
                )
                current = self._max_tracking_id(tracking.application_name, c)
                _check_follows(tracking, after, current)
            # In key order, each row lands next to the previous one in the table's b-tree:
            # about three times faster than in the batch's order for a large view.
            _sqlite_insert_all(
                c,
                self.tables.documents,
                ("kind", "key", "doc"),
                sorted(self._seal(upserts)),
                "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
            )
            # Items are inserted, never replaced: one event's item appears in one batch only.
            _sqlite_insert_items(c, self.tables.history, items)
            if deletes:
                c.executemany(
                    f"DELETE FROM {self.tables.documents} WHERE kind = ? AND key = ?", deletes
                )
            self._insert_tracking(c, tracking)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT key, doc FROM {self.tables.documents} WHERE kind = ? "
                f"AND key IN ({','.join('?' * len(keys))})",
                [kind, *keys],
            )
            return {row[0]: self._load(row[1]) for row in c.fetchall()}

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT doc FROM {self.tables.documents} WHERE kind = ? ORDER BY key", (kind,)
            )
            return [self._load(row[0]) for row in c.fetchall()]

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]:
        """Documents whose key is in [start, stop), in key order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT doc FROM {self.tables.documents} WHERE kind = ? AND key >= ? AND key < ? "
                "ORDER BY key",
                (kind, start, stop),
            )
            return [self._load(row[0]) for row in c.fetchall()]

    def _select_history(
        self, state: str | None, start: str | None, end: str | None
    ) -> list[HistoryItem]:
        where, params = _history_filter("?", state, start, end)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {', '.join(HISTORY_FIELDS)} FROM {self.tables.history}{where} "
                "ORDER BY state, position",
                params,
            )
            return [_sqlite_item(row) for row in c.fetchall()]

    def _dump_documents(self) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT kind, key, doc FROM {self.tables.documents}")
            return [(r[0], r[1], self._unseal(r[2])) for r in c.fetchall()]

    def _sample_document(self) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT doc FROM {self.tables.documents} LIMIT 1")
            row = c.fetchone()
        return str(row[0]) if row else None

    def _holds_kind(self, kind: str) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {self.tables.documents} WHERE kind = ? LIMIT 1", (kind,))
            return c.fetchone() is not None

    def reset(self, application_name: str) -> None:
        """Empty the view, overwriting what it held (``secure_delete``): it may be a view
        from before documents were encrypted, whose contact details must not stay in free
        pages."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("PRAGMA secure_delete = ON")
            c.execute(f"DELETE FROM {self.tables.documents}")
            c.execute(f"DELETE FROM {self.tables.history}")
            c.execute(f"DELETE FROM {self.tables.versions}")
            c.execute("PRAGMA secure_delete = OFF")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))

    def stored_versions(self) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT versions FROM {self.tables.versions} WHERE id = 1")
            row = c.fetchone()
        return str(row[0]) if row else None

    def record_versions(self, versions: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {self.tables.versions} (id, versions) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET versions = excluded.versions",
                (versions,),
            )

    def open_shadow(self, application_name: str) -> SQLiteViewRecorder:
        """Empty shadow tables for a rebuild (those of a failed one are dropped first)."""
        with self.datastore.transaction(commit=True) as c:
            for table in SHADOW_TABLES:
                c.execute(f"DROP TABLE IF EXISTS {table}")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))
        return self._new_shadow()

    def swap_in(self, shadow: ViewRecorder, shadow_name: str, application_name: str) -> bool:
        """Make ``shadow``'s tables these views', in one transaction, unless these views are
        further on (then False: catch the shadow up and try again). Readers see the old
        views or the new ones, never a mix; nothing is dropped until then."""
        self._check_shadow(shadow)
        with self.datastore.transaction(commit=True) as c:
            # A write first, so the transaction holds the write lock before it reads.
            c.execute(
                "UPDATE tracking SET notification_id = notification_id WHERE application_name = ?",
                (application_name,),
            )
            if (self._max_tracking_id(application_name, c) or 0) > (
                self._max_tracking_id(shadow_name, c) or 0
            ):
                return False
            for old, new in zip(self.tables, shadow.tables, strict=True):
                c.execute(f"DROP TABLE {old}")
                c.execute(f"ALTER TABLE {new} RENAME TO {old}")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))
            c.execute(
                "UPDATE tracking SET application_name = ? WHERE application_name = ?",
                (application_name, shadow_name),
            )
        return True


class PostgresViewRecorder(_ViewBackend, PostgresTrackingRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tables: ViewTables = MAIN_TABLES,
        cipher: Cipher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, **kwargs)
        self.tables, self.cipher = tables, cipher
        schema = Identifier(self.datastore.schema)
        self.view_table = (schema, *(Identifier(table) for table in tables))
        self.sql_create_statements.append(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                'kind text NOT NULL, key text COLLATE "C" NOT NULL, doc text NOT NULL, '
                "PRIMARY KEY (kind, key))"
            )
        )
        self.sql_create_statements.append(
            self._sql(
                f"CREATE TABLE IF NOT EXISTS {{0}}.{{2}} ({_history_columns(1)}, "
                "PRIMARY KEY (state, position))"
            )
        )
        self.sql_create_statements.append(
            self._sql(f"CREATE TABLE IF NOT EXISTS {{0}}.{{3}} ({_VERSIONS_COLUMNS})")
        )

    def _sql(self, text: str) -> Any:
        """``text`` with {0} the schema, {1} the documents' table, {2} the history's and {3}
        the versions'."""
        return SQL(text).format(*self.view_table)  # type: ignore[arg-type]

    def write_batch(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete documents, insert history items and advance ``tracking``, in
        one transaction.

        Items are copied (``COPY``) straight into their table. The upserts are copied into
        a temporary table and merged with one ``INSERT ... ON CONFLICT``: one round trip
        for the whole batch, where ``executemany`` sent and adapted each row in Python."""
        upserts, deletes, items, after = rows
        with self.datastore.transaction(commit=True) as curs:
            if after is not None:
                curs.execute(
                    SQL(
                        "SELECT notification_id FROM {0}.{1} WHERE application_name = %s FOR UPDATE"
                    ).format(
                        Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                    ),
                    (tracking.application_name,),
                )
                tracked = curs.fetchone()
                _check_follows(tracking, after, tracked["notification_id"] if tracked else None)
            # Items are inserted, never replaced: one event's item appears in one batch only.
            for columns, group in _by_columns(items).items():
                copy_items = self._sql(f"COPY {{0}}.{{2}} ({', '.join(columns)}) FROM STDIN")
                with curs.copy(copy_items) as copy:
                    for item in group:
                        copy.write_row(item)
            if upserts:
                curs.execute(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} ("
                    'kind text NOT NULL, key text COLLATE "C" NOT NULL, doc text NOT NULL) '
                    "ON COMMIT DELETE ROWS"
                )
                with curs.copy(f"COPY {STAGING_TABLE} (kind, key, doc) FROM STDIN") as copy:
                    for row in self._seal(upserts):
                        copy.write_row(row)
                curs.execute(
                    self._sql(
                        f"INSERT INTO {{0}}.{{1}} SELECT kind, key, doc FROM {STAGING_TABLE} "
                        "ORDER BY kind, key "
                        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc"
                    )
                )
            if deletes:
                curs.executemany(
                    self._sql("DELETE FROM {0}.{1} WHERE kind = %s AND key = %s"), deletes
                )
            self._insert_tracking(curs, tracking)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql("SELECT key, doc FROM {0}.{1} WHERE kind = %s AND key = ANY(%s)"),
                (kind, keys),
            )
            return {row["key"]: self._load(row["doc"]) for row in curs.fetchall()}

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT doc FROM {0}.{1} WHERE kind = %s ORDER BY key"), (kind,))
            return [self._load(row["doc"]) for row in curs.fetchall()]

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]:
        """Documents whose key is in [start, stop), in key order."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    "SELECT doc FROM {0}.{1} WHERE kind = %s AND key >= %s AND key < %s "
                    "ORDER BY key"
                ),
                (kind, start, stop),
            )
            return [self._load(row["doc"]) for row in curs.fetchall()]

    def _select_history(
        self, state: str | None, start: str | None, end: str | None
    ) -> list[HistoryItem]:
        where, params = _history_filter("%s", state, start, end)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    f"SELECT {', '.join(HISTORY_FIELDS)} FROM {{0}}.{{2}}{where} "
                    "ORDER BY state, position"
                ),
                params,
            )
            return [HistoryItem(**row) for row in curs.fetchall()]

    def _dump_documents(self) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT kind, key, doc FROM {0}.{1}"))
            return [(r["kind"], r["key"], self._unseal(r["doc"])) for r in curs.fetchall()]

    def _sample_document(self) -> str | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT doc FROM {0}.{1} LIMIT 1"))
            row = curs.fetchone()
        return str(row["doc"]) if row else None

    def _holds_kind(self, kind: str) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT 1 FROM {0}.{1} WHERE kind = %s LIMIT 1"), (kind,))
            return curs.fetchone() is not None

    def reset(self, application_name: str) -> None:
        """Empty the view. ``TRUNCATE`` (transactional, like ``DELETE``) leaves no dead rows
        behind: after a ``DELETE`` of millions of documents, the next rebuild's reads were
        many times slower until autovacuum had run."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("TRUNCATE {0}.{1}, {0}.{2}, {0}.{3}"))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                    Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                ),
                (application_name,),
            )

    def stored_versions(self) -> str | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT versions FROM {0}.{3} WHERE id = 1"))
            row = curs.fetchone()
        return str(row["versions"]) if row else None

    def record_versions(self, versions: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    "INSERT INTO {0}.{3} (id, versions) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET versions = excluded.versions"
                ),
                (versions,),
            )

    def open_shadow(self, application_name: str) -> PostgresViewRecorder:
        """Empty shadow tables for a rebuild (those of a failed one are dropped first)."""
        schema = Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=True) as curs:
            for table in SHADOW_TABLES:
                curs.execute(SQL("DROP TABLE IF EXISTS {0}.{1}").format(schema, Identifier(table)))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                    schema, Identifier(self.tracking_table_name)
                ),
                (application_name,),
            )
        return self._new_shadow()

    def swap_in(self, shadow: ViewRecorder, shadow_name: str, application_name: str) -> bool:
        """Make ``shadow``'s tables these views', in one transaction, unless these views are
        further on (then False: catch the shadow up and try again). Readers see the old
        views or the new ones, never a mix; nothing is dropped until then."""
        self._check_shadow(shadow)
        schema = Identifier(self.datastore.schema)
        tracking = SQL("{0}.{1}").format(schema, Identifier(self.tracking_table_name))
        with self.datastore.transaction(commit=True) as curs:
            # View writes update the tracking table: none can commit until this one has.
            curs.execute(SQL("LOCK TABLE {0} IN SHARE ROW EXCLUSIVE MODE").format(tracking))
            positions = []
            for name in (application_name, shadow_name):
                curs.execute(
                    SQL(
                        "SELECT max(notification_id) AS n FROM {0} WHERE application_name = %s"
                    ).format(tracking),
                    (name,),
                )
                row = curs.fetchone()
                positions.append(row["n"] if row else None)
            if (positions[0] or 0) > (positions[1] or 0):
                return False
            for old, new in zip(self.tables, shadow.tables, strict=True):
                curs.execute(SQL("DROP TABLE {0}.{1}").format(schema, Identifier(old)))
                curs.execute(
                    SQL("ALTER TABLE {0}.{1} RENAME TO {2}").format(
                        schema, Identifier(new), Identifier(old)
                    )
                )
                curs.execute(
                    SQL("ALTER INDEX {0}.{1} RENAME TO {2}").format(
                        schema, Identifier(f"{new}_pkey"), Identifier(f"{old}_pkey")
                    )
                )
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s").format(tracking),
                (application_name,),
            )
            curs.execute(
                SQL("UPDATE {0} SET application_name = %s WHERE application_name = %s").format(
                    tracking
                ),
                (application_name, shadow_name),
            )
        return True
