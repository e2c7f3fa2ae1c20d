"""Witness cosignatures: C2SP ``tlog-cosignature`` (``cosignature/v1``, Ed25519) on checkpoints.

A cosignature is a witness's statement that, as of a time it names, the checkpoint is the
largest consistent tree head it has seen for that origin. A State that cosigns pocdir's
checkpoints can later prove the operator showed it this history and no other (issue 16). The
format is the spec's (https://c2sp.org/tlog-cosignature, Ed25519 type), so witnesses built by
others (transparency-dev's, Sigsum's, litetlog's) interoperate:

* it is a signed-note signature line (``infra.note``):
  ``— <name> base64(key id ‖ timestamp ‖ Ed25519 signature)``, the timestamp a big-endian
  u64 of POSIX seconds (at most 2**63 - 1), the signature 64 bytes;
* key id: the first 4 bytes of ``SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)``; type byte
  0x04, not the log's 0x01, so a witness's cosignature can never be taken for a log signature
  and the reverse;
* verifier key (vkey): ``<name>+<key id, 8 hex digits>+<base64(0x04 ‖ public key)>``;
* signed message: ``cosignature/v1\\n`` ``time <decimal timestamp>\\n`` then the whole
  checkpoint body (with any extension lines, with its final newline, without signatures).

The Ed25519 message does not commit to the witness's name (the spec says so), hence one key
per witness. Verification never returns False: failures raise ``CosignatureError`` subclasses
(themselves ``CheckpointError``) carrying the expected and the computed values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from infra.merkle import b64, unb64
from infra.note import (
    SIGNATURE_LINE_PREFIX,
    Checkpoint,
    CheckpointError,
    KeyFormatError,
    check_key_name,
    key_id,
    key_parts,
    split_note,
)

#: C2SP signed-note signature type of an Ed25519 ``cosignature/v1`` (tlog-cosignature).
SIGNATURE_TYPE_COSIGNATURE_V1 = b"\x04"
#: First line of the signed message: domain separation from every other Ed25519 use of the key.
COSIGNATURE_HEADER = "cosignature/v1\n"
#: Start of the second line of the signed message, followed by the decimal timestamp.
TIME_LINE_PREFIX = "time "
#: The spec's bound on ``timestamped_signature.timestamp``.
MAX_TIMESTAMP = 2**63 - 1
KEY_ID_SIZE = 4
PUBLIC_KEY_SIZE = 32
TIMESTAMP_SIZE = 8
ED25519_SIGNATURE_SIZE = 64
#: Bytes after the key id in a cosignature line: ``timestamped_signature``.
TIMESTAMPED_SIGNATURE_SIZE = TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE


class CosignatureError(CheckpointError):
    """A cosignature is not acceptable; a checkpoint relying on it is not witnessed."""


class MalformedCosignature(CosignatureError):
    """The line or its bytes are not a ``cosignature/v1`` (wrong length, timestamp too big)."""


class CosignatureInvalid(CosignatureError):
    """The witness's signature does not verify: the checkpoint, the time or the line changed."""


class CosignatureMissing(CosignatureError):
    """The note carries no cosignature by the witness key asked for."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The spec's key id of an Ed25519 cosigner: the signed-note key id with type byte 0x04,
    so a log's and a witness's ids of one name and key differ."""
    return key_id(name, public_key, SIGNATURE_TYPE_COSIGNATURE_V1)


def check_timestamp(timestamp: int) -> int:
    """A POSIX timestamp the spec allows (0 ≤ t ≤ 2**63 - 1); ``ValueError`` otherwise, as it
    is the caller's input, not a forged cosignature."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError(f"a cosignature timestamp is an integer, not {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is between 0 and 2**63 - 1, not {timestamp}")
    return timestamp


def signed_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes a witness signs: header line, time line, then the checkpoint body."""
    return (
        f"{COSIGNATURE_HEADER}{TIME_LINE_PREFIX}{check_timestamp(timestamp)}\n{checkpoint_body}"
    ).encode()


@dataclass(frozen=True)
class WitnessVerifierKey:
    """A witness's public key as a client is configured with it: name and Ed25519 key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def __str__(self) -> str:
        """The C2SP vkey, the form a witness publishes and a quorum policy lists."""
        return (
            f"{self.name}+{self.key_id.hex()}+"
            f"{b64(SIGNATURE_TYPE_COSIGNATURE_V1 + self.public_key)}"
        )

    @classmethod
    def parse(cls, text: str) -> WitnessVerifierKey:
        """Read a vkey; ``KeyFormatError`` unless it is a type-0x04 key whose id matches."""
        name, hex_id, public = key_parts(
            text.strip(),
            "witness verifier key",
            "name+keyid+base64key",
            SIGNATURE_TYPE_COSIGNATURE_V1,
        )
        key = cls(name, public)
        if len(hex_id) != 8 or hex_id.lower() != key.key_id.hex():
            raise KeyFormatError(
                f"witness verifier key id {hex_id[:8]!r} does not match its name and key "
                f"(computed {key.key_id.hex()})"
            )
        return key


@dataclass(frozen=True)
class WitnessKey:
    """A witness's Ed25519 signing key (the 32-byte seed) and its name."""

    name: str
    seed: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.seed) != 32:
            raise KeyFormatError(f"an Ed25519 seed is 32 bytes, not {len(self.seed)}")

    @classmethod
    def generate(cls, name: str) -> WitnessKey:
        return cls(name, os.urandom(32))

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def verifier(self) -> WitnessVerifierKey:
        public = self.private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return WitnessVerifierKey(self.name, public)


