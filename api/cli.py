"""The ``pocdir`` command line.

Exit codes: 0 success; 1 the record failed verification; 2 bad input or settings (one line on
stderr saying what to fix); 3 the database could not be reached; 4 no such entry or route.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, overload
from uuid import uuid4

import typer
from eventsourcing.persistence import OperationalError, PersistenceError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli_options import IdempotencyOption as IdempotencyOption
from api.cli_serve import CONSOLE
from api.cli_serve import principals as principals_commands
from api.schemas import entry_json, public_json
from domain.application import PocDirectory
from domain.clock import SimulatedClock, SystemClock
from domain.errors import NotFound, PocdirError
from domain.freshness import LATE_NOTICE_DAYS
from domain.idempotency import IdempotencyKey, request_digest
from domain.values import Principal
from infra.chain import VerificationError
from infra.follower import LeaseKeeper, ViewsBehind, bring_views_up
from infra.lease import LEASE_ERRORS, LeaseHeld, build_lease
from infra.settings import Settings, SettingsError
from infra.verify import chained_recorder, record_is_empty, verify_record
from infra.wiring import (
    OpenMode,
    RecordMissing,
    build_application,
    build_directory_view,
    build_idempotency_keys,
    build_view_runner,
)
from projections.asof import directory_as_of
from projections.queries import DirectoryQueries, history_csv
from projections.runner import REBUILD_BATCH, RebuildNotSwapped

app = typer.Typer(
    help="pocdir: the Points of Contact directory's hash-chained record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
#: Errors are one line whatever the width, so scripts can read them (never wrapped).
err = Console(stderr=True, soft_wrap=True)

EXIT_INVALID_RECORD = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
#: What a command that catches the views up may meet when the database fails: the library's
#: errors and those of the runner lease's own connection.
VIEW_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    PersistenceError,
    *LEASE_ERRORS,
)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as e:
        fail(str(e))


def open_application(
    clock: SimulatedClock | None = None, mode: OpenMode = OpenMode.CREATE, **kwargs: object
) -> PocDirectory:
    """The record for one command, once its cipher key is known to be the record's (else
    exit 2: a wrong, missing or newly set ``POCDIR_CIPHER_KEY``). A command that only reads
    passes ``OpenMode.READ_ONLY`` or ``OpenMode.EXISTING``: with no record there it exits 2
    having created nothing. ``needs_key=False`` for commands that read the stored bytes only
    and decode no event."""
    settings = _settings()
    try:
        return build_application(settings, clock=clock, mode=mode, **kwargs)  # type: ignore[arg-type]
    except (RecordMissing, SettingsError) as e:
        fail(str(e))
    except (OperationalError, PersistenceError) as e:
        fail(f"cannot open the database: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)


def fail_if_empty(application: PocDirectory) -> None:
    """An empty record is not "intact": say so and exit 2, for an auditor who mistyped the
    record's location into a database that some writer created."""
    if record_is_empty(chained_recorder(application)):
        fail("the record is empty: no events")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command()
def verify(
    checkpoint: Annotated[
        Path | None, typer.Option(help="also check the record extends this signed checkpoint")
    ] = None,
    key: Annotated[
        list[str] | None, typer.Option("--key", help="a trusted verifier key; repeatable")
    ] = None,
) -> None:
    """Walk the whole chain from genesis and check every event and link."""
    if checkpoint is not None:
        from api import cli_audit

        return cli_audit.verify_checkpoint(checkpoint, key)
    application = open_application(mode=OpenMode.READ_ONLY, needs_key=False)
    try:
        fail_if_empty(application)
        total = application.recorder.max_notification_id() or 0
        with _progress() as progress:
            task = progress.add_task("verifying", total=total)
            result = verify_record(
                application, on_progress=lambda pos: progress.update(task, completed=pos)
            )
    except VerificationError as e:
        err.print(f"verification FAILED at position {e.position}: {e.reason}", markup=False)
        err.print(f"  expected: {e.expected}", markup=False)
        err.print(f"  computed: {e.computed}", markup=False)
        raise typer.Exit(EXIT_INVALID_RECORD) from None
    except (OperationalError, PersistenceError) as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    finally:
        application.close()
    out.print(f"record intact: {result.events} events checked", highlight=False)
    out.print(f"head position: {result.head_position}", highlight=False)
    out.print(f"head hash:     {result.head_hash}", highlight=False)


