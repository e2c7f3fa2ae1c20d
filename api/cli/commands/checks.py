"""``pocdir check ...``: the Secretariat's communication checks (ping tests) of the States'
contacts (R17)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from api.cli.console import CONSOLE, out, print_json, secretariat, table
from api.cli.errors import fail
from api.cli.ids import parse_id, record_id
from api.cli.options import ByOption, Format, FormatOption, IdempotencyOption
from api.cli.session import command_application, command_key, views_queries
from api.schemas import check_json
from infra.wiring import OpenMode
from projections.review import check_summaries

check_app = typer.Typer(
    help="Communication checks (ping tests) of the States' contacts, run by the Secretariat.",
    no_args_is_help=True,
)

CHECK = "communication check"

CheckIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="CHECK_ID",
        help="the check's id, or its first characters (see `pocdir check list`)",
    ),
]


def _print_results(results: dict[str, Any], format: Format) -> None:  # noqa: A002
    if format is Format.JSON:
        print_json(check_json(results))
        return
    counts = results["counts"]
    title = (
        f"Check {results['check_id']} ({results['level']}), deadline {results['deadline']}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    rows = table(title, "state", "result", "answered at", "hours", "through contact")
    for row in results["states"]:
        rows.add_row(
            row["state"],
            row["result"],
            (row["answered_at"] or "-")[:16],
            str(row["hours_to_answer"] if row["hours_to_answer"] is not None else "-"),
            row["contact_id"] or "-",
        )
    out.print(rows)


@check_app.command("launch")
def check_launch(
    level: Annotated[
        str, typer.Option(metavar="LEVEL", help="diplomatic or technical")
    ] = "technical",
    deadline_hours: Annotated[
        float,
        typer.Option(
            "--deadline-hours", metavar="HOURS", help="hours from now the States have to answer"
        ),
    ] = 48,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="check only this State (repeat); default: all registered",
        ),
    ] = None,
    by: ByOption = CONSOLE.id,
    format: FormatOption = Format.TABLE,  # noqa: A002
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Launch a check of every registered State's contacts at one level, or of listed ones."""
    if not 0 < deadline_hours <= 24 * 30:
        fail("--deadline-hours must be more than 0 and at most 720")
    with command_application() as application:
        official = secretariat(by)
        args = [level, deadline_hours, state]
        key = command_key(application, official, "check launch", args, idempotency_key)
        if key is None:
            return
        deadline = application.clock.now() + timedelta(hours=deadline_hours)
        check = application.launch_check(official, level, deadline, state or None, idempotency=key)
        results = check.results(application.clock.now())
    if format is Format.JSON:
        print_json(check_json(results))
    else:
        out.print(
            f"check {check.id} launched at the {check.level} level for {len(check.states)} "
            f"States; deadline {check.deadline.isoformat()}",
            highlight=False,
        )


@check_app.command("results")
def check_results(
    check_id: CheckIdArgument,
    by: ByOption = CONSOLE.id,
    format: FormatOption = Format.TABLE,  # noqa: A002
) -> None:
    """Each State's result: answered in time, answered late, no answer (or awaiting)."""
    given = parse_id(check_id, "CHECK_ID", "check")
    with command_application(mode=OpenMode.READ_ONLY) as application:
        cid = record_id(application, given, CHECK)
        results = application.check_results(secretariat(by), cid)
    _print_results(results, format)


@check_app.command("close")
def check_close(
    check_id: CheckIdArgument,
    by: ByOption = CONSOLE.id,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Close a check after its deadline: the States that have not answered get no answer."""
    given = parse_id(check_id, "CHECK_ID", "check")
    with command_application() as application:
        official = secretariat(by)
        cid = record_id(application, given, CHECK)
        key = command_key(application, official, "check close", [cid], idempotency_key)
        if key is None:
            return
        check = application.close_check(official, cid, idempotency=key)
    out.print(f"check {check.id} closed; {len(check.answers)} of {len(check.states)} answered")


@check_app.command("list")
def check_list(format: FormatOption = Format.TABLE) -> None:  # noqa: A002
    """Every check, newest last: level, launch, deadline, States and answers so far."""
    with views_queries() as queries:
        rows = check_summaries(queries.view)
    if format is Format.JSON:
        print_json([check_json(r) for r in rows])
        return
    checks = table(
        f"Communication checks: {len(rows)}",
        "check", "level", "launched", "deadline", "States", "answers", "closed",
    )  # fmt: skip
    for r in rows:
        checks.add_row(
            r["check_id"],
            r["level"],
            r["launched_at"][:16],
            r["deadline"][:16],
            str(r["states"]),
            str(r["answers"]),
            (r["closed_at"] or "open")[:16],
        )
    out.print(checks)


def register(app: typer.Typer) -> None:
    """Add ``check`` to the ``pocdir`` app."""
    app.add_typer(check_app, name="check")
