"""``pocdir witness``: run a C2SP tlog-witness for a State or a regional organisation.

The witness keeps its key and its state in its own directory (``infra.witness``), never in
the operator's database; ``docs/witness.md`` says how to run one.

Exit codes: 0 success; 1 ``forks`` found evidence of a fork not yet cleared; 2 bad input (one
line saying what to fix).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from api.cli.console import out
from api.cli.errors import EXIT_INVALID_RECORD, fail
from infra.note import KeyFormatError, VerifierKey
from infra.witness import Evidence, Witness, WitnessRefusal, WitnessSetupError

witness_app = typer.Typer(
    help="A C2SP tlog-witness: cosigns a log's checkpoints along one consistent history.",
    no_args_is_help=True,
)

DirectoryArgument = Annotated[
    Path, typer.Argument(metavar="DIR", help="the witness's directory (its key and state)")
]


def _open(directory: Path) -> Witness:
    try:
        return Witness.open(directory)
    except (WitnessSetupError, WitnessRefusal) as e:
        fail(str(e))


@witness_app.command("init")
def witness_init(
    directory: DirectoryArgument,
    name: Annotated[
        str,
        typer.Option(metavar="NAME", help="the witness's name, e.g. witness.example.org/fra"),
    ],
) -> None:
    """Create a witness in DIR (key file mode 0600, state) and print its vkey.
    Give the vkey to the logs it witnesses and to the verifiers that count it."""
    try:
        witness = Witness.init(directory, name)
    except (WitnessSetupError, WitnessRefusal) as e:
        fail(str(e))
    out.print(str(witness.verifier), highlight=False, soft_wrap=True)


@witness_app.command("key")
def witness_key(directory: DirectoryArgument) -> None:
    """Print the witness's verifier key (vkey, cosignature/v1 type 0x04)."""
    out.print(str(_open(directory).verifier), highlight=False, soft_wrap=True)


@witness_app.command("add-log")
def witness_add_log(
    directory: DirectoryArgument,
    origin: Annotated[str, typer.Option(metavar="ORIGIN", help="the log's checkpoint origin line")],
    key: Annotated[
        list[str],
        typer.Option(
            metavar="LOG_VKEY",
            help="a verifier key of the log (name+keyid+base64, type 0x01); repeatable",
        ),
    ],
) -> None:
    """Witness the log ORIGIN, signed by any of the keys given (--key, repeatable).
    Keys are added to those it has; a new log starts at size 0."""
    witness = _open(directory)
    try:
        keys = [VerifierKey.parse(k) for k in key]
        state = witness.add_log(origin, keys, int(time.time()))
    except (KeyFormatError, WitnessSetupError, WitnessRefusal) as e:
        fail(str(e))
    out.print(
        f"witnessing {state.origin} at size {state.tree_size} with {len(state.keys)} key(s)",
        highlight=False,
        soft_wrap=True,
    )


@witness_app.command("serve")
def witness_serve(
    directory: DirectoryArgument,
    host: Annotated[str, typer.Option(metavar="HOST", help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port")] = 8101,
) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness), GET /forks and GET /health.
    Plain HTTP only on loopback or behind a TLS proxy; TLS as `pocdir serve` (POCDIR_TLS_*)."""
    import uvicorn

    from api.cli.commands.serve import _check_channel
    from api.cli.session import settings
    from api.witness_app import create_witness_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    tls_options = _check_channel(settings(), host)
    witness = _open(directory)
    try:
        app = create_witness_app(directory)
    except (WitnessSetupError, WitnessRefusal) as e:
        fail(str(e))
    logging.getLogger("pocdir.witness").info("witness %s serves on port %d", witness.verifier, port)
    uvicorn.run(app, host=host, port=port, log_level="info", **tls_options)


def _describe(e: Evidence) -> str:
    state = f"cleared {e.cleared_at}" if e.cleared else "NOT CLEARED"
    role = "fork" if e.marks_fork else "note (not a fork)"
    return (
        f"#{e.id} {e.origin}: {e.kind} {role}, {state}, detected {e.detected_at}\n"
        f"  {e.reason} (expected {e.expected}, computed {e.computed})\n"
        f"  old size {e.old_size}, proof of {len(e.proof)} hash(es)\n"
        f"  held checkpoint:\n{_indent(e.held_note)}"
        f"  submitted checkpoint:\n{_indent(e.submitted_note)}"
    )


def _indent(note: str) -> str:
    return "".join(f"    {line}\n" for line in note.splitlines()) or "    (none)\n"


@witness_app.command("forks")
def witness_forks(
    directory: DirectoryArgument,
    origin: Annotated[
        str | None, typer.Option(metavar="ORIGIN", help="only this log's evidence")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, as GET /forks answers")] = False,
) -> None:
    """Show the fork evidence and rollback notes the witness kept.
    Exit 1 if a fork is not cleared (the witness refuses that log), else 0."""
    witness = _open(directory)
    try:
        found = witness.evidence(origin)
    except WitnessRefusal as e:
        fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps([f.to_json() for f in found], indent=2) + "\n")
    elif not found:
        out.print("no evidence kept", highlight=False)
    else:
        for f in found:
            out.print(_describe(f), highlight=False, markup=False, soft_wrap=True, end="")
    if any(f.marks_fork and not f.cleared for f in found):
        raise typer.Exit(EXIT_INVALID_RECORD)


@witness_app.command("clear")
def witness_clear(
    directory: DirectoryArgument,
    origin: Annotated[str, typer.Argument(metavar="ORIGIN", help="the log to clear")],
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="also forget the checkpoint held: the log starts over at size 0",
        ),
    ] = False,
) -> None:
    """Lift the refusal of a forked log, once you have judged its evidence.
    The evidence is kept, marked cleared, and the checkpoint held stays: the log goes on from
    it. With --reset the witness forgets that checkpoint and the log starts over at size 0."""
    witness = _open(directory)
    try:
        state = witness.clear(origin, int(time.time()), reset=reset)
    except (WitnessSetupError, WitnessRefusal) as e:
        fail(str(e))
    out.print(
        f"cleared {state.origin}: the witness holds size {state.tree_size} and cosigns again",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``witness`` to the ``pocdir`` app."""
    app.add_typer(witness_app, name="witness")
