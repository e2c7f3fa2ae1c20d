"""Webhooks (issue 17): a State sets one URL for its entry; the delivery channel POSTs alerts
there signed per RFC 9421, to public addresses only, pinned to the address it checked."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, algorithms
from http_message_signatures.resolvers import MappingKeyResolver

from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.signed_requests import match_write
from domain.state_entry import StateEntry
from domain.webhook import MAX_WEBHOOK_URL_LENGTH, check_webhook_url, is_public_address
from infra import ca
from infra.channels import Outcome, OutgoingMessage
from infra.settings import Settings, SettingsError
from infra.webhook import (
    COVERED_COMPONENTS,
    WebhookChannel,
    WebhookSignatureError,
    delivery_key_id,
    sign_webhook_request,
    verify_webhook_signature,
)
from tests.support.builders import state
from tests.support.db import Backend
from tests.support.http import Api, api_for, assert_error, register

AT = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
HOOK = "https://cert.example.org/pocdir-alerts?via=pocdir"
#: The name the test's HTTPS server's certificate carries; no DNS knows it, so a channel
#: that looked the name up a second time (instead of connecting to the address it checked)
#: could not connect at all.
HOOK_HOST = "hooks.pocdir.test"


# -- the URL, in the domain ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://cert.example.org/alerts",
        "ftp://cert.example.org/alerts",
        "https://",
        "https:///alerts",
        "https://user:secret@cert.example.org/alerts",
        "https://cert.example.org/alerts#top",
        "https://cert.example.org:0/alerts",
        "https://cert.example.org:70000/alerts",
        "https://cert.example.org/a b",
        "https://cért.example.org/alerts",
        "https://under_score.example.org/",
        "https://127.0.0.1/alerts",
        "https://10.1.2.3/alerts",
        "https://192.168.0.10:8443/alerts",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://[::1]/alerts",
        "https://[fe80::1]/alerts",
        "https://[fc00::1]/alerts",
        "https://[::ffff:10.0.0.1]/alerts",
        "https://[64:ff9b::a00:1]/alerts",
        "https://localhost/alerts",
        "https://2130706433/alerts",
        "https://127.1/alerts",
        "https://0x7f.0.0.1/alerts",
        "https://api.localhost/alerts",
        "https://cert.example.org/" + "a" * MAX_WEBHOOK_URL_LENGTH,
        "",
    ],
)
def test_a_webhook_url_that_is_not_https_to_a_public_host_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        HOOK,
        "https://cert.example.org",
        "https://cert.example.org:8443/a/b",
        "https://xn--crt-dma.example.org/alerts",
        "https://203.0.113.7/alerts".replace("203.0.113.7", "8.8.8.8"),
        "https://[2001:4860:4860::8888]/alerts",
    ],
)
def test_an_https_url_to_a_public_host_is_accepted(url: str) -> None:
    assert check_webhook_url(f"  {url} ") == url


def test_private_literal_addresses_are_accepted_only_under_the_test_setting() -> None:
    url = "https://127.0.0.1:8443/hook"
    with pytest.raises(ValidationError, match="loopback, private"):
        check_webhook_url(url)
    assert check_webhook_url(url, allow_private=True) == url
    with pytest.raises(ValidationError, match="https://"):  # the rest still holds
        check_webhook_url("http://127.0.0.1/hook", allow_private=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.1.1", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("0.0.0.0", False),
        ("240.0.0.1", False),
        ("239.1.1.1", False),
        ("192.0.2.1", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd12:3456::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:192.168.0.1", False),
        ("2002:c0a8:0101::1", False),
        ("64:ff9b::7f00:1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# -- the entry's webhook ---------------------------------------------------------------------


def registered(code: str = "FRA") -> StateEntry:
    entry = StateEntry.register(code, state(code), AT)
    entry.collect_events()
    return entry


def test_only_the_state_itself_sets_and_removes_its_webhook() -> None:
    entry = registered("FRA")
    with pytest.raises(NotPermitted):
        entry.set_webhook(HOOK, state("DEU"), AT)
    with pytest.raises(InvalidTransition):
        entry.remove_webhook(state("FRA"), AT)
    entry.set_webhook(HOOK, state("FRA"), AT)
    assert entry.webhook == HOOK
    with pytest.raises(InvalidTransition, match="already"):
        entry.set_webhook(HOOK, state("FRA"), AT)
    with pytest.raises(NotPermitted):
        entry.remove_webhook(state("DEU"), AT)
    entry.remove_webhook(state("FRA"), AT)
    assert entry.webhook is None
    kinds = [type(e).__name__ for e in entry.collect_events()]
    assert kinds == ["WebhookSet", "WebhookRemoved"]


def test_the_webhook_is_kept_in_the_record(app: Any) -> None:
    app.register_state(state("FRA"), "FRA")
    app.set_webhook(state("FRA"), "FRA", HOOK)
    assert app.get_entry("FRA").webhook == HOOK
    replaced = "https://soc.example.org/hook"
    app.set_webhook(state("FRA"), "FRA", replaced)
    assert app.get_entry("FRA").webhook == replaced
    app.remove_webhook(state("FRA"), "FRA")
    assert app.get_entry("FRA").webhook is None


def test_the_webhook_routes_are_signed_state_writes() -> None:
    for method in ("PUT", "DELETE"):
        found = match_write(method, "/entries/FRA/webhook")
        assert found is not None, method
        assert found[0].command.startswith("entry.")


def test_a_state_sets_reads_and_removes_its_webhook_over_http(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    fra = api.as_state("FRA")
    r = api.call(
        "PUT", "/entries/FRA/webhook", fra, json={"url": HOOK}, headers=api.if_match("FRA")
    )
    assert r.status_code == 200, r.text
    assert HOOK not in r.text  # the entry as the directory shows it
    r = api.call("GET", "/entries/FRA/webhook", fra)
    assert r.status_code == 200, r.text
    assert r.json() == {"url": HOOK}
    # Another State reads FRA's entry in the directory, and never its webhook.
    deu = api.as_state("DEU")
    for path in ("/directory/FRA", "/directory"):
        r = api.call("GET", path, deu)
        assert r.status_code == 200, (path, r.text)
        assert "cert.example.org" not in r.text, path
    assert_error(api.call("GET", "/entries/FRA/webhook", deu), 403)
    r = api.call("DELETE", "/entries/FRA/webhook", fra, headers=api.if_match("FRA"))
    assert r.status_code == 200, r.text
    assert api.call("GET", "/entries/FRA/webhook", fra).json() == {"url": None}
    assert_error(api.call("DELETE", "/entries/FRA/webhook", fra, headers=api.if_match("FRA")), 409)


def test_another_state_may_not_set_or_remove_the_webhook(api: Api) -> None:
    register(api, "FRA")
    deu = api.as_state("DEU")
    error = assert_error(api.call("PUT", "/entries/FRA/webhook", deu, json={"url": HOOK}), 403)
    assert "R15" in error["detail"]
    assert_error(api.call("DELETE", "/entries/FRA/webhook", deu), 403)
    assert api.application.get_entry("FRA").webhook is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://cert.example.org/hook", "https://"),
        ("https://10.0.0.7/hook", "private"),
        ("https://user:pw@cert.example.org/hook", "user name"),
        ("https://cert.example.org/hook#x", "fragment"),
    ],
)
def test_a_bad_webhook_url_is_a_422_that_says_what_to_fix(api: Api, url: str, says: str) -> None:
    register(api, "FRA")
    fra = api.as_state("FRA")
    r = api.call("PUT", "/entries/FRA/webhook", fra, json={"url": url}, headers=api.if_match("FRA"))
    error = assert_error(r, 422)
    assert says in error["detail"]
    assert "pw" not in r.text
    assert api.application.get_entry("FRA").webhook is None


def test_the_test_setting_lets_a_state_register_a_loopback_webhook(
    backend: Backend, clock: Any
) -> None:
    assert Settings.from_env({}).webhook_allow_private is False
    on = Settings.from_env({"POCDIR_WEBHOOK_ALLOW_PRIVATE": "true"})
    assert on.webhook_allow_private is True
    with pytest.raises(SettingsError, match="POCDIR_WEBHOOK_ALLOW_PRIVATE"):
        Settings.from_env({"POCDIR_WEBHOOK_ALLOW_PRIVATE": "perhaps"})
    settings = dataclasses.replace(backend.settings, webhook_allow_private=True)
    with api_for(settings, clock) as api:
        register(api, "FRA")
        url = "https://127.0.0.1:8443/hook"
        r = api.call(
            "PUT", "/entries/FRA/webhook", api.as_state("FRA"), json={"url": url},
            headers=api.if_match("FRA"),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert api.application.get_entry("FRA").webhook == url


# -- delivery over real HTTPS ----------------------------------------------------------------


@dataclasses.dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HookServer:
    """An HTTPS server on loopback with a certificate for ``HOOK_HOST`` from a CA the test
    made (``infra.ca``). ``/status/N`` answers N; everything it received is kept."""

    def __init__(self, directory: Path) -> None:
        ca.init(directory / "ca", "webhook test CA")
        issued = ca.issue(directory / "ca", HOOK_HOST, directory / "server", server_name=HOOK_HOST)
        self.ca_file = directory / "ca" / ca.CA_CERT
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                server.received.append(
                    Received("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                status = int(self.path.split("/status/", 1)[1].split("?")[0])
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"https://{HOOK_HOST}/status/200")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(issued.cert_path, issued.key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, status: int, host: str = HOOK_HOST) -> str:
        return f"https://{host}:{self.port}/status/{status}?state=FRA"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[HookServer]:
    server = HookServer(tmp_path)
    yield server
    server.close()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class CountingResolver:
    """Answers every name with ``addresses`` and counts the look-ups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return self.addresses


