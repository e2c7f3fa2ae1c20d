"""The State officials' client (issue 15, items 4 and 5): its key store, the channel rule,
signed writes, and the key-substitution check, in-process against the app on both backends.

What needs the sealed exchange API (notify, read, respond, share) runs through a real server
in tests/test_state_client_served.py."""

from __future__ import annotations

import copy
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli.console import CONSOLE
from domain.clock import SimulatedClock
from domain.errors import ValidationError
from domain.state_keys import ROTATE_COMMAND, EncryptionKey, SigningKey, state_keys_id
from domain.statement import (
    SignedStatement,
    Statement,
    key_fingerprint,
    sign_statement,
    verify_statement,
)
from infra.note import SignerKey
from state_client.client import ChannelRefused, ServerError, StateClient, check_channel
from state_client.keys import EncryptionPrivateKey
from state_client.receipts import ReceiptInvalid, parse_server_key
from state_client.store import ClientConfig, KeyStore, StoreError
from state_client.trust import KeySubstituted, NotPinned, TrustStore, trusted_key
from tests.support.builders import contact_data, state
from tests.support.http import Api
from tests.support.record_keys import record_key_files
from tests.support.state_officials import PASSPHRASE, official, public_key_b64

# -- the channel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://pocdir.example",
        "https://10.0.0.5:8443/",
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://[::1]:8000",
        "http://localhost:8000",
    ],
)
def test_https_anywhere_and_plain_http_to_loopback(url: str) -> None:
    assert check_channel(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://pocdir.example", "http://10.0.0.5:8000", "http://0.0.0.0", "http://[2001:db8::1]"],
)
def test_plain_http_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(ChannelRefused, match="refusing plain HTTP to .*use https://"):
        check_channel(url)


@pytest.mark.parametrize("url", ["ftp://pocdir.example", "pocdir.example", "https://", ""])
def test_a_server_url_that_is_no_url_is_refused(url: str) -> None:
    with pytest.raises(ChannelRefused, match="must be https://"):
        check_channel(url)


# -- the key store --------------------------------------------------------------------------


