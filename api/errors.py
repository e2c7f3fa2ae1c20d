"""One JSON error shape for every refusal: ``{"error": <code>, "detail": <what to fix>}``,
plus ``"see"``, a link to the rule's section of docs/domain.md, when the refusal is about one
of the rules R1-R17 (named in the message, or implied by the error class).

Each domain error class maps to one status; nothing is matched on messages. Database outages
become 503 with ``Retry-After``; nothing becomes a 500 on purpose. Messages never quote
confidential content: domain errors are written not to, and validation errors here quote the
field's location, not its value.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing.persistence import DataError, InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import (
    ConcurrentChange,
    EventTooLarge,
    InvalidIndicator,
    InvalidTransition,
    NotAMemberState,
    NotAuthenticated,
    NotConfigured,
    NotFound,
    NotPermitted,
    PocdirError,
    StaleVersion,
    TranslationRequired,
    ValidationError,
)
from domain.rules import first_rule_cited
from domain.rules import rule_link as domain_rule_link
from domain.signed_requests import SignatureRequired, SignedRequestError
from domain.statement import StatementError
from infra.follower import ViewsBehind
from infra.keycheck import CipherKeyMismatch
from infra.merkle import AuditError, ProofRequestInvalid
from infra.store import DatabaseTimeout
from infra.transparency import NotRecorded

#: Seconds a client should wait before retrying while the database is unreachable.
RETRY_AFTER_SECONDS = 5


class ErrorBody(BaseModel):
    error: str
    detail: str
    see: str | None = Field(
        default=None,
        description="when the refusal concerns a rule R1-R17: its section of docs/domain.md",
        examples=["docs/domain.md#r5"],
    )


#: The rule an error class is about when its message names none.
_CLASS_RULES: list[tuple[type[Exception], int]] = [
    (NotAMemberState, 1),
    (TranslationRequired, 6),
    (InvalidIndicator, 7),
]


def rule_link(detail: str, exc: Exception | None = None) -> str | None:
    """The link to the docs/domain.md section of the first rule ``detail`` names (``R5``,
    ``R11``...), else of the rule ``exc``'s class is about; None when neither names one."""
    number = first_rule_cited(detail)
    if number is None and exc is not None:
        number = next((n for cls, n in _CLASS_RULES if isinstance(exc, cls)), None)
    return None if number is None else domain_rule_link(number)


#: What a 428 says: how to get the ETag to send.
IF_MATCH_REQUIRED = (
    "send If-Match with the entry's ETag: GET /entries/{state} and send its ETag header "
    '(e.g. If-Match: "3"); "*" is not accepted'
)


class PreconditionRequired(Exception):
    """A change of an entry came without a concrete ``If-Match`` (HTTP 428)."""


#: Declared on every route, so the OpenAPI document lists each status a client may meet.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing, unknown or revoked bearer token",
        403: "Authenticated, but this role or principal may not do this",
        404: "No such resource, or not one the principal may know of",
        409: "Conflicts with the current state, a concurrent change, or a request with the "
        "same Idempotency-Key still in flight",
        412: "If-Match names a version that is no longer current",
        428: "An entry change came without If-Match, or with If-Match: *; GET the entry and "
        "send its ETag",
        413: "The request body is larger than the server accepts (POCDIR_MAX_BODY_BYTES), "
        "or the event it would record is larger than one record entry (65,535 bytes)",
        422: "Invalid input, or an Idempotency-Key reused for a different request",
        503: "The database is unreachable, or the views did not reach Pocdir-Min-Position "
        "in time; retry after the Retry-After seconds",
    }.items()
}