@app.command()
def simulate(
    states: Annotated[int, typer.Option(help="How many member States take part.")] = 193,
    days: Annotated[int, typer.Option(help="How many days to simulate.")] = 365,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed writes the same record.")
    ] = 1,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the record already holds events.")
    ] = False,
) -> None:
    """Drive the application through its real commands over simulated time."""
    from api.simulator import DEFAULT_START, Simulator, seeded_ids

    clock = SimulatedClock(DEFAULT_START)
    application = open_application(clock, new_id=seeded_ids(seed))
    try:
        existing = application.recorder.max_notification_id() or 0
        if existing:
            if if_empty:
                out.print(f"the record already holds events (head at {existing}); not simulating")
                return
            fail(
                f"the record already holds events (head at {existing}); simulate into an "
                "empty database (set POCDIR_DATABASE_URL) or pass --if-empty"
            )
        out.print(
            f"the record is empty: loading a simulated {days} days of {states} States "
            f"(seed {seed})",
            highlight=False,
        )
        try:
            simulator = Simulator(application, clock, states=states, days=days, seed=seed)
        except ValueError as e:
            fail(str(e))
        with _progress() as progress:
            task = progress.add_task(f"simulating {states} States", total=days)
            report = simulator.run(on_day=lambda d: progress.update(task, completed=d))
    except PocdirError as e:  # a simulator bug: the simulator only issues valid commands
        fail(f"simulation stopped: {type(e).__name__}: {e}", 1)
    except SettingsError as e:  # the key, found wrong by the first write's own check
        fail(str(e))
    except (OperationalError, PersistenceError) as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    finally:
        application.close()
    table = Table(title=f"Simulated {days} days, {states} States, seed {seed}")
    table.add_column("command")
    table.add_column("count", justify="right")
    for name, count in sorted(report.commands.items()):
        table.add_row(name, str(count))
    table.add_row("[bold]total[/bold]", f"[bold]{report.total}[/bold]")
    out.print(table)


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", help="table for people, json for machines")
]


AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", help="as the directory stood at the end of this date (YYYY-MM-DD)"),
]
AtPositionOption = Annotated[
    int | None, typer.Option("--at-position", help="as it stood after this record position")
]


#: The largest record position or tree size a command takes, as over HTTP: positions are
#: 64-bit in both databases, and a larger number would fail inside the driver.
MAX_POSITION = 2**62


@overload
def bounded(value: int, option: str, low: int = 0) -> int: ...


@overload
def bounded(value: None, option: str, low: int = 0) -> None: ...


def bounded(value: int | None, option: str, low: int = 0) -> int | None:
    """``value`` if it is a position or size the record can hold, else exit 2 saying so."""
    if value is not None and not low <= value <= MAX_POSITION:
        fail(f"{option} must be a whole number from {low} to {MAX_POSITION}")
    return value


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a date like 2026-01-31, not {value[:20]!r}")


@contextmanager
def command_application(
    clock: SimulatedClock | None = None, mode: OpenMode = OpenMode.CREATE, **kwargs: object
) -> Iterator[PocDirectory]:
    """The record, opened for one command: a refusal exits 4 (not found) or 2 with its one
    line, a database error exits 3, and the application is closed in every case."""
    application = open_application(clock, mode, **kwargs)
    try:
        yield application
    except PocdirError as e:
        fail(str(e), EXIT_NOT_FOUND if isinstance(e, NotFound) else EXIT_USAGE)
    except SettingsError as e:  # the key, found wrong by the first write's own check
        fail(str(e))
    except (OperationalError, PersistenceError) as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    finally:
        application.close()


