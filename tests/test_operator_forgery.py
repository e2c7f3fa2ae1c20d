"""The operator holds the database and the server's keys, and writes a correctly linked event
in a State's name: ``pocdir verify`` and ``pocdir audit verify`` name it, with its position,
the State, and the key that was expected (issue 15, "what must hold"). On SQLite and
PostgreSQL, through the CLI as an auditor runs it."""

from __future__ import annotations

from pathlib import Path

from domain.signing import SignedWrite, SignerKind, SigningContext, signing
from domain.state_entry import state_entry_id
from domain.statement import Statement, key_fingerprint, sign_statement
from infra.note import SignerKey
from tests.support.builders import contact_data, state
from tests.support.cli import run
from tests.support.db import Backend
from tests.support.http import Api
from tests.support.officials import Official, onboard, signed_call
from tests.support.record_keys import record_key_files

ENTRY = "/entries/FRA"


def fra_with_a_contact(api: Api) -> Official:
    fra = onboard(api.application, "FRA")
    assert signed_call(api, fra, "POST", ENTRY, {}).status_code == 201
    contact = {"contact": contact_data("cert")}
    r = signed_call(api, fra, "POST", f"{ENTRY}/contacts", contact, if_match='"1"')
    assert r.status_code == 200, r.text
    return fra


def verify_both_ways(backend: Backend, tmp_path: Path) -> list[str]:
    """``pocdir verify``, then ``pocdir audit export`` and ``pocdir audit verify``: the
    errors each printed (both must fail)."""
    direct = run(backend.url, "verify")
    bundle = tmp_path / "bundle"
    exported = run(backend.url, "audit", "export", str(bundle))
    assert exported.returncode == 0, exported.stderr
    offline = run(backend.url, "audit", "verify", str(bundle))
    for result in (direct, offline):
        assert result.returncode != 0, result.stdout
        assert "Traceback" not in result.stderr
    return [direct.stderr, offline.stderr]


def test_an_unsigned_event_appended_in_a_states_name_is_named(
    api: Api, backend: Backend, tmp_path: Path
) -> None:
    fra = fra_with_a_contact(api)
    # The operator runs the application's own code on its own database: the event is
    # correctly linked into the chain, but no statement of FRA's comes with it.
    api.application.remove_contact(state("FRA"), "FRA", "cert")
    forged = api.application.recorder.max_notification_id()
    expected = key_fingerprint(fra.signing_key.public_key())
    for error in verify_both_ways(backend, tmp_path):
        assert f"position {forged}" in error
        assert "FRA" in error
        assert expected in error
        assert "no signed statement" in error


def test_an_event_signed_by_the_operator_in_a_states_name_is_named(
    api: Api, backend: Backend, tmp_path: Path
) -> None:
    fra = fra_with_a_contact(api)
    operator = SignerKey.load(record_key_files()[0]).private_key()
    version = api.application.get_entry("FRA").version
    statement = Statement.create(
        command="entry.remove_contact",
        state="FRA",
        aggregate=state_entry_id("FRA"),
        expected_version=version,
        fields={"body": None, "query": {}},
        idempotency_key="forged-1",
        created_at=api.application.clock.now(),
    )
    forged_write = SignedWrite(
        sign_statement(statement, operator),
        "state:FRA",
        operator.public_key().public_bytes_raw(),
    )
    with signing(SigningContext(SignerKind.STATE, state_write=forged_write)):
        api.application.remove_contact(state("FRA"), "FRA", "cert")
    forged = api.application.recorder.max_notification_id()
    for error in verify_both_ways(backend, tmp_path):
        assert f"position {forged}" in error
        assert "state:FRA" in error
        assert key_fingerprint(fra.signing_key.public_key()) in error
        assert key_fingerprint(operator.public_key()) in error


def test_an_intact_signed_record_verifies_and_says_what_was_signed(
    api: Api, backend: Backend, tmp_path: Path
) -> None:
    fra_with_a_contact(api)
    direct = run(backend.url, "verify")
    assert direct.returncode == 0, direct.stderr
    assert "record intact" in direct.stdout
    assert "unsigned by design" in direct.stdout
    bundle = tmp_path / "bundle"
    assert run(backend.url, "audit", "export", str(bundle)).returncode == 0
    offline = run(backend.url, "audit", "verify", str(bundle))
    assert offline.returncode == 0, offline.stderr
    assert "signatures:" in offline.stdout


def test_a_removed_or_an_added_statement_is_named(
    api: Api, backend: Backend, tmp_path: Path
) -> None:
    """Deleting a State's statement leaves its event unsigned; a statement copied to a
    position with no event covers nothing: both are faults at their position."""
    fra_with_a_contact(api)
    rows = api.application.recorder.statement_rows()  # type: ignore[attr-defined]
    signed = [r for r in rows if r.signer == "state:FRA"][-1]
    backend.execute(
        "DELETE FROM signed_statements WHERE first_position = %s", (signed.first_position,)
    )
    removed = run(backend.url, "verify")
    assert removed.returncode == 1, removed.stdout
    assert f"position {signed.first_position}" in removed.stderr
    assert "no signed statement" in removed.stderr
    ghost = signed.last_position + 1000
    backend.execute(
        "INSERT INTO signed_statements (first_position, last_position, signer, key, public_key,"
        " statement, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            signed.first_position,
            signed.last_position,
            signed.signer,
            signed.key,
            signed.public_key,
            signed.statement,
            signed.signature,
        ),
    )
    backend.execute(
        "INSERT INTO signed_statements (first_position, last_position, signer, key, public_key,"
        " statement, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            ghost,
            ghost,
            signed.signer,
            signed.key,
            signed.public_key,
            signed.statement,
            signed.signature,
        ),
    )
    added = run(backend.url, "verify")
    assert added.returncode == 1, added.stdout
    assert f"position {ghost}" in added.stderr and "hold no event" in added.stderr
