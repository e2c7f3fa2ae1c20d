"""Which key encrypts the record: a key check value kept beside the chain, never the key.

Why: AES-GCM under another key fails only when an event is decrypted, so a wrong, missing or
newly set ``POCDIR_CIPHER_KEY`` used to be found by a crash, after a command had already
written events that the right key cannot read. The record therefore remembers, in the table
``record_keys`` (outside the hash chain: the audit format is unchanged), the key check value
of the key that encrypts it, or that it has no key, and every process compares its own key
with it before it writes or decodes anything (``check_record_key``, from the composition
root), and again in the transaction of its first write (``KeyCheck``, in the recorders), so
two processes starting on an empty record with different keys cannot both write.

The key check value is ``HMAC-SHA256(key, "pocdir key check value")`` in hexadecimal. An
HMAC, rather than the classic encryption of a fixed block: it uses the key only as an HMAC
key with a label of its own, never as an AES-GCM key under a fixed nonce, and being a
pseudorandom function it tells nothing about the key beyond letting someone who already holds
a candidate key test it, which a 128-bit or longer random key makes useless.

The table has a row per key, ``(key_check_value, algorithm, check_method, added_at,
status)``, so that rotation can add keys later: exactly one row is ``active`` (the key new
events are written under); rotation would add the new key as ``active`` and mark the old one
``retired`` (still needed to read older events). This version writes and reads under the
active key only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Cipher
from eventsourcing.utils import Environment

from infra.settings import Settings, SettingsError

KEY_TABLE = "record_keys"
KCV_LABEL = b"pocdir key check value"
KCV_METHOD = "HMAC-SHA256(key, 'pocdir key check value')"
AES_GCM = "AES-GCM"
#: The key check value and algorithm of a record written without a key.
NO_KEY = "none"
ACTIVE = "active"


class CipherKeyMismatch(SettingsError):
    """``POCDIR_CIPHER_KEY`` is not the key of the record: the message says which of the
    three cases it is and what to do, and never contains a key."""


@dataclass(frozen=True)
class KeyCheck:
    """The key check value of the key in use (``NO_KEY`` without one) and its algorithm."""

    value: str
    algorithm: str

    @property
    def encrypted(self) -> bool:
        return self.algorithm != NO_KEY

    def row(self, added_at: str) -> tuple[str, str, str, str, str]:
        """The ``record_keys`` row that records this key as the record's active one."""
        return (self.value, self.algorithm, KCV_METHOD if self.encrypted else "", added_at, ACTIVE)

    def refuse(self, record: KeyCheck) -> CipherKeyMismatch:
        """Why this key cannot be used on a record whose active key is ``record``."""
        if record.encrypted and not self.encrypted:
            return CipherKeyMismatch(
                "the record is encrypted and POCDIR_CIPHER_KEY is not set: set it to the "
                "record's key"
            )
        if not record.encrypted:
            return CipherKeyMismatch(
                "the record is not encrypted but POCDIR_CIPHER_KEY is set: unset it (a key "
                "cannot be added to an existing record)"
            )
        return CipherKeyMismatch(
            "POCDIR_CIPHER_KEY is not the key that encrypts this record (its key check value "
            "differs): set it to the record's key"
        )


def key_check(settings: Settings) -> KeyCheck:
    """The key check of ``settings``' key (or of no key)."""
    if settings.cipher_key is None:
        return KeyCheck(NO_KEY, NO_KEY)
    key = base64.b64decode(settings.cipher_key)
    return KeyCheck(hmac.new(key, KCV_LABEL, hashlib.sha256).hexdigest(), AES_GCM)


def record_cipher(settings: Settings) -> Cipher | None:
    """The AES-GCM cipher the record's events are encrypted with (the library's
    ``AESCipher``, the one the application's mapper uses), or None without a key. For
    anything else stored in the record's database that must not be in clear (the views'
    documents; stored responses)."""
    if settings.cipher_key is None:
        return None
    return AESCipher(Environment(env={AESCipher.CIPHER_KEY: settings.cipher_key}))


