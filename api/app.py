"""The HTTP API: ``create_app(settings)`` builds it; nothing connects until the first request.

Every route but ``/health`` requires a bearer token (``pocdir principals add``) and admits
the roles written in ``docs/access.md``; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.deps import ServiceHolder, holder_for
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.routers import audit, checks, consents, directory, entries, notifications, reads, review
from api.schemas import HealthPublic
from domain.clock import Clock
from infra.settings import Settings

ROUTERS = (
    directory.router,
    entries.router,
    notifications.router,
    consents.router,
    reads.router,
    audit.router,
    checks.router,
    review.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    holder: ServiceHolder | None = None,
) -> FastAPI:
    """The API over the record ``settings`` names (default: from ``POCDIR_*``)."""
    services = holder or holder_for(settings or Settings.from_env(), clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="pocdir",
        summary="The intergovernmental Points of Contact directory on ICT security",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)

    @app.get("/health", response_model=HealthPublic, tags=["health"], summary="Liveness")
    def health() -> HealthPublic:
        """Public and free of the database: says the process serves requests."""
        return HealthPublic(status="ok")

    return app
