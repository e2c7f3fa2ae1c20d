"""Sealed exchanges over HTTP (issue 15, item 4): the server takes, stores and serves a
notification's content and its responses as envelopes it cannot open, checks what it can
without keys, and serves the keys a party wrapped to a consented third State only while the
consent is in effect."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.envelope import MAX_ENVELOPE_BYTES, Envelope
from domain.values import Text
from infra.verify import verify_record
from state_client.envelope import seal, seal_response
from state_client.keys import EncryptionPrivateKey
from tests.support.db import Backend
from tests.support.http import api_for, assert_error, notify, register
from tests.support.sealed import SealedStates, b64, bind_keys, unb64

CONTENT: dict[str, Any] = {
    "description": {"language": "fr", "text": "Rançongiciel", "english": "Ransomware"},
    "supporting_information": {
        "indicators": [{"kind": "domain", "value": "EVIL.example"}],
        "text": {"language": "en", "text": "Seen since Monday", "english": None},
    },
}


@pytest.fixture
def states(backend: Backend) -> Iterator[SealedStates]:
    """FRA, DEU, ITA and ESP registered, and KEN. Before any keys are bound, ESP notifies FRA
    in plain text (``PLAIN``: a plain exchange, as every one before issue 15); then FRA, DEU,
    ITA and ESP are onboarded with keys, KEN is not (from then on, the gate refuses any write
    of a State without keys)."""
    with api_for(backend.settings) as api:
        for code in ("FRA", "DEU", "ITA", "ESP", "KEN"):
            register(api, code)
        r = api.call("POST", "/notifications", api.as_state("ESP"), json=notify("FRA"))
        assert r.status_code == 201, r.text
        assert r.json()["envelope"] is None and r.json()["description"]["text"]
        states = SealedStates(api, bind_keys(api.application, "FRA", "DEU", "ITA", "ESP"))
        states.plain = r.json()
        yield states


def sent(states: SealedStates) -> dict[str, Any]:
    r = states.notify("FRA", "DEU", CONTENT)
    assert r.status_code == 201, r.text
    return dict(r.json())


def acknowledged_and_answered(states: SealedStates, *texts: str) -> dict[str, Any]:
    n = sent(states)
    assert states.write("DEU", "POST", f"/notifications/{n['id']}/acknowledgement").is_success
    for text in texts:
        r = states.respond("DEU", n, text)
        assert r.status_code == 200, r.text
        n = r.json()
    return n


def test_a_sealed_notification_is_stored_and_served_as_its_envelope(
    states: SealedStates,
) -> None:
    n = sent(states)
    assert n["description"] is None and n["indicators"] is None and n["supporting_text"] is None
    assert (n["sender"], n["recipient"], n["status"]) == ("FRA", "DEU", "sent")
    for party in ("DEU", "FRA"):
        served = states.read(party, n["id"])
        assert served.status_code == 200, served.text
        assert served.json()["envelope"] == n["envelope"]
        content, _ = states.open(party, served.json())
        assert content.description.english == "Ransomware"
        # Indicators come back as the domain normalises them, validated after opening.
        assert content.supporting_information.indicators[0].value == "evil.example"
    meta = states.api.call("GET", f"/notifications/{n['id']}", states.api.auth("secretariat"))
    assert meta.status_code == 200 and "envelope" not in meta.json()
    outsider = states.read("ITA", n["id"])
    assert_error(outsider, 404)


def test_a_state_with_keys_must_seal_and_may_seal_only_to_a_state_with_keys(
    states: SealedStates,
) -> None:
    plain = states.write("FRA", "POST", "/notifications", notify("DEU"))
    assert "State client" in assert_error(plain, 422)["detail"]
    # KEN has no key in the record; an envelope sealed to some key for it is refused.
    states.unbound["KEN"] = EncryptionPrivateKey.generate()
    to_keyless = states.notify("FRA", "KEN", CONTENT)
    assert "no encryption key" in assert_error(to_keyless, 422)["detail"]


def test_the_server_checks_what_it_can_without_keys(states: SealedStates) -> None:
    nid = uuid4()

    def post(envelope: bytes | str, **extra: Any) -> Any:
        body = {
            "recipient": "DEU",
            "incident_type": "malware",
            "good_faith_attested": True,
            "envelope": envelope if isinstance(envelope, str) else b64(envelope),
            **extra,
        }
        return states.write("FRA", "POST", "/notifications", body, new_aggregate=nid)

    wrong_parties = seal(CONTENT, nid, states.parties("FRA", "ITA")).to_bytes()
    assert "exactly the parties" in assert_error(post(wrong_parties), 422)["detail"]
    only_recipient = seal(CONTENT, nid, states.parties("DEU")).to_bytes()
    assert_error(post(only_recipient), 422)
    other_id = seal(CONTENT, uuid4(), states.parties("FRA", "DEU")).to_bytes()
    assert "sealed for notification" in assert_error(post(other_id), 422)["detail"]
    a_response = seal_response(nid, 0, "hello", states.parties("FRA", "DEU")).to_bytes()
    assert "response 0" in assert_error(post(a_response), 422)["detail"]
    good = seal(CONTENT, nid, states.parties("FRA", "DEU")).to_bytes()
    assert_error(post(good[:-1]), 422)
    assert "base64" in assert_error(post("not base64!"), 422)["detail"]
    assert_error(post(good, description="plain too"), 422)
    # The id is the one the State signed; a body's id may only repeat it.
    assert "signed statement names" in assert_error(post(good, id=str(uuid4())), 422)["detail"]
    too_big = base64.b64encode(b"\0" * (MAX_ENVELOPE_BYTES + 3)).decode()
    assert_error(post(too_big), 422)
    # Nothing was written by any refusal; the good one is taken once.
    assert post(good).status_code == 201
    assert "exists already" in assert_error(post(good), 409)["detail"]


def test_responses_are_sealed_to_both_parties_and_bound_to_their_place(
    states: SealedStates,
) -> None:
    n = acknowledged_and_answered(states, "First answer")
    plain = states.write(
        "DEU", "POST", f"/notifications/{n['id']}/responses", {"response": "in clear"}
    )
    assert "seal the response" in assert_error(plain, 422)["detail"]
    parties = states.parties("FRA", "DEU")
    replayed_index = seal_response(UUID(n["id"]), 0, "moved", parties).to_bytes()
    r = states.write(
        "DEU", "POST", f"/notifications/{n['id']}/responses", {"envelope": b64(replayed_index)}
    )
    assert "response 1" in assert_error(r, 422)["detail"]
    r = states.respond("DEU", n, "Second answer")
    assert r.status_code == 200, r.text
    served = states.read("FRA", n["id"]).json()
    assert [r["response"] for r in served["responses"]] == [None, None]
    _, texts = states.open("FRA", served)
    assert texts == [Text.english_only("First answer"), Text.english_only("Second answer")]
    # A response's envelope does not open as another response's (its index is bound).
    first, second = (Envelope.from_bytes(unb64(r["envelope"])) for r in served["responses"])
    assert (first.response, second.response) == (0, 1)


def test_plain_notifications_take_plain_responses_only(states: SealedStates) -> None:
    """A plain exchange stays plain once its parties have keys: it is served as it was
    stored, and takes plain responses."""
    n = states.plain
    served = states.read("FRA", n["id"]).json()
    assert served["envelope"] is None and served["description"] == n["description"]
    r = states.write("FRA", "POST", f"/notifications/{n['id']}/acknowledgement")
    assert r.status_code == 200, r.text
    sealed = seal_response(UUID(n["id"]), 0, "x", states.parties("ESP", "FRA")).to_bytes()
    r = states.write(
        "FRA",
        "POST",
        f"/notifications/{n['id']}/responses",
        {"envelope": b64(sealed)},
    )
    assert "plain" in assert_error(r, 422)["detail"]
    r = states.write("FRA", "POST", f"/notifications/{n['id']}/responses", {"response": "ok"})
    assert r.status_code == 200 and r.json()["responses"][0]["response"]["text"] == "ok"


def test_a_third_state_reads_what_is_shared_only_while_the_consent_is_in_effect(
    states: SealedStates,
) -> None:
    n = acknowledged_and_answered(states, "We are on it")
    r = states.write("FRA", "POST", "/consents", {"notification_id": n["id"], "third_state": "ITA"})
    pending = r.json()
    assert_error(states.share("FRA", pending, n), 409)
    consent = effective_consent_from(states, pending)
    # One key per response so far, or 422.
    r = states.write(
        "FRA",
        "POST",
        f"/consents/{consent['id']}/share",
        {"wrapped_keys": {"content": b64(b"\0" * 1168), "responses": []}},
    )
    assert "one wrapped key per response" in assert_error(r, 422)["detail"]
    # The third State is no party: it shares nothing.
    r = states.write(
        "ITA",
        "POST",
        f"/consents/{consent['id']}/share",
        {"wrapped_keys": {"content": b64(b"\0" * 1168), "responses": [b64(b"\0" * 1168)]}},
    )
    assert_error(r, 403)
    r = states.share("FRA", consent, n)
    assert r.status_code == 200, r.text
    served = states.read("ITA", n["id"])
    assert served.status_code == 200, served.text
    assert served.json()["shared_keys"] is not None
    content, texts = states.open("ITA", served.json())
    assert content.description.text == "Rançongiciel"
    assert texts == [Text.english_only("We are on it")]
    # Parties get no shared keys; revocation stops serving them at once.
    assert states.read("DEU", n["id"]).json()["shared_keys"] is None
    r = states.write("DEU", "POST", f"/consents/{consent['id']}/revoke")
    assert r.status_code == 200, r.text
    assert_error(states.read("ITA", n["id"]), 404)
    assert_error(states.share("FRA", consent, n), 409)
    # Every write of the exchange, the share included, was signed by its signer: the record
    # verifies, signatures included.
    result = verify_record(states.api.application)
    assert result.signatures is not None and {"DEU", "FRA", "ITA"} <= set(
        result.signatures.states_signing
    )


def effective_consent_from(states: SealedStates, pending: dict[str, Any]) -> dict[str, Any]:
    r = states.write("DEU", "POST", f"/consents/{pending['id']}/grant")
    assert r.status_code == 200 and r.json()["status"] == "effective", r.text
    return dict(r.json())


def test_plain_exchanges_have_no_keys_to_share(states: SealedStates) -> None:
    consent = effective_consent_plain(states, states.plain)
    r = states.write(
        "ESP",
        "POST",
        f"/consents/{consent['id']}/share",
        {"wrapped_keys": {"content": b64(b"\0" * 1168), "responses": []}},
    )
    assert "plain" in assert_error(r, 422)["detail"]


def effective_consent_plain(states: SealedStates, n: dict[str, Any]) -> dict[str, Any]:
    consent = states.write(
        "ESP", "POST", "/consents", {"notification_id": n["id"], "third_state": "ITA"}
    ).json()
    r = states.write("FRA", "POST", f"/consents/{consent['id']}/grant")
    assert r.json()["status"] == "effective", r.text
    return dict(r.json())
