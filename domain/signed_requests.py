"""Which statement a State signs for which HTTP write (issue 15, item 2).

A State's client and the server must agree byte for byte on the statement a request stands
for, so the mapping is decided here, in the domain, and both import it: the State client
(``state_client``) to sign, the server's gate (``api.middleware``) to check before anything
is written. docs/audit-format.md, "Signed writes", is the same rule in prose.

For a write (POST, PUT, DELETE) to a route of :data:`STATE_WRITES`:

* ``command`` is the route's command name (``notification.send``, ...);
* ``state`` is the State the token stands for;
* ``aggregate`` is the aggregate the route changes: derived from the path (an entry's and a
  key set's id from the State code, ``/notifications/{id}`` from the id), or, for a route
  that creates one (``Aggregate.NEW``), chosen by the client: the new aggregate gets the id
  the State signed, so the statement names it before it exists;
* ``expected_version`` is the version the ``If-Match`` header names, or ``null`` without one
  (then the server does not check the version; the idempotency key still makes the
  statement single-use);
* ``fields`` is ``{"body": B, "query": Q}``: ``B`` the JSON body (``null`` without one), with
  every personal value (:data:`PERSONAL_KEYS`) replaced by its salted commitment, and ``Q``
  the query parameters as an object of strings;
* ``idempotency_key`` is the request's ``Idempotency-Key`` (the gate uses the statement's if
  the header is absent, and refuses a header that differs);
* ``created_at`` is when the client signed, within ``domain.statement.CREATION_WINDOW`` of the
  server's clock.

**Commitments.** A contact's channel addresses and function identify people, and a signature
must survive their erasure, so the statement carries ``"sha256:" || hex(SHA-256(
COMMITMENT_PREFIX || salt || JCS(value)))`` instead of the value, with a fresh 16-byte salt
per value. The request carries the salts (:data:`SALTS_HEADER`); the server recomputes each
commitment, and keeps the salts encrypted under its own key beside the statement, so that
erasing them (and the plain value) later leaves every signature verifiable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final
from uuid import UUID, uuid4

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.errors import NotPermitted, ValidationError
from domain.state_entry import state_entry_id
from domain.state_keys import state_keys_id
from domain.statement import SignedStatement, Statement, sign_statement

__all__ = [
    "COMMITMENT_PREFIX",
    "PERSONAL_KEYS",
    "SALTS_HEADER",
    "SALT_LENGTH",
    "STATEMENT_HEADER",
    "STATE_WRITES",
    "KEY_WRITES",
    "Aggregate",
    "SignatureRequired",
    "SignedRequestError",
    "StatementMismatch",
    "WriteRoute",
    "check_request_matches",
    "read_statement_header",
    "aggregate_for",
    "commit_body",
    "commitment",
    "decode_header_json",
    "decode_salts",
    "encode_salts",
    "encode_header_json",
    "match_write",
    "new_salts",
    "personal_pointers",
    "request_fields",
    "sign_request",
    "SignedRequest",
    "version_of_etag",
]

#: Request header carrying the signed statement: unpadded base64url of the JSON of
#: ``SignedStatement.to_dict()``.
STATEMENT_HEADER: Final = "Pocdir-Statement"
#: Request header carrying the commitments' salts: unpadded base64url of the JSON object
#: ``{JSON Pointer (RFC 6901) of the value in the body: salt in lowercase hex}``.
SALTS_HEADER: Final = "Pocdir-Salts"
#: Domain separation of a commitment's hash input.
COMMITMENT_PREFIX: Final = b"pocdir commitment v1\n"
SALT_LENGTH: Final = 16
#: The body keys whose values are personal contact data (at any depth of the body).
PERSONAL_KEYS: Final = frozenset({"address", "function"})

#: An entry's ETag is its version in ASCII digits. ``str.isdigit`` would also admit '²' or
#: '٣', which ``int`` then refuses (or reads as another number): match the bytes we send.
_ETAG_VERSION: Final = re.compile(r"[0-9]+", re.ASCII)
_SALT_RE: Final = re.compile(r"[0-9a-f]{32}")


class SignedRequestError(ValidationError):
    """A request's statement headers are malformed, or do not match the request."""


class SignatureRequired(NotPermitted):
    """A State that has signing keys bound sent a write without a signed statement."""


