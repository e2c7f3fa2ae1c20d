"""``pocdir simulate``: load a simulated record (``simulation``) through the real commands."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from api.cli.commands.delivery import enable_delivery
from api.cli.console import out, progress, table
from api.cli.errors import exit_on_error, fail
from api.cli.session import open_application, settings
from domain.check import challenge_code
from domain.clock import SimulatedClock
from domain.errors import PocdirError
from infra.settings import Settings
from infra.wiring import build_delivery_worker, delivery_key


def simulate(
    states: Annotated[
        int, typer.Option(metavar="COUNT", help="How many member States take part.")
    ] = 193,
    days: Annotated[int, typer.Option(metavar="DAYS", help="How many days to simulate.")] = 365,
    seed: Annotated[
        int,
        typer.Option(metavar="SEED", help="Random seed; the same seed writes the same record."),
    ] = 1,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the record already holds events.")
    ] = False,
) -> None:
    """Drive the application through its real commands over simulated time."""
    from simulation.simulator import DEFAULT_START, Simulator, seeded_ids

    clock = SimulatedClock(DEFAULT_START)
    application = open_application(clock, new_id=seeded_ids(seed))
    try:
        with exit_on_error():
            existing = application.recorder.max_notification_id() or 0
            if existing:
                if if_empty:
                    out.print(
                        f"the record already holds events (head at {existing}); not simulating"
                    )
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
            deliver = code_for = None
            config = settings()
            key = delivery_key(config)
            if key is not None:
                # Delivery is enabled first, so the simulated year's alerts are all sent
                # (to POCDIR_OUTBOX_DIR unless POCDIR_SMTP_HOST is set).
                enable_delivery(application)
                worker = build_delivery_worker(application, config, key)
                deliver = worker.run_until_idle
                code_for = partial(challenge_code, worker.secret)
                out.print(f"delivering alerts to {_destination(config)}", highlight=False)
            try:
                simulator = Simulator(
                    application,
                    clock,
                    states=states,
                    days=days,
                    seed=seed,
                    deliver=deliver,
                    code_for=code_for,
                )
            except ValueError as e:
                fail(str(e))
            with progress() as bar:
                task = bar.add_task(f"simulating {states} States", total=days)
                try:
                    report = simulator.run(on_day=lambda d: bar.update(task, completed=d))
                except PocdirError as e:  # a simulator bug: it only issues valid commands
                    fail(f"simulation stopped: {type(e).__name__}: {e}", 1)
    finally:
        application.close()
    commands = table(
        f"Simulated {days} days, {states} States, seed {seed}", "command", "count",
        right=("count",),
    )  # fmt: skip
    for name, count in sorted(report.commands.items()):
        commands.add_row(name, str(count))
    commands.add_row("[bold]total[/bold]", f"[bold]{report.total}[/bold]")
    out.print(commands)


def _destination(config: Settings) -> str:
    if config.smtp_host is not None:
        return f"the mail server {config.smtp_host}:{config.smtp_port}"
    return f"files in {config.outbox_dir}/"


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the ``pocdir`` app."""
    app.command()(simulate)