def test_key_store_round_trip_with_private_files(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    signing, encryption = store.generate(PASSPHRASE)
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    for f in (tmp_path / "home").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    key_text = (tmp_path / "home" / "signing-key.pem").read_text()
    assert key_text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    again = KeyStore(tmp_path / "home")
    assert again.signing_key(PASSPHRASE).private_bytes_raw() == signing.private_bytes_raw()
    assert again.encryption_key(PASSPHRASE) == encryption
    public = again.public_keys()
    assert public["signing_fingerprint"] == key_fingerprint(signing.public_key())
    assert public["encryption_fingerprint"] == encryption.public_key().fingerprint()
    # The public files are in the forms `pocdir keys bind` takes.
    assert (
        EncryptionKey.parse(public["encryption_key"]).fingerprint
        == (public["encryption_fingerprint"])
    )
    assert SigningKey.parse(public["signing_key"]).fingerprint == public["signing_fingerprint"]
    assert public["signing_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")


def test_key_store_refuses_a_wrong_passphrase_and_never_replaces_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    store.generate(PASSPHRASE)
    with pytest.raises(StoreError, match="wrong passphrase"):
        store.signing_key(b"not it")
    with pytest.raises(StoreError, match="wrong passphrase"):
        store.encryption_key(b"not it")
    before = (tmp_path / "home" / "signing-key.pem").read_bytes()
    with pytest.raises(StoreError, match="holds keys already"):
        store.generate(PASSPHRASE)
    assert (tmp_path / "home" / "signing-key.pem").read_bytes() == before
    with pytest.raises(StoreError, match="passphrase"):
        KeyStore(tmp_path / "other").generate(b"")


def test_key_store_home_from_the_environment(tmp_path: Path) -> None:
    assert KeyStore.at(None, {"POCDIR_STATE_HOME": str(tmp_path)}).home == tmp_path
    assert KeyStore.at(tmp_path / "x", {"POCDIR_STATE_HOME": "/elsewhere"}).home == tmp_path / "x"
    assert KeyStore.at(None, {}).home == Path("~/.config/pocdir-state").expanduser()


def test_config_and_token_round_trip(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(StoreError, match="pocdir-state config"):
        store.config()
    config = ClientConfig("https://pocdir.example", "FRA", ca_file="/ca.pem")
    store.save_config(config)
    assert store.config() == config
    with pytest.raises(StoreError, match="client certificate and its key"):
        ClientConfig("https://pocdir.example", "FRA", client_cert="/c.pem")
    store.save_token("pocdir_abc\n")
    assert store.token({}) == "pocdir_abc"
    assert store.token({"POCDIR_STATE_TOKEN": "pocdir_env"}) == "pocdir_env"
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600


# -- trusting another State's key -----------------------------------------------------------


def _served(api: Api, state: str) -> dict[str, Any]:
    r = api.client.get(f"/keys/states/{state}", headers=api.as_state("FRA"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_key_is_trusted_only_through_a_pinned_history(api: Api, tmp_path: Path) -> None:
    fra, deu = official(tmp_path, "FRA"), official(tmp_path, "DEU")
    deu.bind(api.application)
    served = _served(api, "DEU")
    # No trust on first use: the error names the served fingerprint and how to pin.
    with pytest.raises(NotPinned, match="pocdir-state trust add DEU") as refused:
        trusted_key(served, "DEU", [])
    assert deu.encryption_fingerprint in str(refused.value)
    fra.pin(deu)
    trusted = TrustStore(fra.store).accept(served, "DEU")
    assert trusted.key == deu.encryption.public_key()
    assert trusted.anchor == deu.encryption_fingerprint


def test_an_operator_who_reonboards_a_state_is_refused_until_pinned(
    api: Api, tmp_path: Path
) -> None:
    """The operator's one legitimate way to replace all of a State's keys is a re-onboarding,
    which nobody signs: the client takes its key only once the new fingerprint is pinned."""
    fra, deu = official(tmp_path, "FRA"), official(tmp_path, "DEU")
    deu.bind(api.application)
    fra.pin(deu)
    TrustStore(fra.store).accept(_served(api, "DEU"), "DEU")
    operators = EncryptionPrivateKey.generate()
    api.application.reonboard_state_keys(
        CONSOLE,
        "DEU",
        EncryptionKey.from_bytes(operators.public_key().to_bytes()),
        (SigningKey.from_bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw()),),
    )
    with pytest.raises(KeySubstituted) as refused:
        TrustStore(fra.store).accept(_served(api, "DEU"), "DEU")
    message = str(refused.value)
    assert "refusing to encrypt to DEU" in message
    assert "re-onboarded at version 2" in message
    assert deu.encryption_fingerprint in message  # expected
    assert operators.public_key().fingerprint() in message  # served
    # Once DEU's mission confirms the new key out of band, it is pinned and accepted.
    fra.pin("DEU", operators.public_key().fingerprint())
    assert TrustStore(fra.store).accept(_served(api, "DEU"), "DEU").key == (operators.public_key())


def _substituted(served: dict[str, Any], key: EncryptionPrivateKey, where: str) -> dict[str, Any]:
    forged = copy.deepcopy(served)
    replacement = EncryptionKey.from_bytes(key.public_key().to_bytes()).to_dict()
    if where in ("current", "both"):
        forged["current"]["encryption_key"] = replacement
    if where in ("history", "both"):
        forged["history"][0]["encryption_key"] = replacement
    return forged


@pytest.mark.parametrize("where", ["current", "history", "both"])
def test_a_substituted_key_in_the_served_keys_is_refused(
    api: Api, tmp_path: Path, where: str
) -> None:
    """An operator who edits the served key set (or the record it comes from) so that its
    own key is DEU's: the client refuses, naming both fingerprints."""
    fra, deu = official(tmp_path, "FRA"), official(tmp_path, "DEU")
    deu.bind(api.application)
    fra.pin(deu)
    operators = EncryptionPrivateKey.generate()
    forged = _substituted(_served(api, "DEU"), operators, where)
    with pytest.raises(KeySubstituted) as refused:
        TrustStore(fra.store).accept(forged, "DEU")
    assert deu.encryption_fingerprint in str(refused.value)
    if where != "history":
        assert operators.public_key().fingerprint() in str(refused.value)


def test_a_history_cut_back_behind_what_was_seen_is_refused(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    """DEU rotates its encryption key (a step it signs); an operator who then serves the
    history from before the rotation, to bring back the old key, is refused."""
    fra, deu = official(tmp_path, "FRA"), official(tmp_path, "DEU")
    deu.bind(api.application)
    fra.pin(deu)
    trust = TrustStore(fra.store)
    before = _served(api, "DEU")
    new = EncryptionPrivateKey.generate()
    statement = Statement.create(
        command=ROTATE_COMMAND,
        state="DEU",
        aggregate=state_keys_id("DEU"),
        expected_version=1,
        fields={"encryption_key": public_key_b64(new), "add": [], "retire": []},
        idempotency_key="rotate-1",
        created_at=clock.now(),
    )
    api.application.rotate_state_keys(state("DEU"), "DEU", sign_statement(statement, deu.signing))
    rotated = trust.accept(_served(api, "DEU"), "DEU")
    assert (rotated.version, rotated.key) == (2, new.public_key())
    with pytest.raises(KeySubstituted, match="ends at version 1.*accepted version 2"):
        trust.accept(before, "DEU")


def test_pins_are_checked_fingerprints(tmp_path: Path) -> None:
    trust = TrustStore(KeyStore(tmp_path))
    with pytest.raises(ValueError, match="sha256: and 64 lowercase"):
        trust.add("DEU", "sha256:1234")
    with pytest.raises(ValueError, match="member State"):
        trust.add("XXX", "sha256:" + "0" * 64)
    assert trust.add("DEU", "sha256:" + "a" * 64)
    assert not trust.add("DEU", "sha256:" + "a" * 64)
    assert trust.all() == {"DEU": ["sha256:" + "a" * 64]}


# -- signed writes --------------------------------------------------------------------------


def test_writes_are_signed_with_the_officials_key(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    fra = official(tmp_path, "FRA")
    fra.bind(api.application)
    client = fra.client(api.token("state", "FRA"), http=api.client, clock=clock.now)
    answer = client.register_entry()
    assert answer.status == 201 and answer.body["code"] == "FRA"
    assert answer.statement is not None
    signed = SignedStatement.from_dict(answer.statement)
    statement = verify_statement(signed, fra.signing.public_key())
    assert (statement.command, statement.state) == ("entry.register", "FRA")
    assert signed.key == key_fingerprint(fra.signing.public_key())
    # A change of the existing entry sends If-Match with the version it read.
    added = client.add_contact(contact_data("cert"))
    changed = SignedStatement.from_dict(added.statement or {}).statement
    assert (changed.command, changed.expected_version) == ("entry.add_contact", 1)
    # Personal values are committed to, never in the statement.
    assert "cert@example.org" not in changed.canonical_bytes().decode()


def test_notify_never_encrypts_to_a_substituted_key(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    """The refusal comes before anything is sealed or sent: the record does not change."""
    fra, deu = official(tmp_path, "FRA"), official(tmp_path, "DEU")
    fra.bind(api.application)
    deu.bind(api.application)
    fra.pin(deu)
    api.application.reonboard_state_keys(
        CONSOLE,
        "DEU",
        EncryptionKey.from_bytes(EncryptionPrivateKey.generate().public_key().to_bytes()),
        (SigningKey.from_bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw()),),
    )
    client = fra.client(api.token("state", "FRA"), http=api.client, clock=clock.now)
    position = api.application.recorder.max_notification_id()
    content = {
        "description": "Botnet C2 MARKER-7f3a",
        "supporting_information": {"indicators": [{"kind": "ipv4", "value": "203.0.113.7"}]},
    }
    with pytest.raises(KeySubstituted, match="refusing to encrypt to DEU"):
        client.notify("DEU", "malware", content)
    assert api.application.recorder.max_notification_id() == position


def test_the_client_answers_a_communication_check(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    fra = official(tmp_path, "FRA")
    fra.bind(api.application)
    client = fra.client(api.token("state", "FRA"), http=api.client, clock=clock.now)
    client.register_entry()
    client.add_contact(contact_data("cert"))
    check = api.application.launch_check(
        CONSOLE, "technical", clock.now() + timedelta(days=2), challenge=False
    )
    answer = client.answer_check(check.id, "cert")
    assert answer.status == 200, answer.body
    signed = SignedStatement.from_dict(answer.statement or {}).statement
    assert (signed.command, signed.aggregate) == ("check.answer", check.id)
    results = api.client.get(f"/checks/{check.id}", headers=api.auth("secretariat")).json()
    assert [s["state"] for s in results["states"] if s["answered_at"]] == ["FRA"]


def test_the_whole_exchange_in_process(api: Api, tmp_path: Path, clock: SimulatedClock) -> None:
    """The exchange of tests/test_state_client_served.py through the same client, in-process
    (fast, for `make check`): notify, read, acknowledge, respond, consent, share, the third
    State reads and decrypts, revoke, the third State reads nothing more."""
    officials = {code: official(tmp_path, code) for code in ("FRA", "DEU", "ITA")}
    clients = {}
    for code, one in officials.items():
        one.bind(api.application)
        for other in officials.values():
            if other is not one:
                one.pin(other)
        clients[code] = one.client(api.token("state", code), http=api.client, clock=clock.now)
        clients[code].register_entry()
    fra, deu, ita = clients["FRA"], clients["DEU"], clients["ITA"]
    content = {
        "description": "MARKER-d Botnet C2",
        "supporting_information": {
            "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
            "text": "MARKER-s",
        },
    }

    def told(reader: StateClient, writer: StateClient) -> StateClient:
        """``reader`` learns where ``writer``'s last write is, so its reads wait for it (the
        views catch up off the request path)."""
        reader.position = max(reader.position, writer.position)
        return reader

    sent = fra.notify("DEU", "malware", content)
    nid = sent.body["id"]
    assert sent.body["description"] is None and sent.receipt
    assert [n["id"] for n in told(deu, fra).inbox()] == [nid]
    opened = deu.read(nid)
    assert opened.content is not None
    assert opened.content.description.text == "MARKER-d Botnet C2"
    assert opened.content.supporting_information.indicators[0].to_dict()["value"] == ("203.0.113.7")
    deu.acknowledge(nid)
    deu.respond(nid, "MARKER-r sinkholed")
    assert told(fra, deu).read(nid).responses[0]["response"]["text"] == "MARKER-r sinkholed"
    consent = fra.ask_consent(nid, "ITA").body["id"]
    told(deu, fra).grant(consent)
    told(fra, deu).share(consent)
    third = told(ita, fra).read(nid)
    assert third.content is not None and third.content.description.text == "MARKER-d Botnet C2"
    assert third.responses[0]["response"]["text"] == "MARKER-r sinkholed"
    fra.revoke(consent)
    with pytest.raises(ServerError) as gone:
        told(ita, fra).read(nid)
    assert gone.value.status == 404


def test_receipts_are_checked_against_the_pinned_server_key(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    """With the server's published verifier key pinned, each signed write's receipt is
    checked: it names this statement and the events' positions; under another key it is
    refused (the write itself was made: the receipt is what cannot be stood by)."""
    server = SignerKey.load(record_key_files()[1])
    pinned = parse_server_key(str(server.verifier))
    fra = official(tmp_path, "FRA")
    fra.bind(api.application)
    token = api.token("state", "FRA")
    client = fra.client(token, http=api.client, clock=clock.now, server_key=pinned)
    answer = client.register_entry()
    assert answer.receipt_checked is not None
    assert [e["position"] for e in answer.receipt_checked["events"]] == [answer.position]
    other = Ed25519PrivateKey.generate().public_key()
    wrong = fra.client(token, http=api.client, clock=clock.now, server_key=other)
    with pytest.raises(ReceiptInvalid, match="does not verify"):
        wrong.add_contact(contact_data("cert"))
    with pytest.raises(ValidationError, match="verifier key"):
        parse_server_key("not-a-key")
