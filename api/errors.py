"""One JSON error shape for every refusal: ``{"error": <code>, "detail": <what to fix>}``.

Each domain error class maps to one status; nothing is matched on messages. Database outages
become 503 with ``Retry-After``; nothing becomes a 500 on purpose. Messages never quote
confidential content: domain errors are written not to, and validation errors here quote the
field's location, not its value.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing.persistence import DataError, InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import (
    ConcurrentChange,
    InvalidTransition,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    PocdirError,
    StaleVersion,
    ValidationError,
)
from infra.merkle import AuditError, ProofRequestInvalid
from infra.store import DatabaseTimeout
from infra.transparency import NotRecorded

#: Seconds a client should wait before retrying while the database is unreachable.
RETRY_AFTER_SECONDS = 5


class ErrorBody(BaseModel):
    error: str
    detail: str


#: Declared on every route, so the OpenAPI document lists each status a client may meet.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing, unknown or revoked bearer token",
        403: "Authenticated, but this role or principal may not do this",
        404: "No such resource, or not one the principal may know of",
        409: "Conflicts with the current state, or a concurrent change",
        412: "If-Match names a version that is no longer current",
        422: "Invalid input; the detail says which field and why",
        503: "The database is unreachable; retry after the Retry-After seconds",
    }.items()
}

#: (status, error code) per domain error class; the most specific class wins.
_DOMAIN_STATUS: list[tuple[type[PocdirError], int, str]] = [
    (StaleVersion, 412, "precondition_failed"),
    (ConcurrentChange, 409, "conflict"),
    (NotAuthenticated, 401, "unauthenticated"),
    (NotPermitted, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (InvalidTransition, 409, "conflict"),
    (ValidationError, 422, "invalid"),
]


class ServiceUnavailable(Exception):
    """The database could not be reached."""


def error_response(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        ErrorBody(error=error, detail=detail).model_dump(), status_code=status, headers=headers
    )


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
            return error_response(status, code, str(exc), **headers)
    return error_response(400, "bad_request", str(exc))


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PocdirError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for cls in DATABASE_ERRORS:
        app.add_exception_handler(cls, _unavailable)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(ProofRequestInvalid, _proof_request_invalid)
    app.add_exception_handler(NotRecorded, _not_recorded)
    app.add_exception_handler(AuditError, _record_not_intact)
    app.add_exception_handler(psycopg.DataError, _data_error)
