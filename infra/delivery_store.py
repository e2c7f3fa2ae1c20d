"""The delivery worker's queue: alerts and deadlines planned from the record, with the record
position they were planned up to, in the record's own database (issue 17).

Each backend's store is a subclass of the library's ``TrackingRecorder`` for that backend: a
batch of planned rows and the position it was planned up to are written in one transaction
(``plan``), as a view's documents are, so a worker killed at any point re-plans exactly the
events after the last committed batch. Rows are keyed by Message-ID (a timer by its own key)
and inserted only if absent, so planning an event twice changes nothing.

A row holds no address and no content: the plan's cause, State, contact id, reference and
times (``domain.alerts.AlertPlan``). The address is looked up when the alert is sent, from the
entry as it is then, and the outcome of every attempt is an event in the record; a row only
says when to try next, and whether the alert is settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

#: The tracking name of the delivery worker's position in the record.
DELIVERY_NAME = "delivery"
QUEUE_TABLE = "delivery_queue"
ALERT, TIMER = "alert", "timer"


@dataclass(frozen=True)
class QueueRow:
    """One planned alert (``kind`` alert, ``body`` an ``AlertPlan``'s JSON) or acknowledgement
    deadline (``kind`` timer, ``body`` the notification's id); ``due_at`` in epoch seconds."""

    key: str
    kind: str
    due_at: float
    body: str
    attempts: int = 0


class DeliveryStore(Protocol):
    def create_table(self) -> None: ...

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def plan(self, rows: Sequence[QueueRow], tracking: Tracking) -> None:
        """Insert the rows that are not there yet and advance ``tracking``, atomically."""
        ...

    def due(self, now: float, limit: int, kind: str) -> list[QueueRow]:
        """Unsettled rows of ``kind`` due at ``now``, earliest first."""
        ...

    def settle(self, key: str) -> None:
        """The row needs nothing more (sent, refused, given up; a deadline handled)."""
        ...

    def retry(self, key: str, due_at: float, attempts: int) -> None: ...

    def counts(self) -> dict[str, int]:
        """How many rows are pending and settled, for status and benchmarks."""
        ...


_ROW = "key, kind, due_at, body, attempts"


def _row(r: Any) -> QueueRow:
    return QueueRow(r["key"], r["kind"], float(r["due_at"]), r["body"], int(r["attempts"]))


class SQLiteDeliveryStore(SQLiteTrackingRecorder):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {QUEUE_TABLE} ("
            "key TEXT PRIMARY KEY, kind TEXT NOT NULL, due_at REAL NOT NULL, "
            "body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
            "settled INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
            f"CREATE INDEX IF NOT EXISTS {QUEUE_TABLE}_due ON {QUEUE_TABLE} "
            "(settled, kind, due_at)",
        ]

    def plan(self, rows: Sequence[QueueRow], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {QUEUE_TABLE} ({_ROW}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                [(r.key, r.kind, r.due_at, r.body, r.attempts) for r in rows],
            )
            self._insert_tracking(c, tracking)

    def due(self, now: float, limit: int, kind: str) -> list[QueueRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {_ROW} FROM {QUEUE_TABLE} WHERE settled = 0 AND kind = ? "
                "AND due_at <= ? ORDER BY due_at, key LIMIT ?",
                (kind, now, limit),
            )
            return [_row(r) for r in c.fetchall()]

    def settle(self, key: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"UPDATE {QUEUE_TABLE} SET settled = 1 WHERE key = ?", (key,))

    def retry(self, key: str, due_at: float, attempts: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"UPDATE {QUEUE_TABLE} SET due_at = ?, attempts = ? WHERE key = ?",
                (due_at, attempts, key),
            )

    def counts(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT settled, COUNT(*) AS n FROM {QUEUE_TABLE} GROUP BY settled")
            found = {int(r["settled"]): int(r["n"]) for r in c.fetchall()}
        return {"pending": found.get(0, 0), "settled": found.get(1, 0)}


class PostgresDeliveryStore(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.queue = (Identifier(self.datastore.schema), Identifier(QUEUE_TABLE))
        self.sql_create_statements.append(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                "key text PRIMARY KEY, kind text NOT NULL, due_at double precision NOT NULL, "
                "body text NOT NULL, attempts integer NOT NULL DEFAULT 0, "
                "settled boolean NOT NULL DEFAULT false)"
            )
        )
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} (settled, kind, due_at)").format(
                Identifier(f"{QUEUE_TABLE}_due"), *self.queue
            )
        )

    def _sql(self, text: str) -> Any:
        return SQL(text).format(*self.queue)

    def plan(self, rows: Sequence[QueueRow], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if rows:
                curs.executemany(
                    self._sql(
                        f"INSERT INTO {{0}}.{{1}} ({_ROW}) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (key) DO NOTHING"
                    ),
                    [(r.key, r.kind, r.due_at, r.body, r.attempts) for r in rows],
                )
            self._insert_tracking(curs, tracking)

    def due(self, now: float, limit: int, kind: str) -> list[QueueRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    f"SELECT {_ROW} FROM {{0}}.{{1}} WHERE NOT settled AND kind = %s "
                    "AND due_at <= %s ORDER BY due_at, key LIMIT %s"
                ),
                (kind, now, limit),
            )
            return [_row(r) for r in curs.fetchall()]

    def settle(self, key: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("UPDATE {0}.{1} SET settled = true WHERE key = %s"), (key,))

    def retry(self, key: str, due_at: float, attempts: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql("UPDATE {0}.{1} SET due_at = %s, attempts = %s WHERE key = %s"),
                (due_at, attempts, key),
            )

    def counts(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT settled, COUNT(*) AS n FROM {0}.{1} GROUP BY settled"))
            found = {bool(r["settled"]): int(r["n"]) for r in curs.fetchall()}
        return {"pending": found.get(False, 0), "settled": found.get(True, 0)}


def build_delivery_store(recorder: Any, backend: str, *, create: bool = True) -> DeliveryStore:
    """The queue in the database of the record ``recorder`` stores."""
    store: Any = (
        SQLiteDeliveryStore(recorder.datastore)
        if backend == "sqlite"
        else PostgresDeliveryStore(recorder.datastore)
    )
    if create:
        store.create_table()
    return store  # type: ignore[no-any-return]
