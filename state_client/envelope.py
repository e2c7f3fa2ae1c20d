"""The exchange envelope: a notification's content, readable only by the States it names.

The sender's client encrypts the content once, under a fresh random content key
(AES-256-GCM), and wraps that key to each party's encryption public key with HPKE (RFC 9180,
base mode, :data:`state_client.keys.SUITE`). The server stores and serves the envelope as it
is; without a party's private key it can read nothing of the content.

Bindings, so that nothing can be moved where it was not sent:

* the content's AEAD additional data is :data:`CONTENT_AAD_PREFIX` and the notification's id
  (16 bytes): the content ciphertext opens only as the content of that notification;
* each wrapped key's HPKE ``info`` is :data:`WRAP_INFO_PREFIX`, the notification id and the
  State's code (3 ASCII bytes): a wrapped key opens only for that notification and that
  State, so an operator cannot relabel it for another State or copy it to another exchange.

The byte-exact format is in docs/e2e.md; :meth:`Envelope.to_bytes` and
:meth:`Envelope.from_bytes` are its only writer and reader.

Content is checked with the domain's own rules (:class:`domain.values.Text`,
:class:`domain.notification.SupportingInformation`, hence ``domain/indicators.py``) before it
is encrypted and again after it is decrypted: a State never sends, and never accepts, content
that the directory would refuse in plain text.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import NotAMemberState, ValidationError
from domain.members import check_member_state
from domain.notification import SupportingInformation
from domain.values import Text
from state_client.keys import (
    AEAD_ID,
    KDF_ID,
    KEM_ID,
    SUITE,
    EncryptionPrivateKey,
    EncryptionPublicKey,
)

__all__ = [
    "CONTENT_AAD_PREFIX",
    "MAGIC",
    "WRAP_INFO_PREFIX",
    "WRAPPED_KEY_LENGTH",
    "Content",
    "Envelope",
    "EnvelopeError",
    "EnvelopeMalformed",
    "EnvelopeNotAddressed",
    "EnvelopeUndecryptable",
    "open_envelope",
    "rewrap",
    "seal",
]

#: First bytes of every serialised envelope (format version 1).
MAGIC: Final = b"PDE1"
#: AEAD additional data of the content: this prefix, then the notification id's 16 bytes.
CONTENT_AAD_PREFIX: Final = b"pocdir envelope v1 content\n"
#: HPKE info of a wrapped key: this prefix, the notification id's 16 bytes, the State code.
WRAP_INFO_PREFIX: Final = b"pocdir envelope v1 key\n"

_CONTENT_KEY_LENGTH: Final = 32
_NONCE_LENGTH: Final = 12
_TAG_LENGTH: Final = 16
_ENC_LENGTH: Final = 1120  # Nenc of MLKEM768-X25519
#: A wrapped key: HPKE enc (1120) || AES-256-GCM of the 32-byte content key (32 + 16 tag).
WRAPPED_KEY_LENGTH: Final = _ENC_LENGTH + _CONTENT_KEY_LENGTH + _TAG_LENGTH
_HEADER: Final = struct.Struct(">4sHHH16s12sI")
_COUNT: Final = struct.Struct(">H")
_ENTRY: Final = struct.Struct(">3sH")


class EnvelopeError(ValidationError):
    """An envelope cannot be read or opened; the subclass says why."""


class EnvelopeMalformed(EnvelopeError):
    """The bytes are not an envelope of the documented format."""


class EnvelopeNotAddressed(EnvelopeError):
    """The envelope holds no wrapped key for this State."""

    def __init__(self, state: str, addressed: tuple[str, ...]) -> None:
        self.state = state
        self.addressed = addressed
        super().__init__(
            f"the envelope has no key for {state}; it is addressed to {', '.join(addressed)}"
        )


class EnvelopeUndecryptable(EnvelopeError):
    """Authentication failed: the part was changed, moved, or the key is not this State's.

    ``part`` is ``"wrapped key"`` or ``"content"``, so a State can tell a key that is not for
    it (or was moved to it) from content that was altered.
    """

    def __init__(self, part: str, *, state: str, notification: UUID) -> None:
        self.part = part
        self.state = state
        self.notification = notification
        super().__init__(
            f"the {part} of the envelope of notification {notification} does not open for "
            f"{state}: it was altered, moved from another notification or State, or the "
            "private key is not this State's"
        )


@dataclass(frozen=True)
class Content:
    """What is encrypted: the description and the supporting information (with indicators)."""

    description: Text
    supporting_information: SupportingInformation

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Content:
        """Validate with the domain's rules: R6 for texts, ``domain/indicators.py`` for IoCs."""
        if not isinstance(data, Mapping) or set(data) != {
            "description",
            "supporting_information",
        }:
            raise ValidationError(
                "the content is an object with exactly the keys 'description' and "
                "'supporting_information'"
            )
        info = data["supporting_information"]
        if not isinstance(info, Mapping):
            raise ValidationError("supporting_information must be an object")
        return cls(
            Text.from_dict(data["description"], field="description"),
            SupportingInformation.from_dict(info),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description.to_dict(),
            "supporting_information": self.supporting_information.to_dict(),
        }

    def to_bytes(self) -> bytes:
        """The plaintext: RFC 8785 JSON of :meth:`to_dict`, so equal content, equal bytes."""
        return rfc8785.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Content:
        """Parse decrypted plaintext and validate it again, as if it had come in plain text."""
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValidationError("the decrypted content is not UTF-8 JSON") from None
        return cls.from_dict(parsed)


