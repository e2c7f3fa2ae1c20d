"""The ``pocdir`` command line: the typer app, assembled from the command modules.

Exit codes (``api.cli.errors``): 0 success; 1 the record failed verification; 2 bad input or
settings (one line on stderr saying what to fix); 3 the database could not be reached; 4 no
such entry, check or credential.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from api.cli.commands import (
    audit,
    ca,
    checks,
    delivery,
    directory,
    keys,
    mirror,
    monitor,
    principals,
    review,
    serve,
    simulate,
    tiles,
    views,
    witness,
)
from api.cli.console import err, out

app = typer.Typer(
    help="pocdir: the Points of Contact directory's hash-chained record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def package_version() -> str:
    """The installed pocdir's version (from its metadata, so it is written in one place)."""
    try:
        return version("pocdir")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        out.print(f"pocdir {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print pocdir's version and exit.",
        ),
    ] = False,
) -> None:
    """pocdir: the Points of Contact directory's hash-chained record."""


for module in (
    audit,
    simulate,
    directory,
    views,
    principals,
    serve,
    ca,
    keys,
    checks,
    delivery,
    review,
    tiles,
    witness,
    mirror,
    monitor,
):
    module.register(app)


class _NamedArgument(TyperArgument):
    """An argument whose help shows its name (``CHECK_ID``) and no Python type (``<str>``,
    which typer's rich help puts beside every argument)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _human_help(command: Any, ctx: Any) -> None:
    """Help a person reads, for ``command`` and every command under it: flags (``--help``
    too) show no metavar where typer shows ``<bool>``, and arguments their name alone."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if isinstance(param, TyperArgument):
            param.__class__ = _NamedArgument
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            _human_help(sub, typer.Context(sub, info_name=name, parent=ctx))


def command() -> Any:
    """The ``pocdir`` click command, with help a person reads (``_human_help``)."""
    root = typer.main.get_command(app)
    _human_help(root, typer.Context(root, info_name="pocdir"))
    return root


def main() -> None:
    """Console-script entry point."""
    try:
        command()()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