@dataclass(frozen=True)
class Cosignature:
    """One parsed cosignature line: who (name, key id), when, and the 64 signature bytes."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def line(self) -> str:
        """The note signature line, with its final newline."""
        raw = self.key_id + self.timestamp.to_bytes(TIMESTAMP_SIZE, "big") + self.signature
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {b64(raw)}\n"

    @classmethod
    def from_parts(cls, name: str, key_id: bytes, rest: bytes) -> Cosignature:
        """Decode ``timestamped_signature`` (the bytes after the key id of a note signature)."""
        if len(rest) != TIMESTAMPED_SIGNATURE_SIZE:
            raise MalformedCosignature(
                f"the signature by {name} is not a cosignature/v1",
                expected=f"{TIMESTAMPED_SIGNATURE_SIZE} bytes after the key id "
                "(8-byte timestamp, 64-byte Ed25519 signature)",
                computed=f"{len(rest)} bytes",
            )
        timestamp = int.from_bytes(rest[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise MalformedCosignature(
                f"the cosignature by {name} has a timestamp above 2**63 - 1",
                expected=f"at most {MAX_TIMESTAMP}",
                computed=str(timestamp),
            )
        return cls(name, key_id, timestamp, rest[TIMESTAMP_SIZE:])

    @classmethod
    def parse(cls, line: str) -> Cosignature:
        """Read one signature line (with or without its final newline)."""
        text = line[:-1] if line.endswith("\n") else line
        match = re.fullmatch(SIGNATURE_LINE_PREFIX + r"([^\s+]+) ([A-Za-z0-9+/=]+)", text)
        try:
            raw = unb64(match.group(2)) if match else b""
        except ValueError:
            raw = b""
        if match is None or len(raw) < KEY_ID_SIZE:
            raise MalformedCosignature(
                "a cosignature line is malformed",
                expected="— <key name> <base64(key id ‖ timestamp ‖ signature)>",
                computed=text[:80],
            )
        return cls.from_parts(match.group(1), raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def _checked_body(checkpoint_body: str) -> str:
    """The body, if it is a checkpoint body that can sit in a signed note (no blank line)."""
    if "\n\n" in checkpoint_body:
        raise ValueError("a checkpoint body holds no blank line (it would end the note text)")
    Checkpoint.parse_body(checkpoint_body)
    return checkpoint_body


def cosign(checkpoint_body: str, timestamp: int, key: WitnessKey) -> str:
    """The witness's cosignature line over ``checkpoint_body`` at ``timestamp``, with its
    final newline, so appending it to a signed note that ends in a newline keeps it a note.

    Bad input (not a checkpoint body, a timestamp out of range) raises ``ValueError`` or
    ``MalformedCheckpoint``: a witness must never sign what a verifier could not parse."""
    message = signed_message(_checked_body(checkpoint_body), timestamp)
    signature = key.private_key().sign(message)
    return Cosignature(key.name, key.verifier.key_id, timestamp, signature).line()


def verify_cosignature(note: str, vkey: WitnessVerifierKey) -> int:
    """The time at which ``vkey``'s witness cosigned the checkpoint in ``note``.

    Only this witness's line (same name and key id) is read; others, including the log's own
    signature, are ignored: the caller checks the log's with ``infra.note.open_checkpoint``.
    Two lines by one witness are refused, as it is unclear which time they attest. Raises
    ``CosignatureMissing``, ``MalformedCosignature``, ``CosignatureInvalid`` or
    ``MalformedCheckpoint``."""
    text, signatures = split_note(note)
    Checkpoint.parse_body(text)
    mine = [(n, kid, rest) for n, kid, rest in signatures if (n, kid) == (vkey.name, vkey.key_id)]
    if not mine:
        raise CosignatureMissing(
            f"the checkpoint is not cosigned by witness {vkey.name}",
            expected=f"a cosignature by {vkey.name}+{vkey.key_id.hex()}",
            computed=", ".join(f"{n}+{kid.hex()}" for n, kid, _ in signatures) or "none",
        )
    if len(mine) > 1:
        raise MalformedCosignature(
            f"the checkpoint carries more than one cosignature by {vkey.name}",
            expected="one",
            computed=str(len(mine)),
        )
    cosignature = Cosignature.from_parts(*mine[0])
    message = signed_message(text, cosignature.timestamp)
    try:
        Ed25519PublicKey.from_public_bytes(vkey.public_key).verify(cosignature.signature, message)
    except InvalidSignature:
        raise CosignatureInvalid(
            f"the cosignature by {vkey.name} does not verify: the checkpoint or its time "
            "was altered, or the line is forged",
            expected=f"a valid Ed25519 cosignature/v1 by {vkey} at time {cosignature.timestamp}",
            computed="an invalid signature",
        ) from None
    return cosignature.timestamp
