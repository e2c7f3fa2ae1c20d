"""A State with keys signs every write; the server checks the statement against the request
and the State's keys before anything is written, keeps it beside the events, and answers with
a signed receipt (issue 15, item 2). On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.signed_requests import decode_header_json
from domain.signing import RECEIPT_HEADER, verify_receipt
from domain.statement import parse_statement
from domain.values import Role
from infra.note import SignerKey
from tests.support.builders import contact_data
from tests.support.http import Api
from tests.support.officials import Official, onboard, sign, signed_call
from tests.support.record_keys import record_key_files

ENTRY = "/entries/FRA"


def head(api: Api) -> int:
    return api.application.recorder.max_notification_id() or 0


def statements(api: Api) -> list[Any]:
    return api.application.recorder.statement_rows()  # type: ignore[attr-defined,no-any-return]


def keyed(api: Api, code: str) -> Official:
    """``code`` onboarded with keys, and its token issued (issuing one is a write too)."""
    official = onboard(api.application, code)
    api.as_state(code)
    return official


def registered(api: Api) -> Official:
    fra = keyed(api, "FRA")
    r = signed_call(api, fra, "POST", ENTRY, {})
    assert r.status_code == 201, r.text
    return fra


def test_a_state_with_keys_cannot_write_unsigned(api: Api) -> None:
    keyed(api, "FRA")
    before = head(api)
    r = api.call("POST", ENTRY, api.as_state("FRA"), json={})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "signature_required"
    assert "Pocdir-Statement" in r.json()["detail"]
    assert head(api) == before


def test_a_signed_write_is_stored_with_its_statement_and_a_receipt(api: Api) -> None:
    fra = keyed(api, "FRA")
    r = signed_call(api, fra, "POST", ENTRY, {})
    assert r.status_code == 201, r.text
    position = int(r.headers["Pocdir-Position"])
    row = statements(api)[-1]
    assert (row.last_position, row.signer) == (position, "state:FRA")
    statement = parse_statement(row.statement.encode())
    assert (statement.command, statement.state) == ("entry.register", "FRA")
    server_key = SignerKey.load(record_key_files()[1]).private_key().public_key()
    receipt = verify_receipt(decode_header_json(r.headers[RECEIPT_HEADER], "receipt"), server_key)
    assert [e["position"] for e in receipt["events"]] == [position]
    assert receipt["signer"] == "state:FRA"


def test_a_replayed_statement_returns_the_first_outcome_and_writes_nothing(api: Api) -> None:
    fra = registered(api)
    request = sign(
        fra,
        "POST",
        f"{ENTRY}/contacts",
        {"contact": contact_data("cert")},
        created_at=api.application.clock.now(),
        if_match='"1"',
    )
    headers = {**api.as_state("FRA"), **request.headers}
    first = api.call("POST", f"{ENTRY}/contacts", headers, json={"contact": contact_data("cert")})
    assert first.status_code == 200, first.text
    after = head(api)
    again = api.call("POST", f"{ENTRY}/contacts", headers, json={"contact": contact_data("cert")})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers[RECEIPT_HEADER] == first.headers[RECEIPT_HEADER]
    assert head(api) == after


def test_a_statement_for_another_body_is_refused_before_anything_is_written(api: Api) -> None:
    fra = registered(api)
    request = sign(
        fra,
        "POST",
        f"{ENTRY}/contacts",
        {"contact": contact_data("cert")},
        created_at=api.application.clock.now(),
        if_match='"1"',
    )
    before = head(api)
    changed = {"contact": contact_data("cert", hours="9-17")}
    r = api.call(
        "POST", f"{ENTRY}/contacts", {**api.as_state("FRA"), **request.headers}, json=changed
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_statement"
    assert "fields" in r.json()["detail"]
    assert head(api) == before


def test_an_idempotency_key_reused_for_other_content_is_refused(api: Api) -> None:
    fra = registered(api)
    first = signed_call(
        api,
        fra,
        "POST",
        f"{ENTRY}/contacts",
        {"contact": contact_data("a")},
        if_match='"1"',
        idempotency_key="same-key",
    )
    assert first.status_code == 200, first.text
    other = signed_call(
        api,
        fra,
        "POST",
        f"{ENTRY}/contacts",
        {"contact": contact_data("b")},
        if_match='"2"',
        idempotency_key="same-key",
    )
    assert other.status_code == 422, other.text
    assert other.json()["error"] == "idempotency_key_reused"


def test_a_statement_created_outside_the_window_is_refused(api: Api) -> None:
    fra = keyed(api, "FRA")
    for skew in (timedelta(minutes=-6), timedelta(minutes=6)):
        request = sign(fra, "POST", ENTRY, {}, created_at=api.application.clock.now() + skew)
        r = api.call("POST", ENTRY, {**api.as_state("FRA"), **request.headers}, json={})
        assert r.status_code == 422, r.text
        assert "300 seconds" in r.json()["detail"]
    assert signed_call(api, fra, "POST", ENTRY, {}).status_code == 201


def test_a_statement_signed_by_a_key_the_state_does_not_hold_is_refused(api: Api) -> None:
    fra = keyed(api, "FRA")
    deu = keyed(api, "DEU")
    for signer in (Ed25519PrivateKey.generate(), deu.signing_key):
        r = signed_call(api, fra, "POST", ENTRY, {}, signer=signer)
        assert r.status_code == 403, r.text
        assert "FRA" in r.json()["detail"]
    assert not any(r.signer == "state:FRA" for r in statements(api))


def test_a_statement_names_the_request_it_was_signed_for(api: Api) -> None:
    """Sent to another route, or by another State's token, a statement is refused."""
    fra = registered(api)
    keyed(api, "DEU")
    request = sign(
        fra,
        "POST",
        f"{ENTRY}/confirmation",
        None,
        created_at=api.application.clock.now(),
        if_match='"1"',
    )
    before = head(api)
    elsewhere = api.call("POST", f"{ENTRY}/withdrawal", {**api.as_state("FRA"), **request.headers})
    assert elsewhere.status_code == 422 and "command" in elsewhere.json()["detail"]
    other_state = api.call(
        "POST", "/entries/DEU/confirmation", {**api.as_state("DEU"), **request.headers}
    )
    assert other_state.status_code == 422 and "state" in other_state.json()["detail"]
    assert head(api) == before


