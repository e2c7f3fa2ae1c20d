"""The routes anyone may call without a token, and the offline API documentation.

Every other route needs a bearer token (docs/access.md). These are public because a browser
cannot send a token when it opens ``/docs`` (and the page then loads its assets and the API
description itself), and because the API description is not secret: it is the published
interface, with no data in it. ``/health`` says only that the process serves requests, and
``/ready`` whether the database answers and how far the views lag (counts only), so that load
balancers can probe them.

``is_public`` is the one test of that, for any layer (e.g. a middleware) that must tell
public requests from the others before routing.

Swagger UI is served from the ``fastapi-offline`` package's copy of its assets, so ``/docs``
works offline and puts no third-party script on the API's origin. ReDoc, which would load its
script from a CDN, and Swagger UI's OAuth2 redirect page (the API has no OAuth2 flow) are
not served.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

HEALTH_PATH = "/health"
READY_PATH = "/ready"
DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
#: Where Swagger UI's script, style sheet and icon are served from.
DOCS_ASSETS_PATH = "/docs/assets"

#: Exact paths that need no token.
PUBLIC_PATHS: frozenset[str] = frozenset({HEALTH_PATH, READY_PATH, DOCS_PATH, OPENAPI_PATH})
#: Path prefixes under which everything needs no token (the documentation's static files).
PUBLIC_PREFIXES: tuple[str, ...] = (f"{DOCS_ASSETS_PATH}/",)

#: The package (and its folder) that ships Swagger UI's distribution files.
_ASSETS_PACKAGE = ("fastapi_offline", "static")

#: The browser may load nothing from another origin, whatever the page or its script says.
#: Swagger UI's start-up script is inline in FastAPI's page, and it styles inline.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def is_public(path: str) -> bool:
    """Whether a request for ``path`` (the URL path, without query) needs no token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI over ``/openapi.json``) and its assets from this server.
    The app must be built with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are
    not added."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(packages=[_ASSETS_PACKAGE]), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that serves under a prefix
        assets = f"{root}{DOCS_ASSETS_PATH}"
        page = get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_PATH}",
            title=f"{app.title}: API documentation",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=None,
            # Swagger UI would otherwise send the API description to its online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
