"""``pocdir principals``: a token is printed once, only its hash is stored, and a revocation
takes effect at once for a server already running."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.credential import MAX_LABEL, NO_LABEL, check_label
from domain.errors import ValidationError
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


def test_a_credential_is_revoked_by_the_first_characters_of_its_id(backend: Backend) -> None:
    """The operator types what ``principals add`` printed, or its start, as with git commit
    ids; a prefix no credential has is not found (exit 4). On both backends: the prefix is
    resolved by a query of the record."""
    credential_id, _ = issued(run(backend.url, "principals", "add", "--role", "auditor").stdout)
    unknown = next(c for c in "0123456789abcdef" if not credential_id.startswith(c)) * 8
    missing = run(backend.url, "principals", "revoke", unknown)
    assert missing.returncode == 4, missing.stderr
    assert f"no credential id starts with '{unknown}'" in missing.stderr
    revoked = run(backend.url, "principals", "revoke", credential_id[:8])
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked credential {credential_id}" in revoked.stdout


# -- labels and `principals list` (issue 14, item 10) ------------------------------------------


def listed(url: str) -> list[dict[str, Any]]:
    result = run(url, "principals", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_a_credential_lists_with_its_label_and_is_revoked_by_the_listed_id(
    backend: Backend,
) -> None:
    """A lost credential id is found by its label in `principals list` and revoked with it;
    the list never shows a token or a token's hash."""
    desk = run(
        backend.url, "principals", "add", "--role", "state", "--state", "DEU",
        "--label", "  CERT duty desk ",
    )
    assert desk.returncode == 0, desk.stderr
    assert "label: CERT duty desk" in desk.stdout
    desk_id, token = issued(desk.stdout)
    plain = run(backend.url, "principals", "add", "--role", "auditor")
    assert plain.returncode == 0, plain.stderr
    plain_id, _ = issued(plain.stdout)
    rows = listed(backend.url)
    assert [(r["id"], r["role"], r["state"], r["label"], r["revoked"]) for r in rows] == [
        (desk_id, "state", "DEU", "CERT duty desk", False),
        (plain_id, "auditor", None, NO_LABEL, False),
    ]
    table = run(backend.url, "principals", "list")
    assert table.returncode == 0, table.stderr
    assert desk_id in table.stdout and "CERT duty desk" in table.stdout
    for output in (table.stdout, json.dumps(rows)):
        assert token not in output
        assert hashlib.sha256(token.encode()).hexdigest() not in output
    (found,) = [r["id"] for r in rows if r["label"] == "CERT duty desk"]
    revoked = run(backend.url, "principals", "revoke", found)
    assert revoked.returncode == 0, revoked.stderr
    after = {r["id"]: r for r in listed(backend.url)}
    assert after[desk_id]["revoked"] and after[desk_id]["revoked_at"] is not None
    assert not after[plain_id]["revoked"]


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("", "label must not be empty"),
        ("   ", "label must not be empty"),
        ("x" * (MAX_LABEL + 1), f"at most {MAX_LABEL}"),
        ("CERT\nduty desk", "control or invisible characters"),
        ("CERT\tdesk", "control or invisible characters"),
        ("CERT\u200bdesk", "control or invisible characters"),
    ],
    ids=["empty", "blank", "too-long", "newline", "tab", "zero-width-space"],
)
def test_a_bad_label_exits_two_with_one_line_saying_what_to_fix(
    sqlite_backend: Backend, label: str, message: str
) -> None:
    result = run(sqlite_backend.url, "principals", "add", "--role", "auditor", "--label", label)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert sqlite_backend.sqlite_path is not None
    assert not Path(sqlite_backend.sqlite_path).exists()  # refused before the record opened


def test_a_label_follows_the_text_rules_in_the_domain() -> None:
    """The same rule for every caller: Unicode text, stripped, one line, at most 80."""
    assert check_label(" Secretariat console ") == "Secretariat console"
    assert check_label("x" * MAX_LABEL) == "x" * MAX_LABEL
    with pytest.raises(ValidationError, match="not valid Unicode"):
        check_label("desk \ud800")
    with pytest.raises(ValidationError, match="control or invisible"):
        check_label("desk\x07")
