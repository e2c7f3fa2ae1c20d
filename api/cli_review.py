"""``pocdir check ...`` (the Secretariat's communication checks) and ``pocdir review`` (the
provisional-operation report for reviewers, R17). Registered on the main app by
``register(app)``."""

from __future__ import annotations

import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from api.cli import Format as TableFormat
from api.cli import (
    FormatOption,
    _date,
    _print_json,
    command_application,
    command_key,
    directory_view,
    fail,
    out,
)
from api.cli_options import IdempotencyOption
from api.review_html import render_html
from api.schemas import check_json
from domain.errors import ValidationError
from domain.values import Principal, Role, parse_uuid
from infra.wiring import OpenMode
from projections.review import check_summaries
from projections.review_report import build_report, check_period, report_csv, report_json

check_app = typer.Typer(
    help="Communication checks (ping tests) of the States' contacts, run by the Secretariat.",
    no_args_is_help=True,
)

ByOption = Annotated[
    str, typer.Option("--by", help="id of the Secretariat official acting (recorded)")
]


def _secretariat(by: str) -> Principal:
    return Principal(by, Role.SECRETARIAT)


def _check_id(value: str) -> UUID:
    try:
        return parse_uuid(value)
    except ValueError:
        fail(f"CHECK_ID must be a check id such as 0b6e...-..., not {value[:40]!r}")


def _print_results(results: dict[str, Any], format: TableFormat) -> None:  # noqa: A002
    if format is TableFormat.JSON:
        _print_json(check_json(results))
        return
    counts = results["counts"]
    title = (
        f"Check {results['check_id']} ({results['level']}), deadline {results['deadline']}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    table = Table(title=title)
    for column in ("state", "result", "answered at", "hours", "through contact"):
        table.add_column(column)
    for row in results["states"]:
        table.add_row(
            row["state"],
            row["result"],
            (row["answered_at"] or "-")[:16],
            str(row["hours_to_answer"] if row["hours_to_answer"] is not None else "-"),
            row["contact_id"] or "-",
        )
    out.print(table)


@check_app.command("launch")
def check_launch(
    level: Annotated[str, typer.Option(help="diplomatic or technical")] = "technical",
    deadline_hours: Annotated[
        float, typer.Option("--deadline-hours", help="hours from now the States have to answer")
    ] = 48,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="check only this State (repeat); default: all registered"),
    ] = None,
    by: ByOption = "secretariat",
    format: FormatOption = TableFormat.TABLE,  # noqa: A002
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Launch a check of every registered State's contacts at one level, or of listed ones."""
    if not 0 < deadline_hours <= 24 * 30:
        fail("--deadline-hours must be more than 0 and at most 720")
    with command_application() as application:
        secretariat = _secretariat(by)
        args = [level, deadline_hours, state]
        key = command_key(application, secretariat, "check launch", args, idempotency_key)
        if key is None:
            return
        deadline = application.clock.now() + timedelta(hours=deadline_hours)
        check = application.launch_check(
            secretariat, level, deadline, state or None, idempotency=key
        )
        results = check.results(application.clock.now())
    if format is TableFormat.JSON:
        _print_json(check_json(results))
    else:
        out.print(
            f"check {check.id} launched at the {check.level} level for {len(check.states)} "
            f"States; deadline {check.deadline.isoformat()}",
            highlight=False,
        )


@check_app.command("results")
def check_results(
    check_id: Annotated[str, typer.Argument(help="the check's id (see `pocdir check list`)")],
    by: ByOption = "secretariat",
    format: FormatOption = TableFormat.TABLE,  # noqa: A002
) -> None:
    """Each State's result: answered in time, answered late, no answer (or awaiting)."""
    cid = _check_id(check_id)
    with command_application(mode=OpenMode.READ_ONLY) as application:
        results = application.check_results(_secretariat(by), cid)
    _print_results(results, format)


@check_app.command("close")
def check_close(
    check_id: Annotated[str, typer.Argument(help="the check's id")],
    by: ByOption = "secretariat",
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Close a check after its deadline: the States that have not answered get no answer."""
    cid = _check_id(check_id)
    with command_application() as application:
        secretariat = _secretariat(by)
        key = command_key(application, secretariat, "check close", [cid], idempotency_key)
        if key is None:
            return
        check = application.close_check(secretariat, cid, idempotency=key)
    out.print(f"check {check.id} closed; {len(check.answers)} of {len(check.states)} answered")


@check_app.command("list")
def check_list(format: FormatOption = TableFormat.TABLE) -> None:  # noqa: A002
    """Every check, newest last: level, launch, deadline, States and answers so far."""
    with directory_view() as queries:
        rows = check_summaries(queries.view)
    if format is TableFormat.JSON:
        _print_json([check_json(r) for r in rows])
        return
    table = Table(title=f"Communication checks: {len(rows)}")
    for column in ("check", "level", "launched", "deadline", "States", "answers", "closed"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["check_id"],
            r["level"],
            r["launched_at"][:16],
            r["deadline"][:16],
            str(r["states"]),
            str(r["answers"]),
            (r["closed_at"] or "open")[:16],
        )
    out.print(table)


class ReportFormat(StrEnum):
    HTML = "html"
    JSON = "json"
    CSV = "csv"


def review(
    from_: Annotated[str, typer.Option("--from", help="first day of the period (YYYY-MM-DD)")],
    to: Annotated[str, typer.Option("--to", help="last day of the period (YYYY-MM-DD)")],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="file to write (html, json), or directory for csv; json goes to stdout if omitted",
        ),
    ] = None,
    format: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.HTML,  # noqa: A002
) -> None:
    """The provisional-operation review for a period: participation, freshness,
    responsiveness, use and capacity building. Aggregate figures only; never a contact
    detail, indicator or exchange text."""
    start, end = _date(from_, "--from"), _date(to, "--to")
    if start is None or end is None:  # pragma: no cover - typer requires both options
        fail("give --from and --to")
    if out_path is None and format is not ReportFormat.JSON:
        fail(f"--out is required for --format {format}")
    try:
        check_period(start, end)  # bad input is named before the record is opened
    except ValidationError as e:
        fail(str(e))
    with directory_view() as queries:
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
    """Add ``check`` and ``review`` to the ``pocdir`` command line."""
    app.add_typer(check_app, name="check")
    app.command("review")(review)
