"""``pocdir --help`` as a new user reads it: every option and argument says what it is for,
in words and metavars a person reads (``DATE``, ``STATE``), never a Python type (``<bool>``,
``<list[str]>``); and ``pocdir --version`` says which pocdir this is."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stdout
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from api.cli.main import command
from tests.support.cli import POCDIR


def commands(
    cmd: Any, ctx: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """Every command of the tree under ``cmd``, with its context and its words after pocdir."""
    yield path, cmd, ctx
    if isinstance(cmd, TyperGroup):
        for name, sub in cmd.commands.items():
            yield from commands(sub, typer.Context(sub, info_name=name, parent=ctx), (*path, name))


def test_every_option_and_argument_has_help_and_a_metavar_a_person_reads() -> None:
    root = command()
    seen = 0
    for path, cmd, ctx in commands(root, typer.Context(root, info_name="pocdir")):
        for param in cmd.get_params(ctx):
            where = f"pocdir {' '.join(path)} {param.name}"
            assert (getattr(param, "help", None) or "").strip(), f"{where} has no help text"
            shown = param.display_type_rich(ctx=ctx) or ""
            assert "<" not in shown and "[" not in shown, f"{where} shows {shown!r}"
            if getattr(param, "is_flag", False):
                assert shown == "", f"the flag {where} shows a metavar {shown!r}"
            seen += 1
    assert seen > 60  # the walk reached the subcommands


def test_the_rendered_help_of_every_command_shows_no_python_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    root = command()
    for path, _, _ in commands(root, typer.Context(root, info_name="pocdir")):
        shown = io.StringIO()
        with redirect_stdout(shown), pytest.raises(SystemExit) as done:
            root.main([*path, "--help"], prog_name="pocdir")
        assert done.value.code == 0, (path, shown.getvalue())
        assert "Show this message and exit." in shown.getvalue()
        for python in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list[", "<table|"):
            assert python not in shown.getvalue(), (path, shown.getvalue())


def test_version_prints_the_installed_version_and_exits_zero() -> None:
    result = subprocess.run(
        [*POCDIR, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pocdir {version('pocdir')}"
