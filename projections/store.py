"""Persistent views: JSON documents and history items in the record's own database, written
together with their tracking position in one transaction (exactly once), on SQLite and on
PostgreSQL.

Documents (entries, notifications' and consents' metadata, review facts) are canonical JSON,
read and changed by the projectors. History items are typed rows in a table of their own
(``HISTORY_TABLE``, one column per ``HistoryItem`` field): they are most of what a replay
writes, and inserting columns costs far less than serialising and upserting documents.

Each backend's view recorder is a subclass of the library's ``TrackingRecorder`` for that
backend, so the tracking table and its "never go backwards" guarantee are the library's:
a batch whose tracking position does not advance raises ``IntegrityError`` and rolls back
with its document changes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from functools import partial
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

from projections.history import HISTORY, HISTORY_FIELDS, HistoryItem, HistoryRow, history_key

VIEW_TABLE = "view_documents"
HISTORY_TABLE = "view_history"
#: SQL types of the history columns that are not text, per backend.
_HISTORY_TYPES = {
    "position": ("INTEGER", "bigint"),
    "hours_to_acknowledge": ("REAL", "double precision"),
    "hours_to_respond": ("REAL", "double precision"),
    "hours_to_answer": ("REAL", "double precision"),
    "assistance_requested": ("INTEGER", "boolean"),  # SQLite has no boolean: 1 or NULL
}
_NOT_NULL = {"state", "position", "at", "event"}
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


def _history_columns(backend: int) -> str:
    """The history table's column definitions (``backend``: 0 SQLite, 1 PostgreSQL)."""
    return ", ".join(
        f"{name} {_HISTORY_TYPES.get(name, ('TEXT', 'text'))[backend]}"
        + (' COLLATE "C"' if backend and name == "state" else "")
        + (" NOT NULL" if name in _NOT_NULL else "")
        for name in HISTORY_FIELDS
    )


def _by_last_fact(items: list[HistoryRow]) -> dict[tuple[str, ...], list[HistoryRow]]:
    """``items`` in (state, position) order, grouped by the columns up to their last fact,
    each cut there: the columns after it are left to default to NULL."""
    groups: dict[int, list[HistoryRow]] = {}
    for item in sorted(items):
        n = len(item)
        while item[n - 1] is None:  # the first four fields are never None
            n -= 1
        groups.setdefault(n, []).append(item[:n])
    return {HISTORY_FIELDS[:n]: rows for n, rows in groups.items()}


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


def split_changes(changes: Changes, items: list[HistoryRow]) -> Rows:
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
    return Rows(upserts, deletes, items)


#: Per-connection staging table for a batch's upserts on PostgreSQL (emptied on commit).
STAGING_TABLE = "pg_temp.pocdir_view_staging"


class ViewRecorder(Protocol):
    def max_tracking_id(self, application_name: str) -> int | None: ...

    def write(self, tracking: Tracking, rows: Rows) -> None: ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]: ...

    def history(
        self, state: str, start: str | None = None, end: str | None = None
    ) -> list[dict[str, Any]]: ...

    def dump(self) -> list[tuple[str, str, str]]: ...

    def reset(self, application_name: str) -> None: ...

    def reset_if_outdated(self, application_name: str) -> bool: ...


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
    """What both backends' view recorders derive from their own primitives."""

    def write(self, tracking: Tracking, rows: Rows) -> None:
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

    def reset_if_outdated(self, application_name: str) -> bool:
        """Empty a view written before history items had a table of their own (they were
        documents of kind ``history``); the runner then rebuilds it from the record, which
        is the only source of truth. Returns whether it did."""
        if not self._holds_kind(HISTORY):
            return False
        self.reset(application_name)
        return True


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


def _sqlite_insert_items(c: Any, items: list[HistoryRow]) -> None:
    """Binding costs per parameter, and a notification's item leaves the last dozen or so
    of its 21 columns empty: each item is bound only up to its last fact."""
    for columns, rows in _by_last_fact(items).items():
        _sqlite_insert_all(c, HISTORY_TABLE, columns, rows)


def _sqlite_item(row: Any) -> HistoryItem:
    """A stored history row as an item: SQLite stores ``True`` as 1."""
    item = HistoryItem(*row)
    if item.assistance_requested is not None:
        return item._replace(assistance_requested=bool(item.assistance_requested))
    return item


