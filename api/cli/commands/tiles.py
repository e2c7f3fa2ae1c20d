"""``pocdir tiles write DIR``: the record as a static C2SP ``tlog-tiles`` log in a directory
(``infra.tile_reader.write_tiles``), for member States, auditors and witnesses to be sent or
served from wherever they authenticate."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer

from api.cli.console import out
from api.cli.errors import fail
from api.cli.session import transparency
from infra.tile_reader import TileReader, served_checkpoint, write_tiles
from infra.transparency import SigningKeyMissing
from infra.wiring import OpenMode

tiles_app = typer.Typer(help="The record as static C2SP tlog-tiles (tiles, entry bundles).")


@tiles_app.command("write")
def write(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="where to write (created if missing)")
    ],
) -> None:
    """Bring the tree up to date, sign and record a checkpoint (with POCDIR_SIGNING_KEY_FILE;
    without it, the latest recorded one is used), and write the checkpoint and every tile
    and entry bundle of its tree size to DIR. Files already there are kept."""
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} exists and is not a directory")
    with transparency(OpenMode.EXISTING) as (application, service):
        with suppress(SigningKeyMissing):  # without a key, the latest recorded checkpoint
            service.record_checkpoint()
        checkpoint = served_checkpoint(service)
        try:
            summary = write_tiles(directory, TileReader(service, application.recorder), checkpoint)
        except OSError as e:
            fail(f"cannot write {directory}: {e.strerror or e}")
    out.print(f"{directory}: {summary.line()}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``pocdir tiles`` to the ``pocdir`` app."""
    app.add_typer(tiles_app, name="tiles", no_args_is_help=True)
