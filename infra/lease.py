"""The projection runner's lease: which one process may write a record's views.

Several servers may serve one record; each follows it, but only the holder of this lease
projects events into the views (``infra.follower``). The database enforces it, so it holds
across processes and hosts, not just threads:

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``), keyed by the
  record's schema, taken on a connection the lease keeps for itself. Why a lock and not a
  lease row: the server releases it the moment the holder's session ends, so a holder killed
  on its host is replaced at the next poll, with no expiry to wait out and no clocks to
  agree. The session sets TCP keepalives (idle and interval a fifth of the lease, three
  probes) so that a holder whose host vanished is dropped within about the lease duration.
* **SQLite**: a lease row ``(holder, expires_at)`` in ``pocdir_runner_lease``, in the same
  file. It is taken or renewed by one conditional ``UPDATE`` (SQLite runs it under its write
  lock): taken if free or expired, renewed by its holder. The holder renews every third of
  the lease (``POCDIR_RUNNER_LEASE_SECONDS``) and stops writing as soon as its own copy of
  the expiry has passed, renewed or not. A holder that dies is replaced once its lease has
  expired: within the lease duration plus one poll interval (``POCDIR_RUNNER_POLL_SECONDS``).
  SQLite is one host, so every process reads the same clock.

The lease is the first line of defence. The second is in the views themselves: each batch is
written with the position it starts after, and a batch whose view moved on is refused
(``projections.store``), so a holder that lost its lease mid-batch writes nothing twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol
from uuid import uuid4

import psycopg
from eventsourcing.sqlite import SQLiteDatastore

from infra.settings import Settings
from infra.store import DatabaseTimeout

log = logging.getLogger("pocdir.lease")

#: The advisory lock's first key (ASCII "pocv"); the second is the hash of the schema name,
#: so two records in two schemas of one database have two leases.
ADVISORY_CLASS = 0x706F6376
LEASE_TABLE = "pocdir_runner_lease"
#: The delivery worker's lease (issue 17): one worker per record sends alerts, whichever
#: process runs it; the same mechanism in its own row (SQLite) or lock key (PostgreSQL).
DELIVERY_LEASE = "delivery"
#: What the lease's own connection may fail with besides the library's errors: whoever
#: keeps the lease outlives them and tries again.
LEASE_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, sqlite3.Error, DatabaseTimeout)


class LeaseHeld(Exception):  # noqa: N818 - a state of the world, named for the user
    """Another process holds the runner lease (a server follows this record)."""


class Lease(Protocol):
    """Held by at most one process of a record at a time."""

    #: Who holds it, for logs and ``/ready``: this process's random id.
    holder: str

    @property
    def held(self) -> bool:
        """Whether this process holds it now (as far as it can tell without asking)."""
        ...

    def keep(self) -> bool:
        """Take the lease if it is free, or renew it if it is due; True if held now. Asks
        the database at most once a third of the lease while held."""
        ...

    def release(self) -> None:
        """Give the lease up now, so another process takes over at its next poll."""
        ...


class SQLiteLease:
    """A lease row in the record's own SQLite file (see the module docstring)."""

    def __init__(
        self,
        datastore: SQLiteDatastore,
        seconds: float,
        *,
        create: bool = True,
        clock: Callable[[], float] = time.time,
        name: str = "",
    ) -> None:
        self.datastore, self.seconds, self.clock = datastore, seconds, clock
        #: The lease table: the runner's, or ``pocdir_runner_lease_<name>`` for another one.
        self.table = f"{LEASE_TABLE}_{name}" if name else LEASE_TABLE
        self.holder = uuid4().hex
        self._expires = 0.0
        self._renewed = 0.0
        if create:
            with datastore.transaction(commit=True) as c:
                c.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, "
                    "expires_at REAL NOT NULL)"
                )
                c.execute(f"INSERT OR IGNORE INTO {self.table} VALUES (1, '', 0)")

    @property
    def held(self) -> bool:
        return self.clock() < self._expires

    def keep(self) -> bool:
        now = self.clock()
        if self.held and now < self._renewed + self.seconds / 3:
            return True
        if not self.held and not self._free(now):
            return False  # asked without taking SQLite's write lock, as a waiting server polls
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"UPDATE {self.table} SET holder = ?, expires_at = ? "
                "WHERE id = 1 AND (holder = ? OR expires_at <= ?)",
                (self.holder, now + self.seconds, self.holder, now),
            )
            c.execute("SELECT changes()")
            taken = c.fetchone()[0] == 1
        if taken:
            self._renewed, self._expires = now, now + self.seconds
        else:
            self._expires = 0.0
        return taken

    def _free(self, now: float) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT holder, expires_at FROM {self.table} WHERE id = 1")
            row = c.fetchone()
        return row is None or row[0] == self.holder or row[1] <= now

    def release(self) -> None:
        if self._expires == 0.0:
            return
        self._expires = 0.0
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"UPDATE {self.table} SET expires_at = 0 WHERE id = 1 AND holder = ?",
                (self.holder,),
            )


