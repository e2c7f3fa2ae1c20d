"""The provisional-operation review (R17) for reviewers: aggregate figures for a period as
JSON, one table as CSV, or one self-contained HTML page. Never contact details or content."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse

from api.deps import QueriesDep, ReviewerPrincipal
from api.review_html import CSP, render_html
from domain.errors import ValidationError
from projections.review_report import build_report, csv_tables, table_csv

router = APIRouter(prefix="/review", tags=["review"])


@router.get(
    "/report",
    response_model=dict[str, Any],
    summary="The review report for a period: JSON, one table as CSV, or HTML",
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        }
    },
)
async def report(
    _: ReviewerPrincipal,
    queries: QueriesDep,
    start: Annotated[date, Query(alias="from", description="first day of the period")],
    end: Annotated[date, Query(alias="to", description="last day of the period")],
    format: Literal["json", "html", "csv"] = "json",  # noqa: A002 - the query parameter
    table: Annotated[
        str | None,
        Query(
            max_length=80,
            description="for CSV, required: which table (`summary` for the headline figures); "
            "without one, or with another name, 422 lists the names",
        ),
    ] = None,
) -> Any:
    built = await run_in_threadpool(build_report, queries.view, start, end)
    if format == "html":
        return HTMLResponse(render_html(built), headers={"Content-Security-Policy": CSP})
    if format == "csv":
        tables = csv_tables(built)
        if table not in tables:  # no table, or not one of them: invalid input, not a 404
            raise ValidationError(f"name a table with ?table=; one of: {', '.join(tables)}")
        return PlainTextResponse(table_csv(tables[table]), media_type="text/csv")
    return built
