"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

Formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint), so an auditor can
check a checkpoint with any implementation, e.g. Go's ``golang.org/x/mod/sumdb/note``:

* checkpoint body: ``<origin>\\n<tree size, decimal>\\n<base64 root hash>\\n``;
* signed note: ``<body>\\n— <key name> <base64(key id ‖ Ed25519 signature of body)>\\n``;
* key id: the first 4 bytes of ``SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)``;
* verifier key: ``<name>+<key id, 8 hex digits>+<base64(0x01 ‖ public key)>``;
* signer key file (Go's format): ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>``.

Failures raise ``CheckpointError`` subclasses naming the expected and computed values.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from infra.merkle import AuditError, b64, unb64

#: C2SP signed-note signature type of Ed25519.
SIGNATURE_TYPE_ED25519 = b"\x01"
#: Start of a signature line: em dash, space.
SIGNATURE_LINE_PREFIX = "\u2014 "
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
MAX_SIGNATURES = 16


class CheckpointError(AuditError):
    """A checkpoint or its signature is not acceptable."""


class MalformedCheckpoint(CheckpointError):
    """The text is not a C2SP signed note with a tlog-checkpoint body."""


class SignatureInvalid(CheckpointError):
    """A signature by a known key does not verify: the note was altered or forged."""


class UnknownSigner(CheckpointError):
    """No signature on the note is by a key the verifier trusts."""


class KeyFormatError(ValueError):
    """A key string or key file is malformed (bad input, not a verification failure)."""


def check_key_name(name: str) -> str:
    if not name or re.search(r"[\s+]", name) or any(ord(c) < 0x20 for c in name):
        raise KeyFormatError(
            f"a key name must be non-empty, without spaces or '+', not {name[:40]!r}"
        )
    try:
        name.encode("utf-8")  # it is signed and hashed as UTF-8
    except UnicodeEncodeError:
        raise KeyFormatError(f"a key name must be UTF-8 text, not {name[:40]!r}") from None
    return name


def key_id(name: str, public_key: bytes, signature_type: bytes = SIGNATURE_TYPE_ED25519) -> bytes:
    """C2SP signed-note key id of an Ed25519 key: of a log's signature (type 0x01) by
    default, or of another signature type (a cosignature's, 0x04, ``infra.cosignature``)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + signature_type + public_key).digest()[:4]


def key_parts(
    text: str, what: str, layout: str, signature_type: bytes = SIGNATURE_TYPE_ED25519
) -> tuple[str, str, bytes]:
    """Split a serialised key (``name+keyid+base64``, ``what`` naming it in errors) into its
    checked name, its key id as written, and its 32 Ed25519 key bytes, after the
    ``signature_type`` byte (a log's 0x01 by default; a witness's 0x04, ``infra.cosignature``).
    The caller checks the id against the key it builds."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError(f"a {what} is {layout}")
    name, hex_id, encoded = parts
    check_key_name(name)
    try:
        raw = unb64(encoded)
    except ValueError as e:
        raise KeyFormatError(f"{what}: {e}") from None
    if len(raw) != 33 or raw[:1] != signature_type:
        raise KeyFormatError(
            f"{what} is not an Ed25519 key of type 0x{signature_type.hex()} (32 bytes); this "
            f"one has type 0x{raw[:1].hex() or '--'} and {max(len(raw) - 1, 0)} key bytes"
        )
    return name, hex_id, raw[1:]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64(SIGNATURE_TYPE_ED25519 + self.public_key)}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        name, hex_id, raw = key_parts(text.strip(), "verifier key", "name+keyid+base64key")
        key = cls(name, raw)
        if hex_id.lower() != key.key_id.hex() or len(hex_id) != 8:
            raise KeyFormatError(
                f"verifier key id {hex_id[:8]!r} does not match its name and key "
                f"(computed {key.key_id.hex()})"
            )
        return key

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise ``SignatureInvalid`` unless ``signature`` is this key's Ed25519 signature of
        ``message``: a verifier that returned ``False`` could be ignored by its caller."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            raise SignatureInvalid(
                f"the signature by {self.name} does not verify: the checkpoint was altered",
                expected=f"a valid Ed25519 signature by {self}",
                computed="an invalid signature",
            ) from None