class SQLiteViewRecorder(_ViewBackend, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {VIEW_TABLE} ("
            "kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} ({_history_columns(0)}, "
            "PRIMARY KEY (state, position)) WITHOUT ROWID",
        ]

    def write(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete documents, insert history items and advance ``tracking``, in
        one transaction."""
        upserts, deletes, items = rows
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA cache_size = {VIEW_CACHE_KIB}")
            # In key order, each row lands next to the previous one in the table's b-tree:
            # about three times faster than in the batch's order for a large view.
            _sqlite_insert_all(
                c,
                VIEW_TABLE,
                ("kind", "key", "doc"),
                sorted(upserts),
                "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
            )
            # Items are inserted, never replaced: one event's item appears in one batch only.
            _sqlite_insert_items(c, items)
            if deletes:
                c.executemany(f"DELETE FROM {VIEW_TABLE} WHERE kind = ? AND key = ?", deletes)
            self._insert_tracking(c, tracking)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT key, doc FROM {VIEW_TABLE} WHERE kind = ? "
                f"AND key IN ({','.join('?' * len(keys))})",
                [kind, *keys],
            )
            return {row[0]: json.loads(row[1]) for row in c.fetchall()}

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT doc FROM {VIEW_TABLE} WHERE kind = ? ORDER BY key", (kind,))
            return [json.loads(row[0]) for row in c.fetchall()]

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]:
        """Documents whose key is in [start, stop), in key order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT doc FROM {VIEW_TABLE} WHERE kind = ? AND key >= ? AND key < ? "
                "ORDER BY key",
                (kind, start, stop),
            )
            return [json.loads(row[0]) for row in c.fetchall()]

    def _select_history(
        self, state: str | None, start: str | None, end: str | None
    ) -> list[HistoryItem]:
        where, params = _history_filter("?", state, start, end)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {', '.join(HISTORY_FIELDS)} FROM {HISTORY_TABLE}{where} "
                "ORDER BY state, position",
                params,
            )
            return [_sqlite_item(row) for row in c.fetchall()]

    def _dump_documents(self) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT kind, key, doc FROM {VIEW_TABLE}")
            return [(r[0], r[1], r[2]) for r in c.fetchall()]

    def _holds_kind(self, kind: str) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {VIEW_TABLE} WHERE kind = ? LIMIT 1", (kind,))
            return c.fetchone() is not None

    def reset(self, application_name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {VIEW_TABLE}")
            c.execute(f"DELETE FROM {HISTORY_TABLE}")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))


class PostgresViewRecorder(_ViewBackend, PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.view_table = (schema, Identifier(VIEW_TABLE), Identifier(HISTORY_TABLE))
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

    def _sql(self, text: str) -> Any:
        """``text`` with {0} the schema, {1} the documents' table and {2} the history's."""
        return SQL(text).format(*self.view_table)  # type: ignore[arg-type]

    def write(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete documents, insert history items and advance ``tracking``, in
        one transaction.

        Items are copied (``COPY``) straight into their table. The upserts are copied into
        a temporary table and merged with one ``INSERT ... ON CONFLICT``: one round trip
        for the whole batch, where ``executemany`` sent and adapted each row in Python."""
        upserts, deletes, items = rows
        with self.datastore.transaction(commit=True) as curs:
            # Items are inserted, never replaced: one event's item appears in one batch only.
            for columns, group in _by_last_fact(items).items():
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
                    for row in upserts:
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
            return {row["key"]: json.loads(row["doc"]) for row in curs.fetchall()}

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT doc FROM {0}.{1} WHERE kind = %s ORDER BY key"), (kind,))
            return [json.loads(row["doc"]) for row in curs.fetchall()]

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
            return [json.loads(row["doc"]) for row in curs.fetchall()]

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
            return [(r["kind"], r["key"], r["doc"]) for r in curs.fetchall()]

    def _holds_kind(self, kind: str) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT 1 FROM {0}.{1} WHERE kind = %s LIMIT 1"), (kind,))
            return curs.fetchone() is not None

    def reset(self, application_name: str) -> None:
        """Empty the view. ``TRUNCATE`` (transactional, like ``DELETE``) leaves no dead rows
        behind: after a ``DELETE`` of millions of documents, the next rebuild's reads were
        many times slower until autovacuum had run."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("TRUNCATE {0}.{1}, {0}.{2}"))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                    Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                ),
                (application_name,),
            )
