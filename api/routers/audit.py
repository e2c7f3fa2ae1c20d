"""The record as stored, for auditors: the chain head, a verification run, and the stored
records page by page (bytes in base64), so an auditor can check them with no pocdir code; and
the signed statements, which a State reads too, only those it may (its own monitor)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AuditorOrState, AuditorPrincipal, ServicesDep
from api.schemas import (
    HeadPublic,
    RecordPublic,
    RecordsPage,
    StatementPublic,
    StatementsPage,
    VerificationPublic,
)
from domain.signing import may_read_statement, statement_scope
from domain.values import Role
from infra.chain import GENESIS_POSITION, VerificationError
from infra.verify import chained_recorder, verify_record

router = APIRouter(prefix="/audit", tags=["audit"])

MAX_PAGE = 1000
#: Stored statements one State's page looks through at most (its own are a few among many):
#: past them the page ends short, with ``next_after`` where the next one goes on.
MAX_SCANNED = 10 * MAX_PAGE


@router.get("/head", response_model=HeadPublic, summary="The chain head")
def head(_: AuditorPrincipal, services: ServicesDep) -> HeadPublic:
    position, link, size = chained_recorder(services.application).chain_head_and_size()
    if position == GENESIS_POSITION:
        return HeadPublic(size=0, position=None, link=None)
    return HeadPublic(size=size, position=position, link=link.hex())


@router.get(
    "/verification", response_model=VerificationPublic, summary="Verify the whole record now"
)
def verification(_: AuditorPrincipal, services: ServicesDep) -> VerificationPublic:
    try:
        result = verify_record(services.application)
    except VerificationError as e:
        return VerificationPublic(valid=False, events=0, head=None, error=str(e))
    return VerificationPublic(valid=True, events=result.events, head=result.head_hash, error=None)


@router.get("/records", response_model=RecordsPage, summary="Stored records, page by page")
def records(
    _: AuditorPrincipal,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> RecordsPage:
    rows = chained_recorder(services.application).linked_page(after + 1, limit)
    page = [
        RecordPublic(
            position=position,
            originator_id=str(originator_id),
            originator_version=version,
            topic=topic,
            state=base64.b64encode(bytes(state)).decode("ascii"),
            link=bytes(link).hex() if link is not None else "",
        )
        for position, originator_id, version, topic, state, _, _, link in rows
    ]
    return RecordsPage(records=page, next_after=page[-1].position if len(page) == limit else None)


@router.get("/statements", response_model=StatementsPage, summary="Signed statements, page by page")
def statements(
    principal: AuditorOrState,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> StatementsPage:
    """The statements of the signed writes whose first position is after ``after``: what an
    auditor checks every signature with, without any server key. A State gets only those it
    may read (``domain.signing.may_read_statement``: its own, those about its entry and key
    set, and the Secretariat's key bindings), so a page may hold fewer than ``limit``, even
    none: only ``next_after`` null says there are no more."""
    recorder = chained_recorder(services.application)
    state = principal.state if principal.role is Role.STATE else None
    scope = statement_scope(state)
    if state is None:
        rows = recorder.statement_rows(after + 1, limit)
        page = [StatementPublic(**row.to_json()) for row in rows]
        return StatementsPage(
            statements=page,
            next_after=page[-1].first_position if len(page) == limit else None,
            scope=scope,
        )
    page, cursor, scanned = [], after, 0
    while scanned < MAX_SCANNED:
        wanted = min(MAX_PAGE, MAX_SCANNED - scanned)
        batch = recorder.statement_rows(cursor + 1, wanted)
        scanned += len(batch)
        for row in batch:
            cursor = row.first_position
            if may_read_statement(state, row.signer, row.statement):
                page.append(StatementPublic(**row.to_json()))
                if len(page) == limit:
                    return StatementsPage(statements=page, next_after=cursor, scope=scope)
        if len(batch) < wanted:
            return StatementsPage(statements=page, next_after=None, scope=scope)
    return StatementsPage(statements=page, next_after=cursor, scope=scope)
