"""``StateClient``: a State official's side of every exchange, over the pocdir HTTP API
(issue 15, item 5).

What it does that a bare HTTP client does not:

* **Channel.** HTTPS with the server's CA file (and, for mTLS, the client certificate the
  Secretariat's CA issued), or plain HTTP to loopback only: a plain ``http://`` URL to any
  other host is refused before anything is sent, since the bearer token and every statement
  would cross the network in clear (R14).
* **Signing.** Every write carries the statement the official's Ed25519 key signed
  (:func:`domain.signed_requests.sign_request`, the same rule the server's gate checks); a
  creating write names the new aggregate's id in the statement. Writes to an existing entry
  read its ETag first, since entry routes require ``If-Match``. The server's receipt
  (``Pocdir-Receipt``) is returned raw in :attr:`Answer.receipt`.
* **Encryption.** Content is sealed on this machine (:mod:`state_client.envelope`) to the
  parties' encryption keys and opened here; indicators are validated before sealing and after
  opening. Another State's key is used only once :mod:`state_client.trust` accepted it
  through its signed key history, anchored in a pinned fingerprint.
* **Receipts.** With the server's verifier key pinned (``pocdir-state config --server-key``),
  every signed write's receipt is checked against it (:mod:`state_client.receipts`).
* **Read your writes.** Each request carries ``Pocdir-Min-Position``, the highest record
  position a write of this client ended at, so a read right after a write sees it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.errors import ValidationError
from domain.members import check_member_state
from domain.notification import check_urgency
from domain.signed_requests import sign_request
from domain.signing import RECEIPT_HEADER
from domain.webhook import check_webhook_url
from state_client.envelope import (
    Content,
    Envelope,
    open_envelope,
    open_response,
    rewrap,
    rewrap_response,
    seal,
    seal_response,
)
from state_client.keys import EncryptionPrivateKey
from state_client.receipts import check_receipt, parse_server_key
from state_client.store import ClientConfig
from state_client.trust import TrustedKey, TrustStore

__all__ = [
    "RECEIPT_HEADER",
    "Answer",
    "ChannelRefused",
    "ClientError",
    "Opened",
    "ServerError",
    "StateClient",
    "Unreachable",
    "check_channel",
]

POSITION_HEADER: Final = "Pocdir-Position"
MIN_POSITION_HEADER: Final = "Pocdir-Min-Position"
_TIMEOUT: Final = 30.0


class ClientError(ValidationError):
    """Something the client refuses before or after talking to the server."""


class Unreachable(ClientError):
    """The server could not be reached (connection, TLS handshake, timeout)."""


class ChannelRefused(ClientError):
    """The server URL is not one the client will send a token and statements to."""


class ServerError(Exception):
    """The server answered 4xx or 5xx; ``error`` and ``detail`` are its body's."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{status} {error}: {detail}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_channel(server: str) -> str:
    """The server's base URL without a trailing slash, if the client may use it: ``https``
    to any host, ``http`` to loopback only."""
    parts = urlsplit(server)
    host = parts.hostname or ""
    if parts.scheme not in {"http", "https"} or not host:
        raise ChannelRefused(
            f"the server URL must be https://HOST[:PORT] (or http:// to loopback), got "
            f"{server[:80]!r}"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ChannelRefused(
            f"refusing plain HTTP to {host[:80]}: the token and signed statements would "
            "cross the network in clear; use https:// (plain http only to 127.0.0.1, ::1 or "
            "localhost)"
        )
    if parts.query or parts.fragment:
        raise ChannelRefused("the server URL takes no query or fragment")
    return server.rstrip("/")


@dataclass(frozen=True)
class Answer:
    """A server's answer to one request: the JSON body, the receipt header if any."""

    status: int
    body: Any
    receipt: str | None = None
    position: int | None = None
    statement: dict[str, str] | None = None
    etag: str | None = None
    #: The receipt's content once checked against the pinned server key (``receipts``).
    receipt_checked: dict[str, Any] | None = None


@dataclass(frozen=True)
class Opened:
    """A notification read and decrypted on this machine."""

    notification: dict[str, Any]
    content: Content | None
    responses: list[dict[str, Any]] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ClientError(f"the server's {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"the server's {what} is not base64") from None


def _id(value: UUID | str, what: str = "an id") -> UUID:
    """An id given by the official (a UUID), or one line saying it is not one."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value).strip())
    except ValueError:
        raise ClientError(f"{str(value)[:40]!r} is not {what} (a UUID, as listed)") from None


class StateClient:
    """One official of one State, talking to one pocdir server.

    ``http`` replaces the HTTP client the URL would make (an ``httpx.Client`` whose base URL
    is the server, e.g. FastAPI's ``TestClient`` for in-process use); the channel rule then
    is the caller's. ``clock`` gives the statements' creation time (UTC now by default)."""

    def __init__(  # noqa: PLR0913
        self,
        *,
        server: str,
        state: str,
        token: str,
        signing_key: Ed25519PrivateKey,
        encryption_key: EncryptionPrivateKey,
        trust: TrustStore,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], datetime] | None = None,
        server_key: Ed25519PublicKey | None = None,
    ) -> None:
        self.state = check_member_state(state)
        #: The server's verifier key the official pinned: every signed write's receipt is
        #: checked against it (``state_client.receipts``); None: receipts are kept unchecked.
        self.server_key = server_key
        self.signing_key = signing_key
        self.encryption_key = encryption_key
        self.trust = trust
        self.clock = clock or (lambda: datetime.now(UTC))
        self.position = 0
        self._token = token
        if http is not None:
            self.http = http
        else:
            base = check_channel(server)
            verify: ssl.SSLContext | bool = True
            if base.startswith("https:"):
                verify = self._tls_context(ca_file, client_cert, client_key)
            self.http = httpx.Client(base_url=base, verify=verify, timeout=_TIMEOUT)

    @classmethod
    def from_config(
        cls,
        config: ClientConfig,
        *,
        token: str,
        signing_key: Ed25519PrivateKey,
        encryption_key: EncryptionPrivateKey,
        trust: TrustStore,
    ) -> StateClient:
        return cls(
            server=config.server,
            state=config.state,
            token=token,
            signing_key=signing_key,
            encryption_key=encryption_key,
            trust=trust,
            ca_file=config.ca_file,
            client_cert=config.client_cert,
            client_key=config.client_key,
            server_key=None if config.server_key is None else parse_server_key(config.server_key),
        )

    @staticmethod
    def _tls_context(
        ca_file: str | None, client_cert: str | None, client_key: str | None
    ) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if client_cert is not None:
                context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as e:
            raise ClientError(
                f"cannot load the server CA or the client certificate and key: {e}"
            ) from None
        return context

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- HTTP -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        if self.position:
            sent[MIN_POSITION_HEADER] = str(self.position)
        try:
            r = self.http.request(
                method, path, json=body, params=dict(query or {}) or None, headers=sent
            )
        except httpx.HTTPError as e:
            raise Unreachable(f"cannot reach the server: {e}") from None
        try:
            payload = r.json() if r.content else None
        except ValueError:
            payload = None
        if r.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            detail = payload.get("detail") if isinstance(payload, dict) else None
            raise ServerError(r.status_code, str(error or "error"), str(detail or r.text[:200]))
        position = r.headers.get(POSITION_HEADER)
        if position is not None and position.isdigit():
            self.position = max(self.position, int(position))
        return Answer(
            r.status_code,
            payload,
            r.headers.get(RECEIPT_HEADER),
            int(position) if position and position.isdigit() else None,
            etag=r.headers.get("ETag"),
        )

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return self._send("GET", path, query=query).body

    def write(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        if_match: str | None = None,
        new_aggregate: UUID | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        """A signed write: the statement of ``domain.signed_requests`` in its headers."""
        signed = sign_request(
            method=method,
            path=path,
            body=body,
            state=self.state,
            private_key=self.signing_key,
            idempotency_key=str(uuid4()),
            created_at=self.clock(),
            query=query,
            if_match=if_match,
            new_aggregate=new_aggregate,
        )
        answer = self._send(method, path, body=body, query=query, headers=signed.headers)
        checked = None
        if self.server_key is not None:
            checked = check_receipt(answer.receipt, signed.signed, self.state, self.server_key)
        return Answer(
            answer.status,
            answer.body,
            answer.receipt,
            answer.position,
            signed.signed.to_dict(),
            receipt_checked=checked,
        )

    # -- keys and trust ---------------------------------------------------------------------

    def keys(self, state: str) -> Any:
        """A State's served key history (``GET /keys/states/{state}``), unchecked."""
        return self.get(f"/keys/states/{check_member_state(state)}")

    def trusted_key(self, state: str) -> TrustedKey:
        """``state``'s encryption key, accepted only through its verified, pinned history."""
        return self.trust.accept(self.keys(state), state)

    # -- entry ------------------------------------------------------------------------------

    def register_entry(self, effective_on: str | None = None) -> Answer:
        body: dict[str, Any] = {} if effective_on is None else {"effective_on": effective_on}
        return self.write("POST", f"/entries/{self.state}", body)

    def entry(self) -> Any:
        return self.get(f"/entries/{self.state}")

    def change_entry(self, method: str, path: str, body: Any = None) -> Answer:
        """A change of the State's existing entry, with the ``If-Match`` of its current
        version (read first), under ``/entries/{state}``."""
        etag = self._send("GET", f"/entries/{self.state}").etag
        if etag is None:
            raise ClientError(f"the server sent no ETag for {self.state}'s entry")
        return self.write(method, f"/entries/{self.state}{path}", body, if_match=etag)

    def add_contact(self, contact: Mapping[str, Any]) -> Answer:
        return self.change_entry("POST", "/contacts", {"contact": dict(contact)})

    def set_webhook(self, url: str) -> Answer:
        """The one URL the server POSTs this State's alerts to, signed (a signed write). Its
        form is checked here first; whether its address is public, by the server."""
        url = check_webhook_url(url, allow_private=True)
        return self.change_entry("PUT", "/webhook", {"url": url})

    def remove_webhook(self) -> Answer:
        return self.change_entry("DELETE", "/webhook")

    def webhook(self) -> Any:
        """``{"url": ...}``: the State's webhook, or null."""
        return self.get(f"/entries/{self.state}/webhook")

    # -- notifications ----------------------------------------------------------------------

    def notify(
        self,
        recipient: str,
        incident_type: str,
        content: Content | Mapping[str, Any],
        *,
        good_faith_attested: bool = True,
        urgency: str | None = None,
    ) -> Answer:
        """Seal ``content`` to the recipient's verified key and this State's own, and send
        it. Invalid content (R6 texts, indicators) is refused here, before anything is
        encrypted or sent. ``urgency`` (default the server's, ``normal``) is in the signed
        body, so the State's statement covers it."""
        recipient = check_member_state(recipient)
        level = None if urgency is None else check_urgency(urgency).value
        checked = content if isinstance(content, Content) else Content.from_dict(content)
        theirs = self.trusted_key(recipient)
        notification = uuid4()
        sealed = seal(
            checked,
            notification,
            {self.state: self.encryption_key.public_key(), recipient: theirs.key},
        )
        body = {
            "recipient": recipient,
            "incident_type": incident_type,
            "good_faith_attested": good_faith_attested,
            "envelope": _b64(sealed.to_bytes()),
            # The statement's new aggregate; the body repeats it (docs/e2e.md).
            "id": str(notification),
        }
        if level is not None:
            body["urgency"] = level
        return self.write("POST", "/notifications", body, new_aggregate=notification)

    def inbox(self) -> Any:
        return self.get("/notifications/inbox")

    def outbox(self) -> Any:
        return self.get("/notifications/outbox")

    def notification(self, notification_id: UUID | str) -> Any:
        return self.get(f"/notifications/{_id(notification_id)}")

    def read(self, notification_id: UUID | str) -> Opened:
        """Fetch a notification and open it here: as a party with this State's key, as a
        consented third State with the content keys shared to it. The content is validated
        again after decrypting (``Content.from_bytes``)."""
        served = self.notification(notification_id)
        raw = served.get("envelope")
        if raw is None:
            return Opened(served, None)
        sealed = Envelope.from_bytes(_unb64(raw, "envelope"))
        if sealed.notification != _id(notification_id):
            raise ClientError("the served envelope belongs to another notification")
        shared = served.get("shared_keys")
        shared_key = None
        if self.state not in sealed.addressed and isinstance(shared, Mapping):
            shared_key = _unb64(shared.get("content"), "shared key")
        content = open_envelope(sealed, self.state, self.encryption_key, shared_key=shared_key)
        responses = [
            self._open_response(sealed.notification, i, r, shared)
            for i, r in enumerate(served.get("responses") or [])
        ]
        return Opened(served, content, responses)

    def _open_response(
        self, notification: UUID, index: int, served: Mapping[str, Any], shared: Any
    ) -> dict[str, Any]:
        raw = served.get("envelope")
        if raw is None:
            return dict(served)
        wrapped = None
        if isinstance(shared, Mapping):
            keys = shared.get("responses") or []
            if index < len(keys):
                wrapped = _unb64(keys[index], "response key")
        sealed = Envelope.from_bytes(_unb64(raw, "response envelope"))
        if sealed.notification != notification or sealed.response != index:
            raise ClientError(f"response {index} of {notification} is served from another place")
        text = open_response(sealed, self.state, self.encryption_key, shared_key=wrapped)
        return {
            "at": served.get("at"),
            "assistance_requested": served.get("assistance_requested"),
            "response": text.to_dict(),
        }

    def acknowledge(self, notification_id: UUID | str) -> Answer:
        return self.write("POST", f"/notifications/{_id(notification_id)}/acknowledgement")

    def respond(
        self, notification_id: UUID | str, text: Any, *, assistance_requested: bool = False
    ) -> Answer:
        """Seal a response to both parties (the other party's key verified) and send it."""
        nid = _id(notification_id)
        served = self.notification(nid)
        sender, recipient = served["sender"], served["recipient"]
        if self.state not in (sender, recipient):
            raise ClientError(f"{self.state} is not a party to notification {nid}")
        other = recipient if self.state == sender else sender
        keys = {self.state: self.encryption_key.public_key(), other: self.trusted_key(other).key}
        index = len(served.get("responses") or [])
        sealed = seal_response(nid, index, text, keys)
        body = {"envelope": _b64(sealed.to_bytes()), "assistance_requested": assistance_requested}
        return self.write("POST", f"/notifications/{nid}/responses", body)

    def close_notification(self, notification_id: UUID | str) -> Answer:
        return self.write("POST", f"/notifications/{_id(notification_id)}/closure")

    # -- consents (R11) ---------------------------------------------------------------------

    def ask_consent(self, notification_id: UUID | str, third_state: str) -> Answer:
        consent = uuid4()
        body = {
            "notification_id": str(_id(notification_id)),
            "third_state": check_member_state(third_state),
        }
        return self.write("POST", "/consents", body, new_aggregate=consent)

    def consent(self, consent_id: UUID | str) -> Any:
        return self.get(f"/consents/{_id(consent_id)}")

    def consents(self) -> Any:
        return self.get("/consents")

    def _consent_write(self, consent_id: UUID | str, verb: str) -> Answer:
        return self.write("POST", f"/consents/{_id(consent_id)}/{verb}")

    def grant(self, consent_id: UUID | str) -> Answer:
        return self._consent_write(consent_id, "grant")

    def deny(self, consent_id: UUID | str) -> Answer:
        return self._consent_write(consent_id, "deny")

    def revoke(self, consent_id: UUID | str) -> Answer:
        return self._consent_write(consent_id, "revoke")

    def share(self, consent_id: UUID | str) -> Answer:
        """Wrap the notification's content key, and each response's, to the third State's
        verified key, and post them for the consent (the server serves them only while the
        consent is in effect)."""
        cid = _id(consent_id)
        consent = self.consent(cid)
        third = check_member_state(consent["third_state"])
        nid = UUID(consent["notification_id"])
        served = self.notification(nid)
        raw = served.get("envelope")
        if raw is None:
            raise ClientError(f"notification {nid} is not sealed; there is no key to share")
        theirs = self.trusted_key(third)
        sealed = Envelope.from_bytes(_unb64(raw, "envelope"))
        content_key = rewrap(sealed, self.state, self.encryption_key, third, theirs.key)
        responses = []
        for index, response in enumerate(served.get("responses") or []):
            sealed_response = Envelope.from_bytes(_unb64(response["envelope"], "response envelope"))
            if sealed_response.notification != nid or sealed_response.response != index:
                raise ClientError(f"response {index} of {nid} is served from another place")
            rewrapped = rewrap_response(
                sealed_response, self.state, self.encryption_key, third, theirs.key
            )
            responses.append(_b64(rewrapped.wrapped_key(third)))
        body = {
            "wrapped_keys": {
                "content": _b64(content_key.wrapped_key(third)),
                "responses": responses,
            }
        }
        return self.write("POST", f"/consents/{cid}/share", body)

    # -- checks -----------------------------------------------------------------------------

    def checks(self) -> Any:
        return self.get("/checks")

    def answer_check(self, check_id: UUID | str, contact_id: str) -> Answer:
        return self.write("POST", f"/checks/{_id(check_id)}/answer", {"contact_id": contact_id})

    def answer_check_code(self, check_id: UUID | str, code: str) -> Answer:
        """A signed statement quoting the challenge code a contact received."""
        return self.write("POST", f"/checks/{_id(check_id)}/answers", {"code": code})