def channel(
    key: Ed25519PrivateKey, hooks: HookServer, resolver: CountingResolver, **kw: Any
) -> WebhookChannel:
    return WebhookChannel(
        key,
        delivery_key_id(key.public_key()),
        ca_file=hooks.ca_file,
        resolver=resolver,
        timeout=5.0,
        **{"allow_private": True, **kw},
    )


def alert(url: str, message_id: str = "<alert-1.fra@pocdir.example>") -> OutgoingMessage:
    return OutgoingMessage(
        message_id=message_id,
        to=url,
        subject="Notification received",
        body="Acknowledge by 2025-05-02",
        payload={"reference": "N-1", "action": "acknowledge", "by": "2025-05-02T10:00:00Z"},
    )


def test_an_alert_arrives_signed_and_the_receiver_verifies_it(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    resolver = CountingResolver("127.0.0.1")
    url = hooks.url(200)
    [result] = channel(key, hooks, resolver).deliver_many([alert(url)])
    assert (result.outcome, result.code, result.detail) == (Outcome.SENT, 200, "200")
    assert resolver.calls == 1  # one look-up; the connection went to that address
    [got] = hooks.received
    assert json.loads(got.body) == {
        "reference": "N-1",
        "action": "acknowledge",
        "by": "2025-05-02T10:00:00Z",
    }
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["host"] == f"{HOOK_HOST}:{hooks.port}"
    assert headers["content-type"] == "application/json"
    assert headers["message-id"] == "<alert-1.fra@pocdir.example>"
    signature_input = headers["signature-input"]
    assert 'alg="ed25519"' in signature_input and "created=" in signature_input
    assert f'keyid="{delivery_key_id(key.public_key())}"' in signature_input
    assert "nonce=" in signature_input
    for component in COVERED_COMPONENTS:
        assert f'"{component}"' in signature_input
    verify_webhook_signature("POST", url, headers, got.body, key.public_key())
    # Any change is caught: the body, the URL, the Message-ID, another key.
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature("POST", url, headers, got.body + b" ", key.public_key())
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature("POST", hooks.url(201), headers, got.body, key.public_key())
    with pytest.raises(WebhookSignatureError):
        changed = {**headers, "message-id": "<alert-2.fra@pocdir.example>"}
        verify_webhook_signature("POST", url, changed, got.body, key.public_key())
    with pytest.raises(WebhookSignatureError):
        other = Ed25519PrivateKey.generate().public_key()
        verify_webhook_signature("POST", url, headers, got.body, other)


def test_a_retry_keeps_its_message_id_and_is_signed_afresh(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    webhook = channel(key, hooks, CountingResolver("127.0.0.1"))
    results = webhook.deliver_many([alert(hooks.url(503)), alert(hooks.url(200))])
    assert [r.outcome for r in results] == [Outcome.DEFERRED, Outcome.SENT]
    first, second = ({k.lower(): v for k, v in r.headers.items()} for r in hooks.received)
    assert first["message-id"] == second["message-id"]
    assert first["signature"] != second["signature"]  # another nonce


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),
        (204, Outcome.SENT),
        (500, Outcome.DEFERRED),
        (503, Outcome.DEFERRED),
        (408, Outcome.DEFERRED),
        (425, Outcome.DEFERRED),
        (429, Outcome.DEFERRED),
        (404, Outcome.REFUSED),
        (410, Outcome.REFUSED),
        (400, Outcome.REFUSED),
    ],
)
def test_the_status_decides_the_outcome(
    hooks: HookServer, key: Ed25519PrivateKey, status: int, outcome: Outcome
) -> None:
    [result] = channel(key, hooks, CountingResolver("127.0.0.1")).deliver_many(
        [alert(hooks.url(status))]
    )
    assert (result.outcome, result.code, result.detail) == (outcome, status, str(status))


