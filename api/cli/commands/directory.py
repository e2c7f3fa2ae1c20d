"""``pocdir directory``, ``route``, ``pending`` and ``history``: the directory's views as a
State official or the Secretariat reads them."""

from __future__ import annotations

import sys
from collections import Counter
from enum import StrEnum
from typing import Annotated, Any

import typer

from api.cli.console import out, print_json, table
from api.cli.options import AsOfOption, AtPositionOption, Format, FormatOption
from api.cli.session import bounded, parse_date, views_queries
from api.schemas import entry_json
from domain.clock import SystemClock
from domain.freshness import LATE_NOTICE_DAYS
from projections.queries import history_csv


def _channels(contact: dict[str, Any]) -> str:
    return ", ".join(f"{ch['kind']}: {ch['address']}" for ch in contact["channels"])


def directory(
    state: Annotated[
        str | None,
        typer.Argument(metavar="STATE", help="ISO alpha-3 code; all States if omitted"),
    ] = None,
    format: FormatOption = Format.TABLE,  # noqa: A002
    as_of: AsOfOption = None,
    at_position: AtPositionOption = None,
) -> None:
    """The current directory, or one State's entry; or as they stood at a past date."""
    at_position = bounded(at_position, "--at-position")
    with views_queries(parse_date(as_of, "--as-of"), at_position) as queries:
        if state is None:
            entries = queries.entries()
            if format is Format.JSON:
                print_json([entry_json(e) for e in entries])
                return
            listing = table(
                f"Directory: {len(entries)} States",
                "state", "name", "contacts", "coordination", "last update",
            )  # fmt: skip
            for e in entries:
                listing.add_row(
                    e["code"],
                    e["name"],
                    str(len(e["contacts"])),
                    e["coordination_contact_id"] or "-",
                    e["last_update_on"],
                )
            out.print(listing)
            return
        entry = queries.entry(state)
        if format is Format.JSON:
            print_json(entry_json(entry))
            return
        contacts = table(
            f"{entry['name']} ({entry['code']})",
            "contact", "level", "agency", "channels", "languages", "hours", "handles",
        )  # fmt: skip
        for c in entry["contacts"].values():
            mark = " (coordination)" if c["contact_id"] == entry["coordination_contact_id"] else ""
            contacts.add_row(
                c["contact_id"] + mark,
                c["level"],
                c["agency"]["english"] or c["agency"]["text"],
                _channels(c),
                ", ".join(c["languages"]),
                f"{c['hours']} {c['time_zone']}",
                ", ".join(c["incident_types"]) or "-",
            )
        out.print(contacts)


def route(
    state: Annotated[
        str, typer.Argument(metavar="STATE", help="ISO alpha-3 code of the State to reach")
    ],
    incident_type: Annotated[
        str,
        typer.Argument(metavar="INCIDENT_TYPE", help="an incident type (docs/taxonomy.md)"),
    ],
    level: Annotated[
        str, typer.Option(metavar="LEVEL", help="diplomatic or technical")
    ] = "technical",
    format: FormatOption = Format.TABLE,  # noqa: A002
) -> None:
    """Whom to reach at a State about an incident type, in order."""
    with views_queries() as queries:
        result = queries.route(state, incident_type, level)
    if format is Format.JSON:
        print_json(result.__dict__)
        return
    title = f"{result.state}: {result.incident_type} at the {result.level} level"
    if result.fell_back_to_coordination_contact:
        title += " (no contact handles it: coordination contact)"
    ranked = table(
        title, "#", "contact", "channels (preferred first)", "languages", "time zone", "hours",
    )  # fmt: skip
    for i, c in enumerate(result.contacts, start=1):
        ranked.add_row(
            str(i),
            c["contact_id"],
            _channels(c),
            ", ".join(c["languages"]),
            c["time_zone"],
            c["hours"],
        )
    out.print(ranked)


def pending(
    today: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="judge deadlines on this date (YYYY-MM-DD); default today"
        ),
    ] = None,
    format: FormatOption = Format.TABLE,  # noqa: A002
    as_of: AsOfOption = None,
) -> None:
    """Annual updates due or overdue (R5), late change notices, and States never registered.
    With --as-of, as they stood at the end of that date (judged on that date)."""
    past = parse_date(as_of, "--as-of")
    day = parse_date(today, "--today") or past or SystemClock().now().date()
    with views_queries(past) as queries:
        report = queries.pending(day)
    if format is Format.JSON:
        print_json(report)
        return
    counts = Counter(s["status"] for s in report["states"])
    due = table(
        f"Annual updates as of {report['as_of']}: "
        f"{counts['overdue']} overdue, {counts['due']} due, {counts['current']} current",
        "state", "name", "last update", "next due", "status",
    )  # fmt: skip
    for s in sorted(report["states"], key=lambda s: (s["next_due_on"], s["state"])):
        if s["status"] != "current":
            due.add_row(s["state"], s["name"], s["last_update_on"], s["next_due_on"], s["status"])
    out.print(due)
    late = table(
        f"Changes notified more than {LATE_NOTICE_DAYS} days after they occurred: "
        f"{len(report['late_notices'])}",
        "state", "change", "occurred", "notified", "days",
    )  # fmt: skip
    for n in report["late_notices"]:
        late.add_row(
            n["state"], n["change"], n["effective_on"], n["reported_on"], str(n["delay_days"])
        )
    out.print(late)
    out.print(f"Member States never registered: {len(report['never_registered'])} of 193")


class HistoryFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def history(
    state: Annotated[str, typer.Argument(metavar="STATE", help="ISO alpha-3 code")],
    from_: Annotated[
        str | None, typer.Option("--from", metavar="DATE", help="first day (YYYY-MM-DD)")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="last day (YYYY-MM-DD)")
    ] = None,
    format: Annotated[  # noqa: A002
        HistoryFormat,
        typer.Option(
            "--format",
            metavar="table|csv|json",
            help="table for people; csv or json for machines",
        ),
    ] = HistoryFormat.TABLE,
) -> None:
    """A State's interactions over a period: the facts, never the content."""
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    with views_queries() as queries:
        items = queries.history(state, start, end)
    if format is HistoryFormat.JSON:
        print_json(items)
    elif format is HistoryFormat.CSV:
        sys.stdout.write(history_csv(items))
    else:
        rows = table(
            f"History of {state.upper()}: {len(items)} items",
            "at", "event", "counterpart", "incident type", "hours",
        )  # fmt: skip
        for i in items:
            hours = i.get("hours_to_acknowledge", i.get("hours_to_respond", ""))
            rows.add_row(
                i["at"][:16],
                i["event"],
                i.get("counterpart", ""),
                i.get("incident_type", ""),
                str(hours),
            )
        out.print(rows)


def register(app: typer.Typer) -> None:
    """Add the directory's read commands to the ``pocdir`` app."""
    app.command()(directory)
    app.command()(route)
    app.command()(pending)
    app.command()(history)
