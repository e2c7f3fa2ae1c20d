"""The HTTP API: ``create_app(settings)`` builds it; nothing connects until the first request.

Every route but the public ones of ``api.public`` (``/health``, ``/ready`` and the offline
API documentation) requires a bearer token (``pocdir principals add``) and admits the roles
written in ``docs/access.md``; a test holds the two together.

``/health`` says the process serves requests: it is ``async`` and touches nothing, so it runs
on the event loop and never queues behind worker threads held by a database outage.
``/ready`` says whether it can serve them: one bounded read of the record and of the views'
position, answered 503 with ``Retry-After`` and the condition that failed. It reports the
views' lag in events and in seconds, and whether this process's projection runner holds the
lease (is the one writing the views).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import ServiceHolder, holder_for
from api.errors import (
    DATABASE_ERRORS,
    ERROR_RESPONSES,
    RETRY_AFTER_SECONDS,
    install_error_handlers,
)
from api.middleware import RequestGate
from api.public import HEALTH_PATH, OPENAPI_PATH, READY_PATH, install_docs
from api.routers import (
    audit,
    checks,
    consents,
    directory,
    entries,
    keys,
    needs,
    notifications,
    reads,
    review,
    tiles,
    transparency,
)
from api.schemas import HealthPublic, NotReadyPublic, ReadyPublic
from domain.clock import Clock
from infra.keycheck import CipherKeyMismatch
from infra.merkle import AuditError
from infra.settings import Settings
from infra.transparency import CheckpointView, SigningKeyMissing
from infra.wiring import Readiness
from infra.witnessing import witness_checkpoint

ROUTERS = (
    directory.router,
    entries.router,
    notifications.router,
    consents.router,
    reads.router,
    audit.router,
    transparency.router,
    checks.router,
    needs.router,
    review.router,
    keys.router,
    tiles.router,
)


log = logging.getLogger("pocdir.serve")


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    holder: ServiceHolder | None = None,
    checkpoint_every: float | None = None,
) -> FastAPI:
    """The API over the record ``settings`` names (default: from ``POCDIR_*``). With
    ``checkpoint_every`` (seconds), it also signs and records a checkpoint on that period."""
    resolved = settings if settings is not None else Settings.from_env()
    services = holder or holder_for(resolved, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_start_runner(services, resolved.runner_poll_seconds))]
        if checkpoint_every is not None:
            task = asyncio.create_task(_checkpoints(services, checkpoint_every))
            task.add_done_callback(_report_stop)
            tasks.append(task)
        yield
        for task in tasks:
            task.cancel()
        await run_in_threadpool(services.close)

    app = FastAPI(
        title="pocdir",
        summary="The intergovernmental Points of Contact directory on ICT security",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=OPENAPI_PATH,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN
        redoc_url=None,
    )
    app.state.services = services
    app.add_middleware(
        RequestGate,
        holder=services,
        max_body_bytes=resolved.max_body_bytes,
        client_certificates=resolved.tls_client_ca_file is not None,
    )
    install_error_handlers(app)
    install_docs(app)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)

    @app.get(HEALTH_PATH, response_model=HealthPublic, tags=["health"], summary="Liveness")
    async def health() -> HealthPublic:
        """Public and free of the database: says the process serves requests. ``async`` so
        that it needs no worker thread: it answers while all of them wait on the database."""
        return HealthPublic(status="ok")

    @app.get(
        READY_PATH,
        response_model=ReadyPublic,
        tags=["health"],
        summary="Readiness",
        responses={503: {"model": NotReadyPublic, "description": "Not ready; see the body"}},
    )
    async def ready() -> ReadyPublic | JSONResponse:
        """Public: the database answers within its bounds, the views were built by this
        code's projectors and lag the record by at most ``POCDIR_READY_MAX_LAG_EVENTS``
        events. Otherwise 503, saying which: status ``rebuilding`` while views written by
        projectors of other versions are rebuilt (a load balancer then sends no traffic
        here that would read them; requests sent anyway read the old views)."""
        allowed = resolved.ready_max_lag_events
        try:
            readiness: Readiness = await run_in_threadpool(lambda: services.get().readiness())
        except DATABASE_ERRORS:
            return _not_ready(
                "the database is unreachable or did not answer in time",
                "unreachable",
                None,
                allowed,
            )
        if readiness.rebuilding or not readiness.views_current:
            return _not_ready(
                "the views are being rebuilt by this server: projectors of other versions "
                "wrote them; the old views are served until the rebuild is swapped in"
                if readiness.rebuilding
                else "the views were built by projectors of other versions; the server "
                "holding the runner lease rebuilds them",
                "reachable",
                readiness.lag_events,
                allowed,
                readiness,
                status="rebuilding",
            )
        if not readiness.ready:
            return _not_ready(
                f"the views lag the record by more than {allowed} events",
                "reachable",
                readiness.lag_events,
                allowed,
                readiness,
            )
        return ReadyPublic(
            status="ready",
            database="reachable",
            lag_events=readiness.lag_events,
            max_lag_events=allowed,
            lag_seconds=readiness.lag_seconds,
            holds_runner_lease=readiness.holds_runner_lease,
        )

    return app


def _not_ready(
    detail: str,
    database: Literal["reachable", "unreachable"],
    lag: int | None,
    allowed: int,
    readiness: Readiness | None = None,
    status: Literal["not_ready", "rebuilding"] = "not_ready",
) -> JSONResponse:
    body = NotReadyPublic(
        error="not_ready",
        detail=detail,
        status=status,
        database=database,
        lag_events=lag,
        max_lag_events=allowed,
        lag_seconds=None if readiness is None else readiness.lag_seconds,
        holds_runner_lease=None if readiness is None else readiness.holds_runner_lease,
    )
    return JSONResponse(
        body.model_dump(), status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


PERIODIC_CHECKPOINT_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, AuditError)


def _report_stop(task: asyncio.Task[None]) -> None:
    """A periodic task that died of a bug must say so rather than stop silently."""
    if not task.cancelled() and task.exception() is not None:
        log.error("periodic checkpoints stopped: %r", task.exception())


async def _start_runner(holder: ServiceHolder, poll: float) -> None:
    """Build the services when serving starts, which starts the projection runner
    (``infra.follower``), rather than at the first request: the views then follow the record
    from the start. While the database is down, try again every poll interval."""
    while holder.built is None:
        try:
            await run_in_threadpool(holder.get)
        except DATABASE_ERRORS as e:
            log.warning("runner not started yet (%s); trying again", type(e).__name__)
            await asyncio.sleep(poll)
        except CipherKeyMismatch as e:  # requests are answered 503 misconfigured meanwhile
            log.error("runner not started: %s", e)
            return


def _record_checkpoint(holder: ServiceHolder) -> CheckpointView:
    """Sign a checkpoint, then submit it to the witnesses (outside the tree lock: a slow
    witness must not hold up proofs). A witness's failure is logged by the witnessing."""
    services = holder.get()
    with services.tree_lock:
        checkpoint = services.transparency.record_checkpoint()
    witness_checkpoint(services.transparency, checkpoint, timeout=services.settings.witness_timeout)
    return checkpoint


async def _checkpoints(holder: ServiceHolder, period: float) -> None:
    """Sign a checkpoint every ``period`` seconds. A missing key stops the loop (it will not
    appear by itself); an outage or a record that fails verification is logged and retried."""
    while True:
        await asyncio.sleep(period)
        try:
            checkpoint = await run_in_threadpool(_record_checkpoint, holder)
            log.info("checkpoint recorded: tree size %d", checkpoint.tree_size)
        except SigningKeyMissing as e:
            log.error("periodic checkpoints stopped: %s", e)
            return
        except PERIODIC_CHECKPOINT_ERRORS as e:
            log.warning("checkpoint not recorded: %s", str(e).splitlines()[0] if str(e) else e)
