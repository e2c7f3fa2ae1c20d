"""What the benchmark scripts share: a description of the machine they ran on, its load,
fresh databases to build records in, and a fast way to fill one with synthetic events."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages now, for the figures' context."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def with_schema(url: str, schema: str | None) -> str:
    """``url`` naming ``schema`` (``None``: naming none, as libpq wants it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    if schema is not None:
        query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def fresh_database(backend: str, tag: str, tmpdir: str, pg_url: str) -> Iterator[str]:
    """The database URL of a new, empty record: a SQLite file in ``tmpdir``, or a PostgreSQL
    schema of its own in ``pg_url``'s database, dropped on the way out whatever happened."""
    if backend == "sqlite":
        yield f"sqlite:///{os.path.join(tmpdir, f'{tag}.sqlite3')}"
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_{tag}_{secrets.token_hex(4)}"
    conninfo = with_schema(pg_url, None)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_schema(pg_url, schema)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


#: Synthetic events a transaction when filling a record.
INSERT_BATCH = 10_000
#: The topic of the synthetic events: the tree, the tiles and the verifiers see only their
#: canonical records, so their content does not matter.
SYNTHETIC_TOPIC = "bench.proofs:Synthetic.Happened"


def fill(app: object, count: int, rng: random.Random) -> float:
    """Append ``count`` synthetic events through the chained recorder's own
    ``insert_events`` (real links, ``INSERT_BATCH`` a transaction; the application's commands
    would take hours at a million events); seconds taken."""
    from eventsourcing.persistence import StoredEvent

    recorder = app.recorder  # type: ignore[attr-defined]
    started = time.perf_counter()
    done = 0
    while done < count:
        n = min(INSERT_BATCH, count - done)
        events = []
        for _ in range(n):
            state = rng.randbytes(rng.randrange(150, 350))
            events.append(StoredEvent(uuid.uuid4(), 1, SYNTHETIC_TOPIC, state))
        recorder.insert_events(events)
        done += n
        if done % 100_000 == 0:
            print(f"    filled {done:,} events", flush=True)
    return time.perf_counter() - started
