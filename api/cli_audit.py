"""``pocdir`` commands for auditors: checkpoints, keys, proofs and the offline audit bundle.

Registered on the main app by ``api.cli`` (``register``); same exit codes: 0 success; 1 the
record, a proof, a checkpoint or a bundle failed verification (the reason, expected and
computed values on stderr); 2 bad input or settings; 3 the database could not be reached;
4 no such checkpoint, leaf or event.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn
from uuid import UUID

import typer
from eventsourcing.persistence import OperationalError, PersistenceError

from api.cli import (
    EXIT_INVALID_RECORD,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    _progress,
    _settings,
    bounded,
    err,
    fail,
    fail_if_empty,
    open_application,
    out,
)
from domain.application import PocDirectory
from domain.values import parse_uuid
from infra.audit import export_bundle, verify_against_checkpoint, verify_bundle
from infra.chain import VerificationError
from infra.keycheck import ensure_key_file, judge_sqlite_record, key_check, move_aside, sqlite_file
from infra.merkle import AuditError, ProofRequestInvalid
from infra.note import KeyFormatError, SignerKey, VerifierKey
from infra.settings import SettingsError
from infra.transparency import NotRecorded, SigningKeyMissing, Transparency
from infra.wiring import OpenMode, build_transparency

keys_app = typer.Typer(help="Checkpoint signing keys (C2SP signed-note Ed25519).")
proof_app = typer.Typer(help="Merkle proofs (RFC 9162) as JSON, hashes in base64.")
audit_app = typer.Typer(help="The offline audit bundle.")


def register(app: typer.Typer) -> None:
    """Add the auditing commands to the ``pocdir`` app."""
    app.command()(checkpoint)
    app.add_typer(keys_app, name="keys", no_args_is_help=True)
    app.add_typer(proof_app, name="proof", no_args_is_help=True)
    app.add_typer(audit_app, name="audit", no_args_is_help=True)


def failed(e: AuditError | VerificationError) -> NoReturn:
    where = f" at position {e.position}" if isinstance(e, VerificationError) else ""
    err.print(f"verification FAILED{where}: {e.reason}", markup=False, highlight=False)
    err.print(f"  expected: {e.expected}", markup=False, highlight=False)
    err.print(f"  computed: {e.computed}", markup=False, highlight=False)
    raise typer.Exit(EXIT_INVALID_RECORD)


@contextmanager
def transparency(
    mode: OpenMode = OpenMode.EXISTING,
) -> Iterator[tuple[PocDirectory, Transparency]]:
    """The record and its transparency service, with the CLI's error mapping. ``mode``: a
    command that only reads opens an existing record (``READ_ONLY``: without even the
    tree's tables); ``checkpoint`` may create one."""
    settings = _settings()
    application = open_application(mode=mode, needs_key=False)  # stored bytes only
    try:
        yield (
            application,
            build_transparency(application, settings, read_only=mode is OpenMode.READ_ONLY),
        )
    except (OperationalError, PersistenceError) as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    except ProofRequestInvalid as e:
        fail(str(e))
    except NotRecorded as e:
        fail(str(e), EXIT_NOT_FOUND)
    except (SigningKeyMissing, KeyFormatError) as e:
        fail(str(e))
    except (AuditError, VerificationError) as e:
        failed(e)
    finally:
        application.close()


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def checkpoint() -> None:
    """Bring the Merkle tree up to date, sign a checkpoint, record it and print the note."""
    with transparency(OpenMode.CREATE) as (_, service):
        view = service.record_checkpoint()
    sys.stdout.write(view.note)


@keys_app.command("generate")
def keys_generate(
    path: Annotated[Path, typer.Argument(help="where to write the new key (must not exist)")],
    name: Annotated[str | None, typer.Option(help="key name (default: POCDIR_ORIGIN)")] = None,
) -> None:
    """Create an Ed25519 signing key file (mode 0600) and print its verifier key.
    Point POCDIR_SIGNING_KEY_FILE at it; keep it out of the repository."""
    try:
        key = SignerKey.generate(name or _settings().origin)
        key.write_new(path)
    except KeyFormatError as e:
        fail(str(e))
    out.print(str(key.verifier), highlight=False, soft_wrap=True)


@keys_app.command("public")
def keys_public(
    all_keys: Annotated[
        bool, typer.Option("--all", help="every key that ever signed a checkpoint (from the DB)")
    ] = False,
) -> None:
    """Print the verifier key of POCDIR_SIGNING_KEY_FILE (name+keyid+base64key)."""
    settings = _settings()
    if all_keys:
        with transparency(OpenMode.READ_ONLY) as (_, service):
            keys = service.verifier_keys()
        for key in keys:
            out.print(key, highlight=False, soft_wrap=True)
        return
    if settings.signing_key_file is None:
        fail("POCDIR_SIGNING_KEY_FILE is not set")
    try:
        out.print(
            str(SignerKey.load(settings.signing_key_file).verifier), highlight=False, soft_wrap=True
        )
    except KeyFormatError as e:
        fail(str(e))


@proof_app.command("inclusion")
def proof_inclusion(
    index: Annotated[
        int | None, typer.Argument(help="leaf index: 0 is the first stored event")
    ] = None,
    size: Annotated[int | None, typer.Option(help="tree size (default: the whole record)")] = None,
    aggregate: Annotated[
        str | None, typer.Option(help="instead of INDEX: an aggregate id (with --version)")
    ] = None,
    version: Annotated[int | None, typer.Option(help="the aggregate's version")] = None,
) -> None:
    """Inclusion proof of one event in the tree, as JSON."""
    index, size = bounded(index, "INDEX"), bounded(size, "--size", 1)
    version = bounded(version, "--version", 1)
    target: tuple[UUID, int] | None = None
    if aggregate is not None or version is not None:
        if aggregate is None or version is None or index is not None:
            fail("give either INDEX or both --aggregate and --version")
        try:
            target = (parse_uuid(aggregate), version)
        except ValueError:
            fail(f"--aggregate must be a UUID, not {aggregate[:40]!r}")
    elif index is None:
        fail("give INDEX, or --aggregate and --version")
    with transparency() as (_, service):
        if target is not None:
            proof = service.inclusion_proof_for(*target, size=size)
        else:
            proof = service.inclusion_proof(index or 0, size)
        proof.verify()
    _print_json(proof.to_json())


@proof_app.command("consistency")
def proof_consistency(
    first: Annotated[int, typer.Argument(help="the earlier tree size")],
    second: Annotated[int, typer.Argument(help="the later tree size")],
) -> None:
    """Consistency proof between two tree sizes, as JSON."""
    first, second = bounded(first, "FIRST", 1), bounded(second, "SECOND", 1)
    with transparency() as (_, service):
        proof = service.consistency_proof(first, second)
        proof.verify()
    _print_json(proof.to_json())


def _trusted_keys(keys: list[str] | None) -> list[VerifierKey]:
    try:
        return [VerifierKey.parse(k) for k in keys or []]
    except KeyFormatError as e:
        fail(f"--key: {e}")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        fail(f"cannot read {what} {path}: {e}")


KeyOption = Annotated[
    list[str] | None,
    typer.Option("--key", help="a trusted verifier key (name+keyid+base64key); repeat for several"),
]


def verify_checkpoint(checkpoint_file: Path, keys: list[str] | None) -> None:
    """``pocdir verify --checkpoint FILE``: the whole chain, then the checkpoint against it."""
    note = _read_text(checkpoint_file, "checkpoint")
    trusted = _trusted_keys(keys)
    with transparency(OpenMode.READ_ONLY) as (application, service):
        fail_if_empty(application)
        keys_used = trusted or service.trusted_keys()
        total = application.recorder.max_notification_id() or 0
        with _progress() as progress:
            task = progress.add_task("verifying", total=total)
            result = verify_against_checkpoint(
                application,
                service,
                note,
                keys_used,
                on_progress=lambda pos: progress.update(task, completed=pos),
            )
    size = result.checkpoint.checkpoint.tree_size
    out.print(f"record intact: {result.events} events checked", highlight=False)
    out.print(f"head position: {result.head_position}", highlight=False)
    out.print(f"head hash:     {result.head_hash}", highlight=False)
    out.print(
        f"checkpoint of {size} events verified: signed by "
        f"{', '.join(k.name for k in result.checkpoint.signed_by)}"
        f"{'' if trusted else ' (key from the database; pass --key to pin it)'}; "
        "the record extends it",
        highlight=False,
    )


@audit_app.command("export")
def audit_export(
    directory: Annotated[Path, typer.Argument(help="a new or empty directory")],
) -> None:
    """Write the offline audit bundle: records, checkpoints, keys and a manifest."""
    with transparency(OpenMode.READ_ONLY) as (application, service):
        fail_if_empty(application)
        try:
            summary = export_bundle(application, service, directory)
        except (FileExistsError, OSError) as e:
            fail(str(e))
    out.print(
        f"bundle written to {summary.directory}: {summary.records} records, "
        f"{summary.checkpoints} checkpoints, {summary.keys} keys",
        highlight=False,
    )


@audit_app.command("verify")
def audit_verify(
    directory: Annotated[Path, typer.Argument(help="a bundle written by pocdir audit export")],
    key: KeyOption = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="a checkpoint kept outside the bundle; repeat for several"),
    ] = None,
) -> None:
    """Verify a bundle with no database and no settings: signatures, every link, the Merkle
    root at every checkpoint, the manifest."""
    trusted = _trusted_keys(key)
    notes = [_read_text(p, "checkpoint") for p in checkpoint or []]
    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    try:
        result = verify_bundle(directory, trusted, notes)
    except (AuditError, VerificationError) as e:
        failed(e)
    except OSError as e:
        fail(f"cannot read the bundle: {e}")
    if result.records == 0:  # like an empty record: nothing was verified
        fail("the bundle is empty: no records")
    out.print(f"bundle intact: {result.records} records checked", highlight=False)
    out.print(f"head position: {result.head_position}", highlight=False)
    out.print(f"head hash:     {result.head_hash}", highlight=False)
    out.print(
        f"Merkle root of {result.tree_size} leaves matches all {result.checkpoints} checkpoints"
        f"{' (keys from the bundle; pass --key to pin them)' if result.keys_from_bundle else ''}",
        highlight=False,
    )


__all__ = ["register", "verify_checkpoint", "KeyOption", "EXIT_USAGE"]


@keys_app.command("cipher-init")
def keys_cipher_init(
    path: Annotated[Path, typer.Argument(help="the key file (created once, mode 0600)")],
) -> None:
    """For `make run`: create a cipher key in PATH once (never printed), and move aside a
    SQLite record at POCDIR_DATABASE_URL that is not encrypted (from an older demo), so
    that the demo never mixes a plaintext record with an encrypted one."""
    settings = _settings()
    try:
        key, created = ensure_key_file(path)
    except SettingsError as e:
        fail(str(e))
    if created:
        out.print(f"created a demo cipher key in {path} (mode 0600, git-ignored)", soft_wrap=True)
    else:
        out.print(f"using the demo cipher key in {path}", soft_wrap=True)
    keyed = replace(settings, cipher_key=key)
    database = sqlite_file(settings)
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
