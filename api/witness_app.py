"""The witness's own HTTP service: C2SP ``tlog-witness`` plus its fork evidence and status.

Routes (the submission and the monitoring prefix are both the root):

* ``POST /add-checkpoint``: the spec's (https://c2sp.org/tlog-witness); 200 with the
  cosignature line, or the spec's status with one line saying why (``infra.witness``): 400
  malformed, 403 not signed by the log, 404 unknown origin, 409 ``text/x.tlog.size`` with the
  size held, 409 another root of the size held or a log held forked, 413 a body too large,
  422 a consistency proof that fails, 503 the witness's database failed.
* ``GET /forks``: the evidence it kept, a JSON list, oldest first (optionally ``?origin=``).
* ``GET /`` and ``GET /health``: name, vkey, and per log the size held and whether forked.

Authorisation: ``add-checkpoint`` is authorised by the log's signature on the checkpoint, as
the spec has it (no other authentication); the read routes publish only public data (signed
checkpoints, the witness's public key), as a monitoring prefix does, so they are open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from infra.witness import Witness, WitnessRefusal

#: A request is an old size, at most 63 hashes and a note of a few signatures: a few KiB.
MAX_REQUEST_BYTES = 64 * 1024


def _refusal(e: WitnessRefusal) -> Response:
    """The refusal's status and one line; the Content-Type exactly as given (the spec's
    ``text/x.tlog.size`` without a charset parameter Starlette would add to a media type)."""
    return Response(e.body(), status_code=e.status, headers={"Content-Type": e.content_type})


async def _read_body(request: Request) -> bytes | Response:
    """The body, or a 413 answer once it grows beyond ``MAX_REQUEST_BYTES``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return PlainTextResponse(_too_large(), status_code=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_REQUEST_BYTES:
            return PlainTextResponse(_too_large(), status_code=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> str:
    return f"an add-checkpoint body is at most {MAX_REQUEST_BYTES} bytes\n"


def create_witness_app(directory: Path, clock: Callable[[], float] = time.time) -> Starlette:
    """The ASGI app of the witness in ``directory`` (``WitnessSetupError`` if none is
    there). ``clock`` gives the cosignatures' time, POSIX seconds."""
    witness = Witness.open(directory)

    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _read_body(request)
        except ClientDisconnect:
            return PlainTextResponse("the request body was cut off\n", status_code=400)
        if isinstance(body, Response):
            return body
        try:
            lines = await run_in_threadpool(witness.add_checkpoint, body, int(clock()))
        except WitnessRefusal as e:
            return _refusal(e)
        return PlainTextResponse(lines)

    async def forks(request: Request) -> Response:
        origin = request.query_params.get("origin")
        try:
            found = await run_in_threadpool(witness.evidence, origin)
        except WitnessRefusal as e:
            return _refusal(e)
        return JSONResponse([e.to_json() for e in found])

    async def health(request: Request) -> Response:
        try:
            logs = await run_in_threadpool(witness.logs)
        except WitnessRefusal as e:
            return _refusal(e)
        return JSONResponse(
            {
                "status": "ok",
                "name": witness.key.name,
                "vkey": str(witness.verifier),
                "logs": [
                    {"origin": s.origin, "tree_size": s.tree_size, "forked": s.forked} for s in logs
                ],
            }
        )

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/forks", forks, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/", health, methods=["GET"]),
        ]
    )
