"""FastAPI dependencies: the services, the acting principal, and the role each route admits.

Every route but ``/health`` depends on ``allow(...)``, which authenticates the bearer token
against the record (so a revocation counts on the next request) and checks the role. The
roles a route admits are kept on the dependency, so ``docs/access.md`` can be checked against
the routes themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import DATABASE_ERRORS, ServiceUnavailable
from domain.errors import NotAuthenticated, NotPermitted
from domain.idempotency import IdempotencyKey
from domain.values import Principal, Role
from infra.settings import Settings
from infra.wiring import Services, build_services
from projections.queries import ViewQueries


class ServiceHolder:
    """Builds the services on first use and again after a failed attempt, so the server
    starts while the database is down and recovers by itself when it returns.

    A request waits for another's attempt no longer than ``wait`` seconds (the pool timeout):
    in an outage, requests queued behind each other's attempts would otherwise wait for all
    of them in turn."""

    def __init__(self, build: Callable[[], Services], wait: float | None = None) -> None:
        self._build = build
        self._wait = -1 if wait is None else wait  # -1: as long as it takes
        self._services: Services | None = None
        self._lock = threading.Lock()

    def get(self) -> Services:
        """The services, built once even when several threads ask at the same time."""
        if not self._lock.acquire(timeout=self._wait):
            raise ServiceUnavailable("another request is still connecting to the database")
        try:
            if self._services is None:
                try:
                    self._services = self._build()
                except DATABASE_ERRORS as e:
                    raise ServiceUnavailable(type(e).__name__) from None
            return self._services
        finally:
            self._lock.release()

    @property
    def built(self) -> Services | None:
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


def holder_for(settings: Settings, **kwargs: object) -> ServiceHolder:
    return ServiceHolder(
        lambda: build_services(settings, **kwargs),  # type: ignore[arg-type]
        wait=settings.db_pool_timeout,
    )


async def get_services(request: Request) -> Services:
    """The services; built (which connects) in a worker thread, never on the event loop.

    The light dependencies here are ``async`` so that they run on the event loop: each
    plain ``def`` dependency costs a trip to the thread pool, which dominated a request."""
    holder: ServiceHolder = request.app.state.services
    built = holder.built
    if built is not None:
        return built
    return await run_in_threadpool(holder.get)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_queries(services: ServicesDep) -> ViewQueries:
    """Queries over the views as the runner has brought them (``infra.follower``); the gate
    has waited for the request's ``Pocdir-Min-Position``, if it sent one."""
    return ViewQueries(services.view)


QueriesDep = Annotated[ViewQueries, Depends(get_queries)]

bearer = HTTPBearer(auto_error=False, description="A token from `pocdir principals add`")


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The principal the gate (``api.middleware.RequestGate``) admitted: authenticated
    against the record before any of the body was read. ``credentials`` declares the
    scheme in OpenAPI."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return principal  # type: ignore[no-any-return]  # request.state is untyped
    # A route mounted without the gate: authenticate here instead.
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("send Authorization: Bearer <token>")
    return await run_in_threadpool(services.authenticate, credentials.credentials)


async def get_idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Optional, on every write: a key you choose (1-255 visible ASCII characters, "
                "e.g. a UUID). A retry with the same key and request returns the first answer "
                "and writes nothing; the same key with another request gets 422; while the "
                "first is still running, 409. Keys are kept for "
                "POCDIR_IDEMPOTENCY_RETENTION_HOURS (at least 24 hours)."
            ),
        ),
    ] = None,
) -> IdempotencyKey | None:
    """The key the gate reserved for this request, for the command to write with its
    events (``domain.idempotency``)."""
    return getattr(request.state, "idempotency", None)


Idempotency = Annotated[IdempotencyKey | None, Depends(get_idempotency)]


class allow:  # noqa: N801 - reads as a dependency: Depends(allow(Role.STATE))
    """A dependency admitting only the given roles (403 for the others)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(self.roles))
            raise NotPermitted(f"this route is for: {allowed}; you are {principal.role}")
        return principal


StatePrincipal = Annotated[Principal, Depends(allow(Role.STATE))]
SecretariatPrincipal = Annotated[Principal, Depends(allow(Role.SECRETARIAT))]
AuditorPrincipal = Annotated[Principal, Depends(allow(Role.AUDITOR))]
ReviewerPrincipal = Annotated[Principal, Depends(allow(Role.REVIEWER))]
StateOrSecretariat = Annotated[Principal, Depends(allow(Role.STATE, Role.SECRETARIAT))]
AuditorOrState = Annotated[Principal, Depends(allow(Role.AUDITOR, Role.STATE))]
#: Every authenticated principal, whatever its role (e.g. a State's public key history).
AnyPrincipal = Annotated[Principal, Depends(allow(*Role))]
