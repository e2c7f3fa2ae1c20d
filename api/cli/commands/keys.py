"""``pocdir keys``: checkpoint signing keys, and the demo's cipher key."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from api.cli.console import out
from api.cli.errors import EXIT_UNAVAILABLE, exit_on_error, fail
from api.cli.session import settings, transparency
from infra.keycheck import ensure_key_file, judge_sqlite_record, key_check, move_aside, sqlite_file
from infra.note import SignerKey
from infra.wiring import OpenMode

keys_app = typer.Typer(help="Checkpoint signing keys (C2SP signed-note Ed25519).")


@keys_app.command("generate")
def keys_generate(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help="where to write the new key (must not exist)"),
    ],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="key name (default: POCDIR_ORIGIN)")
    ] = None,
) -> None:
    """Create an Ed25519 signing key file (mode 0600) and print its verifier key.
    Point POCDIR_SIGNING_KEY_FILE at it; keep it out of the repository."""
    with exit_on_error():
        key = SignerKey.generate(name or settings().origin)
        key.write_new(path)
    out.print(str(key.verifier), highlight=False, soft_wrap=True)


@keys_app.command("public")
def keys_public(
    all_keys: Annotated[
        bool, typer.Option("--all", help="every key that ever signed a checkpoint (from the DB)")
    ] = False,
) -> None:
    """Print the verifier key of POCDIR_SIGNING_KEY_FILE (name+keyid+base64key)."""
    config = settings()
    if all_keys:
        with transparency(OpenMode.READ_ONLY) as (_, service):
            keys = service.verifier_keys()
        for key in keys:
            out.print(key, highlight=False, soft_wrap=True)
        return
    if config.signing_key_file is None:
        fail("POCDIR_SIGNING_KEY_FILE is not set")
    with exit_on_error():
        verifier = SignerKey.load(config.signing_key_file).verifier
    out.print(str(verifier), highlight=False, soft_wrap=True)


@keys_app.command("cipher-init")
def keys_cipher_init(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="the key file (created once, mode 0600)")
    ],
) -> None:
    """For `make run`: create a cipher key in PATH once (never printed), and move aside a
    SQLite record at POCDIR_DATABASE_URL that is not encrypted (from an older demo), so
    that the demo never mixes a plaintext record with an encrypted one."""
    config = settings()
    with exit_on_error():
        key, created = ensure_key_file(path)
    if created:
        out.print(f"created a demo cipher key in {path} (mode 0600, git-ignored)", soft_wrap=True)
    else:
        out.print(f"using the demo cipher key in {path}", soft_wrap=True)
    keyed = replace(config, cipher_key=key)
    database = sqlite_file(config)
    if database is None:
        return
    try:
        record = judge_sqlite_record(database, keyed)
    except sqlite3.Error as e:
        fail(f"cannot read {database}: {e}", EXIT_UNAVAILABLE)
    if record is None or record == key_check(keyed):
        return
    if record.encrypted:
        fail(f"{database} is encrypted with another key than {path}'s: move it aside yourself")
    aside = move_aside(database, "plaintext")
    out.print(
        f"{database} held a record without encryption (from an older demo): moved it to "
        f"{aside}; the demo starts an encrypted record",
        soft_wrap=True,
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``keys`` to the ``pocdir`` app."""
    app.add_typer(keys_app, name="keys", no_args_is_help=True)