def test_a_redirect_is_not_followed(hooks: HookServer, key: Ed25519PrivateKey) -> None:
    [result] = channel(key, hooks, CountingResolver("127.0.0.1")).deliver_many(
        [alert(hooks.url(302))]
    )
    assert result.outcome is Outcome.REFUSED and result.code == 302
    assert [r.path for r in hooks.received] == ["/status/302?state=FRA"]


@pytest.mark.parametrize(
    "addresses",
    [
        ("127.0.0.1",),
        ("::1",),
        ("8.8.8.8", "127.0.0.1"),  # every address must be public, not just one
        ("10.0.0.5",),
        ("169.254.169.254",),
        ("100.64.0.9",),
        ("::ffff:127.0.0.1",),
    ],
)
def test_loopback_and_private_addresses_are_refused_without_the_test_setting(
    hooks: HookServer, key: Ed25519PrivateKey, addresses: tuple[str, ...]
) -> None:
    webhook = channel(key, hooks, CountingResolver(*addresses), allow_private=False)
    [result] = webhook.deliver_many([alert(hooks.url(200))])
    assert (result.outcome, result.detail) == (Outcome.REFUSED, "address not public")
    assert hooks.received == []


def test_a_literal_loopback_url_is_refused_without_the_test_setting(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    webhook = channel(key, hooks, CountingResolver("127.0.0.1"), allow_private=False)
    [result] = webhook.deliver_many([alert(hooks.url(200, host="127.0.0.1"))])
    assert result.outcome is Outcome.REFUSED
    assert hooks.received == []


def test_tls_is_verified_against_the_urls_host_name(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    """The connection goes to the checked address, but the certificate must still name the
    URL's host: a server at that address without it gets nothing."""
    webhook = channel(key, hooks, CountingResolver("127.0.0.1"))
    [result] = webhook.deliver_many([alert(hooks.url(200, host="other.pocdir.test"))])
    assert (result.outcome, result.detail) == (Outcome.DEFERRED, "TLS certificate not verified")
    untrusted = WebhookChannel(
        key, "k", allow_private=True, resolver=CountingResolver("127.0.0.1"), timeout=5.0
    )  # the system's CAs, which do not know the test's
    [result] = untrusted.deliver_many([alert(hooks.url(200))])
    assert result.outcome is Outcome.DEFERRED
    assert hooks.received == []


def test_connection_failures_and_unknown_names_are_deferred(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    closed = hooks.port
    hooks.close()
    [result] = channel(key, hooks, CountingResolver("127.0.0.1")).deliver_many(
        [alert(f"https://{HOOK_HOST}:{closed}/status/200")]
    )
    assert (result.outcome, result.detail) == (Outcome.DEFERRED, "connection failed")

    def unknown(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    webhook = WebhookChannel(key, "k", allow_private=True, resolver=unknown)
    [result] = webhook.deliver_many([alert("https://nowhere.pocdir.test/hook")])
    assert (result.outcome, result.detail) == (Outcome.DEFERRED, "name not resolved")


def test_a_result_never_carries_the_url_or_the_payload(
    hooks: HookServer, key: Ed25519PrivateKey
) -> None:
    webhook = channel(key, hooks, CountingResolver("127.0.0.1"))
    for status in (200, 404, 503):
        [result] = webhook.deliver_many([alert(hooks.url(status))])
        assert HOOK_HOST not in result.detail and "N-1" not in result.detail


# -- RFC 9421's test vector ------------------------------------------------------------------

#: RFC 9421 Appendix B.1.4, "test-key-ed25519".
RFC_KEY_PRIVATE = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_KEY_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
#: RFC 9421 Appendix B.2.6: the signature base and the signature.
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu"
    "4A0w6vuQv5lIp5WPpBKRCw==:"
)


@dataclasses.dataclass
class RfcRequest:
    method: str = "POST"
    url: str = "https://example.com/foo?param=Value&Pet=dog"
    headers: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "Host": "example.com",
            "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "Content-Type": "application/json",
            "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrI"
            "iYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            "Content-Length": "18",
        }
    )


def test_the_signature_library_reproduces_rfc_9421s_ed25519_test_vector() -> None:
    private = load_pem_private_key(RFC_KEY_PRIVATE, None)
    public = load_pem_public_key(RFC_KEY_PUBLIC)
    keys = MappingKeyResolver(
        public_keys={"test-key-ed25519": public},  # type: ignore[dict-item]
        private_keys={"test-key-ed25519": private},  # type: ignore[dict-item]
    )
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=keys)
    request = RfcRequest()
    components = ("date", "@method", "@path", "@authority", "content-type", "content-length")
    prepared = signer.prepare(
        request,
        key_id="test-key-ed25519",
        created=datetime.fromtimestamp(1618884473, UTC),
        label="sig-b26",
        include_alg=False,
        covered_component_ids=components,
        use_existing_digest=True,
    )
    assert prepared.signature_base.decode() == RFC_B26_BASE
    signer.sign(
        request,
        key_id="test-key-ed25519",
        created=datetime.fromtimestamp(1618884473, UTC),
        label="sig-b26",
        include_alg=False,
        covered_component_ids=components,
        use_existing_digest=True,
    )
    assert request.headers["Signature"] == RFC_B26_SIGNATURE
    assert (
        request.headers["Signature-Input"]
        == "sig-b26=" + RFC_B26_BASE.rsplit('"@signature-params": ', 1)[1]
    )
    # And the RFC's signature verifies (its creation time is years old: no age limit here).
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=keys)
    [verified] = verifier.verify(request, max_age=None)
    assert verified.label == "sig-b26"