def command_key(
    application: PocDirectory, by: Principal, command: str, args: Sequence[object], key: str | None
) -> IdempotencyKey | None:
    """The idempotency key a writing command records with its events: the caller's, or a
    fresh one. ``None`` when this command already ran with the caller's key: that is said on
    stdout and nothing is written again. Exits 2 if the key was used for another command."""
    digest = request_digest(
        [command.encode(), *(json.dumps(a, default=str).encode() for a in args)]
    )
    if key is None:
        return IdempotencyKey(by.ref, str(uuid4()), digest)
    try:
        keyed = IdempotencyKey(by.ref, key, digest)
    except PocdirError as e:
        fail(str(e))
    row = build_idempotency_keys(application, _settings()).find(keyed)
    if row is None:
        return keyed
    if row.digest != digest:
        fail("this --idempotency-key was used for a different command; use a new key")
    out.print(
        f"already done: this command ran with this idempotency key (record position "
        f"{row.position}); nothing was written again",
        highlight=False,
    )
    return None


@contextmanager
def directory_view(
    as_of: date | None = None, at_position: int | None = None
) -> Iterator[DirectoryQueries]:
    """Open the record, bring the views up to date with it, and yield their queries. Reads
    come from the views, never from scanning the event table. With ``as_of`` or
    ``at_position``, the directory is computed from the record as it stood then.

    Up to date without fighting a server: if no server's runner holds the lease, this
    command takes it, catches the views up and gives it back; if one does, it waits (at most
    ``POCDIR_READ_WAIT_SECONDS``, then exit 3) for the views to reach the record's head as
    it was when the command started (``infra.follower.bring_views_up``)."""
    settings = _settings()
    past = as_of is not None or at_position is not None
    application = open_application(mode=OpenMode.READ_ONLY if past else OpenMode.EXISTING)
    try:
        if past:
            yield DirectoryQueries(directory_as_of(application, position=at_position, day=as_of))
            return
        view = build_directory_view(application, settings)
        runner = build_view_runner(application, view, settings)
        head = application.recorder.max_notification_id() or 0
        with _progress() as progress:
            task = progress.add_task("updating views", total=max(head - runner.position, 0))
            bring_views_up(
                runner,
                build_lease(application.recorder, settings),
                head,
                seconds=settings.runner_lease_seconds,
                bound=settings.read_wait_seconds,
                on_progress=lambda _: progress.update(task, advance=1000),
            )
        yield DirectoryQueries(view)
    except ViewsBehind as e:
        fail(f"{e}: a server's projection runner is catching up", EXIT_UNAVAILABLE)
    except VIEW_DATABASE_ERRORS as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    except PocdirError as e:
        fail(str(e), EXIT_NOT_FOUND if isinstance(e, NotFound) else EXIT_USAGE)
    finally:
        application.close()


def _print_json(data: object) -> None:
    """JSON in the HTTP API's convention (``api.schemas.public_json``)."""
    out.print_json(json.dumps(public_json(data), ensure_ascii=False, default=str))


def _channels(contact: dict[str, Any]) -> str:
    return ", ".join(f"{ch['kind']}: {ch['address']}" for ch in contact["channels"])


@app.command()
def directory(
    state: Annotated[
        str | None, typer.Argument(help="ISO alpha-3 code; all States if omitted")
    ] = None,
    format: FormatOption = Format.TABLE,  # noqa: A002
    as_of: AsOfOption = None,
    at_position: AtPositionOption = None,
) -> None:
    """The current directory, or one State's entry; or as they stood at a past date."""
    at_position = bounded(at_position, "--at-position")
    with directory_view(_date(as_of, "--as-of"), at_position) as queries:
        if state is None:
            entries = queries.entries()
            if format is Format.JSON:
                _print_json([entry_json(e) for e in entries])
                return
            table = Table(title=f"Directory: {len(entries)} States")
            for column in ("state", "name", "contacts", "coordination", "last update"):
                table.add_column(column)
            for e in entries:
                table.add_row(
                    e["code"],
                    e["name"],
                    str(len(e["contacts"])),
                    e["coordination_contact_id"] or "-",
                    e["last_update_on"],
                )
            out.print(table)
            return
        entry = queries.entry(state)
        if format is Format.JSON:
            _print_json(entry_json(entry))
            return
        table = Table(title=f"{entry['name']} ({entry['code']})")
        for column in ("contact", "level", "agency", "channels", "languages", "hours", "handles"):
            table.add_column(column)
        for c in entry["contacts"].values():
            mark = " (coordination)" if c["contact_id"] == entry["coordination_contact_id"] else ""
            table.add_row(
                c["contact_id"] + mark,
                c["level"],
                c["agency"]["english"] or c["agency"]["text"],
                _channels(c),
                ", ".join(c["languages"]),
                f"{c['hours']} {c['time_zone']}",
                ", ".join(c["incident_types"]) or "-",
            )
        out.print(table)


