"""The webhook channel (issue 17): each alert is POSTed as JSON to the URL its State set for its
entry (``domain.webhook``), signed per RFC 9421 (HTTP Message Signatures) with the server's
Ed25519 delivery key, so that the receiver knows it came from this directory.

**Only public addresses.** The URL's host is resolved once per delivery, and the alert is
refused (``REFUSED``, "address not public") unless every address it resolves to is public
(``domain.webhook.is_public_address``): a State must not make the server reach its own
network. The connection then goes to one of those very addresses, with TLS verified against
the URL's host name: no second lookup, so DNS cannot answer a public address to the check
and a private one to the connection (DNS rebinding). Redirects are not followed.

**The signature** (docs/delivery.md, "Webhooks", says how to check it): label ``pocdir``,
``alg="ed25519"``, ``keyid`` ``"pocdir-delivery:" + key_fingerprint(public key)``, a
``created`` time, a fresh ``nonce`` per attempt, ``tag="pocdir-alert"``, covering
``@method``, ``@target-uri``, ``content-type``, ``content-digest`` (RFC 9530, SHA-256 of the
body) and ``message-id`` (the alert's Message-ID, the same on every retry: the receiver's key
to drop a duplicate). The signature base is built by ``http-message-signatures`` (pyauth's
maintained implementation), checked in the tests against RFC 9421's Ed25519 test vector.

**Outcomes.** 2xx is ``SENT``; 408, 425, 429, 5xx, a timeout, a refused or broken connection
or a name that does not resolve is ``DEFERRED``; any other status is ``REFUSED``. A result's
detail is the status code or a short reason, never the URL or the payload.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

from domain.errors import ValidationError
from domain.statement import key_fingerprint
from domain.webhook import check_webhook_url, is_public_address
from infra.channels import DeliveryResult, Outcome, OutgoingMessage

__all__ = [
    "COVERED_COMPONENTS",
    "DELIVERY_KEY_ID_PREFIX",
    "SIGNATURE_LABEL",
    "SIGNATURE_TAG",
    "WebhookChannel",
    "WebhookSignatureError",
    "delivery_key_id",
    "verify_webhook_signature",
]

DELIVERY_KEY_ID_PREFIX: Final = "pocdir-delivery:"
SIGNATURE_LABEL: Final = "pocdir"
#: Names the application, so a receiver selects this signature among others (RFC 9421 §2.3).
SIGNATURE_TAG: Final = "pocdir-alert"
#: What every alert's signature covers; a receiver must require all of them.
COVERED_COMPONENTS: Final = (
    "@method",
    "@target-uri",
    "content-type",
    "content-digest",
    "message-id",
)
CONTENT_TYPE: Final = "application/json"
USER_AGENT: Final = "pocdir-delivery"
#: How old a signature a receiver accepts by default: each attempt is signed afresh.
DEFAULT_MAX_AGE: Final = dt.timedelta(minutes=5)
#: HTTP statuses that mean "try again later".
_TEMPORARY: Final = frozenset({408, 425, 429})
#: Bytes of a response read before the connection is closed (the body is not used).
_MAX_RESPONSE_READ: Final = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; the default is the system's resolver (getaddrinfo).
Resolver = Callable[[str, int], Sequence[str]]


class WebhookSignatureError(ValueError):
    """A webhook request's signature is missing, malformed, too old, from another key, or
    does not match the request (its method, URL, headers or body)."""


def delivery_key_id(public_key: Ed25519PublicKey) -> str:
    """The ``keyid`` a delivery key signs with: its fingerprint, as the record publishes it."""
    return DELIVERY_KEY_ID_PREFIX + key_fingerprint(public_key)


class _OneKey(HTTPSignatureKeyResolver):
    """The one key this side signs or verifies with, under its one key id."""

    def __init__(
        self,
        key_id: str,
        *,
        private: Ed25519PrivateKey | None = None,
        public: Ed25519PublicKey | None = None,
    ) -> None:
        self.key_id, self.private, self.public = key_id, private, public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if key_id != self.key_id or self.private is None:
            raise WebhookSignatureError("no private key for that key id")
        return self.private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self.public if key_id == self.key_id else None


@dataclass
class _Request:
    """What ``http_message_signatures`` reads of a request: method, absolute URL, headers."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def sign_webhook_request(
    url: str,
    body: bytes,
    message_id: str,
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    created: dt.datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a signed POST of ``body`` to ``url``: Content-Type, Message-ID,
    Content-Digest, Signature-Input and Signature."""
    request = _Request("POST", url, {"Content-Type": CONTENT_TYPE, "Message-ID": message_id})
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(key_id, private=key)
    )
    signer.sign(
        request,
        key_id=key_id,
        created=created or dt.datetime.now(dt.UTC),
        nonce=nonce or secrets.token_urlsafe(16),
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=[c for c in COVERED_COMPONENTS if c != "content-digest"],
        body=body,  # adds Content-Digest (sha-256) and covers it
    )
    return request.headers


def verify_webhook_signature(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key: Ed25519PublicKey,
    *,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
) -> None:
    """Check that a request received at ``url`` (the URL the State registered, query
    included) was signed by the delivery key ``public_key``, covers every one of
    ``COVERED_COMPONENTS``, was signed at most ``max_age`` ago, and that its Content-Digest
    is that of ``body``. Raises ``WebhookSignatureError`` otherwise. Replays within
    ``max_age``: keep the Message-IDs (and nonces) seen."""
    request = _Request(method.upper(), url, dict(headers))
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(delivery_key_id(public_key), public=public_key),
    )
    try:
        verifier.verify(
            request,
            max_age=max_age,
            expect_tag=SIGNATURE_TAG,
            require_components=COVERED_COMPONENTS,
            body=body,
        )
    except HTTPMessageSignaturesException as e:
        raise WebhookSignatureError(f"webhook signature not valid: {e}") from None


def _system_resolver(host: str, port: int) -> list[str]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in found]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``, with the Host header and the certificate check of ``host``: the
    address is the one that was checked, and no second lookup can change it."""

    def __init__(
        self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class WebhookChannel:
    """Delivers alerts to webhooks (``infra.channels.Channel``): one signed POST each, over
    a connection of its own."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        key_id: str,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        ca_file: Path | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """``allow_private`` is ``POCDIR_WEBHOOK_ALLOW_PRIVATE`` (tests only); ``ca_file``
        replaces the system's trusted CAs (tests); ``resolver`` the system's name resolution
        (tests: a name that no DNS knows, for a server on loopback)."""
        self.key, self.key_id = key, key_id
        self.allow_private = allow_private
        self.timeout = timeout
        self.resolver: Resolver = resolver or _system_resolver
        self.tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def deliver_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        return [self.deliver(message) for message in messages]

    def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """One alert, never raising for a failure of delivery."""
        try:
            url = check_webhook_url(message.to, allow_private=self.allow_private)
        except ValidationError:
            return DeliveryResult(Outcome.REFUSED, detail="webhook URL not valid")
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or 443
        addresses = self._addresses(host, port)
        if isinstance(addresses, DeliveryResult):
            return addresses
        body = self._body(message)
        headers = sign_webhook_request(url, body, message.message_id, self.key, self.key_id)
        headers["User-Agent"] = USER_AGENT
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        failure = DeliveryResult(Outcome.DEFERRED, detail="connection failed")
        for address in addresses:
            try:
                status = self._post(host, port, str(address), target, headers, body)
            except ssl.SSLCertVerificationError:
                return DeliveryResult(Outcome.DEFERRED, detail="TLS certificate not verified")
            except ssl.SSLError:
                failure = DeliveryResult(Outcome.DEFERRED, detail="TLS handshake failed")
                continue
            except TimeoutError:
                return DeliveryResult(Outcome.DEFERRED, detail="timeout")
            except (OSError, http.client.HTTPException):
                continue  # the next address, if the name has another
            return _result(status)
        return failure

    def _addresses(self, host: str, port: int) -> list[IPAddress] | DeliveryResult:
        """The host's addresses, once, if all are public (or ``allow_private``)."""
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError):
            return DeliveryResult(Outcome.DEFERRED, detail="name not resolved")
        addresses: list[IPAddress] = []
        for raw in found:
            try:
                address = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                return DeliveryResult(Outcome.REFUSED, detail="address not public")
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            return DeliveryResult(Outcome.DEFERRED, detail="name not resolved")
        if not self.allow_private and not all(is_public_address(a) for a in addresses):
            return DeliveryResult(Outcome.REFUSED, detail="address not public")
        return addresses

    @staticmethod
    def _body(message: OutgoingMessage) -> bytes:
        """The payload as JSON; without one, the alert's own fields."""
        payload: Mapping[str, Any] = message.payload or {
            "message_id": message.message_id,
            "subject": message.subject,
            "text": message.body,
            "language": message.language,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _post(
        self,
        host: str,
        port: int,
        address: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> int:
        connection = _PinnedHTTPSConnection(host, port, address, self.tls, self.timeout)
        try:
            connection.request("POST", target, body=body, headers=dict(headers))
            response = connection.getresponse()
            response.read(_MAX_RESPONSE_READ)
            return response.status
        finally:
            connection.close()


def _result(status: int) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(Outcome.SENT, status, str(status))
    if status in _TEMPORARY or status >= 500:
        return DeliveryResult(Outcome.DEFERRED, status, str(status))
    return DeliveryResult(Outcome.REFUSED, status, str(status))