def test_content_digest_is_rfc_9530s_sha_256() -> None:
    """RFC 9530 §2's example: the SHA-256 of ``{"hello": "world"}``."""
    body = b'{"hello": "world"}'
    headers = sign_webhook_request(
        "https://example.com/foo", body, "<m@x>", Ed25519PrivateKey.generate(), "k"
    )
    assert headers["Content-Digest"] == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert base64.b64decode(headers["Content-Digest"][9:-1])  # a byte sequence


def test_the_delivery_key_id_names_the_keys_fingerprint(key: Ed25519PrivateKey) -> None:
    from domain.statement import key_fingerprint

    assert delivery_key_id(key.public_key()) == "pocdir-delivery:" + key_fingerprint(
        key.public_key()
    )


# -- the State client ------------------------------------------------------------------------


def test_the_state_client_sets_and_removes_the_webhook_with_signed_writes(
    api: Api, tmp_path: Path, clock: Any
) -> None:
    """With its signing keys bound, FRA's writes must carry a signed statement (the gate
    refuses them otherwise): the webhook routes are among those the client signs."""
    from domain.statement import SignedStatement
    from tests.support.state_officials import official

    fra = official(tmp_path, "FRA")
    fra.bind(api.application)
    client = fra.client(api.token("state", "FRA"), http=api.client, clock=clock.now)
    client.register_entry()
    answer = client.set_webhook(HOOK)
    assert answer.status == 200, answer.body
    signed = SignedStatement.from_dict(answer.statement or {}).statement
    assert (signed.command, signed.state) == ("entry.set_webhook", "FRA")
    assert client.webhook() == {"url": HOOK}
    with pytest.raises(ValidationError, match="https://"):  # checked before it is sent
        client.set_webhook("http://cert.example.org/hook")
    removed = client.remove_webhook()
    assert SignedStatement.from_dict(removed.statement or {}).statement.command == (
        "entry.remove_webhook"
    )
    assert api.application.get_entry("FRA").webhook is None
    # Unsigned, the same write is refused once keys are bound.
    r = api.call(
        "PUT", "/entries/FRA/webhook", api.as_state("FRA"), json={"url": HOOK},
        headers=api.if_match("FRA"),
    )  # fmt: skip
    assert_error(r, 403)
    assert api.application.get_entry("FRA").webhook is None


