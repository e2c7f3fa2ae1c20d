"""The CLI's one console for output and one for errors, its one JSON printer, tables that
never cut an identifier or a contact detail, its progress bar, and the principal recorded on
what the operator's console does."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.schemas import public_json
from domain.values import Principal, Role

out = Console()
#: Errors are one line whatever the width, so scripts can read them (never wrapped).
err = Console(stderr=True, soft_wrap=True)

#: The operator's console on the server's host acts as the Secretariat (it onboards States,
#: issues credentials and runs communication checks); this is the principal recorded on what
#: it does when no official is named.
CONSOLE = Principal("console", Role.SECRETARIAT)


def secretariat(by: str | None = None) -> Principal:
    """The Secretariat official acting at the console: ``by`` when named (``--by``), else
    ``CONSOLE``."""
    return CONSOLE if by is None or by == CONSOLE.id else Principal(by, Role.SECRETARIAT)


def print_json(data: object) -> None:
    """``data`` as indented JSON on stdout, for machines: never wrapped or coloured, in the
    HTTP API's convention (``api.schemas.public_json``), so both interfaces answer alike."""
    shaped = public_json(data)
    sys.stdout.write(json.dumps(shaped, indent=2, ensure_ascii=False, default=str) + "\n")


def table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A table whose cells wrap, and fold a word longer than their width, but never cut:
    users come for the e-mails, phones and ids in them, whatever their terminal's width.
    ``right``: the columns of numbers, aligned right."""
    result = Table(title=title)
    for name in columns:
        result.add_column(
            name, overflow="fold", no_wrap=False, justify="right" if name in right else "left"
        )
    return result


def progress() -> Progress:
    """A progress bar on stderr that disappears when done, so stdout stays the result."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
