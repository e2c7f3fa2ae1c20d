"""The directory, for member States only (R1): entries and the route lookup (R3, R4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import QueriesDep, StatePrincipal
from api.schemas import EntryPublic, RoutePublic, entry_public

router = APIRouter(prefix="/directory", tags=["directory"])


def etag(version: int) -> str:
    return f'"{version}"'


# The handlers are ``async`` and hand their database reads to one worker thread: a plain
# ``def`` handler costs a second thread-pool trip, to check the response model.


@router.get("", response_model=list[EntryPublic], summary="Every current entry")
async def list_entries(_: StatePrincipal, queries: QueriesDep) -> list[EntryPublic]:
    return [entry_public(d) for d in await run_in_threadpool(queries.entries)]


@router.get("/{state}", response_model=EntryPublic, summary="One State's current entry")
async def get_entry(
    state: str, _: StatePrincipal, queries: QueriesDep, response: Response
) -> EntryPublic:
    entry = entry_public(await run_in_threadpool(queries.entry, state))
    response.headers["ETag"] = etag(entry.version)
    return entry


@router.get(
    "/{state}/route",
    response_model=RoutePublic,
    summary="Whom to reach about an incident type, in order",
)
async def route(
    state: str,
    _: StatePrincipal,
    queries: QueriesDep,
    incident_type: Annotated[str, Query(max_length=40, examples=["malware"])],
    level: Annotated[str, Query(max_length=20)] = "technical",
) -> dict[str, Any]:
    found = await run_in_threadpool(queries.route, state, incident_type, level)
    # A plain dict: FastAPI checks it against RoutePublic once, on the way out.
    return {
        "state": found.state,
        "incident_type": found.incident_type,
        "level": found.level,
        "contacts": found.contacts,
        "fell_back_to_coordination_contact": found.fell_back_to_coordination_contact,
    }