def judge_first_event(state: bytes, settings: Settings) -> KeyCheck:
    """The key check of a record that has events but no ``record_keys`` row (written before
    the table existed), from its first stored event: JSON means no key; bytes that this
    key decrypts mean this key; anything else another key (reported as such)."""
    ours = key_check(settings)
    cipher = record_cipher(settings)
    if cipher is not None:
        try:
            cipher.decrypt(state)
        except ValueError:
            pass
        else:
            return ours
    try:
        json.loads(state)
    except ValueError:
        # Encrypted, and not with this key (or there is none).
        return KeyCheck("unknown", AES_GCM)
    return KeyCheck(NO_KEY, NO_KEY)


def check_record_key(recorder: Any, settings: Settings, *, needs_key: bool = True) -> None:
    """Refuse (``CipherKeyMismatch``) a key that is not the record's, a key on a plaintext
    record, and, when ``needs_key``, no key on an encrypted record. An empty record takes
    any key: its first write records it. Reads only, and creates nothing: a missing table
    is an empty or older record. Then arms the recorder to confirm the key in the
    transaction of its first write."""
    ours = key_check(settings)
    record: KeyCheck | None = recorder.active_key()
    if record is None:
        state = recorder.first_event_state()
        record = judge_first_event(state, settings) if state is not None else None
    tolerated = not needs_key and not ours.encrypted  # no key, for stored bytes only
    if record is not None and record != ours and not (tolerated and record.encrypted):
        raise ours.refuse(record)
    recorder.key_check = ours


# -- the demo's key (``pocdir keys cipher-init``, which ``make run`` calls) -------------------


def ensure_key_file(path: Path) -> tuple[str, bool]:
    """The base64 AES-256 key in ``path``, created first (mode 0600, never overwritten) if
    it does not exist; and whether it was created. A file that does not hold a valid key is
    a ``SettingsError``. The key is never printed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii", errors="replace").strip()
        try:
            Settings(cipher_key=key).validate()
        except SettingsError:
            problem = f"{path} does not hold a cipher key (base64, 16-32 bytes)"
            raise SettingsError(problem) from None
        return key, False
    except OSError as e:
        raise SettingsError(f"cannot create {path}: {e.strerror}") from None
    key = AESCipher.create_key(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return key, True


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file ``settings`` names (without creating its directory), or None for
    PostgreSQL or an in-memory database."""
    prefix = "sqlite:///"
    if settings.backend != "sqlite" or not settings.database_url.startswith(prefix):
        return None
    path = settings.database_url[len(prefix) :]
    return None if path == ":memory:" or path.startswith("file:") else Path(path)


def judge_sqlite_record(path: Path, settings: Settings) -> KeyCheck | None:
    """The key check of the record in the SQLite file ``path`` (None: no file, or no event
    and no key recorded), read without creating or changing anything."""
    if not path.is_file():
        return None
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if KEY_TABLE in tables:
            row = conn.execute(
                f"SELECT key_check_value, algorithm FROM {KEY_TABLE} WHERE status = ?", (ACTIVE,)
            ).fetchone()
            if row:
                return KeyCheck(row[0], row[1])
        if "stored_events" in tables:
            first = conn.execute("SELECT state FROM stored_events ORDER BY rowid LIMIT 1")
            row = first.fetchone()
            if row and isinstance(row[0], bytes):
                return judge_first_event(row[0], settings)
    return None


def move_aside(path: Path, why: str) -> Path:
    """Rename the SQLite file ``path`` and its -wal, -shm and -journal files together to
    ``<name>.<why>-<UTC time>``; return the new path of the database file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    for suffix in ("-wal", "-shm", "-journal"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(Path(f"{target}{suffix}"))
    path.rename(target)
    return target
