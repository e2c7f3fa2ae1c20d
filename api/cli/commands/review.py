"""``pocdir review``: the provisional-operation report for reviewers (R17)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from api.cli.console import out
from api.cli.errors import exit_on_error, fail
from api.cli.session import parse_date, views_queries
from api.review_html import render_html
from projections.review_report import build_report, check_period, report_csv, report_json


class ReportFormat(StrEnum):
    HTML = "html"
    JSON = "json"
    CSV = "csv"


def review(
    from_: Annotated[
        str,
        typer.Option("--from", metavar="DATE", help="first day of the period (YYYY-MM-DD)"),
    ],
    to: Annotated[
        str, typer.Option("--to", metavar="DATE", help="last day of the period (YYYY-MM-DD)")
    ],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help="file to write (html, json), or directory for csv; json goes to stdout if omitted",
        ),
    ] = None,
    format: Annotated[  # noqa: A002
        ReportFormat,
        typer.Option(
            "--format",
            metavar="html|json|csv",
            help="html for people, json or csv (one file per table) for machines",
        ),
    ] = ReportFormat.HTML,
) -> None:
    """The provisional-operation review for a period: participation, freshness,
    responsiveness, use and capacity building. Aggregate figures only; never a contact
    detail, indicator or exchange text."""
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    if start is None or end is None:  # pragma: no cover - typer requires both options
        fail("give --from and --to")
    if out_path is None and format is not ReportFormat.JSON:
        fail(f"--out is required for --format {format}")
    with exit_on_error():
        check_period(start, end)  # bad input is named before the record is opened
    with views_queries() as queries:
        report = build_report(queries.view, start, end)
    if out_path is None:
        sys.stdout.write(report_json(report))
        return
    try:
        if format is ReportFormat.JSON:
            out_path.write_text(report_json(report), encoding="utf-8")
        elif format is ReportFormat.HTML:
            out_path.write_text(render_html(report), encoding="utf-8")
        else:
            out_path.mkdir(parents=True, exist_ok=True)
            for name, content in report_csv(report).items():
                (out_path / name).write_text(content, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {out_path}: {e.strerror}")
    out.print(f"review report for {start} to {end} written to {out_path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``review`` to the ``pocdir`` app."""
    app.command("review")(review)