@app.command()
def route(
    state: Annotated[str, typer.Argument(help="ISO alpha-3 code of the State to reach")],
    incident_type: Annotated[str, typer.Argument(help="an incident type (docs/taxonomy.md)")],
    level: Annotated[str, typer.Option(help="diplomatic or technical")] = "technical",
    format: FormatOption = Format.TABLE,  # noqa: A002
) -> None:
    """Whom to reach at a State about an incident type, in order."""
    with directory_view() as queries:
        result = queries.route(state, incident_type, level)
    if format is Format.JSON:
        _print_json(result.__dict__)
        return
    title = f"{result.state}: {result.incident_type} at the {result.level} level"
    if result.fell_back_to_coordination_contact:
        title += " (no contact handles it: coordination contact)"
    table = Table(title=title)
    for column in ("#", "contact", "channels (preferred first)", "languages", "time zone", "hours"):
        table.add_column(column)
    for i, c in enumerate(result.contacts, start=1):
        table.add_row(
            str(i),
            c["contact_id"],
            _channels(c),
            ", ".join(c["languages"]),
            c["time_zone"],
            c["hours"],
        )
    out.print(table)


@app.command()
def pending(
    today: Annotated[
        str | None, typer.Option(help="judge deadlines on this date (YYYY-MM-DD); default today")
    ] = None,
    format: FormatOption = Format.TABLE,  # noqa: A002
    as_of: AsOfOption = None,
) -> None:
    """Annual updates due or overdue (R5), late change notices, and States never registered.
    With --as-of, as they stood at the end of that date (judged on that date)."""
    past = _date(as_of, "--as-of")
    day = _date(today, "--today") or past or SystemClock().now().date()
    with directory_view(past) as queries:
        report = queries.pending(day)
    if format is Format.JSON:
        _print_json(report)
        return
    counts = Counter(s["status"] for s in report["states"])
    table = Table(
        title=f"Annual updates as of {report['as_of']}: "
        f"{counts['overdue']} overdue, {counts['due']} due, {counts['current']} current"
    )
    for column in ("state", "name", "last update", "next due", "status"):
        table.add_column(column)
    for s in sorted(report["states"], key=lambda s: (s["next_due_on"], s["state"])):
        if s["status"] != "current":
            table.add_row(s["state"], s["name"], s["last_update_on"], s["next_due_on"], s["status"])
    out.print(table)
    late = Table(
        title=f"Changes notified more than {LATE_NOTICE_DAYS} days after they occurred: "
        f"{len(report['late_notices'])}"
    )
    for column in ("state", "change", "occurred", "notified", "days"):
        late.add_column(column)
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


