"""A State's encryption key pair for the exchange envelope, and how it is written down.

The suite is HPKE (RFC 9180) with the hybrid KEM MLKEM768-X25519 (KEM id 0x647a of
draft-ietf-hpke-pq), HKDF-SHA256 and AES-256-GCM; docs/e2e.md says why the hybrid was chosen.

``cryptography`` 50 builds the hybrid key from its two halves and gives the hybrid objects no
serialisation, so this module keeps the halves and writes them as follows:

* public key: ``SerializePublicKey`` of the hybrid KEM, the ML-KEM-768 encapsulation key
  (1184 bytes) followed by the X25519 public key (32 bytes), 1216 bytes in all;
* private key: two PEM blocks of passphrase-protected PKCS#8 (``ENCRYPTED PRIVATE KEY``,
  ``cryptography``'s best available encryption), the ML-KEM-768 key first, then the X25519
  key, both under the same passphrase. Each block is a standard format any PKCS#8 tool reads;
  their order is this module's convention (docs/e2e.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)

from domain.envelope import AEAD_ID, KDF_ID, KEM_ID
from domain.errors import ValidationError
from domain.state_keys import ENCRYPTION_KEY_LENGTH, split_encryption_key
from domain.statement import fingerprint_of

__all__ = [
    "AEAD_ID",
    "KDF_ID",
    "KEM_ID",
    "PUBLIC_KEY_LENGTH",
    "SUITE",
    "EncryptionPrivateKey",
    "EncryptionPublicKey",
    "KeyFormatError",
]

#: The HPKE suite of every envelope: hybrid post-quantum KEM, HKDF-SHA256, AES-256-GCM.
SUITE: Final = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
# The RFC 9180 / draft-ietf-hpke-pq identifiers of :data:`SUITE` (KEM_ID, KDF_ID, AEAD_ID)
# are decided in ``domain.envelope``, which writes them into every envelope.

#: Length of a serialised public key: ML-KEM-768 encapsulation key then X25519 public key
#: (the format ``domain.state_keys`` decides, where the server records the keys).
PUBLIC_KEY_LENGTH: Final = ENCRYPTION_KEY_LENGTH

_PEM_BLOCK: Final = re.compile(
    rb"-----BEGIN ENCRYPTED PRIVATE KEY-----\r?\n.*?-----END ENCRYPTED PRIVATE KEY-----\r?\n?",
    re.DOTALL,
)


class KeyFormatError(ValidationError):
    """Key bytes or a key file are not of the documented format, or the passphrase is wrong."""


@dataclass(frozen=True, eq=False)
class EncryptionPublicKey:
    """A State's encryption public key (the hybrid KEM's two halves)."""

    mlkem: mlkem.MLKEM768PublicKey
    x25519: x25519.X25519PublicKey

    def to_bytes(self) -> bytes:
        """SerializePublicKey: ML-KEM-768 encapsulation key (1184) || X25519 key (32)."""
        return self.mlkem.public_bytes_raw() + self.x25519.public_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptionPublicKey:
        """DeserializePublicKey, refusing any other length or an invalid ML-KEM key (the format
        ``domain.state_keys.split_encryption_key`` decides)."""
        try:
            return cls(*split_encryption_key(data))
        except ValidationError as e:
            raise KeyFormatError(str(e)) from None

    def fingerprint(self) -> str:
        """``fingerprint_of`` :meth:`to_bytes`: what a State's mission confirms."""
        return fingerprint_of(self.to_bytes())

    def hpke(self) -> MLKEM768X25519PublicKey:
        """The key object ``cryptography``'s HPKE suite encrypts to."""
        return MLKEM768X25519PublicKey(self.mlkem, self.x25519)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptionPublicKey) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())


@dataclass(frozen=True, eq=False, repr=False)
class EncryptionPrivateKey:
    """A State's encryption private key. It never leaves the State's machines."""

    mlkem: mlkem.MLKEM768PrivateKey
    x25519: x25519.X25519PrivateKey

    @classmethod
    def generate(cls) -> EncryptionPrivateKey:
        return cls(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    def public_key(self) -> EncryptionPublicKey:
        return EncryptionPublicKey(self.mlkem.public_key(), self.x25519.public_key())

    def hpke(self) -> MLKEM768X25519PrivateKey:
        """The key object ``cryptography``'s HPKE suite decrypts with."""
        return MLKEM768X25519PrivateKey(self.mlkem, self.x25519)

    def to_pem(self, passphrase: bytes) -> bytes:
        """Two encrypted PKCS#8 PEM blocks, ML-KEM-768 then X25519, under ``passphrase``."""
        if not passphrase:
            raise KeyFormatError("a private key file needs a passphrase; give a non-empty one")
        encryption = serialization.BestAvailableEncryption(passphrase)
        return b"".join(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
            for key in (self.mlkem, self.x25519)
        )

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes) -> EncryptionPrivateKey:
        """Read :meth:`to_pem`'s form; a wrong passphrase or key type is a KeyFormatError."""
        blocks = _PEM_BLOCK.findall(data)
        if len(blocks) != 2:
            raise KeyFormatError(
                "an encryption private key file holds two ENCRYPTED PRIVATE KEY blocks "
                f"(ML-KEM-768 then X25519), found {len(blocks)}"
            )
        try:
            first = serialization.load_pem_private_key(blocks[0], passphrase)
            second = serialization.load_pem_private_key(blocks[1], passphrase)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFormatError(
                "the private key file cannot be read: wrong passphrase or damaged file"
            ) from None
        if not isinstance(first, mlkem.MLKEM768PrivateKey) or not isinstance(
            second, x25519.X25519PrivateKey
        ):
            raise KeyFormatError(
                "the private key file must hold an ML-KEM-768 key then an X25519 key, got "
                f"{type(first).__name__} then {type(second).__name__}"
            )
        return cls(first, second)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EncryptionPrivateKey)
            and self.mlkem.private_bytes_raw() == other.mlkem.private_bytes_raw()
            and self.x25519.private_bytes_raw() == other.x25519.private_bytes_raw()
        )

    def __hash__(self) -> int:
        return hash(self.public_key())

    def __repr__(self) -> str:
        return f"EncryptionPrivateKey(public {self.public_key().fingerprint()})"
