"""The ``pocdir`` command line.

Exit codes: 0 success; 1 the record failed verification; 2 bad input or settings (one line on
stderr saying what to fix); 3 the database could not be reached.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
from eventsourcing.persistence import OperationalError, PersistenceError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import PocdirError
from infra.chain import VerificationError
from infra.settings import Settings, SettingsError
from infra.verify import chained_recorder, verify_record
from infra.wiring import build_application

app = typer.Typer(
    help="pocdir: the Points of Contact directory's hash-chained record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

EXIT_INVALID_RECORD = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def open_application(clock: SimulatedClock | None = None, **kwargs: object) -> PocDirectory:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        fail(str(e))
    try:
        return build_application(settings, clock=clock, **kwargs)  # type: ignore[arg-type]
    except (OperationalError, PersistenceError) as e:
        fail(f"cannot open the database: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)


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
def verify() -> None:
    """Walk the whole chain from genesis and check every event and link."""
    application = open_application()
    try:
        total = application.recorder.max_notification_id() or 0
        chained_recorder(application)
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
        try:
            simulator = Simulator(application, clock, states=states, days=days, seed=seed)
        except ValueError as e:
            fail(str(e))
        with _progress() as progress:
            task = progress.add_task(f"simulating {states} States", total=days)
            report = simulator.run(on_day=lambda d: progress.update(task, completed=d))
    except PocdirError as e:  # a simulator bug: the simulator only issues valid commands
        fail(f"simulation stopped: {type(e).__name__}: {e}", 1)
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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
