"""The one place where the CLI turns an error into one line on stderr and an exit code.

Exit codes: 0 success; 1 the record, a proof, a checkpoint or a bundle failed verification
(the reason, expected and computed values on stderr); 2 bad input or settings (one line
saying what to fix); 3 the database could not be reached; 4 no such entry, check, credential,
checkpoint, leaf or event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import NoReturn

import typer
from eventsourcing.persistence import OperationalError, PersistenceError

from api.cli.console import err
from domain.errors import NotFound, PocdirError
from infra.ca import CaError
from infra.chain import VerificationError
from infra.follower import ViewsBehind
from infra.lease import LEASE_ERRORS, LeaseHeld
from infra.merkle import AuditError, ProofRequestInvalid
from infra.note import KeyFormatError
from infra.settings import SettingsError
from infra.transparency import NotRecorded, SigningKeyMissing
from infra.wiring import RecordMissing
from projections.runner import RebuildNotSwapped

EXIT_INVALID_RECORD = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4

#: What a command may meet when the database fails: the library's errors and those of the
#: runner lease's own connection.
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, PersistenceError, *LEASE_ERRORS)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Say what went wrong (and what to fix) in one line on stderr, and exit with ``code``."""
    err.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def failed_verification(e: AuditError | VerificationError) -> NoReturn:
    """A record, proof, checkpoint or bundle that does not verify: where, why, and the
    expected and computed values, then exit 1."""
    where = f" at position {e.position}" if isinstance(e, VerificationError) else ""
    err.print(f"verification FAILED{where}: {e.reason}", markup=False, highlight=False)
    err.print(f"  expected: {e.expected}", markup=False, highlight=False)
    err.print(f"  computed: {e.computed}", markup=False, highlight=False)
    raise typer.Exit(EXIT_INVALID_RECORD)


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


_RERUN_REPLAY = "the views are as they were: run `pocdir replay` again"

#: Each error a command may meet, in the order they are tried: its exit code and line.
#: Subclasses come before their bases (``NotFound`` before ``PocdirError``).
ERROR_LINES: list[tuple[tuple[type[Exception], ...], Callable[[Exception], tuple[int, str]]]] = [
    ((NotFound, NotRecorded), lambda e: (EXIT_NOT_FOUND, str(e))),
    (
        (
            PocdirError,
            SettingsError,
            RecordMissing,
            ProofRequestInvalid,
            SigningKeyMissing,
            KeyFormatError,
            CaError,
        ),
        lambda e: (EXIT_USAGE, str(e)),
    ),
    (
        (LeaseHeld,),
        lambda e: (
            EXIT_USAGE,
            "a server is projecting this record's views (it holds the runner lease); "
            "stop every `pocdir serve` of this record, then run `pocdir replay` again",
        ),
    ),
    (
        (ViewsBehind,),
        lambda e: (EXIT_UNAVAILABLE, f"{e}: a server's projection runner is catching up"),
    ),
    (
        (BrokenProcessPool,),
        lambda e: (
            EXIT_UNAVAILABLE,
            f"the process writing the rebuilt views stopped; {_RERUN_REPLAY}",
        ),
    ),
    ((RebuildNotSwapped,), lambda e: (EXIT_UNAVAILABLE, f"{e}; {_RERUN_REPLAY}")),
    (DATABASE_ERRORS, lambda e: (EXIT_UNAVAILABLE, f"database error: {_first_line(e)}")),
]

#: Every error ``exit_on_error`` turns into an exit code.
HANDLED: tuple[type[Exception], ...] = (
    AuditError,
    VerificationError,
    *(cls for classes, _ in ERROR_LINES for cls in classes),
)


def exit_code(e: Exception) -> tuple[int, str]:
    """The exit code and the one line for ``e``, one of the ``HANDLED`` errors."""
    for classes, line in ERROR_LINES:
        if isinstance(e, classes):
            return line(e)
    raise TypeError(f"no exit code for {type(e).__name__}")  # pragma: no cover


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Run a command's work; an error it raises ends the command with its exit code and
    one line (``ERROR_LINES``), or with the verification report (exit 1), never with a
    traceback."""
    try:
        yield
    except (AuditError, VerificationError) as e:
        failed_verification(e)
    except HANDLED as e:
        code, line = exit_code(e)
        fail(line, code)
