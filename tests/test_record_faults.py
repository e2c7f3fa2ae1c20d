"""Faults of the stored record are reported as record faults, at their position (exit 1, the
typed ``VerificationError`` with expected and computed values), by ``verify`` and by the
audit bundle (``audit export`` then ``audit verify``); never as a crash, and never as an
unreachable database. An unreadable SQLite file is exit 3 with one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import issued, run
from tests.support.db import Backend

#: Slow (each test runs `pocdir` in processes of its own): `make check` leaves it out.
pytestmark = pytest.mark.slow


def _record(backend: Backend) -> None:
    simulated = run(backend.url, "simulate", "--states", "3", "--days", "3")
    assert simulated.returncode == 0, simulated.stderr


def _failed_at(result: subprocess.CompletedProcess[str], position: int) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"verification FAILED at position {position}:" in result.stderr
    assert "expected:" in result.stderr and "computed:" in result.stderr
    assert "Traceback" not in result.stderr


def _bundle_fails_at(backend: Backend, tmp_path: Path, position: int) -> str:
    exported = run(backend.url, "audit", "export", str(tmp_path / "bundle"))
    assert exported.returncode == 0, exported.stderr
    checked = run(backend.url, "audit", "verify", str(tmp_path / "bundle"))
    _failed_at(checked, position)
    return checked.stderr


def test_a_forged_row_at_a_negative_position_is_a_record_fault(
    backend: Backend, tmp_path: Path
) -> None:
    _record(backend)
    table, pos = backend.events_table, backend.position_column
    backend.execute(
        f"INSERT INTO {table} ({pos}, originator_id, originator_version, topic, state) "
        f"SELECT -5, originator_id, originator_version + 1000, topic, state FROM {table} "
        f"WHERE {pos} = 1"
    )
    backend.execute("INSERT INTO event_chain VALUES (-5, 0, %s, %s)", (bytes(32), bytes(32)))
    verified = run(backend.url, "verify")
    _failed_at(verified, -5)
    assert "position" in verified.stderr and "-5" in verified.stderr
    _bundle_fails_at(backend, tmp_path, -5)


def test_a_topic_that_is_not_utf8_is_a_record_fault(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    _record(sqlite_backend)
    sqlite_backend.execute(
        "UPDATE stored_events SET topic = CAST(X'646f6d61696eff3a58' AS TEXT) WHERE rowid = 3"
    )
    verified = run(sqlite_backend.url, "verify")
    _failed_at(verified, 3)
    assert "UTF-8" in verified.stderr
    assert "UTF-8" in _bundle_fails_at(sqlite_backend, tmp_path, 3)


@pytest.mark.parametrize("column", ["topic", "originator_id"])
def test_a_blob_topic_or_id_is_a_record_fault_in_verify_and_in_the_bundle(
    column: str, sqlite_backend: Backend, tmp_path: Path
) -> None:
    _record(sqlite_backend)
    sqlite_backend.execute(
        f"UPDATE stored_events SET {column} = CAST({column} AS BLOB) WHERE rowid = 4"
    )
    assert sqlite_backend.execute(
        f"SELECT typeof({column}) FROM stored_events WHERE rowid = 4"
    ) == [("blob",)]
    _failed_at(run(sqlite_backend.url, "verify"), 4)
    assert "blob" in _bundle_fails_at(sqlite_backend, tmp_path, 4)


def test_the_36_character_spelling_of_a_stored_credential_id_is_a_record_fault(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    """pocdir writes 32 hex digits on SQLite, and the library finds an aggregate's events by
    that exact text: a credential re-spelled with hyphens can no longer be revoked, so the
    re-spelling must not pass verification."""
    credential_id, _ = issued(
        run(sqlite_backend.url, "principals", "add", "--role", "auditor").stdout
    )
    hex_id = credential_id.replace("-", "")
    [(position,)] = sqlite_backend.execute(
        "SELECT rowid FROM stored_events WHERE originator_id = ?", (hex_id,)
    )
    sqlite_backend.execute(
        "UPDATE stored_events SET originator_id = ? WHERE rowid = ?", (credential_id, position)
    )
    assert run(sqlite_backend.url, "principals", "revoke", credential_id).returncode == 4
    verified = run(sqlite_backend.url, "verify")
    _failed_at(verified, position)
    assert f"expected: {hex_id}" in verified.stderr
    assert f"computed: {credential_id}" in verified.stderr
    _bundle_fails_at(sqlite_backend, tmp_path, position)


@pytest.mark.parametrize("kind", ["not a database", "a directory"])
@pytest.mark.parametrize(
    "command", [("verify",), ("directory",), ("principals", "add", "--role", "auditor")]
)
def test_an_unreadable_sqlite_file_is_exit_three_with_one_line(
    kind: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    """Permissions do not bind root (the tests' user), so the file is made unreadable in
    ways that bind every user."""
    path = tmp_path / "pocdir.sqlite3"
    if kind == "a directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not an SQLite database, though it is named like one\n")
    result = run(f"sqlite:///{path}", *command)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