class Aggregate(Enum):
    """Where a route's aggregate id comes from."""

    #: The entry of the State in the path (``state_entry_id``).
    ENTRY = "entry"
    #: The key set of the State in the path (``state_keys_id``).
    STATE_KEYS = "state_keys"
    #: The UUID in the path's ``{id}``.
    PATH = "path"
    #: A new aggregate, whose id the client chooses and signs.
    NEW = "new"


@dataclass(frozen=True)
class WriteRoute:
    """One State write route and the command its statement names."""

    method: str
    template: str
    command: str
    aggregate: Aggregate

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        return re.compile(f"^{regex}$")


_E, _K, _P, _N = Aggregate.ENTRY, Aggregate.STATE_KEYS, Aggregate.PATH, Aggregate.NEW

#: Every route by which a State changes the record, with its statement's command.
STATE_WRITES: Final[tuple[WriteRoute, ...]] = (
    WriteRoute("POST", "/entries/{state}", "entry.register", _E),
    WriteRoute("POST", "/entries/{state}/contacts", "entry.add_contact", _E),
    WriteRoute("PUT", "/entries/{state}/contacts/{contact}", "entry.update_contact", _E),
    WriteRoute("DELETE", "/entries/{state}/contacts/{contact}", "entry.remove_contact", _E),
    WriteRoute("PUT", "/entries/{state}/coordination-contact", "entry.set_coordination", _E),
    WriteRoute("PUT", "/entries/{state}/preferred-channel", "entry.set_preferred_channel", _E),
    WriteRoute("POST", "/entries/{state}/confirmation", "entry.confirm", _E),
    WriteRoute("PUT", "/entries/{state}/webhook", "entry.set_webhook", _E),
    WriteRoute("DELETE", "/entries/{state}/webhook", "entry.remove_webhook", _E),
    WriteRoute("POST", "/entries/{state}/withdrawal", "entry.withdraw", _E),
    WriteRoute("POST", "/notifications", "notification.send", _N),
    WriteRoute("POST", "/notifications/{id}/acknowledgement", "notification.acknowledge", _P),
    WriteRoute("POST", "/notifications/{id}/responses", "notification.respond", _P),
    WriteRoute("POST", "/notifications/{id}/closure", "notification.close", _P),
    WriteRoute("POST", "/notifications/{id}/withdrawal", "notification.withdraw", _P),
    WriteRoute("POST", "/consents", "consent.request", _N),
    WriteRoute("POST", "/consents/{id}/grant", "consent.grant", _P),
    WriteRoute("POST", "/consents/{id}/deny", "consent.deny", _P),
    WriteRoute("POST", "/consents/{id}/revoke", "consent.revoke", _P),
    WriteRoute("POST", "/consents/{id}/share", "consent.share", _P),
    WriteRoute("POST", "/needs", "need.record", _N),
    WriteRoute("POST", "/needs/{id}/offers", "need.offer", _P),
    WriteRoute("POST", "/needs/{id}/acceptance", "need.accept", _P),
    WriteRoute("POST", "/needs/{id}/fulfilment", "need.fulfil", _P),
    WriteRoute("POST", "/needs/{id}/withdrawal", "need.withdraw", _P),
    WriteRoute("POST", "/checks/{id}/answer", "check.answer", _P),
    WriteRoute("POST", "/checks/{id}/answers", "check.answer_code", _P),
)

#: Key changes carry their own statement in the body (``domain.state_keys``), checked by the
#: domain; the gate records that statement for the write and does not ask for a header.
KEY_WRITES: Final[tuple[WriteRoute, ...]] = (
    WriteRoute("POST", "/keys/states/{state}/rotation", "state_keys.rotate", _K),
    WriteRoute("POST", "/keys/states/{state}/revocation", "state_keys.revoke", _K),
)


def match_write(
    method: str, path: str, routes: tuple[WriteRoute, ...] = STATE_WRITES
) -> tuple[WriteRoute, dict[str, str]] | None:
    """The route a write request goes to, with its path parameters; None if it is not one."""
    method = method.upper()
    for route in routes:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found:
            return route, found.groupdict()
    return None


