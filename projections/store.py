"""Persistent views: JSON documents in the record's own database, written together with their
tracking position in one transaction (exactly once), on SQLite and on PostgreSQL.

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
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

VIEW_TABLE = "view_documents"
#: SQLite page cache of a connection writing the view (negative: KiB). The default 2 MB
#: cannot hold the pages a batch touches in a view of millions of documents, and spilling
#: them mid-transaction made each batch's upserts several times slower.
VIEW_CACHE_KIB = -262144

#: (kind, key) -> document, or None to delete it.
Changes = dict[tuple[str, str], dict[str, Any] | None]
#: Rows to upsert (kind, key, canonical JSON) and keys to delete.
Rows = tuple[list[tuple[str, str, str]], list[tuple[str, str]]]


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


def split_changes(changes: Changes) -> Rows:
    """Rows to upsert (kind, key, canonical JSON) and keys to delete. Serialising here, not
    when the rows are written, leaves the caller free to change the documents afterwards."""
    upserts: list[tuple[str, str, str]] = []
    deletes: list[tuple[str, str]] = []
    encode = _encode
    for (kind, key), doc in changes.items():
        if doc is None:
            deletes.append((kind, key))
        else:
            upserts.append((kind, key, encode(doc)))
    return upserts, deletes


#: Per-connection staging table for a batch's upserts on PostgreSQL (emptied on commit).
STAGING_TABLE = "pg_temp.pocdir_view_staging"


class ViewRecorder(Protocol):
    def max_tracking_id(self, application_name: str) -> int | None: ...

    def apply(self, tracking: Tracking, changes: Changes) -> None: ...

    def write(self, tracking: Tracking, rows: Rows) -> None: ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]: ...

    def dump(self) -> list[tuple[str, str, str]]: ...

    def reset(self, application_name: str) -> None: ...


class _ViewBackend:
    """What both backends' view recorders derive from their own ``write`` and ``get_many``."""

    def write(self, tracking: Tracking, rows: Rows) -> None:
        raise NotImplementedError

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def apply(self, tracking: Tracking, changes: Changes) -> None:
        self.write(tracking, split_changes(changes))

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.get_many(kind, [key]).get(key)


#: Rows per SQLite ``INSERT`` (three parameters each, under SQLite's limit of 32,766).
SQLITE_ROWS_PER_INSERT = 1000


@functools.lru_cache(maxsize=8)
def _sqlite_upsert(rows: int) -> str:
    """One statement for many rows: SQLite inserts them all in one call that releases the
    interpreter lock once, where ``executemany`` took it back after every row (and waited
    for it while the runner's other thread was projecting)."""
    return (
        f"INSERT INTO {VIEW_TABLE} VALUES {','.join(['(?,?,?)'] * rows)} "
        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc"
    )


class SQLiteViewRecorder(_ViewBackend, SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {VIEW_TABLE} ("
            "kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID",
        ]

    def write(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete ``rows`` and advance ``tracking`` in one transaction."""
        upserts, deletes = rows
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA cache_size = {VIEW_CACHE_KIB}")
            # In key order, each row lands next to the previous one in the table's b-tree:
            # about three times faster than in the batch's order for a large view.
            upserts = sorted(upserts)
            for i in range(0, len(upserts), SQLITE_ROWS_PER_INSERT):
                chunk = upserts[i : i + SQLITE_ROWS_PER_INSERT]
                c.execute(_sqlite_upsert(len(chunk)), [v for row in chunk for v in row])
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

    def dump(self) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT kind, key, doc FROM {VIEW_TABLE} ORDER BY kind, key")
            return [(r[0], r[1], r[2]) for r in c.fetchall()]

    def reset(self, application_name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {VIEW_TABLE}")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))


class PostgresViewRecorder(_ViewBackend, PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.view_table = (Identifier(self.datastore.schema), Identifier(VIEW_TABLE))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                'kind text NOT NULL, key text COLLATE "C" NOT NULL, doc text NOT NULL, '
                "PRIMARY KEY (kind, key))"
            ).format(*self.view_table)
        )

    def _sql(self, text: str) -> Any:
        return SQL(text).format(*self.view_table)

    def write(self, tracking: Tracking, rows: Rows) -> None:
        """Upsert and delete ``rows`` and advance ``tracking`` in one transaction.

        The upserts are copied (``COPY``) into a temporary table and merged with one
        ``INSERT ... ON CONFLICT``: one round trip for the whole batch, where
        ``executemany`` sent and adapted each row in Python."""
        upserts, deletes = rows
        with self.datastore.transaction(commit=True) as curs:
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

    def dump(self) -> list[tuple[str, str, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql('SELECT kind, key, doc FROM {0}.{1} ORDER BY kind COLLATE "C", key')
            )
            return [(r["kind"], r["key"], r["doc"]) for r in curs.fetchall()]

    def reset(self, application_name: str) -> None:
        """Empty the view. ``TRUNCATE`` (transactional, like ``DELETE``) leaves no dead rows
        behind: after a ``DELETE`` of millions of documents, the next rebuild's reads were
        many times slower until autovacuum had run."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("TRUNCATE {0}.{1}"))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                    Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                ),
                (application_name,),
            )
