"""``pocdir keys``: checkpoint signing keys, the demo's cipher key, and binding a State's
public keys when the Secretariat onboards it (``bind``, ``reonboard``)."""

from __future__ import annotations

import base64
import binascii
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.cli.console import CONSOLE, out
from api.cli.errors import EXIT_UNAVAILABLE, exit_on_error, fail
from api.cli.options import IdempotencyOption
from api.cli.session import command_application, command_key, settings, transparency
from domain.state_keys import (
    ENCRYPTION_KEY_LENGTH,
    MAX_SIGNING_KEYS,
    EncryptionKey,
    SigningKey,
    StateKeys,
)
from infra.keycheck import ensure_key_file, judge_sqlite_record, key_check, move_aside, sqlite_file
from infra.note import SignerKey
from infra.wiring import OpenMode

keys_app = typer.Typer(
    help="Checkpoint signing keys (C2SP signed-note Ed25519), and States' public keys."
)

#: A public key file is small; anything larger is not one.
_MAX_KEY_FILE = 8192


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


StateOption = Annotated[
    str, typer.Option("--state", metavar="STATE", help="the State's ISO 3166-1 alpha-3 code")
]
EncryptionKeyOption = Annotated[
    Path,
    typer.Option(
        "--encryption-key",
        metavar="FILE",
        help=f"the State team's HPKE public key: its {ENCRYPTION_KEY_LENGTH} bytes "
        "(ML-KEM-768 then X25519, docs/e2e.md), raw or in base64",
    ),
]
SigningKeyOption = Annotated[
    list[Path],
    typer.Option(
        "--signing-key",
        metavar="FILE",
        help="an official's Ed25519 public key, PEM (-----BEGIN PUBLIC KEY-----); "
        f"once per official, at most {MAX_SIGNING_KEYS}",
    ),
]


def _read_key_file(path: Path, option: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as e:
        fail(f"{option} {path}: cannot read it ({e.strerror})")
    if len(data) > _MAX_KEY_FILE:
        fail(f"{option} {path}: larger than a public key file")
    return data


def _encryption_key(path: Path) -> EncryptionKey:
    """The raw key bytes, or their base64 text (one line)."""
    data = _read_key_file(path, "--encryption-key")
    if len(data) != ENCRYPTION_KEY_LENGTH:
        try:
            data = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            fail(f"--encryption-key {path}: neither {ENCRYPTION_KEY_LENGTH} raw bytes nor base64")
    with exit_on_error():
        return EncryptionKey.from_bytes(data)


def _signing_keys(paths: list[Path]) -> tuple[SigningKey, ...]:
    if not paths:
        fail("give each official's signing key with --signing-key FILE")
    if len(paths) > MAX_SIGNING_KEYS:
        fail(f"at most {MAX_SIGNING_KEYS} --signing-key")
    keys = []
    for path in paths:
        data = _read_key_file(path, "--signing-key")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            fail(f"--signing-key {path}: not a PEM public key (-----BEGIN PUBLIC KEY-----)")
        if not isinstance(key, Ed25519PublicKey):
            fail(f"--signing-key {path}: not an Ed25519 key but {type(key).__name__}")
        keys.append(SigningKey.from_bytes(key.public_bytes_raw()))
    if len({k.fingerprint for k in keys}) != len(keys):
        fail("the same signing key is given twice")
    return tuple(keys)


def _print_keys(keys: StateKeys, verb: str) -> None:
    """The fingerprints the State's mission confirms out of band (README, "State keys")."""
    current = keys.current
    out.print(f"{verb} {keys.state}'s keys (version {keys.version})", highlight=False)
    out.print(f"encryption key  {current.encryption_key.fingerprint}", highlight=False)
    for key in current.signing_keys:
        out.print(f"signing key     {key.fingerprint}", highlight=False)


@keys_app.command("bind")
def keys_bind(
    state: StateOption,
    encryption_key: EncryptionKeyOption,
    signing_key: SigningKeyOption,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Onboard a State: bind its first public keys in the record and print their
    fingerprints, for the State's mission to confirm out of band. Later changes are the
    State's own, signed with a key bound here."""
    encryption = _encryption_key(encryption_key)
    signing = _signing_keys(signing_key)
    args = [state, encryption.fingerprint, [k.fingerprint for k in signing]]
    with command_application() as application:
        key = command_key(application, CONSOLE, "keys bind", args, idempotency_key)
        if key is None:
            return
        keys = application.bind_state_keys(CONSOLE, state, encryption, signing, idempotency=key)
    _print_keys(keys, "bound")


@keys_app.command("reonboard")
def keys_reonboard(
    state: StateOption,
    encryption_key: EncryptionKeyOption,
    signing_key: SigningKeyOption,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Re-onboard a State that lost every key: replace all its keys with new ones. The
    record shows it as its own event (KeysReonboarded); confirm the new fingerprints with
    the State's mission out of band, as at the first binding."""
    encryption = _encryption_key(encryption_key)
    signing = _signing_keys(signing_key)
    args = [state, encryption.fingerprint, [k.fingerprint for k in signing]]
    with command_application() as application:
        key = command_key(application, CONSOLE, "keys reonboard", args, idempotency_key)
        if key is None:
            return
        keys = application.reonboard_state_keys(
            CONSOLE, state, encryption, signing, idempotency=key
        )
    _print_keys(keys, "re-onboarded")


def register(app: typer.Typer) -> None:
    """Add ``keys`` to the ``pocdir`` app."""
    app.add_typer(keys_app, name="keys", no_args_is_help=True)
