"""``pocdir principals``: a token is printed once, only its hash is stored, and a revocation
takes effect at once for a server already running."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support.cli import issued, run
from tests.support.db import Backend

#: Slow (each test runs `pocdir` in processes of its own): `make check` leaves it out.
pytestmark = pytest.mark.slow


def test_a_token_is_shown_once_and_only_its_hash_is_stored(backend: Backend) -> None:
    result = run(backend.url, "principals", "add", "--role", "auditor")
    assert result.returncode == 0, result.stderr
    _, token = issued(result.stdout)
    stored = b"".join(
        bytes(row[0]) for row in backend.execute(f"SELECT state FROM {backend.events_table}")
    )
    assert token.encode() not in stored
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored


@pytest.mark.parametrize("then", [(), ("pending",)], ids=["revoked", "revoked-then-read"])
def test_a_revoked_token_gets_401_from_a_running_server(
    backend: Backend, then: tuple[str, ...]
) -> None:
    """Also when the revoking process then reads (issue 12, defect 1: ``pocdir pending``
    brings the views up to date, so the server saw no new events in them and kept
    accepting the token): the record, not the views, decides."""
    credential_id, token = issued(
        run(backend.url, "principals", "add", "--role", "state", "--state", "fra").stdout
    )
    app = create_app(backend.settings)
    with TestClient(app) as client:
        who = {"Authorization": f"Bearer {token}"}
        assert client.get("/directory", headers=who).status_code == 200
        revoked = run(backend.url, "principals", "revoke", credential_id)
        assert revoked.returncode == 0, revoked.stderr
        if then:
            assert run(backend.url, *then).returncode == 0
        assert client.get("/directory", headers=who).status_code == 401
        write = client.post("/entries/FRA", headers=who, json={})
        assert write.status_code == 401, write.text


def test_bad_principal_options_exit_two_with_one_line() -> None:
    for args in (
        ("principals", "add", "--role", "state"),
        ("principals", "add", "--role", "state", "--state", "XXX"),
        ("principals", "add", "--role", "auditor", "--state", "FRA"),
        ("principals", "revoke", "not-an-id"),
    ):
        result = run("sqlite:///:memory:", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_cli_write_run_again_with_its_idempotency_key_writes_nothing(backend: Backend) -> None:
    """The CLI passes an idempotency key with each write; a retry with the same key (after a
    timeout, say) writes nothing twice, and the key cannot be reused for another command."""
    add = ("principals", "add", "--role", "auditor", "--idempotency-key", "onboard-1")
    first = run(backend.url, *add)
    assert first.returncode == 0, first.stderr
    credential_id, _ = issued(first.stdout)
    head = backend.execute(f"SELECT MAX({backend.position_column}) FROM {backend.events_table}")
    again = run(backend.url, *add)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout and "pocdir_" not in again.stdout
    other = run(
        backend.url, "principals", "revoke", credential_id, "--idempotency-key", "onboard-1"
    )
    assert other.returncode == 2 and "different command" in other.stderr
    assert (
        backend.execute(f"SELECT MAX({backend.position_column}) FROM {backend.events_table}")
        == head
    )