@pytest.mark.parametrize("command", ["set", "remove", "show"])
def test_the_webhook_commands_have_help(command: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from state_client.cli import app as cli

    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "webhook", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "webhook" in result.output


def test_a_bad_url_is_one_line_and_exit_2_before_anything_is_sent(tmp_path: Path) -> None:
    """The server configured is not there: the refusal comes from the official's machine."""
    from typer.testing import CliRunner

    from state_client.cli import app as cli
    from tests.support.cli import free_port

    env = {"POCDIR_STATE_PASSPHRASE": "a passphrase", "COLUMNS": "200"}

    def run(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(cli, ["--home", str(tmp_path), *args], input=stdin, env=env)

    server = f"http://127.0.0.1:{free_port()}"
    assert run("config", "--server", server, "--state", "FRA").exit_code == 0
    assert run("login", stdin="pocdir_token\n").exit_code == 0
    assert run("keys", "generate").exit_code == 0
    result = run("webhook", "set", "http://cert.example.org/hook")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "https://" in lines[0]
    assert run("webhook", "remove").exit_code == 3  # that one goes to the (absent) server


def test_a_webhook_change_moves_the_etag_but_not_the_entrys_last_update(
    api: Api, clock: Any
) -> None:
    from datetime import timedelta

    register(api, "FRA")
    before = api.call("GET", "/directory/FRA", api.as_state("DEU")).json()
    clock.advance(timedelta(days=3))
    r = api.call(
        "PUT", "/entries/FRA/webhook", api.as_state("FRA"), json={"url": HOOK},
        headers=api.if_match("FRA"),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["version"] == before["version"] + 1
    assert after["last_update_on"] == before["last_update_on"]


def test_a_server_that_does_not_answer_is_deferred(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks TLS
    try:
        port = silent.getsockname()[1]
        webhook = WebhookChannel(
            key, "k", allow_private=True, timeout=0.5, resolver=CountingResolver("127.0.0.1")
        )
        [result] = webhook.deliver_many([alert(f"https://{HOOK_HOST}:{port}/hook")])
        assert (result.outcome, result.detail) == (Outcome.DEFERRED, "timeout")
    finally:
        silent.close()
