"""The gate every HTTP request passes before a route: body limit, authentication, the wait
for ``Pocdir-Min-Position``, and idempotency keys, in that order; and the position a
request's writes ended at on its response (``Pocdir-Position``, read-your-writes).

Why a middleware and not dependencies: FastAPI reads and parses a request's body before it
runs a route's dependencies, so an anonymous client could make the server read (and parse)
any amount of data before being told 401. Here nothing of the body is read until the token is
known good, and a body over ``POCDIR_MAX_BODY_BYTES`` is refused with 413 from its
``Content-Length`` alone, or as soon as a streamed body passes the limit.

Idempotency keys (``Idempotency-Key`` on POST, PUT, PATCH and DELETE) need the whole request
and the whole response, which only a middleware sees. The key is scoped to the principal the
token stands for, reserved before the route runs, written in the events' transaction by the
command the route calls (``IdempotencyKey.holder``), and answered with the first outcome on a
retry (``infra.idempotency``).

Client certificates (mTLS, ``POCDIR_TLS_CLIENT_CA_FILE``): once the token is known, its
principal must be the one the connection's certificate names, else 403 before any of the body
is read (``domain.channel``; ``api.tls`` puts the name in the scope).

Positions: the gate opens a position sink around the route (``domain.position``); every
command's save reports the position of its last event to it, and the response carries the
highest. A stored answer keeps that header (``KEPT_HEADERS``), so a retry answered from its
key carries the same position. A request that sends ``Pocdir-Min-Position`` is let through
once the views have reached it (``Services.wait_for_position``, bounded by
``POCDIR_READ_WAIT_SECONDS``; 503 ``views_behind`` past it). The gate never projects: the
server's runner does (``infra.follower``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ServiceHolder
from api.errors import DATABASE_ERRORS, HANDLED_ERRORS, error_response, handled_response
from api.public import is_public
from domain.channel import check_certificate_binding
from domain.errors import NotFound, ValidationError
from domain.idempotency import IdempotencyKey, check_key, request_digest
from domain.position import PositionSink, collecting_positions
from domain.signed_requests import (
    KEY_WRITES,
    SALTS_HEADER,
    STATE_WRITES,
    STATEMENT_HEADER,
    SignatureRequired,
    SignedRequestError,
    check_request_matches,
    decode_salts,
    encode_header_json,
    match_write,
    read_statement_header,
)
from domain.signing import (
    RECEIPT_HEADER,
    SignedWrite,
    SignerKind,
    SigningContext,
    receipt_for,
    signing,
)
from domain.values import Principal, Role
from infra.idempotency import (
    Answer,
    AppliedUnanswered,
    IdempotencyKeys,
    InFlight,
    Mismatch,
    Replay,
    Reserved,
)
from infra.verify import chained_recorder
from infra.wiring import Services

log = logging.getLogger("pocdir.serve")

#: Methods whose requests change something, and so may carry an ``Idempotency-Key``.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The record position a request's writes ended at, on its response (read-your-writes).
POSITION_HEADER = "Pocdir-Position"
#: A request carrying it is answered once the views have reached that position.
MIN_POSITION_HEADER = "Pocdir-Min-Position"
#: Response headers kept with a stored answer, so a retry gets the same ones.
KEPT_HEADERS = frozenset(
    {
        b"content-type",
        b"etag",
        b"location",
        POSITION_HEADER.lower().encode(),
        RECEIPT_HEADER.lower().encode(),
    }
)
#: Request headers that are part of what a key stands for.
DIGESTED_HEADERS = (b"content-type", b"if-match")
REPLAYED_HEADER = "Idempotent-Replayed"


class BodyTooLarge(Exception):
    """The body passed the limit while it was being read."""


class ClientGone(Exception):
    """The client disconnected before its body was whole: there is no request to run."""


@dataclass
class _Captured:
    """A route's response, held back until its outcome is stored."""

    status: int = 500
    start: Message | None = None
    body: list[bytes] = field(default_factory=list)

    def answer(self) -> Answer:
        headers = self.start.get("headers", []) if self.start else []
        kept = tuple(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k in KEPT_HEADERS
        )
        return Answer(self.status, kept, b"".join(self.body))


