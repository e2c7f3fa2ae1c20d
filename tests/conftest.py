"""Shared fixtures. Persistence tests take the ``backend`` fixture and run on SQLite and on
PostgreSQL. PostgreSQL is ``POCDIR_TEST_DATABASE_URL`` (default the local server); each test
gets its own schema, dropped afterwards. With ``CI=true`` an unreachable PostgreSQL fails the
run instead of skipping. What is not a fixture lives in ``tests/support/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from infra.wiring import build_application
from tests.support.builders import START
from tests.support.cluster import Cluster, binaries_missing, throwaway_cluster
from tests.support.db import PG_URL, Backend, pg_available, pg_schema, sqlite_backend_at
from tests.support.http import Api, api_for
from tests.support.record_keys import record_key_env


@pytest.fixture(scope="session", autouse=True)
def record_keys_in_environment() -> Iterator[None]:
    """The run's operator and server keys, named in the environment that CLI and server
    processes started by tests inherit (``tests.support.record_keys``)."""
    saved = {k: os.environ.get(k) for k in record_key_env()}
    os.environ.update(record_key_env())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _required_in_ci(reason: str) -> None:
    """Fail with ``CI=true`` (where everything must run), else skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} and CI=true")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    reason = pg_available()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable and CI=true: {reason}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {reason}")
    return PG_URL


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


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def app(backend: Backend, clock: SimulatedClock) -> Iterator[PocDirectory]:
    application = build_application(backend.settings, clock=clock)
    yield application
    application.close()


@pytest.fixture
def api(backend: Backend, clock: SimulatedClock) -> Iterator[Api]:
    """The HTTP API over the test's database, on the test's clock (modules that need other
    settings define their own ``api``)."""
    with api_for(backend.settings, clock) as a:
        yield a


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the module (skipped without its binaries, unless
    ``CI=true``)."""
    missing = binaries_missing()
    if missing is not None:
        _required_in_ci(missing)
    with throwaway_cluster() as c:
        yield c
