"""The ``pocdir`` command line, as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.wiring import build_application, build_views
from tests.conftest import Backend

POCDIR = [sys.executable, "-c", "from api.cli.main import main; main()"]


def run(
    backend_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pocdir ARGS`` on ``backend_url``, 200 columns wide unless ``env`` says otherwise."""
    environ = {**os.environ, "POCDIR_DATABASE_URL": backend_url, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*POCDIR, *args], env=environ, capture_output=True, text=True, timeout=300, check=False
    )


def test_simulate_then_verify_reports_the_head_and_exits_zero(backend: Backend) -> None:
    sim = run(backend.url, "simulate", "--states", "8", "--days", "30", "--seed", "3")
    assert sim.returncode == 0, sim.stderr
    assert "register" in sim.stdout and "total" in sim.stdout
    result = run(backend.url, "verify")
    assert result.returncode == 0, result.stderr
    assert "record intact" in result.stdout
    head_position = int(backend.execute("SELECT MAX(position) FROM event_chain")[0][0])
    assert f"head position: {head_position}" in result.stdout
    assert "head hash:" in result.stdout


def test_verify_exits_one_naming_the_first_bad_position(backend: Backend) -> None:
    assert run(backend.url, "simulate", "--states", "5", "--days", "20").returncode == 0
    backend.execute(
        f"UPDATE {backend.events_table} SET state = %s WHERE {backend.position_column} = 9",
        (b"{}",),
    )
    result = run(backend.url, "verify")
    assert result.returncode == 1
    assert "position 9" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_refuses_a_populated_record_unless_told_to_skip(backend: Backend) -> None:
    assert run(backend.url, "simulate", "--states", "3", "--days", "5").returncode == 0
    again = run(backend.url, "simulate", "--states", "3", "--days", "5")
    assert again.returncode == 2
    assert "already holds events" in again.stderr
    skipped = run(backend.url, "simulate", "--states", "3", "--days", "5", "--if-empty")
    assert skipped.returncode == 0 and "not simulating" in skipped.stdout


def test_bad_settings_and_arguments_get_one_line_and_exit_two(tmp_path: Path) -> None:
    bad_url = run("mysql://localhost/db", "verify")
    assert bad_url.returncode == 2
    assert "POCDIR_DATABASE_URL" in bad_url.stderr and "Traceback" not in bad_url.stderr
    bad_states = run(f"sqlite:///{tmp_path / 'x.sqlite3'}", "simulate", "--states", "500")
    assert bad_states.returncode == 2 and "--states" in bad_states.stderr


def test_an_unreachable_postgres_exits_three_without_a_traceback() -> None:
    result = run("postgresql://postgres@127.0.0.1:1/nowhere", "verify")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr


def test_replay_rebuilds_the_same_views_and_refuses_a_batch_below_one(backend: Backend) -> None:
    """``pocdir replay`` as a user runs it: batches written from its writer process (small
    batches, so that there are many), and views equal to those kept incrementally."""
    simulated = run(backend.url, "simulate", "--states", "8", "--days", "30", "--seed", "3")
    assert simulated.returncode == 0
    assert run(backend.url, "pending").returncode == 0  # brings the views up to date
    app = build_application(backend.settings)
    try:
        view = build_views(app, backend.settings)
        incremental = view.dump()
        assert any(kind == "history" for kind, _, _ in incremental)
        replay = run(backend.url, "replay", "--batch", "50")
        assert replay.returncode == 0, replay.stderr
        assert f"views rebuilt from {app.recorder.max_notification_id()} events" in replay.stdout
        assert view.dump() == incremental
    finally:
        app.close()
    refused = run(backend.url, "replay", "--batch", "0")
    assert refused.returncode == 2
    assert "--batch" in refused.stderr and "Traceback" not in refused.stderr


def test_an_error_is_one_line_however_narrow_the_terminal(tmp_path: Path) -> None:
    """A script reading stderr gets the whole message on one line, not wrapped at 80."""
    missing = tmp_path / ("a-long-directory-name-" * 4) / "pocdir.sqlite3"
    env = {**os.environ, "POCDIR_DATABASE_URL": f"sqlite:///{missing}", "COLUMNS": "80"}
    result = subprocess.run(
        [*POCDIR, "verify"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(result.stderr.strip()) > 80
