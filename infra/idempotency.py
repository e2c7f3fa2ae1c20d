"""The idempotency-key table: each keyed request once, and its first outcome.

One row per (scope, key), in the record's own database but outside the hash chain (it is
operational metadata, not part of the record; ``docs/audit-format.md`` says so):

* **reserved**: a request took the key before running (``holder`` is its token). A second
  request with the key meanwhile is told the first is in flight (409). A reservation whose
  request died is taken over after ``lease`` seconds (the database wait bound, 16 s by
  default). Taking over is safe even if the first request is still running: a commit names
  its reservation's holder, so at most one of the two can commit (the other is refused and
  rolled back), whichever comes first.
* **committed**: ``position`` is set *in the transaction that writes the request's events*
  (the recorders in ``infra.store`` call ``record_in_transaction``), so a crash can never
  separate the events from their key. A commit whose reservation was taken over is refused
  (``KeyAlreadyRecorded``) and rolled back.
* **answered**: the first outcome (status, a few headers, body) is stored after the request,
  so a retry gets the same answer and writes nothing. With a cipher key the stored answer is
  encrypted like event state, since it may quote contact details or an exchange's content.

Rows are kept for ``retention`` (at least 24 hours, ``POCDIR_IDEMPOTENCY_RETENTION_HOURS``)
and then purged.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol

from domain.idempotency import MIN_RETENTION, IdempotencyKey, KeyAlreadyRecorded

IDEMPOTENCY_TABLE: Final = "idempotency_keys"
#: Seconds after which, by default, a reservation whose request never finished may be taken
#: over (the composition root passes the settings' database wait bound).
RESERVATION_LEASE: Final = 16.0
#: The status stored for a request that committed but could not be answered.
UNANSWERED: Final = 0
#: How often (seconds) a process purges expired keys.
PURGE_EVERY: Final = 600.0


class Cipher(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


class Cursor(Protocol):
    def execute(self, statement: Any, params: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...


def create_table_statements(table: str, blob: str, real: str) -> list[str]:
    """DDL of the key table; ``blob`` and ``real`` are the backend's type names."""
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "scope TEXT NOT NULL, "
        "key TEXT NOT NULL, "
        "digest TEXT NOT NULL, "
        "holder TEXT, "
        f"reserved_at {real} NOT NULL, "
        "position BIGINT, "
        "status INTEGER, "
        f"answer {blob}, "
        "PRIMARY KEY (scope, key))",
    ]


@dataclass(frozen=True)
class KeyRow:
    digest: str
    holder: str | None
    reserved_at: float
    position: int | None
    status: int | None
    answer: bytes | None


@dataclass(frozen=True)
class Answer:
    """A stored first outcome: what a retry is answered with."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class KeyStatements:
    """The table's statements, in one form for both backends (``%s`` placeholders, which the
    SQLite recorder turns into ``?``). Both support ``ON CONFLICT`` and ``RETURNING``."""

    def __init__(self, table: str, placeholder: str = "%s") -> None:
        def q(sql: str) -> str:
            return sql.format(t=table).replace("%s", placeholder)

        cols = "digest, holder, reserved_at, position, status, answer"
        self.reserve = q(
            "INSERT INTO {t} (scope, key, digest, holder, reserved_at) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
        )
        self.select = q(f"SELECT {cols} FROM {{t}} WHERE scope = %s AND key = %s")
        self.take_over = q(
            "UPDATE {t} SET holder = %s, reserved_at = %s WHERE scope = %s AND key = %s "
            "AND position IS NULL AND status IS NULL AND reserved_at < %s RETURNING 1"
        )
        self.commit_reserved = q(
            "UPDATE {t} SET position = %s WHERE scope = %s AND key = %s AND holder = %s "
            "AND digest = %s AND position IS NULL AND status IS NULL RETURNING 1"
        )
        self.insert_committed = q(
            "INSERT INTO {t} (scope, key, digest, holder, reserved_at, position) "
            "VALUES (%s, %s, %s, NULL, %s, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
        )
        self.answer = q(
            "UPDATE {t} SET status = %s, answer = %s WHERE scope = %s AND key = %s AND holder = %s"
        )
        self.release = q(
            "DELETE FROM {t} WHERE scope = %s AND key = %s AND holder = %s AND position IS NULL"
        )
        self.unanswerable = q(
            f"UPDATE {{t}} SET status = {UNANSWERED} WHERE scope = %s AND key = %s "
            "AND holder = %s AND position IS NOT NULL"
        )
        self.purge = q("DELETE FROM {t} WHERE reserved_at < %s")


def record_in_transaction(
    c: Cursor, statements: KeyStatements, key: IdempotencyKey, first_position: int
) -> None:
    """Write ``key`` as committed at ``first_position``, inside the events' transaction.
    ``KeyAlreadyRecorded`` (which rolls the transaction back) if another request has it."""
    if key.holder is not None:
        c.execute(
            statements.commit_reserved,
            (first_position, key.scope, key.key, key.holder, key.digest),
        )
    else:
        c.execute(
            statements.insert_committed,
            (key.scope, key.key, key.digest, time.time(), first_position),
        )
    if c.fetchone() is None:
        raise KeyAlreadyRecorded(f"the idempotency key {key.key[:40]!r} was used meanwhile")


class KeyRecorder(Protocol):
    """What the table needs of a recorder: its statements and a transaction."""

    idempotency_statements: KeyStatements

    def idempotency_transaction(self) -> AbstractContextManager[Cursor]: ...


# -- outcomes of taking a key ----------------------------------------------------------------


@dataclass(frozen=True)
class Reserved:
    """The key is this request's: run it with ``key`` (which carries the holder token)."""

    key: IdempotencyKey


