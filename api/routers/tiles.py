"""The record as a C2SP ``tlog-tiles`` log (https://c2sp.org/tlog-tiles) under the prefix
``/tlog``: ``/tlog/checkpoint``, hash tiles ``/tlog/tile/<L>/<N>[.p/<W>]`` and entry bundles
``/tlog/tile/entries/<N>[.p/<W>]`` (issue 16). For member States, auditors and witnesses, who
authenticate: the tiles are not public (R1, R12). The bytes are ``infra.tile_reader``'s."""

from __future__ import annotations

import gzip
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response

from api.deps import AuditorOrState, ServicesDep
from api.errors import error_response
from infra.tile_reader import TileReader, served_checkpoint
from infra.tiles import TilePathInvalid, parse_tile_path
from infra.wiring import Services

router = APIRouter(prefix="/tlog", tags=["tlog-tiles"])

#: The spec's content types.
TILE_TYPE = "application/octet-stream"
CHECKPOINT_TYPE = "text/plain; charset=utf-8"
#: A full tile or bundle never changes ("immutable, so its caching headers SHOULD be
#: long-lived"). ``private``: the responses answer an authenticated request, so no shared
#: cache may keep them.
IMMUTABLE = "private, max-age=31536000, immutable"
#: The checkpoint changes ("SHOULD prevent caching beyond a few seconds"); a partial tile is
#: superseded by its full tile and logs may delete it, so it is revalidated too.
REVALIDATE = "private, no-cache"

BINARY: dict[int | str, dict[str, Any]] = {
    200: {"content": {TILE_TYPE: {"schema": {"type": "string", "format": "binary"}}}}
}


def reader(services: Services) -> TileReader:
    return TileReader(
        services.transparency, services.application.recorder, lambda: services.tree_lock
    )


@router.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP tlog-checkpoint note)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def checkpoint(_: AuditorOrState, services: ServicesDep) -> Response:
    note = served_checkpoint(services.transparency).note
    return Response(
        note.encode("utf-8"),
        media_type=CHECKPOINT_TYPE,
        headers={"Cache-Control": REVALIDATE},
    )


@router.get(
    "/tile/{tile:path}",
    summary="A hash tile (tile/<L>/<N>[.p/<W>]) or an entry bundle (tile/entries/<N>[.p/<W>])",
    responses=BINARY,
)
def tile(
    _: AuditorOrState,
    services: ServicesDep,
    tile: Annotated[str, Path(description="e.g. 0/x001/234.p/17, entries/000")],
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Hash tiles hold 32-byte hashes (leaf hashes at level 0); an entry bundle holds each
    event's canonical record (docs/audit-format.md §2) after its big-endian uint16 length."""
    try:
        wanted = parse_tile_path(f"tile/{tile}")
    except TilePathInvalid as e:
        return error_response(400, "bad_request", str(e))
    found = reader(services).read(wanted)
    headers = {"Cache-Control": REVALIDATE if wanted.is_partial else IMMUTABLE}
    data = found.data
    if wanted.is_entries and _accepts_gzip(accept_encoding):
        # "Entry bundles SHOULD be compressed at the HTTP layer."
        data = gzip.compress(data, mtime=0)
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(data, media_type=TILE_TYPE, headers=headers)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` lists gzip with a non-zero quality."""
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            quality = params.strip().removeprefix("q=").strip()
            try:
                return not quality or float(quality) > 0
            except ValueError:
                return False
    return False