class RequestGate:
    """Pure ASGI middleware (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        holder: ServiceHolder,
        max_body_bytes: int,
        client_certificates: bool = False,
    ) -> None:
        self.app = app
        self.holder = holder
        self.max_body_bytes = max_body_bytes
        #: mTLS (``POCDIR_TLS_CLIENT_CA_FILE``): each token must come over a client
        #: certificate for its own principal (``domain.channel``), named by ``api.tls``.
        self.client_certificates = client_certificates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared = headers.get(b"content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                await _refuse(
                    scope, receive, send, 400, "bad_request", "Content-Length is not a number"
                )
                return
            if int(declared) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        principal: Principal | None = None
        if not is_public(scope["path"]):
            principal = await self._authenticate(scope, receive, send, headers)
            if principal is None:
                return
            scope.setdefault("state", {})["principal"] = principal
        try:
            body = await self._read_body(receive)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)
            return
        except ClientGone:
            return
        if principal is not None and not await self._reached(scope, receive, send, headers):
            return
        replay_receive = _replaying(body, receive)
        raw_key = headers.get(b"idempotency-key")
        state_write = (
            principal is not None
            and principal.role is Role.STATE
            and scope["method"] in WRITE_METHODS
        )
        statement = headers.get(STATEMENT_HEADER.lower().encode())
        if state_write and raw_key is None and statement is not None:
            # A signed write's idempotency key is its statement's (checked once reserved).
            try:
                signed = read_statement_header(statement.decode("latin-1"))
            except ValidationError as e:
                await _refuse(scope, receive, send, 422, "invalid_statement", str(e))
                return
            raw_key = signed.statement.idempotency_key.encode("latin-1")
        with collecting_positions() as sink:
            if principal is None or raw_key is None or scope["method"] not in WRITE_METHODS:
                context = await self._context(scope, principal, headers, body, send, receive)
                if context is not False:
                    await self._run(scope, replay_receive, _positioned(send, sink), context)
                return
            await self._keyed(scope, replay_receive, send, principal, raw_key, headers, body, sink)

    async def _context(  # noqa: PLR0913
        self,
        scope: Scope,
        principal: Principal | None,
        headers: dict[bytes, bytes],
        body: bytes,
        send: Send,
        receive: Receive,
    ) -> SigningContext | None | Literal[False]:
        """Who signs this request's writes (``domain.signing``): the State, checked here
        against its keys, for a State's write; the Secretariat for the Secretariat's
        requests; the server for what it records by itself. None: a State without keys,
        whose writes are unsigned. False once a refusal has been sent."""
        if principal is None:
            return SigningContext(SignerKind.SERVER)
        if principal.role is Role.SECRETARIAT:
            return SigningContext(SignerKind.SECRETARIAT)
        if principal.role is not Role.STATE or scope["method"] not in WRITE_METHODS:
            return SigningContext(SignerKind.SERVER)
        try:
            services = await self._services()
            return await run_in_threadpool(
                _state_context, services, principal, scope, headers, body
            )
        except HANDLED_ERRORS as e:
            await handled_response(Request(scope), e)(scope, receive, send)
            return False

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, context: SigningContext | None
    ) -> None:
        """Run the route, its writes signed as ``context`` says, with the receipt of a
        State's signed write on the response."""
        if context is None:
            await self.app(scope, receive, send)
            return
        services = self.holder.built
        key = services.application.signers.server if services is not None else None
        with signing(context):
            await self.app(scope, receive, _receipted(send, context, key))

    async def _reached(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> bool:
        """Wait until the views have reached the request's ``Pocdir-Min-Position``, if it
        sent one; False once a refusal (422, or 503 past the bound) has been sent."""
        raw = headers.get(MIN_POSITION_HEADER.lower().encode())
        if raw is None:
            return True
        text = raw.decode("latin-1").strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            await _refuse(
                scope,
                receive,
                send,
                422,
                "invalid",
                f"{MIN_POSITION_HEADER} must be a record position, as sent in a "
                f"{POSITION_HEADER} header (a whole number)",
            )
            return False
        try:
            services = await self._services()
            await run_in_threadpool(services.wait_for_position, int(text))
        except HANDLED_ERRORS as e:  # 422 past the head, 503 past the bound or in an outage
            await handled_response(Request(scope), e)(scope, receive, send)
            return False
        return True

    async def _authenticate(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> Principal | None:
        """The principal, or None once a 401 or 503 has been sent."""
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _unauthenticated(scope, receive, send, "send Authorization: Bearer <token>")
            return None
        try:
            services = await self._services()
            principal = await run_in_threadpool(services.authenticate, token.strip())
            if self.client_certificates:
                tls = scope.get("extensions", {}).get("tls", {})
                check_certificate_binding(principal, tls.get("client_cert_name"))
            return principal
        except HANDLED_ERRORS as e:  # 401, 503, and whatever else the app's handlers answer
            await handled_response(Request(scope), e)(scope, receive, send)
        return None

    async def _services(self) -> Services:
        built = self.holder.built
        return built if built is not None else await run_in_threadpool(self.holder.get)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _refuse(
            scope,
            receive,
            send,
            413,
            "too_large",
            f"the request body is larger than {self.max_body_bytes} bytes",
            connection="close",
        )

    async def _keyed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        raw_key: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        sink: PositionSink,
    ) -> None:
        """Run a keyed write once; answer retries with its first outcome (with the position
        the first one wrote, kept with it)."""
        try:
            key = IdempotencyKey(
                principal.ref,
                check_key(raw_key.decode("latin-1")),
                request_digest(
                    [
                        scope["method"].encode(),
                        scope.get("raw_path") or scope["path"].encode(),
                        scope.get("query_string", b""),
                        *(headers.get(h, b"") for h in DIGESTED_HEADERS),
                        _canonical(body),
                    ]
                ),
            )
        except ValidationError as e:
            await _refuse(scope, receive, send, 422, "invalid", str(e))
            return
        try:
            services = await self._services()
            keys = services.keys
            taken = await run_in_threadpool(keys.take, key)
        except HANDLED_ERRORS as e:
            await handled_response(Request(scope), e)(scope, receive, send)
            return
        match taken:
            case Replay(answer):
                await _send_answer(send, answer)
            case Mismatch():
                await _refuse(
                    scope,
                    receive,
                    send,
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; "
                    "use a new key for a new request",
                )
            case InFlight():
                await _refuse(
                    scope,
                    receive,
                    send,
                    409,
                    "request_in_flight",
                    "a request with this Idempotency-Key is still being processed; "
                    "retry in a moment to get its outcome",
                    **{"Retry-After": "1"},
                )
            case AppliedUnanswered(position):
                await _refuse(
                    scope,
                    receive,
                    send,
                    409,
                    "already_applied",
                    f"the request with this Idempotency-Key was applied (record position "
                    f"{position}), but the server stopped before answering it, so its answer "
                    "was not kept; read the resource to see its state",
                )
            case Reserved(reserved):
                context = await self._context(scope, principal, headers, body, send, receive)
                if context is False:
                    await run_in_threadpool(keys.release, reserved)
                    return
                scope.setdefault("state", {})["idempotency"] = reserved
                await self._run_reserved(scope, receive, send, keys, reserved, sink, context)

    async def _run_reserved(  # noqa: PLR0913
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        keys: IdempotencyKeys,
        key: IdempotencyKey,
        sink: PositionSink,
        context: SigningContext | None,
    ) -> None:
        captured = _Captured()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured.start = message
                captured.status = int(message["status"])
            elif message["type"] == "http.response.body":
                captured.body.append(message.get("body", b""))

        try:
            await self._run(scope, receive, _positioned(capture, sink), context)
        finally:
            await self._settle(keys, key, captured)
        if captured.start is not None:
            await send(captured.start)
        await send({"type": "http.response.body", "body": b"".join(captured.body)})

    async def _settle(
        self, keys: IdempotencyKeys, key: IdempotencyKey, captured: _Captured
    ) -> None:
        """Store the outcome before the client sees it, so that a retry sent as soon as the
        answer arrives gets it again. A server error that committed nothing gives the key
        back, so a retry runs anew; one that did commit keeps it taken."""
        try:
            if captured.start is not None and captured.status < 500:
                await run_in_threadpool(keys.answer, key, captured.answer())
            else:
                await run_in_threadpool(keys.release, key)
        except DATABASE_ERRORS as e:
            log.warning("idempotency key outcome not stored: %s", type(e).__name__)


def _canonical(body: bytes) -> bytes:
    """A JSON body in one spelling (sorted keys, no spaces), so that a retry whose client
    serialised the same request differently is still the same request; anything else as is."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _positioned(send: Send, sink: PositionSink) -> Send:
    """A ``send`` that puts the position the request's writes ended at, if any, on the
    response (``Pocdir-Position``): the route has run by the time its response starts."""

    async def positioned(message: Message) -> None:
        if message["type"] == "http.response.start" and sink.last is not None:
            message = {
                **message,
                "headers": [
                    *message.get("headers", []),
                    (POSITION_HEADER.lower().encode(), str(sink.last).encode()),
                ],
            }
        await send(message)

    return positioned


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then waits as the server's
    would (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_answer(send: Send, answer: Answer) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str, **headers: str
) -> None:
    await error_response(status, code, detail, **headers)(scope, receive, send)


async def _unauthenticated(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    await _refuse(
        scope, receive, send, 401, "unauthenticated", detail, **{"WWW-Authenticate": "Bearer"}
    )


def _state_context(
    services: Services,
    principal: Principal,
    scope: Scope,
    headers: dict[bytes, bytes],
    body: bytes,
) -> SigningContext | None:
    """A State's write, checked against the State's keys before it runs: once the State has
    keys bound, it must sign (``SignatureRequired``, 403), with a statement of exactly this
    request (``domain.signed_requests``), by a key valid now, created within the window.
    None for a State without keys, which cannot sign yet: its writes are unsigned."""
    state = principal.state or ""
    raw = headers.get(STATEMENT_HEADER.lower().encode())
    found = match_write(scope["method"], scope["path"], STATE_WRITES + KEY_WRITES)
    if found is None:
        return None  # no such write route: the route answers 404 or 405
    route, params = found
    if params.get("state", state) != state:
        return None  # another State's entry or keys: the route refuses it (R15, 403)
    application = services.application
    try:
        keys = application.get_state_keys(state)
    except NotFound:
        if raw is not None:
            raise SignedRequestError(
                f"{state} has no signing keys bound yet, so its statements cannot be checked: "
                "ask the Secretariat to bind your keys (pocdir keys bind), then sign"
            ) from None
        since = chained_recorder(application).first_key_binding()
        if since is not None:
            raise SignatureRequired(
                f"every State's write is signed since record position {since}, and {state} "
                "has no keys bound yet: ask the Secretariat to onboard your keys "
                "(pocdir keys bind), then sign with the State client"
            ) from None
        return None
    if route in KEY_WRITES:
        # A key change carries its own statement in the body, checked by the domain, which
        # records it as this write's (``KeyCommands``).
        return SigningContext(SignerKind.STATE)
    if raw is None:
        raise SignatureRequired(
            f"{state} has signing keys bound, so its writes must be signed: send "
            f"{STATEMENT_HEADER} with the statement of this request signed by one of them "
            "(the State client, pocdir-state, does it)"
        )
    signed = read_statement_header(raw.decode("latin-1"))
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        raise SignedRequestError("a signed write's body must be JSON") from None
    salts_raw = headers.get(SALTS_HEADER.lower().encode())
    salts = decode_salts(None if salts_raw is None else salts_raw.decode("latin-1"))
    idempotency = headers.get(b"idempotency-key")
    if_match = headers.get(b"if-match")
    check_request_matches(
        signed,
        route=route,
        params=params,
        state=state,
        body=payload,
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
        salts=salts,
        if_match=None if if_match is None else if_match.decode("latin-1"),
        idempotency_key=None if idempotency is None else idempotency.decode("latin-1"),
    )
    key = keys.check_signer(signed, application.clock.now())
    return SigningContext(
        SignerKind.STATE,
        state_write=SignedWrite(signed, f"state:{state}", bytes.fromhex(key.public_key), salts),
    )


def _receipted(send: Send, context: SigningContext, key: Ed25519PrivateKey | None) -> Send:
    """A ``send`` that puts the server's signed receipt of a State's signed write on the
    response (``Pocdir-Receipt``), once the write is stored."""

    async def receipted(message: Message) -> None:
        if (
            message["type"] == "http.response.start"
            and key is not None
            and context.state_write is not None
            and context.state_write in context.written
        ):
            value = encode_header_json(receipt_for(context.state_write, key))
            message = {
                **message,
                "headers": [
                    *message.get("headers", []),
                    (RECEIPT_HEADER.lower().encode(), value.encode("ascii")),
                ],
            }
        await send(message)

    return receipted