@dataclass(frozen=True)
class Envelope:
    """One notification's encrypted content and its wrapped keys, sorted by State code."""

    notification: UUID
    nonce: bytes
    ciphertext: bytes
    wrapped_keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        """Hold every envelope to the format, so :meth:`to_bytes` never pads or cuts a field."""
        if len(self.nonce) != _NONCE_LENGTH:
            raise EnvelopeMalformed(f"the nonce is {_NONCE_LENGTH} bytes, got {len(self.nonce)}")
        if len(self.ciphertext) < _TAG_LENGTH:
            raise EnvelopeMalformed("the content is shorter than its authentication tag")
        states = [state for state, _ in self.wrapped_keys]
        if not states or states != sorted(set(states)):
            raise EnvelopeMalformed(
                "the wrapped keys must be at least one, in code order, one per State"
            )
        for state, wrapped in self.wrapped_keys:
            _check_state(state)
            if len(wrapped) != WRAPPED_KEY_LENGTH:
                raise EnvelopeMalformed(
                    f"a wrapped key is {WRAPPED_KEY_LENGTH} bytes, got {len(wrapped)}"
                )

    @property
    def addressed(self) -> tuple[str, ...]:
        """The States that hold a wrapped key, in code order."""
        return tuple(state for state, _ in self.wrapped_keys)

    def wrapped_key(self, state: str) -> bytes:
        for code, wrapped in self.wrapped_keys:
            if code == state:
                return wrapped
        raise EnvelopeNotAddressed(state, self.addressed)

    def with_wrapped_key(self, state: str, wrapped: bytes) -> Envelope:
        """A copy with ``state``'s wrapped key added or replaced (what a re-wrap records)."""
        keys = dict(self.wrapped_keys)
        keys[_check_state(state)] = wrapped
        return Envelope(self.notification, self.nonce, self.ciphertext, tuple(sorted(keys.items())))

    def to_bytes(self) -> bytes:
        """The byte-exact form of docs/e2e.md (big-endian lengths, keys in code order)."""
        parts = [
            _HEADER.pack(
                MAGIC,
                KEM_ID,
                KDF_ID,
                AEAD_ID,
                self.notification.bytes,
                self.nonce,
                len(self.ciphertext),
            ),
            self.ciphertext,
            _COUNT.pack(len(self.wrapped_keys)),
        ]
        for state, wrapped in self.wrapped_keys:
            parts.append(_ENTRY.pack(state.encode("ascii"), len(wrapped)))
            parts.append(wrapped)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Read :meth:`to_bytes`'s form strictly: any other byte is EnvelopeMalformed."""
        if len(data) < _HEADER.size:
            raise EnvelopeMalformed(f"an envelope is at least {_HEADER.size} bytes")
        magic, kem, kdf, aead, notification, nonce, length = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise EnvelopeMalformed(f"an envelope starts with {MAGIC!r}, got {magic!r}")
        if (kem, kdf, aead) != (KEM_ID, KDF_ID, AEAD_ID):
            raise EnvelopeMalformed(
                f"the envelope's suite is KEM 0x{kem:04x}, KDF 0x{kdf:04x}, AEAD 0x{aead:04x}; "
                f"expected 0x{KEM_ID:04x}, 0x{KDF_ID:04x}, 0x{AEAD_ID:04x}"
            )
        offset = _HEADER.size
        ciphertext = data[offset : offset + length]
        offset += length
        if len(ciphertext) != length or len(data) < offset + _COUNT.size:
            raise EnvelopeMalformed("the envelope's content is cut short")
        (count,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        keys: list[tuple[str, bytes]] = []
        for _ in range(count):
            if len(data) < offset + _ENTRY.size:
                raise EnvelopeMalformed("the envelope's wrapped keys are cut short")
            raw_state, size = _ENTRY.unpack_from(data, offset)
            offset += _ENTRY.size
            wrapped = data[offset : offset + size]
            offset += size
            if size != WRAPPED_KEY_LENGTH or len(wrapped) != size:
                raise EnvelopeMalformed(
                    f"a wrapped key is {WRAPPED_KEY_LENGTH} bytes, got {len(wrapped)}"
                )
            try:
                state = raw_state.decode("ascii")
            except UnicodeDecodeError:
                raise EnvelopeMalformed(
                    "a wrapped key is not labelled with a member State's code"
                ) from None
            keys.append((state, wrapped))
        if offset != len(data):
            raise EnvelopeMalformed(f"{len(data) - offset} bytes follow the last wrapped key")
        return cls(UUID(bytes=notification), nonce, ciphertext, tuple(keys))


def content_aad(notification: UUID) -> bytes:
    """The content's AEAD additional data (binds it to the notification)."""
    return CONTENT_AAD_PREFIX + notification.bytes


def wrap_info(notification: UUID, state: str) -> bytes:
    """The HPKE info of ``state``'s wrapped key (binds it to the notification and State)."""
    return WRAP_INFO_PREFIX + notification.bytes + state.encode("ascii")


def seal(
    content: Content | Mapping[str, Any],
    notification: UUID,
    recipients: Mapping[str, EncryptionPublicKey],
) -> Envelope:
    """Encrypt ``content`` for every State in ``recipients`` (the sender includes itself).

    A mapping is validated first (``Content.from_dict``): invalid indicators are refused
    before anything is encrypted.
    """
    checked = content if isinstance(content, Content) else Content.from_dict(content)
    if not recipients:
        raise ValidationError("an envelope needs at least one recipient State")
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_LENGTH)
    ciphertext = AESGCM(key).encrypt(nonce, checked.to_bytes(), content_aad(notification))
    wrapped = {
        _check_state(state): _wrap(key, notification, state, public_key)
        for state, public_key in recipients.items()
    }
    return Envelope(notification, nonce, ciphertext, tuple(sorted(wrapped.items())))


