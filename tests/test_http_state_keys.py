"""State keys over HTTP (issue 15, item 1), on both backends: the Secretariat binds and
re-onboards, the State rotates and revokes with signed statements, and every authenticated
principal reads a State's signed key history."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.clock import SimulatedClock
from domain.state_keys import (
    REVOKE_COMMAND,
    ROTATE_COMMAND,
    EncryptionKey,
    KeySet,
    state_keys_id,
    verify_key_history,
)
from domain.statement import Statement, key_fingerprint, sign_statement
from domain.values import Role
from state_client.keys import EncryptionPrivateKey
from tests.support.db import Backend
from tests.support.http import Api, api_for

URL = "/keys/states/FRA"


@pytest.fixture
def api(backend: Backend, clock: SimulatedClock) -> Iterator[Api]:
    with api_for(backend.settings, clock) as a:
        yield a


@pytest.fixture(scope="module")
def team_keys() -> list[str]:
    return [
        base64.b64encode(EncryptionPrivateKey.generate().public_key().to_bytes()).decode()
        for _ in range(2)
    ]


def hexkey(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def fp(key: Ed25519PrivateKey) -> str:
    return key_fingerprint(key.public_key())


def signed(api: Api, command: str, fields: dict[str, Any], signer: Ed25519PrivateKey) -> Any:
    current = api.client.get(URL, headers=api.auth(Role.AUDITOR)).json()
    statement = Statement.create(
        command=command,
        state="FRA",
        aggregate=state_keys_id("FRA"),
        expected_version=current["version"],
        fields=fields,
        idempotency_key=f"{command}-{current['version']}",
        created_at=api.application.clock.now(),
    )
    return sign_statement(statement, signer).to_dict()


def bind(api: Api, encryption: str, *signers: Ed25519PrivateKey, path: str = URL) -> Any:
    body = {"encryption_key": encryption, "signing_keys": [hexkey(k) for k in signers]}
    return api.call("POST", path, api.auth(Role.SECRETARIAT), json=body)


def test_the_key_lifecycle_over_http(api: Api, team_keys: list[str]) -> None:
    alice, bob, carol = (Ed25519PrivateKey.generate() for _ in range(3))
    r = bind(api, team_keys[0], alice, bob)
    assert r.status_code == 201, r.text
    assert r.json()["current"]["event"] == "KeysBound"
    assert bind(api, team_keys[0], alice).status_code == 409  # already bound
    # Every authenticated role reads the history; without a token, 401.
    for role, code in [(Role.STATE, "DEU"), (Role.SECRETARIAT, None), (Role.REVIEWER, None)]:
        assert api.client.get(URL, headers=api.auth(role, code)).status_code == 200
    assert api.client.get(URL).status_code == 401

    fra = api.as_state("FRA")
    rotation = signed(
        api,
        ROTATE_COMMAND,
        {"encryption_key": team_keys[1], "add": [hexkey(carol)], "retire": []},
        alice,
    )
    keyed = {**fra, "Idempotency-Key": "rotate-1"}
    r = api.call("POST", f"{URL}/rotation", keyed, json=rotation)
    assert r.status_code == 200, r.text
    body = r.json()
    # A retry with the same Idempotency-Key gets the first answer and writes nothing.
    retry = api.call("POST", f"{URL}/rotation", keyed, json=rotation)
    assert retry.status_code == 200 and retry.json() == body
    assert body["version"] == 2 and body["current"]["signed_by"] == fp(alice)
    assert [k["fingerprint"] for k in body["current"]["signing_keys"]] == [
        fp(alice),
        fp(bob),
        fp(carol),
    ]
    # The same statement again is stale: one statement, one write.
    assert api.call("POST", f"{URL}/rotation", fra, json=rotation).status_code == 409

    revocation = signed(api, REVOKE_COMMAND, {"key": fp(bob)}, carol)
    r = api.call("POST", f"{URL}/revocation", fra, json=revocation)
    assert r.status_code == 200, r.text
    # Bob's key is revoked: his statements are refused, and nothing is written.
    late = signed(api, REVOKE_COMMAND, {"key": fp(carol)}, bob)
    r = api.call("POST", f"{URL}/revocation", fra, json=late)
    assert r.status_code == 403 and "no longer valid" in r.json()["detail"], r.text
    stranger = signed(api, REVOKE_COMMAND, {"key": fp(carol)}, Ed25519PrivateKey.generate())
    r = api.call("POST", f"{URL}/revocation", fra, json=stranger)
    assert r.status_code == 403 and "is not a key of FRA" in r.json()["detail"], r.text
    # Only FRA itself sends FRA's signed statements.
    r = api.call("POST", f"{URL}/revocation", api.as_state("DEU"), json=late)
    assert r.status_code == 403

    dave = Ed25519PrivateKey.generate()
    r = bind(api, team_keys[0], dave, path=f"{URL}/reonboarding")
    assert r.status_code == 200, r.text
    history = api.client.get(URL, headers=api.auth(Role.AUDITOR)).json()["history"]
    assert [h["event"] for h in history] == [
        "KeysBound",
        "KeysRotated",
        "SigningKeyRevoked",
        "KeysReonboarded",
    ]
    assert history[1]["statement"] == rotation["statement"]
    assert history[1]["signature"] == rotation["signature"]
    # What a client does before encrypting: check the served history, anchored in the
    # fingerprint confirmed at onboarding, without any server key.
    anchor = EncryptionKey.parse(team_keys[0]).fingerprint
    assert verify_key_history([KeySet.from_json(h) for h in history], "FRA", anchor=anchor) == [4]
    # The views follow the record past key events (they hold none of them).
    r = api.client.get("/directory", headers=api.as_state("FRA"))
    assert r.status_code == 200, r.text


def test_bad_key_requests_say_what_to_fix(api: Api, team_keys: list[str]) -> None:
    alice = Ed25519PrivateKey.generate()
    r = api.call(
        "POST",
        URL,
        api.auth(Role.SECRETARIAT),
        json={"encryption_key": "AAAA", "signing_keys": [hexkey(alice)]},
    )
    assert r.status_code == 422 and "1216 bytes" in r.json()["detail"], r.text
    r = api.call(
        "POST",
        URL,
        api.auth(Role.SECRETARIAT),
        json={"encryption_key": team_keys[0], "signing_keys": ["zz"]},
    )
    assert r.status_code == 422, r.text
    assert api.client.get(URL, headers=api.auth(Role.AUDITOR)).status_code == 404
    assert bind(api, team_keys[0], alice).status_code == 201
    r = api.call(
        "POST",
        f"{URL}/rotation",
        api.as_state("FRA"),
        json={"statement": "{}", "signature": "00" * 64, "key": fp(alice)},
    )
    assert r.status_code == 422 and "malformed statement" in r.json()["detail"], r.text