@app.command()
def history(
    state: Annotated[str, typer.Argument(help="ISO alpha-3 code")],
    from_: Annotated[str | None, typer.Option("--from", help="first day (YYYY-MM-DD)")] = None,
    to: Annotated[str | None, typer.Option("--to", help="last day (YYYY-MM-DD)")] = None,
    format: Annotated[HistoryFormat, typer.Option("--format")] = HistoryFormat.TABLE,  # noqa: A002
) -> None:
    """A State's interactions over a period: the facts, never the content."""
    start, end = _date(from_, "--from"), _date(to, "--to")
    with directory_view() as queries:
        items = queries.history(state, start, end)
    if format is HistoryFormat.JSON:
        _print_json(items)
    elif format is HistoryFormat.CSV:
        sys.stdout.write(history_csv(items))
    else:
        table = Table(title=f"History of {state.upper()}: {len(items)} items")
        for column in ("at", "event", "counterpart", "incident type", "hours"):
            table.add_column(column)
        for i in items:
            hours = i.get("hours_to_acknowledge", i.get("hours_to_respond", ""))
            table.add_row(
                i["at"][:16],
                i["event"],
                i.get("counterpart", ""),
                i.get("incident_type", ""),
                str(hours),
            )
        out.print(table)


@app.command()
def replay(
    batch: Annotated[
        int,
        typer.Option(min=1, help="Events per transaction (more: faster, and more memory)."),
    ] = REBUILD_BATCH,
) -> None:
    """Rebuild every view from the record into a copy, then swap it in; a replay that fails
    leaves the views as they were. It holds the projection runner's lease throughout, so no
    server projects meanwhile; while a server holds it, replay refuses (exit 2): stop the
    servers of this record first."""
    settings = _settings()
    application = open_application()
    try:
        view = build_directory_view(application, settings)
        runner = build_view_runner(application, view, settings)
        total = application.recorder.max_notification_id() or 0
        lease = build_lease(application.recorder, settings)
        with LeaseKeeper(lease, settings.runner_lease_seconds), _progress() as progress:
            task = progress.add_task("rebuilding views", total=total)
            count = runner.rebuild(
                batch, on_progress=lambda pos: progress.update(task, completed=pos)
            )
    except LeaseHeld:
        fail(
            "a server is projecting this record's views (it holds the runner lease); "
            "stop every `pocdir serve` of this record, then run `pocdir replay` again"
        )
    except VIEW_DATABASE_ERRORS as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    except BrokenProcessPool:
        fail(
            "the process writing the rebuilt views stopped; the views are as they were: "
            "run `pocdir replay` again",
            EXIT_UNAVAILABLE,
        )
    except RebuildNotSwapped as e:
        fail(f"{e}; the views are as they were: run `pocdir replay` again", EXIT_UNAVAILABLE)
    except SettingsError as e:
        fail(str(e))
    finally:
        application.close()
    out.print(f"views rebuilt from {count} events")


@principals_commands.command("list")
def list_principals(format: FormatOption = Format.TABLE) -> None:  # noqa: A002
    """Every credential issued, revoked or not, oldest first: id, role, State, label, when
    issued and whether revoked; never a token or its hash. Find the id to revoke here."""
    with command_application(mode=OpenMode.READ_ONLY) as application:
        credentials = application.credentials(CONSOLE)
    rows: list[dict[str, Any]] = [
        {
            "id": str(c.id),
            "role": str(c.role),
            "state": c.state,
            "label": c.label,
            "issued_at": c.created_on.isoformat(),
            "revoked": c.revoked,
            # A credential's one later event is its revocation.
            "revoked_at": c.modified_on.isoformat() if c.revoked else None,
        }
        for c in credentials
    ]
    if format is Format.JSON:
        _print_json(rows)
        return
    table = Table(title=f"Credentials: {len(rows)}, {sum(r['revoked'] for r in rows)} revoked")
    table.add_column("id", min_width=36, overflow="fold")
    for column in ("role", "state", "label", "issued at", "revoked"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["role"],
            r["state"] or "-",
            r["label"],
            r["issued_at"][:19].replace("T", " "),
            f"revoked {r['revoked_at'][:10]}" if r["revoked_at"] else "no",
        )
    out.print(table, markup=False, highlight=False, crop=False)  # never cut an id or label


def _register_commands() -> None:
    from api import cli_audit, cli_serve

    cli_serve.register(app)
    cli_audit.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


from api import cli_review  # noqa: E402  (it uses the helpers above)

cli_review.register(app)
