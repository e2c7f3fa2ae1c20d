"""Servers start on a record that another server is writing to (two or more ``pocdir serve``
processes on one record, as deployed): a start-up's table creation and first writes wait for
the other process's write lock rather than failing with SQLite's "database is locked", and
the writer's own writes (events, views, lease, Merkle tree) go on without a database error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import ROOT
from tests.support.db import Backend

#: Slow (processes that start servers while another writes): `make check` leaves it out.
pytestmark = pytest.mark.slow

#: Starter processes running at once, and the start-ups each makes: twenty start-ups in all.
STARTERS = 4
STARTS_EACH = 5
#: A liveness bound only: the start-ups take a few seconds on a loaded machine.
DEADLINE = 120.0

#: A server's work without HTTP: its services (record, views, runner, Merkle tree,
#: idempotency keys), writing events as fast as it can while its runner projects them and
#: the tree grows. It prints "writing" once it has written, and writes until it is killed.
WRITER = """
from domain.members import member_states
from domain.values import Contact
from infra.settings import Settings
from infra.wiring import build_services
from tests.support.builders import contact_data, state
services = build_services(Settings.from_env())
app = services.application
codes = sorted(member_states())
for i in range(10**9):
    code = codes[i % len(codes)]
    if i < len(codes):
        app.register_state(state(code), code)
    app.add_contact(state(code), code, Contact.from_dict(contact_data(f"c{i}")))
    if i % 5 == 0:
        services.transparency.tree_size()
    if i == 0:
        print("writing", flush=True)
"""

#: A server's start-up, made again and again (each a new pool with new connections, as a
#: new process has): it prints the first failure on one line and exits 1.
STARTER = """
import sys
from eventsourcing.persistence import PersistenceError
from infra.settings import Settings
from infra.wiring import build_services
settings = Settings.from_env()
for n in range(int(sys.argv[1])):
    try:
        build_services(settings).close()
    except PersistenceError as e:
        print(f"start-up {n + 1} failed: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
print("started", sys.argv[1], flush=True)
"""


def _events(backend: Backend) -> int:
    return int(backend.execute(f"SELECT COUNT(*) FROM {backend.events_table}")[0][0])


def test_servers_start_without_a_database_error_while_another_server_writes(
    backend: Backend, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "POCDIR_DATABASE_URL": backend.url,
        # The writer's runner projects every few events, and its lease is renewed often.
        "POCDIR_RUNNER_POLL_SECONDS": "0.05",
    }
    writer_log = tmp_path / "writer.log"
    with writer_log.open("w") as log:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    starters: list[subprocess.Popen[str]] = []
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing", writer_log.read_text()
        before = _events(backend)
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(STARTS_EACH)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(STARTERS)
        ]
        deadline = time.monotonic() + DEADLINE
        outputs = [
            p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in starters
        ]
        after = _events(backend)
        assert writer.poll() is None, writer_log.read_text()
    finally:
        for p in [*starters, writer]:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    failures = [out.strip() for p, out in zip(starters, outputs, strict=True) if p.returncode]
    assert not failures, failures
    assert all(out.strip() == f"started {STARTS_EACH}" for out in outputs), outputs
    # The start-ups overlapped the writer's writes, and those never failed either (its
    # runner logs a database error it retries, which would show here).
    assert after > before
    logged = writer_log.read_text()
    assert "Error" not in logged and "locked" not in logged, logged