#: (status, error code) per domain error class; the most specific class wins.
_DOMAIN_STATUS: list[tuple[type[PocdirError], int, str]] = [
    (StaleVersion, 412, "precondition_failed"),
    (ConcurrentChange, 409, "conflict"),
    (NotAuthenticated, 401, "unauthenticated"),
    (SignatureRequired, 403, "signature_required"),
    (NotPermitted, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (InvalidTransition, 409, "conflict"),
    (StatementError, 422, "invalid_statement"),
    (SignedRequestError, 422, "invalid_statement"),
    (EventTooLarge, 413, "event_too_large"),
    (ValidationError, 422, "invalid"),
    (NotConfigured, 503, "not_configured"),
]


class ServiceUnavailable(Exception):
    """The database could not be reached."""


def _utf8(text: str) -> str:
    """``text`` with any character UTF-8 cannot hold (a lone surrogate) written as its
    ``\\uXXXX`` escape, so that rendering a refusal can never fail and become a 500."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    """The one error shape; ``see`` is added when ``detail`` names a rule."""
    return _error_response(status, error, detail, None, headers)


def _error_response(
    status: int, error: str, detail: str, exc: Exception | None, headers: dict[str, str]
) -> JSONResponse:
    """The one error shape, ``see`` added when ``detail`` or ``exc``'s class concerns a rule."""
    body = ErrorBody(error=_utf8(error), detail=_utf8(detail), see=rule_link(detail, exc))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def unavailable_response() -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        f"the database is unreachable; retry in {RETRY_AFTER_SECONDS} seconds",
        **{"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    for cls, status, code in _DOMAIN_STATUS:
        if isinstance(exc, cls):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            return _error_response(status, code, str(exc), exc, headers)
    return _error_response(400, "bad_request", str(exc), exc, {})


def _precondition_required(_: Request, exc: Exception) -> JSONResponse:
    return error_response(428, "precondition_required", str(exc))


def _missing_if_match(errors: list[Any]) -> bool:
    return any(
        e.get("type") == "missing" and tuple(e.get("loc", ())) == ("header", "if-match")
        for e in errors
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    if _missing_if_match(errors):  # a required If-Match (entry changes): 428, not 422
        return _precondition_required(request, PreconditionRequired(IF_MATCH_REQUIRED))
    problems = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return error_response(422, "invalid", "; ".join(problems) or "invalid request")


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 400)
    codes = {
        400: "bad_request",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        412: "precondition_failed",
    }
    headers = dict(getattr(exc, "headers", None) or {})
    detail = str(getattr(exc, "detail", "")) or "request refused"
    return error_response(status, codes.get(status, "error"), detail, **headers)


#: Seconds a client should wait before asking again for a position the views had not reached.
VIEWS_RETRY_AFTER_SECONDS = 1


def _views_behind(_: Request, exc: Exception) -> JSONResponse:
    """The views did not reach the position the request waited for, within the bound: the
    request was not served; asking again soon is likely to succeed."""
    return error_response(
        503, "views_behind", str(exc), **{"Retry-After": str(VIEWS_RETRY_AFTER_SECONDS)}
    )


def _unavailable(_: Request, __: Exception) -> JSONResponse:
    return unavailable_response()


#: Errors that mean the database could not be reached, or went away under us. Other database
#: errors are bugs, and are left to surface as such (the fuzzing test looks for them).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    DatabaseTimeout,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    sqlite3.OperationalError,
)


def _data_error(_: Request, __: Exception) -> JSONResponse:
    return error_response(422, "invalid", "a value is out of the range the record can store")


def _proof_request_invalid(_: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid", str(exc))


def _not_recorded(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


def _record_not_intact(_: Request, exc: Exception) -> JSONResponse:
    """The tree refuses to grow over a record that fails verification: say so, for auditors
    (positions and hashes only, never content)."""
    return error_response(409, "record_not_intact", str(exc))


def _key_mismatch(_: Request, exc: Exception) -> JSONResponse:
    """The server's key is not the record's (found when its services were first built, as
    the database was down when it started): nothing can be served until the operator
    restarts it with the right key. The message names the setting, never a key."""
    return error_response(503, "misconfigured", f"the server cannot read the record: {exc}")


#: Each handled exception class and its handler, most specific first: what the app's
#: exception handlers answer, and what the gate (``api.middleware``), which runs outside them,
#: answers too for the errors met before a route runs.
HANDLERS: list[tuple[type[Exception], Callable[[Request, Exception], JSONResponse]]] = [
    (CipherKeyMismatch, _key_mismatch),
    (PreconditionRequired, _precondition_required),
    (PocdirError, _domain_error),
    (RequestValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
    (ViewsBehind, _views_behind),
    *((cls, _unavailable) for cls in DATABASE_ERRORS),
    (DataError, _data_error),
    (ProofRequestInvalid, _proof_request_invalid),
    (NotRecorded, _not_recorded),
    (AuditError, _record_not_intact),
    (psycopg.DataError, _data_error),
]
HANDLED_ERRORS: tuple[type[Exception], ...] = tuple(cls for cls, _ in HANDLERS)


def handled_response(request: Request, exc: Exception) -> JSONResponse:
    """The answer the app's handlers give ``exc`` (one of ``HANDLED_ERRORS``)."""
    for cls, handler in HANDLERS:
        if isinstance(exc, cls):
            return handler(request, exc)
    raise TypeError(f"{type(exc).__name__} has no handler") from exc


def install_error_handlers(app: FastAPI) -> None:
    for cls, handler in HANDLERS:
        app.add_exception_handler(cls, handler)