class PostgresLease:
    """A session-level advisory lock on a connection of its own (see the module
    docstring)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        schema: str,
        seconds: float,
        name: str = "",
    ) -> None:
        self._connect, self.schema, self.seconds = connect, schema, seconds
        #: The lock's second key hashes this: the schema, or ``schema:name`` for another lease.
        self.key = f"{schema}:{name}" if name else schema
        self.holder = uuid4().hex
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._checked = 0.0

    @property
    def held(self) -> bool:
        return self._held

    def keep(self) -> bool:
        now = time.monotonic()
        if self._held and now < self._checked + self.seconds / 3:
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = self._connect()
            if self._held:
                # The lock lives as long as the session: a session that answers still holds it.
                self._conn.execute("SELECT 1")
            else:
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                    (ADVISORY_CLASS, self.key),
                ).fetchone()
                self._held = bool(row and row[0])
        except psycopg.Error:
            self._drop()
            raise
        self._checked = now
        return self._held

    def release(self) -> None:
        """Unlock, and close the lease's session (also when not held: it was opened to ask)."""
        if self._conn is not None and not self._conn.closed and self._held:
            try:
                self._conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (ADVISORY_CLASS, self.key)
                )
            except psycopg.Error as e:
                log.warning("runner lease not released (%s): its session ends", type(e).__name__)
        self._drop()

    def _drop(self) -> None:
        """Close the lease's session: whatever it held, the server releases."""
        self._held = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _postgres_connector(settings: Settings) -> Callable[[], psycopg.Connection[Any]]:
    pg = settings.postgres
    keepalive = max(1, round(settings.runner_lease_seconds / 5))
    statement_ms = round(settings.db_statement_timeout * 1000)

    def connect() -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            dbname=pg.dbname,
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            connect_timeout=max(2, round(settings.db_connect_timeout)),
            autocommit=True,
            keepalives=1,
            keepalives_idle=keepalive,
            keepalives_interval=keepalive,
            keepalives_count=3,
        )
        # The server's side of the same keepalives: it drops a vanished holder's session,
        # and with it the lock. Its statements are bounded like every other.
        for name, value in (
            ("tcp_keepalives_idle", keepalive),
            ("tcp_keepalives_interval", keepalive),
            ("tcp_keepalives_count", 3),
            ("statement_timeout", statement_ms),
        ):
            conn.execute(f"SET {name} = {int(value)}")
        return conn

    return connect


def build_lease(recorder: Any, settings: Settings, name: str = "") -> Lease:
    """The runner lease of the record ``recorder`` stores (creating SQLite's lease table if
    missing), or the lease called ``name`` (``DELIVERY_LEASE``): nothing is held until
    ``keep`` is called."""
    if settings.backend == "sqlite":
        return SQLiteLease(recorder.datastore, settings.runner_lease_seconds, name=name)
    return PostgresLease(
        _postgres_connector(settings),
        settings.postgres.schema,
        settings.runner_lease_seconds,
        name=name,
    )
