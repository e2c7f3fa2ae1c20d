"""The cipher key must be the record's own (issue 12, defect 5).

A record remembers which key encrypts it (a key check value, never the key) or that it has
none. Every command and the server refuse, with one line and exit code 2, a key that is not
the record's, a missing key on an encrypted record, and a key on a plaintext record, before
writing or decoding anything. ``pocdir replay`` never drops a view before its rebuild has
succeeded."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli.console import CONSOLE
from domain.values import Role
from infra.keycheck import CipherKeyMismatch
from infra.settings import Settings
from infra.wiring import build_application, build_view_runner, build_views
from tests.conftest import Backend
from tests.test_cli import POCDIR

KEY_1 = base64.b64encode(b"1" * 32).decode()
KEY_2 = base64.b64encode(b"2" * 32).decode()

#: (the key that wrote the record, the key a command is then given, what is wrong)
MISMATCHES = [
    pytest.param(KEY_1, KEY_2, "wrong", id="wrong-key"),
    pytest.param(KEY_1, None, "missing", id="missing-key"),
    pytest.param(None, KEY_1, "newly-set", id="key-on-a-plaintext-record"),
]


def run_with_key(
    backend: Backend, key: str | None, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POCDIR_DATABASE_URL": backend.url, "COLUMNS": "200"}
    env.pop("POCDIR_CIPHER_KEY", None)
    if key is not None:
        env["POCDIR_CIPHER_KEY"] = key
    return subprocess.run(
        [*POCDIR, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def settings(backend: Backend, key: str | None) -> Settings:
    return Settings(database_url=backend.url, cipher_key=key)


def event_count(backend: Backend) -> int:
    return int(backend.execute(f"SELECT COUNT(*) FROM {backend.events_table}")[0][0])


def write_record(backend: Backend, key: str | None) -> None:
    simulated = run_with_key(backend, key, "simulate", "--states", "4", "--days", "10")
    assert simulated.returncode == 0, simulated.stderr


def assert_refused(result: subprocess.CompletedProcess[str], *keys: str | None) -> None:
    """Exit code 2 and one line naming the setting, never a traceback or a key."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "POCDIR_CIPHER_KEY" in lines[0]
    for key in keys:
        if key is not None:
            assert key not in result.stderr and key not in result.stdout


@pytest.mark.parametrize(("written_with", "given", "problem"), MISMATCHES)
def test_principals_add_under_another_key_is_refused_and_writes_nothing(
    backend: Backend, written_with: str | None, given: str | None, problem: str
) -> None:
    write_record(backend, written_with)
    before = event_count(backend)
    result = run_with_key(backend, given, "principals", "add", "--role", "auditor")
    assert_refused(result, written_with, given)
    assert event_count(backend) == before
    # The record still serves with its own key.
    app = build_application(settings(backend, written_with))
    try:
        app.issue_credential(CONSOLE, Role.AUDITOR, None)
    finally:
        app.close()


@pytest.mark.parametrize(("written_with", "given", "problem"), MISMATCHES)
@pytest.mark.parametrize("command", [["pending"], ["directory"]])
def test_reads_under_another_key_exit_two_with_one_line(
    backend: Backend, written_with: str | None, given: str | None, problem: str, command: list[str]
) -> None:
    write_record(backend, written_with)
    assert_refused(run_with_key(backend, given, *command), written_with, given)