def test_personal_contact_data_is_only_committed_to_in_the_statement(api: Api) -> None:
    fra = registered(api)
    contact = contact_data("cert")
    r = signed_call(api, fra, "POST", f"{ENTRY}/contacts", {"contact": contact}, if_match='"1"')
    assert r.status_code == 200, r.text
    row = statements(api)[-1]
    for personal in (contact["function"], *(c["address"] for c in contact["channels"])):
        assert personal not in row.statement
        assert json.dumps(personal)[1:-1] not in row.statement
        assert base64.b64encode(personal.encode()).decode()[:8] not in row.statement
    body = json.loads(row.statement)["fields"]["body"]["contact"]
    assert body["function"].startswith("sha256:")
    assert body["agency"] == contact["agency"]  # not personal: stays readable
    # the stored entry still serves the contact data to those who may read it
    assert (
        api.call("GET", ENTRY, api.as_state("FRA")).json()["contacts"][0]["function"]["text"]
        == "CERT"
    )


def test_an_auditor_reads_the_statements_page_by_page(api: Api) -> None:
    auditor = api.auth(Role.AUDITOR)  # issuing its credential is a signed write too
    fra = registered(api)
    contact = {"contact": contact_data("cert")}
    r = signed_call(api, fra, "POST", f"{ENTRY}/contacts", contact, if_match='"1"')
    assert r.status_code == 200, r.text
    first = api.call("GET", "/audit/statements?limit=1", auditor).json()
    assert len(first["statements"]) == 1 and first["next_after"] is not None
    rest = api.call("GET", f"/audit/statements?after={first['next_after']}", auditor).json()
    everything = first["statements"] + rest["statements"]
    assert [s["first_position"] for s in everything] == [r.first_position for r in statements(api)]
    assert [s["signer"] for s in everything][-2:] == ["state:FRA", "state:FRA"]
    # A State reads only the statements it may (docs/access.md): DEU none of FRA's writes.
    deu = api.call("GET", "/audit/statements", api.as_state("DEU")).json()
    assert deu["scope"] == "state:DEU"
    assert "state:FRA" not in {s["signer"] for s in deu["statements"]}
