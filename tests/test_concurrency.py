"""Concurrent writers on PostgreSQL leave one linear chain, and no reader ever sees a link
whose predecessor is not yet visible."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime

import psycopg
import pytest

from domain.clock import SimulatedClock
from domain.members import member_states
from domain.values import Contact
from infra.settings import Settings
from infra.verify import verify_record
from infra.wiring import build_application
from tests.support.builders import contact_data, state
from tests.support.db import Backend, pg_schema

#: Slow (many writers racing on each backend): `make check` leaves it out.
pytestmark = pytest.mark.slow

THREADS = 8
PROCESSES = 2
STATES_PER_WRITER = 6
EVENTS_PER_STATE = 3  # register, add contact, confirm


def write_states(url: str, codes: list[str]) -> None:
    """One writer: its own application (pool), its own States, so no version conflicts."""
    app = build_application(
        Settings(database_url=url), clock=SimulatedClock(datetime(2025, 1, 1, tzinfo=UTC))
    )
    try:
        for code in codes:
            app.register_state(state(code), code)
            app.add_contact(state(code), code, Contact.from_dict(contact_data()))
            app.confirm_entry(state(code), code)
    finally:
        app.close()


def test_concurrent_writers_leave_one_linear_chain(postgres_url: str) -> None:
    with pg_schema(postgres_url) as (url, schema):
        backend = Backend(
            "postgresql",
            url,
            "pocdir_events",
            "notification_id",
            pg_dsn=postgres_url,
            pg_schema=schema,
        )
        _race(backend)


def _race(backend: Backend) -> None:
    writers = THREADS + PROCESSES
    codes = sorted(member_states())[: writers * STATES_PER_WRITER]
    batches = [codes[i::writers] for i in range(writers)]
    errors: list[Exception] = []

    def thread_writer(batch: list[str]) -> None:
        try:
            write_states(backend.url, batch)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    stop = threading.Event()
    violations: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        assert backend.pg_dsn is not None
        with psycopg.connect(backend.pg_dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{backend.pg_schema}"')
            while not stop.is_set():
                rows = conn.execute("SELECT position, prev_position FROM event_chain").fetchall()
                seen = {p for p, _ in rows}
                violations.extend(
                    f"link {p} visible before its predecessor {prev}"
                    for p, prev in rows
                    if prev != 0 and prev not in seen
                )
                reads += 1

    build_application(backend.settings).close()  # the reader needs the tables to exist
    watcher = threading.Thread(target=reader)
    watcher.start()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=write_states, args=(backend.url, batch))
        for batch in batches[THREADS:]
    ]
    threads = [threading.Thread(target=thread_writer, args=(batch,)) for batch in batches[:THREADS]]
    try:
        for p in processes:
            p.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in processes:
            p.join(timeout=120)
    finally:
        stop.set()
        watcher.join()

    assert errors == []
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    assert violations == []
    assert reads > 0
    app = build_application(backend.settings)
    try:
        result = verify_record(app)
    finally:
        app.close()
    assert result.events == len(codes) * EVENTS_PER_STATE
    chain = backend.execute("SELECT position, prev_position FROM event_chain ORDER BY position")
    assert [prev for _, prev in chain[1:]] == [p for p, _ in chain[:-1]]  # no fork
