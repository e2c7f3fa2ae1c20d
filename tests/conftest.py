"""Shared fixtures. Persistence tests take the ``backend`` fixture and run on SQLite and on
PostgreSQL. PostgreSQL is ``POCDIR_TEST_DATABASE_URL`` (default the local server); each test
gets its own schema, dropped afterwards. With ``CI=true`` an unreachable PostgreSQL fails the
run instead of skipping."""

from __future__ import annotations

import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.values import Principal, Role
from infra.settings import Settings
from infra.wiring import build_application

PG_URL = os.environ.get("POCDIR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUN_ID = uuid.uuid4().hex[:8]
_schema_numbers = itertools.count()
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def pg_available() -> str | None:
    """None if PostgreSQL answers, else the reason."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


@pytest.fixture(scope="session")
def postgres_url() -> str:
    reason = pg_available()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI=true: {reason}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {reason}")
    return PG_URL


@dataclass
class Backend:
    """One database for one test, with raw access for tamper tests."""

    name: str
    url: str
    events_table: str
    position_column: str
    sqlite_path: str | None = None
    pg_dsn: str | None = None
    pg_schema: str | None = None

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.url)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run raw SQL against the store, outside the application (for tampering)."""
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as conn:
                rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.close()
            return rows
        assert self.pg_dsn is not None
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.pg_schema}"')
            cur = conn.execute(sql, params)  # type: ignore[call-overload]
            return cur.fetchall() if cur.description else []


def _pg_schema_url(base: str, schema: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(query=f"schema={schema}"))


def sqlite_backend_at(tmp_path: Path) -> Backend:
    path = tmp_path / "pocdir.sqlite3"
    return Backend("sqlite", f"sqlite:///{path}", "stored_events", "rowid", sqlite_path=str(path))


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    """For behaviour only SQLite has (e.g. its text ids and dynamic column types)."""
    return sqlite_backend_at(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield sqlite_backend_at(tmp_path)
        return
    base = request.getfixturevalue("postgres_url")
    with pg_schema(base) as (url, schema):
        yield Backend(
            "postgresql", url, "pocdir_events", "notification_id", pg_dsn=base, pg_schema=schema
        )


@contextmanager
def pg_schema(base: str) -> Iterator[tuple[str, str]]:
    """A fresh schema for this test run, dropped afterwards: (database URL, schema name)."""
    schema = f"pocdir_test_{RUN_ID}_{next(_schema_numbers)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(base, schema), schema
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def app(backend: Backend, clock: SimulatedClock) -> Iterator[PocDirectory]:
    application = build_application(backend.settings, clock=clock)
    yield application
    application.close()


def state(code: str) -> Principal:
    """A principal acting for ``code``."""
    return Principal(f"p-{code.lower()}", Role.STATE, code)


def contact_data(contact_id: str = "cert", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "contact_id": contact_id,
        "level": "technical",
        "agency": {"language": "fr", "text": "Agence nationale", "english": "National agency"},
        "function": "CERT",
        "channels": [
            {"kind": "email", "address": f"{contact_id}@example.org"},
            {"kind": "phone", "address": "+33 1 23 45 67 89"},
        ],
        "languages": ["fr", "en"],
        "time_zone": "Europe/Paris",
        "hours": "24/7",
        "incident_types": ["malware", "ransomware"],
    }
    data.update(overrides)
    return data
