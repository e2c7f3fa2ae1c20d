"""A database outage: the API answers 503 with a retry hint while PostgreSQL is down, and
serves again by itself, without a restart, once it is back.

The outage is real: a throwaway PostgreSQL 15 cluster of our own (never the shared server at
127.0.0.1:5432), stopped with ``pg_ctl stop -m immediate`` and started again. With ``CI=true``
these tests run or fail; elsewhere they skip only when the PostgreSQL binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli_serve import CONSOLE
from api.errors import RETRY_AFTER_SECONDS
from domain.values import Role
from infra.settings import Settings
from infra.wiring import build_application

PG_BIN = Path(os.environ.get("POCDIR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user that owns the cluster (PostgreSQL refuses to run as root)

#: A request during an outage is refused within this (twice the Retry-After hint), not held.
ANSWER_WITHIN_SECONDS = 2.0 * RETRY_AFTER_SECONDS
#: Once the database is back, the same app serves again within this many retries.
RECOVERY_ATTEMPTS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A PostgreSQL cluster this module owns, on its own port, trust auth."""

    datadir: Path
    sockdir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-w", "-t", "60", "-l", str(self.sockdir / "log"), "-o", options, "start")

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def running(self) -> bool:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "status"]
        return subprocess.run(_as_postgres(cmd), capture_output=True).returncode == 0


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *cmd]
    return cmd


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).exists()]
    if missing:
        reason = f"PostgreSQL binaries missing in {PG_BIN}: {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} and CI=true")
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="pocdir-outage-"))
    try:
        datadir, sockdir = tmp / "data", tmp / "run"
        sockdir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(tmp, PG_USER)
            shutil.chown(sockdir, PG_USER)
        initdb = [
            str(PG_BIN / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        ]
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=120)
        c = Cluster(datadir, sockdir, _free_port())
        c.start()
        try:
            yield c
        finally:
            if c.running():
                c.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """The cluster, up (a failed test may have left it down), with an empty record."""
    if not cluster.running():
        cluster.start()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return cluster


def _token(settings: Settings) -> str:
    application = build_application(settings)
    try:
        _, token = application.issue_credential(CONSOLE, Role.STATE, "FRA")
    finally:
        application.close()
    return token


def _timed_get(client: TestClient, path: str, token: str) -> tuple[Any, float]:
    started = time.monotonic()
    r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    return r, time.monotonic() - started


def get_during_outage(client: TestClient, path: str, token: str, cluster: Cluster) -> Any:
    """The answer to a request made while the database is down, if it comes within
    ``ANSWER_WITHIN_SECONDS``; otherwise the test fails, after bringing the database back so
    the request still in flight can finish."""
    answer: list[tuple[Any, float]] = []
    worker = threading.Thread(target=lambda: answer.append(_timed_get(client, path, token)))
    worker.start()
    worker.join(ANSWER_WITHIN_SECONDS)
    if worker.is_alive():
        cluster.start()
        worker.join(120)
        pytest.fail(f"GET {path} during the outage: no answer within {ANSWER_WITHIN_SECONDS} s")
    r, _ = answer[0]
    assert_unavailable(r)
    return r


def assert_unavailable(r: Any) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == "unavailable", body
    assert body["detail"], body
    assert int(r.headers["Retry-After"]) == RETRY_AFTER_SECONDS


def serves_again(client: TestClient, path: str, token: str) -> int:
    """The number of requests until one succeeds; every one before it is a clean 503."""
    for attempt in range(1, RECOVERY_ATTEMPTS + 1):
        r, _ = _timed_get(client, path, token)
        if r.status_code == 200:
            return attempt
        assert_unavailable(r)
        time.sleep(0.5)
    pytest.fail(f"still no 200 after {RECOVERY_ATTEMPTS} requests with the database back")


def test_requests_while_the_database_is_down_get_503_with_retry_after_within_seconds(
    running: Cluster,
) -> None:
    settings = Settings(database_url=running.url)
    token = _token(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in ("/directory", "/notifications/inbox"):
            r, _ = _timed_get(client, path, token)
            assert r.status_code == 200, r.text

        running.stop()
        for path in ("/directory", "/notifications/inbox", "/directory"):
            get_during_outage(client, path, token, running)
        # Liveness does not depend on the database.
        assert client.get("/health").status_code == 200

        running.start()
        serves_again(client, "/directory", token)
        r, _ = _timed_get(client, "/notifications/inbox", token)
        assert r.status_code == 200, r.text


def test_the_same_app_serves_again_by_itself_when_the_database_returns(
    running: Cluster,
) -> None:
    settings = Settings(database_url=running.url)
    token = _token(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r, _ = _timed_get(client, "/directory", token)
        assert r.status_code == 200, r.text

        running.stop()  # kills the pooled connections
        answer: list[tuple[Any, float]] = []
        worker = threading.Thread(
            target=lambda: answer.append(_timed_get(client, "/notifications/inbox", token))
        )
        worker.start()
        time.sleep(1.0)  # the request is held or refused while the database is down
        running.start()
        worker.join(120)
        assert not worker.is_alive(), "a request made during the outage never finished"
        r, _ = answer[0]
        if r.status_code != 200:  # refused before the database came back: cleanly
            assert_unavailable(r)

        serves_again(client, "/directory", token)
        r, _ = _timed_get(client, "/notifications/inbox", token)
        assert r.status_code == 200, r.text


def test_an_app_started_while_the_database_is_down_answers_503_then_recovers(
    running: Cluster,
) -> None:
    settings = Settings(database_url=running.url)
    token = _token(settings)
    running.stop()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        get_during_outage(client, "/directory", token, running)
        get_during_outage(client, "/directory", token, running)

        running.start()
        serves_again(client, "/directory", token)
