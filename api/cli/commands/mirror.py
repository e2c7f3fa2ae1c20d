"""``pocdir mirror URL DIR``: keep a verified copy of the record that survives the operator
(issue 16, item 5; ``infra.mirror``, docs/audit-format.md §19). Shared here with ``pocdir monitor``
and ``pocdir audit verify``: reading the policy and the token, and the one line for a fault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from api.cli.console import out
from api.cli.errors import EXIT_INVALID_RECORD, fail, failed_verification
from infra.chain import VerificationError
from infra.merkle import AuditError
from infra.mirror import (
    ALL_STATEMENTS,
    ClientTls,
    MirrorDirectoryInvalid,
    MirrorInvalid,
    MirrorResult,
    SourceUnavailable,
    check_scope,
    mirror,
)
from infra.witness_policy import Policy, PolicyInvalid

PolicyOption = Annotated[
    Path,
    typer.Option(
        metavar="FILE",
        help="your witness policy (log key, witnesses, quorum): the checkpoint must meet it",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="a file holding the bearer token (an auditor's or a State's); never on the "
        "command line",
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option("--ca", metavar="FILE", help="PEM certificate of the CA the server's TLS uses"),
]
ClientCertOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="your client certificate (PEM), for a server that requires one (mTLS)",
    ),
]
ClientKeyOption = Annotated[
    Path | None,
    typer.Option(metavar="FILE", help="the private key of --client-cert (PEM)"),
]


def client_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ClientTls:
    """The TLS options as one value; a key without its certificate is bad usage (exit 2)."""
    if key is not None and cert is None:
        fail("--client-key needs --client-cert")
    return ClientTls(ca, cert, key)


def load_policy(path: Path) -> Policy:
    """The policy file, or exit 2 saying what is wrong with it."""
    try:
        return Policy.load(path)
    except PolicyInvalid as e:
        fail(f"--policy: {e}")


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (surrounding whitespace removed), or exit 2."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as e:
        fail(f"cannot read the token file {path}: {e}")
    if not token:
        fail(f"the token file {path} is empty")
    return token


def failed(e: AuditError) -> NoReturn:
    """A verification failure, in one line: reason, expected, computed; exit 1."""
    fail(
        f"verification FAILED: {e.reason} (expected {e.expected}, computed {e.computed})",
        EXIT_INVALID_RECORD,
    )


@contextmanager
def reading_mirror() -> Iterator[None]:
    """Reading a mirror offline, its faults as exit codes: 1 and one line for a record that
    does not verify, 2 for a directory that is not a mirror or cannot be read."""
    try:
        yield
    except AuditError as e:
        failed(e)
    except VerificationError as e:
        failed_verification(e)
    except MirrorDirectoryInvalid as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot read the mirror: {e}")


def run_mirror(  # noqa: PLR0913
    url: str,
    directory: Path,
    policy: Policy,
    token: str | None,
    tls: ClientTls,
    scope: str | None = None,
) -> MirrorResult:
    """``infra.mirror.mirror``, its errors turned into exit codes: 1 for a record that
    does not verify (or statements of another scope than ``scope``), 2 for a source or
    directory that cannot be used."""
    if scope is not None:
        try:
            check_scope(scope, "--scope")
        except MirrorInvalid as e:
            fail(f"{e.reason}: give {e.expected}")
    try:
        return mirror(url, directory, policy, token=token, tls=tls, scope=scope)
    except AuditError as e:
        failed(e)
    except (SourceUnavailable, MirrorDirectoryInvalid) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write the mirror in {directory}: {e}")


def summary(result: MirrorResult) -> str:
    cosigners = ", ".join(sorted(result.checkpoint.cosigned_by)) or "no witness"
    was = f" (was {result.previous_size})" if result.previous_size else " (new mirror)"
    scope = "" if result.scope == ALL_STATEMENTS else f" (scope {result.scope})"
    return (
        f"mirror {result.directory}: tree size {result.tree_size}{was}, "
        f"{len(result.fetched)} tiles fetched, {result.bytes_fetched} bytes, "
        f"{result.statements_fetched} statements{scope}; cosigned by {cosigners} "
        f"(quorum {result.checkpoint.quorum})"
    )


def mirror_command(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL", help="the server (https://host:port) or a tlog-tiles directory"
        ),
    ],
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="the mirror: a new or empty directory, or one")
    ],
    policy: PolicyOption,
    token_file: TokenFileOption = None,
    ca: CaOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    scope: Annotated[
        str | None,
        typer.Option(
            metavar="SCOPE",
            help='the statements you expect: "all" (an auditor\'s token) or "state:XXX" '
            "(State XXX's); another scope from the source is a verification failure",
        ),
    ] = None,
) -> None:
    """Fetch the new tiles, entries and statements; keep them only once every entry, the
    tree and the cosigned checkpoint verify."""
    tls = client_tls(ca, client_cert, client_key)
    result = run_mirror(url, directory, load_policy(policy), read_token(token_file), tls, scope)
    out.print(summary(result), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("mirror")(mirror_command)