def aggregate_for(route: WriteRoute, params: Mapping[str, str]) -> UUID | None:
    """The aggregate a request to ``route`` changes; None for a route that creates one (its
    id is the statement's). Raises ``SignedRequestError`` for a path id that is no UUID."""
    if route.aggregate is Aggregate.ENTRY:
        return state_entry_id(params["state"])
    if route.aggregate is Aggregate.STATE_KEYS:
        return state_keys_id(params["state"])
    if route.aggregate is Aggregate.PATH:
        try:
            return UUID(params["id"])
        except ValueError:
            raise SignedRequestError(f"{params['id'][:40]!r} is not an id") from None
    return None


def version_of_etag(if_match: str) -> int:
    """The version an ``If-Match`` ETag names (``"3"`` or ``W/"3"``): decided here once, for
    the statement a State signs and for the entry routes that check it."""
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not _ETAG_VERSION.fullmatch(raw):
        raise ValidationError('If-Match must be an ETag such as "3", as returned by GET')
    return int(raw)


def commitment(salt: bytes, value: Any) -> str:
    """The salted commitment to one value: ``sha256:`` and hex SHA-256 of the prefix, the
    salt and the value's RFC 8785 bytes."""
    if len(salt) != SALT_LENGTH:
        raise SignedRequestError(f"a salt is {SALT_LENGTH} bytes, got {len(salt)}")
    return "sha256:" + hashlib.sha256(COMMITMENT_PREFIX + salt + rfc8785.dumps(value)).hexdigest()


def personal_pointers(body: Any, base: str = "") -> list[str]:
    """The JSON Pointers of every personal value in ``body`` (keys of :data:`PERSONAL_KEYS`)."""
    found: list[str] = []
    if isinstance(body, Mapping):
        for key, value in body.items():
            pointer = f"{base}/{_escape(str(key))}"
            if key in PERSONAL_KEYS and value is not None:
                found.append(pointer)
            else:
                found.extend(personal_pointers(value, pointer))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            found.extend(personal_pointers(value, f"{base}/{i}"))
    return found


def new_salts(body: Any) -> dict[str, bytes]:
    """A fresh random salt for every personal value of ``body`` (the client's side)."""
    return {pointer: os.urandom(SALT_LENGTH) for pointer in personal_pointers(body)}


def commit_body(body: Any, salts: Mapping[str, bytes]) -> Any:
    """``body`` with each personal value replaced by its commitment. Every personal value
    needs a salt and every salt a personal value: anything else is refused, naming the
    pointer (never the value)."""
    pointers = set(personal_pointers(body))
    missing = sorted(pointers - set(salts))
    extra = sorted(set(salts) - pointers)
    if missing:
        raise SignedRequestError(
            f"no salt for the personal value at {missing[0]}: send one in {SALTS_HEADER}"
        )
    if extra:
        raise SignedRequestError(f"a salt names {extra[0][:80]}, which is no personal value")
    return _replace(body, "", salts)


def request_fields(
    body: Any, query: Mapping[str, str], salts: Mapping[str, bytes]
) -> dict[str, Any]:
    """The statement's ``fields`` for a request with this JSON body (None without one) and
    these query parameters."""
    return {
        "body": None if body is None else commit_body(body, salts),
        "query": {str(k): str(v) for k, v in sorted(query.items())},
    }


def encode_header_json(value: Any) -> str:
    """JSON as unpadded base64url, for a header value."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_header_json(value: str, header: str) -> Any:
    """Read :func:`encode_header_json`'s form, or ``SignedRequestError`` naming the header."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        raise SignedRequestError(f"{header} is not unpadded base64url of a JSON object") from None


def decode_salts(value: str | None) -> dict[str, bytes]:
    """The salts of :data:`SALTS_HEADER` (none if it is absent)."""
    if value is None:
        return {}
    decoded = decode_header_json(value, SALTS_HEADER)
    if not isinstance(decoded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _SALT_RE.fullmatch(v)
        for k, v in decoded.items()
    ):
        raise SignedRequestError(
            f"{SALTS_HEADER} must be an object of JSON Pointers to 32 hex digits"
        )
    return {k: bytes.fromhex(v) for k, v in decoded.items()}


def encode_salts(salts: Mapping[str, bytes]) -> str:
    return encode_header_json({k: v.hex() for k, v in sorted(salts.items())})


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _replace(value: Any, pointer: str, salts: Mapping[str, bytes]) -> Any:
    if pointer in salts:
        return commitment(salts[pointer], value)
    if isinstance(value, Mapping):
        return {k: _replace(v, f"{pointer}/{_escape(str(k))}", salts) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, f"{pointer}/{i}", salts) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True)
