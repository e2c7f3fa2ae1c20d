"""Persistent views: JSON documents in the record's own database, written together with their
tracking position in one transaction (exactly once), on SQLite and on PostgreSQL.

Each backend's view recorder is a subclass of the library's ``TrackingRecorder`` for that
backend, so the tracking table and its "never go backwards" guarantee are the library's:
a batch whose tracking position does not advance raises ``IntegrityError`` and rolls back
with its document changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

VIEW_TABLE = "view_documents"
VIEW_CACHE_KIB = -262144

#: (kind, key) -> document, or None to delete it.
Changes = dict[tuple[str, str], dict[str, Any] | None]


def dumps(doc: dict[str, Any]) -> str:
    """Documents are stored as canonical JSON, so equal views are byte-identical."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def split_changes(
    changes: Changes,
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """Rows to upsert (kind, key, canonical JSON) and keys to delete."""
    upserts = [(k, key, dumps(d)) for (k, key), d in changes.items() if d is not None]
    deletes = [(k, key) for (k, key), d in changes.items() if d is None]
    return upserts, deletes


class ViewRecorder(Protocol):
    def max_tracking_id(self, application_name: str) -> int | None: ...

    def apply(self, tracking: Tracking, changes: Changes) -> None: ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]: ...

    def dump(self) -> list[tuple[str, str, str]]: ...

    def reset(self, application_name: str) -> None: ...


class SQLiteViewRecorder(SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {VIEW_TABLE} ("
            "kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID",
        ]

    def apply(self, tracking: Tracking, changes: Changes) -> None:
        upserts, deletes = split_changes(changes)
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA cache_size = {VIEW_CACHE_KIB}")
            c.execute("PRAGMA wal_autocheckpoint = 20000")
            if upserts:
                c.executemany(
                    f"INSERT INTO {VIEW_TABLE} VALUES (?, ?, ?) "
                    "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
                    upserts,
                )
            if deletes:
                c.executemany(f"DELETE FROM {VIEW_TABLE} WHERE kind = ? AND key = ?", deletes)
            self._insert_tracking(c, tracking)

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.get_many(kind, [key]).get(key)

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


class PostgresViewRecorder(PostgresTrackingRecorder):
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

    def apply(self, tracking: Tracking, changes: Changes) -> None:
        upserts, deletes = split_changes(changes)
        with self.datastore.transaction(commit=True) as curs:
            if upserts:
                curs.executemany(
                    self._sql(
                        "INSERT INTO {0}.{1} VALUES (%s, %s, %s) "
                        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc"
                    ),
                    upserts,
                )
            if deletes:
                curs.executemany(
                    self._sql("DELETE FROM {0}.{1} WHERE kind = %s AND key = %s"), deletes
                )
            self._insert_tracking(curs, tracking)

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.get_many(kind, [key]).get(key)

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
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("DELETE FROM {0}.{1}"))
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = %s").format(
                    Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
                ),
                (application_name,),
            )
