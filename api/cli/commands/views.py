"""``pocdir replay``: rebuild the views from the record."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.console import out, progress
from api.cli.errors import exit_on_error
from api.cli.session import open_application, settings
from infra.follower import LeaseKeeper
from infra.lease import build_lease
from infra.wiring import build_view_runner, build_views
from projections.runner import REBUILD_BATCH


def replay(
    batch: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="EVENTS",
            help="Events per transaction (more: faster, and more memory).",
        ),
    ] = REBUILD_BATCH,
) -> None:
    """Rebuild every view from the record into a copy, then swap it in; a replay that fails
    leaves the views as they were. It holds the projection runner's lease throughout, so no
    server projects meanwhile; while a server holds it, replay refuses (exit 2): stop the
    servers of this record first."""
    config = settings()
    application = open_application()
    try:
        with exit_on_error():
            view = build_views(application, config)
            runner = build_view_runner(application, view, config)
            total = application.recorder.max_notification_id() or 0
            lease = build_lease(application.recorder, config)
            with LeaseKeeper(lease, config.runner_lease_seconds), progress() as bar:
                task = bar.add_task("rebuilding views", total=total)
                count = runner.rebuild(
                    batch, on_progress=lambda pos: bar.update(task, completed=pos)
                )
    finally:
        application.close()
    out.print(f"views rebuilt from {count} events")


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the ``pocdir`` app."""
    app.command()(replay)