@pytest.mark.parametrize(("written_with", "given", "problem"), MISMATCHES)
def test_replay_under_another_key_leaves_the_views_intact(
    backend: Backend, written_with: str | None, given: str | None, problem: str
) -> None:
    write_record(backend, written_with)
    assert run_with_key(backend, written_with, "pending").returncode == 0  # views caught up
    own = settings(backend, written_with)
    app = build_application(own)
    try:
        view = build_views(app, own)
        before = view.dump()
        assert any(kind == "entry" for kind, _, _ in before)
        assert_refused(run_with_key(backend, given, "replay"), written_with, given)
        assert view.dump() == before
        # And the directory still answers with the right key.
        listed = run_with_key(backend, written_with, "directory", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        assert '"code"' in listed.stdout
    finally:
        app.close()


def test_a_rebuild_that_fails_midway_leaves_the_old_views_intact(backend: Backend) -> None:
    write_record(backend, None)
    own = settings(backend, None)
    app = build_application(own)
    try:
        view = build_views(app, own)
        runner = build_view_runner(app, view, own)
        runner.catch_up()
        before = view.dump()
        position = runner.position
        seen = 0

        def failing(project: Callable[..., None]) -> Callable[..., None]:
            def projector(event: Any, pos: int, docs: Any) -> None:
                nonlocal seen
                seen += 1
                if seen > 5:
                    raise RuntimeError("the rebuild stops here")
                project(event, pos, docs)

            return projector

        runner.projector = failing(runner.projector)
        runner.open_writer_view = None  # same process: the failure is this test's
        with pytest.raises(RuntimeError, match="stops here"):
            runner.rebuild(batch=10)
        assert view.dump() == before
        assert runner.position == position
    finally:
        app.close()


def test_a_replay_swaps_in_views_equal_to_those_kept_incrementally(backend: Backend) -> None:
    write_record(backend, KEY_1)
    assert run_with_key(backend, KEY_1, "pending").returncode == 0
    own = settings(backend, KEY_1)
    app = build_application(own)
    try:
        view = build_views(app, own)
        before = view.dump()
        replay = run_with_key(backend, KEY_1, "replay", "--batch", "7")
        assert replay.returncode == 0, replay.stderr
        assert view.dump() == before
        runner = build_view_runner(app, view, own)
        assert runner.position == app.recorder.max_notification_id()
    finally:
        app.close()


def test_the_record_keeps_a_key_check_value_not_the_key(backend: Backend) -> None:
    write_record(backend, KEY_1)
    rows = backend.execute("SELECT * FROM record_keys")
    assert len(rows) == 1
    flat = " ".join(str(v) for v in rows[0])
    assert KEY_1 not in flat
    assert base64.b64decode(KEY_1).hex() not in flat
    assert "AES-GCM" in flat and "active" in flat


def test_a_plaintext_record_records_that_it_has_no_key(backend: Backend) -> None:
    write_record(backend, None)
    rows = backend.execute("SELECT * FROM record_keys")
    assert len(rows) == 1 and "none" in " ".join(str(v) for v in rows[0])


@pytest.mark.parametrize("written_with", [None, KEY_1])
def test_a_record_from_before_key_check_values_is_judged_by_its_events(
    backend: Backend, written_with: str | None
) -> None:
    """A record written before the key check value existed: its first event tells whether
    it is encrypted, and with which key; the first write then records it."""
    write_record(backend, written_with)
    backend.execute("DROP TABLE record_keys")
    other = KEY_2 if written_with else KEY_1
    before = event_count(backend)
    assert_refused(run_with_key(backend, other, "principals", "add", "--role", "auditor"))
    assert event_count(backend) == before
    added = run_with_key(backend, written_with, "principals", "add", "--role", "auditor")
    assert added.returncode == 0, added.stderr
    assert len(backend.execute("SELECT * FROM record_keys")) == 1


def test_verification_needs_no_key_on_an_encrypted_record(backend: Backend) -> None:
    write_record(backend, KEY_1)
    verified = run_with_key(backend, None, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "record intact" in verified.stdout
    assert_refused(run_with_key(backend, KEY_2, "verify"), KEY_2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("written_with", "given", "problem"), MISMATCHES)
def test_the_server_refuses_to_start_under_another_key(
    backend: Backend, written_with: str | None, given: str | None, problem: str
) -> None:
    write_record(backend, written_with)
    port = str(_free_port())
    try:
        served = run_with_key(backend, given, "serve", "--port", port, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the server started under another key")
    assert_refused(served, written_with, given)


@pytest.mark.parametrize(("written_with", "given", "problem"), MISMATCHES)
def test_an_app_under_another_key_answers_503_never_500(
    backend: Backend, written_with: str | None, given: str | None, problem: str
) -> None:
    """The server's services are built on the first request (so that it starts while the
    database is down): a key found wrong then is a 503 naming the setting, not a 500."""
    write_record(backend, written_with)
    own = build_application(settings(backend, written_with))
    try:
        _, token = own.issue_credential(CONSOLE, Role.STATE, "FRA")
    finally:
        own.close()
    app = create_app(settings(backend, given))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        for path in ("/directory", "/audit/head", "/pending"):
            answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert "POCDIR_CIPHER_KEY" in answer.json()["detail"]


def test_two_processes_starting_on_an_empty_record_with_different_keys_cannot_both_write(
    backend: Backend,
) -> None:
    """Both find the record empty, so both start; the first write records its key, in the
    same transaction, and the other's first write is refused and leaves nothing."""
    first = build_application(settings(backend, KEY_1))
    second = build_application(settings(backend, KEY_2))
    try:
        first.issue_credential(CONSOLE, Role.AUDITOR, None)
        written = event_count(backend)
        with pytest.raises(CipherKeyMismatch, match="POCDIR_CIPHER_KEY"):
            second.issue_credential(CONSOLE, Role.AUDITOR, None)
        assert event_count(backend) == written
        first.issue_credential(CONSOLE, Role.AUDITOR, None)  # the first goes on
        assert event_count(backend) == written + 1
    finally:
        first.close()
        second.close()