class SignedRequest:
    """What a client adds to a write request: the headers, and the statement they carry."""

    headers: dict[str, str]
    signed: SignedStatement

    @property
    def aggregate(self) -> UUID:
        return self.signed.statement.aggregate


def sign_request(  # noqa: PLR0913
    *,
    method: str,
    path: str,
    body: Any,
    state: str,
    private_key: Ed25519PrivateKey,
    idempotency_key: str,
    created_at: datetime,
    query: Mapping[str, str] | None = None,
    if_match: str | None = None,
    new_aggregate: UUID | None = None,
) -> SignedRequest:
    """Sign a State's write request (the client's side of this module's rule).

    ``body`` is the JSON body as Python values (None without one), ``private_key`` the
    official's ``Ed25519PrivateKey``; ``new_aggregate`` is the id to give the aggregate a
    creating route makes (a fresh ``uuid4`` if not given). The returned headers carry the
    statement, the salts (if the body has personal values) and the idempotency key.
    """
    found = match_write(method, path)
    if found is None:
        raise SignedRequestError(f"{method} {path[:80]} is not a State write route")
    route, params = found
    aggregate = aggregate_for(route, params)
    if aggregate is None:
        aggregate = new_aggregate or uuid4()
    salts = new_salts(body)
    statement = Statement.create(
        command=route.command,
        state=state,
        aggregate=aggregate,
        expected_version=None if if_match is None else version_of_etag(if_match),
        fields=request_fields(body, query or {}, salts),
        idempotency_key=idempotency_key,
        created_at=created_at,
    )
    signed = sign_statement(statement, private_key)
    headers = {
        STATEMENT_HEADER: encode_header_json(signed.to_dict()),
        "Idempotency-Key": idempotency_key,
    }
    if salts:
        headers[SALTS_HEADER] = encode_salts(salts)
    if if_match is not None:
        headers["If-Match"] = if_match
    return SignedRequest(headers, signed)


class StatementMismatch(SignedRequestError):
    """The statement does not say what the request asks: ``part`` names which part."""

    def __init__(self, part: str, expected: str, given: str) -> None:
        self.part = part
        super().__init__(
            f"the signed statement's {part} is {given}, but this request's is {expected}: "
            "sign the statement of exactly this request (domain.signed_requests)"
        )


def read_statement_header(value: str) -> SignedStatement:
    """The signed statement a request carries in :data:`STATEMENT_HEADER`."""
    decoded = decode_header_json(value, STATEMENT_HEADER)
    if not isinstance(decoded, dict):
        raise SignedRequestError(f"{STATEMENT_HEADER} is not a JSON object")
    return SignedStatement.from_dict(decoded)


def check_request_matches(  # noqa: PLR0913
    signed: SignedStatement,
    *,
    route: WriteRoute,
    params: Mapping[str, str],
    state: str,
    body: Any,
    query: Mapping[str, str],
    salts: Mapping[str, bytes],
    if_match: str | None,
    idempotency_key: str | None,
) -> None:
    """The statement names exactly this request: command, State, aggregate, version, fields
    and idempotency key (the server's side of this module's rule). Its signature and creation
    time are checked by the caller, against the State's keys and the server's clock."""
    statement = signed.statement
    checks = [
        ("command", route.command, statement.command),
        ("state", state, str(statement.state)),
        (
            "expected_version",
            str(None if if_match is None else version_of_etag(if_match)),
            str(statement.expected_version),
        ),
    ]
    aggregate = aggregate_for(route, params)
    if aggregate is not None:
        checks.append(("aggregate", str(aggregate), str(statement.aggregate)))
    if idempotency_key is not None:
        checks.append(("idempotency_key", idempotency_key, statement.idempotency_key))
    for part, expected, given in checks:
        if expected != given:
            raise StatementMismatch(part, expected[:80], given[:80])
    fields = rfc8785.dumps(request_fields(body, query, salts))
    if fields != statement.fields_json:
        raise StatementMismatch(
            "fields",
            "SHA-256 " + hashlib.sha256(fields).hexdigest(),
            "SHA-256 " + hashlib.sha256(statement.fields_json).hexdigest(),
        )
