"""Pending annual updates (R5) and per-State interaction histories (R17)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from api.deps import QueriesDep, ServicesDep, StateOrSecretariat, StatePrincipal
from api.schemas import HistoryItemPublic, PendingPublic, public_json
from domain.state_entry import check_reads_own_history
from domain.values import Role
from projections.queries import history_csv

router = APIRouter(tags=["pending and histories"])


@router.get(
    "/pending",
    response_model=PendingPublic,
    summary="Annual updates due (R5): every State for the Secretariat, your own for a State",
)
def pending(
    by: StateOrSecretariat,
    services: ServicesDep,
    queries: QueriesDep,
    today: Annotated[date | None, Query(description="judge as of this day")] = None,
) -> dict[str, Any]:
    report = queries.pending(today or services.application.clock.now().date())
    if by.role is Role.STATE:
        own = by.state
        report["states"] = [s for s in report["states"] if s["state"] == own]
        report["late_notices"] = [n for n in report["late_notices"] if n["state"] == own]
        report["never_registered"] = [n for n in report["never_registered"] if n["state"] == own]
    return report


@router.get(
    "/history/{state}",
    response_model=list[HistoryItemPublic],
    summary="Your State's interaction history, as JSON or CSV (no content)",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def history(
    state: str,
    by: StatePrincipal,
    queries: QueriesDep,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the query parameter's name
) -> Any:
    code = state.strip().upper()
    check_reads_own_history(by, code)
    items = queries.history(code, start, end)
    if format == "csv":
        return PlainTextResponse(history_csv(items), media_type="text/csv")
    return public_json(items)
