"""The routes anyone may call without a token (``docs/access.md`` says why for each)."""

from __future__ import annotations

from typing import Final

#: Exact paths served without a token: liveness, and the API's own description (which is
#: not secret, and which a browser opening ``/docs`` cannot send a token for).
PUBLIC_PATHS: Final = frozenset(
    {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a token; every other path needs one."""
    return path in PUBLIC_PATHS