@dataclass(frozen=True)
class Replay:
    """The request was answered before: answer the same."""

    answer: Answer


@dataclass(frozen=True)
class InFlight:
    """A request with this key is running."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used for a different request."""


@dataclass(frozen=True)
class AppliedUnanswered:
    """The request committed at ``position``, but its answer was never stored (the server
    stopped, or failed, between the commit and the answer)."""

    position: int


Taken = Reserved | Replay | InFlight | Mismatch | AppliedUnanswered


class IdempotencyKeys:
    """The key table over one record, used by the HTTP layer and the CLI."""

    def __init__(
        self,
        recorder: KeyRecorder,
        cipher: Cipher | None,
        retention: timedelta = MIN_RETENTION,
        lease: float = RESERVATION_LEASE,
        clock: Callable[[], float] = time.time,
        new_holder: Callable[[], str] | None = None,
    ) -> None:
        if retention < MIN_RETENTION:
            raise ValueError(f"idempotency keys are kept at least {MIN_RETENTION}")
        self.recorder = recorder
        self.statements = recorder.idempotency_statements
        self.cipher = cipher
        self.retention = retention
        self.lease = lease
        self.clock = clock
        self._new_holder = new_holder or _random_holder
        self._purged_at = 0.0
        self._purge_lock = threading.Lock()

    def take(self, key: IdempotencyKey) -> Taken:
        """Reserve ``key`` for a request about to run, or say why it must not run."""
        now = self.clock()
        holder = self._new_holder()
        s = self.statements
        with self.recorder.idempotency_transaction() as c:
            c.execute(s.reserve, (key.scope, key.key, key.digest, holder, now))
            if c.fetchone() is not None:
                return Reserved(_with_holder(key, holder))
            row = _row(c, s, key)
            if row is None:  # purged between the two statements
                return InFlight()
            if row.digest != key.digest:
                return Mismatch()
            if row.status is not None and row.answer is not None:
                return Replay(self._decode(row.answer, row.status))
            if row.position is not None:
                if row.status is None and now - row.reserved_at < self.lease:
                    return InFlight()
                return AppliedUnanswered(row.position)
            if now - row.reserved_at < self.lease:
                return InFlight()
            c.execute(s.take_over, (holder, now, key.scope, key.key, now - self.lease))
            if c.fetchone() is None:
                return InFlight()
            return Reserved(_with_holder(key, holder))

    def find(self, key: IdempotencyKey) -> KeyRow | None:
        with self.recorder.idempotency_transaction() as c:
            return _row(c, self.statements, key)

    def answer(self, key: IdempotencyKey, answer: Answer) -> None:
        """Store the first outcome of the request that holds ``key``."""
        with self.recorder.idempotency_transaction() as c:
            c.execute(
                self.statements.answer,
                (answer.status, self._encode(answer), key.scope, key.key, key.holder),
            )
        self.purge_if_due()

    def release(self, key: IdempotencyKey) -> None:
        """After a server error: give the key back if nothing committed, so a retry runs
        anew. A key whose events did commit stays taken (a retry must not write them again)
        and is marked finished without an answer, so a retry is told so at once."""
        params = (key.scope, key.key, key.holder)
        with self.recorder.idempotency_transaction() as c:
            c.execute(self.statements.release, params)
            c.execute(self.statements.unanswerable, params)

    def purge_if_due(self) -> None:
        now = self.clock()
        with self._purge_lock:
            if now - self._purged_at < PURGE_EVERY:
                return
            self._purged_at = now
        with self.recorder.idempotency_transaction() as c:
            c.execute(self.statements.purge, (now - self.retention.total_seconds(),))

    def _encode(self, answer: Answer) -> bytes:
        data = json.dumps(
            {"headers": answer.headers, "body": base64.b64encode(answer.body).decode()}
        ).encode()
        return self.cipher.encrypt(data) if self.cipher is not None else data

    def _decode(self, stored: bytes, status: int) -> Answer:
        data = self.cipher.decrypt(bytes(stored)) if self.cipher is not None else bytes(stored)
        obj = json.loads(data)
        return Answer(
            status,
            tuple((str(k), str(v)) for k, v in obj["headers"]),
            base64.b64decode(obj["body"]),
        )


def _random_holder() -> str:
    return secrets.token_hex(16)


def _with_holder(key: IdempotencyKey, holder: str) -> IdempotencyKey:
    return IdempotencyKey(key.scope, key.key, key.digest, holder)


def _row(c: Cursor, s: KeyStatements, key: IdempotencyKey) -> KeyRow | None:
    c.execute(s.select, (key.scope, key.key))
    row = c.fetchone()
    if row is None:
        return None
    values: Sequence[Any] = tuple(row.values()) if isinstance(row, dict) else tuple(row)
    digest, holder, reserved_at, position, status, answer = values
    return KeyRow(
        digest, holder, float(reserved_at), position, status, bytes(answer) if answer else None
    )