def open_envelope(envelope: Envelope, state: str, private_key: EncryptionPrivateKey) -> Content:
    """Decrypt the content as ``state`` and validate it with the domain's rules."""
    key = _unwrap(envelope, state, private_key)
    return Content.from_bytes(_decrypt_content(envelope, key, state))


def rewrap(
    envelope: Envelope,
    state: str,
    private_key: EncryptionPrivateKey,
    third_state: str,
    third_public_key: EncryptionPublicKey,
) -> Envelope:
    """R11: a party (``state``) shares the content with ``third_state``.

    The content key is unwrapped with the party's key, checked to open the content (so a
    party never passes on a key that does not work), and wrapped to the third State's key.
    The returned envelope carries the new wrapped key; ``wrapped_key(third_state)`` is what
    the server would record for the consent.
    """
    key = _unwrap(envelope, state, private_key)
    Content.from_bytes(_decrypt_content(envelope, key, state))
    third = _check_state(third_state)
    return envelope.with_wrapped_key(
        third, _wrap(key, envelope.notification, third, third_public_key)
    )


# --- helpers -------------------------------------------------------------------------------


def _wrap(key: bytes, notification: UUID, state: str, public_key: EncryptionPublicKey) -> bytes:
    return SUITE.encrypt(key, public_key.hpke(), info=wrap_info(notification, state))


def _unwrap(envelope: Envelope, state: str, private_key: EncryptionPrivateKey) -> bytes:
    wrapped = envelope.wrapped_key(state)
    try:
        key = SUITE.decrypt(
            wrapped, private_key.hpke(), info=wrap_info(envelope.notification, state)
        )
    except (InvalidTag, ValueError):
        raise EnvelopeUndecryptable(
            "wrapped key", state=state, notification=envelope.notification
        ) from None
    if len(key) != _CONTENT_KEY_LENGTH:
        raise EnvelopeUndecryptable("wrapped key", state=state, notification=envelope.notification)
    return key


def _decrypt_content(envelope: Envelope, key: bytes, state: str) -> bytes:
    try:
        return AESGCM(key).decrypt(
            envelope.nonce, envelope.ciphertext, content_aad(envelope.notification)
        )
    except InvalidTag:
        raise EnvelopeUndecryptable(
            "content", state=state, notification=envelope.notification
        ) from None


def _check_state(state: str) -> str:
    try:
        if check_member_state(state) == state:
            return state
    except NotAMemberState:
        pass
    raise EnvelopeMalformed(f"{state[:10]!r} is not the uppercase code of a member State")