@dataclass(frozen=True)
class SignerKey:
    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> SignerKey:
        check_key_name(name)
        return cls(name, os.urandom(32))

    @property
    def verifier(self) -> VerifierKey:
        public = (
            Ed25519PrivateKey.from_private_bytes(self.seed)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        return VerifierKey(self.name, public)

    def sign(self, message: bytes) -> bytes:
        return self.private_key().sign(message)

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def serialise(self) -> str:
        vkey = self.verifier
        return (
            f"{PRIVATE_KEY_PREFIX}{self.name}+{vkey.key_id.hex()}+"
            f"{b64(SIGNATURE_TYPE_ED25519 + self.seed)}\n"
        )

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        text = text.strip()
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFormatError("a signing key file starts with PRIVATE+KEY+")
        name, hex_id, raw = key_parts(
            text[len(PRIVATE_KEY_PREFIX) :], "signing key", "PRIVATE+KEY+name+keyid+base64key"
        )
        key = cls(name, raw)
        if hex_id.lower() != key.verifier.key_id.hex():
            raise KeyFormatError("signing key id does not match its name and key")
        return key

    @classmethod
    def load(cls, path: Path) -> SignerKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeError) as e:
            raise KeyFormatError(f"cannot read signing key file {path}: {e}") from None
        return cls.parse(text)

    def write_new(self, path: Path) -> None:
        """Create ``path`` readable by its owner only; never overwrite an existing file."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFormatError(f"{path} exists; refusing to overwrite a key") from None
        except OSError as e:
            raise KeyFormatError(f"cannot create {path}: {e.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(self.serialise())


# -- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash."""

    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{b64(self.root_hash)}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise MalformedCheckpoint(
                "a checkpoint body is origin, tree size and root hash, one per line",
                expected="3 lines ending in a newline",
                computed=f"{len(lines) - 1} lines",
            )
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin or not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise MalformedCheckpoint(
                "the checkpoint's origin is empty or its size is not a decimal number",
                expected="origin line, decimal size",
                computed=f"{origin[:40]!r}, {size[:22]!r}",
            )
        try:
            root_hash = unb64(root)
        except ValueError:
            root_hash = b""
        if len(root_hash) != 32:
            raise MalformedCheckpoint(
                "the checkpoint's root hash is not a base64 SHA-256 hash",
                expected="44 base64 characters",
                computed=root[:60],
            )
        return cls(origin, int(size), root_hash)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    signed_by: tuple[VerifierKey, ...]


def sign_note(text: str, key: SignerKey) -> str:
    """A C2SP signed note of ``text`` (which must end in a newline) with one signature."""
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    vkey = key.verifier
    signature = key.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_LINE_PREFIX}{key.name} {b64(vkey.key_id + signature)}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The text and the signatures ``(name, key id, signature)`` of a signed note."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise MalformedCheckpoint(
            "a signed note holds no control characters other than newline",
            expected="text and newlines",
            computed="a control character",
        )
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise MalformedCheckpoint(
            "not a signed note: no blank line before the signatures",
            expected="text, blank line, signature lines",
            computed="no blank line" if split < 0 else "no final newline",
        )
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedCheckpoint(
            "too many signatures",
            expected=f"at most {MAX_SIGNATURES}",
            computed=str(len(lines)),
        )
    signatures = []
    for line in lines:
        match = re.fullmatch(SIGNATURE_LINE_PREFIX + r"([^\s+]+) ([A-Za-z0-9+/=]+)", line)
        try:
            raw = unb64(match.group(2)) if match else b""
        except ValueError:  # the right alphabet, but not base64 (padding)
            raw = b""
        if match is None or len(raw) < 5:
            raise MalformedCheckpoint(
                "a signature line is malformed",
                expected="— <key name> <base64(key id ‖ signature)>",
                computed=line[:80],
            )
        signatures.append((match.group(1), raw[:4], raw[4:]))
    return text, signatures


def open_checkpoint(note: str, keys: list[VerifierKey]) -> SignedCheckpoint:
    """Parse and verify a signed checkpoint against trusted verifier keys.

    Signatures by unknown keys are ignored (C2SP); a signature by a known key (same name and
    key id) must verify, or the whole note is rejected (``SignatureInvalid``); at least one
    known key must have signed (``UnknownSigner``)."""
    text, signatures = split_note(note)
    known = {(k.name, k.key_id): k for k in keys}
    verified: list[VerifierKey] = []
    for name, kid, signature in signatures:
        key = known.get((name, kid))
        if key is None:
            continue
        key.verify(text.encode("utf-8"), signature)
        verified.append(key)
    if not verified:
        raise UnknownSigner(
            "the checkpoint is not signed by a trusted key",
            expected=" or ".join(str(k) for k in keys) or "a trusted key",
            computed=", ".join(f"{n}+{kid.hex()}" for n, kid, _ in signatures),
        )
    return SignedCheckpoint(Checkpoint.parse_body(text), note, tuple(verified))
