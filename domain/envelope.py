"""The byte format of an exchange envelope, without any of its cryptography (issue 15, item 4).

The server stores a sealed notification's content and each sealed response as one envelope
(docs/e2e.md, "The envelope"). It holds no party's key, so it cannot open one, but it can and
must check what the bytes say on their face: that they are an envelope of the documented
format, for this notification (and this response), addressed to exactly the exchange's two
parties, and no larger than :data:`MAX_ENVELOPE_BYTES`. That reading is pure byte work, so it
lives here, in the domain, where the server may use it; the State client
(``state_client/envelope.py``) keeps the encryption and reads and writes envelopes through
this module, so the two cannot disagree on a byte.

Two kinds share one layout:

* a notification's **content** (magic ``PDE1``), bound to the notification's id;
* a **response** (magic ``PDR1``), bound to the notification's id and the response's index
  (0 for the first response), so it cannot be moved to another notification or position.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from domain.errors import NotAMemberState, ValidationError
from domain.members import check_member_state

__all__ = [
    "AEAD_ID",
    "CONTENT_AAD_PREFIX",
    "KDF_ID",
    "KEM_ID",
    "MAGIC",
    "MAX_ENVELOPE_BYTES",
    "RESPONSE_AAD_PREFIX",
    "RESPONSE_MAGIC",
    "RESPONSE_WRAP_INFO_PREFIX",
    "WRAPPED_KEY_LENGTH",
    "WRAP_INFO_PREFIX",
    "Envelope",
    "EnvelopeError",
    "EnvelopeMalformed",
    "EnvelopeNotAddressed",
    "check_sealed",
    "content_aad",
    "decode_base64",
    "envelope_aad",
    "envelope_info",
    "parse_wrapped_key",
    "wrap_info",
]

#: RFC 9180 / draft-ietf-hpke-pq identifiers of the one suite (``state_client.keys.SUITE``):
#: KEM MLKEM768-X25519, KDF HKDF-SHA256, AEAD AES-256-GCM. Written into every envelope.
KEM_ID: Final = 0x647A
KDF_ID: Final = 0x0001
AEAD_ID: Final = 0x0002

#: First bytes of a notification's content envelope (format version 1).
MAGIC: Final = b"PDE1"
#: First bytes of a response's envelope (format version 1).
RESPONSE_MAGIC: Final = b"PDR1"
#: AEAD additional data of the content: this prefix, then the notification id's 16 bytes.
CONTENT_AAD_PREFIX: Final = b"pocdir envelope v1 content\n"
#: HPKE info of a content wrapped key: this prefix, the notification id, the State code.
WRAP_INFO_PREFIX: Final = b"pocdir envelope v1 key\n"
#: AEAD additional data of a response: this prefix, the notification id, the index (u32).
RESPONSE_AAD_PREFIX: Final = b"pocdir envelope v1 response\n"
#: HPKE info of a response's wrapped key: this prefix, notification id, index, State code.
RESPONSE_WRAP_INFO_PREFIX: Final = b"pocdir envelope v1 response key\n"

#: The largest envelope the server accepts (512 KiB; its base64 fits the 1 MiB body limit).
MAX_ENVELOPE_BYTES: Final = 512 * 1024

_CONTENT_KEY_LENGTH: Final = 32
_NONCE_LENGTH: Final = 12
_TAG_LENGTH: Final = 16
_ENC_LENGTH: Final = 1120  # Nenc of MLKEM768-X25519
#: A wrapped key: HPKE enc (1120) || AES-256-GCM of the 32-byte content key (32 + 16 tag).
WRAPPED_KEY_LENGTH: Final = _ENC_LENGTH + _CONTENT_KEY_LENGTH + _TAG_LENGTH
_HEADER: Final = struct.Struct(">4sHHH16s")
_INDEX: Final = struct.Struct(">I")
_BODY: Final = struct.Struct(">12sI")
_COUNT: Final = struct.Struct(">H")
_ENTRY: Final = struct.Struct(">3sH")


class EnvelopeError(ValidationError):
    """An envelope cannot be read or opened; the subclass says why."""


class EnvelopeMalformed(EnvelopeError):
    """The bytes are not an envelope of the documented format, or not the one expected."""


class EnvelopeNotAddressed(EnvelopeError):
    """The envelope holds no wrapped key for this State."""

    def __init__(self, state: str, addressed: tuple[str, ...]) -> None:
        self.state = state
        self.addressed = addressed
        super().__init__(
            f"the envelope has no key for {state}; it is addressed to {', '.join(addressed)}"
        )


@dataclass(frozen=True)
class Envelope:
    """One encrypted content (a notification's, or response ``response``'s) and its wrapped
    keys, sorted by State code."""

    notification: UUID
    nonce: bytes
    ciphertext: bytes
    wrapped_keys: tuple[tuple[str, bytes], ...]
    #: None for a notification's content; the response's index (from 0) for a response.
    response: int | None = None

    def __post_init__(self) -> None:
        """Hold every envelope to the format, so :meth:`to_bytes` never pads or cuts a field."""
        if len(self.nonce) != _NONCE_LENGTH:
            raise EnvelopeMalformed(f"the nonce is {_NONCE_LENGTH} bytes, got {len(self.nonce)}")
        if len(self.ciphertext) < _TAG_LENGTH:
            raise EnvelopeMalformed("the content is shorter than its authentication tag")
        if self.response is not None and not 0 <= self.response < 2**32:
            raise EnvelopeMalformed("a response's index is from 0 to 2^32 - 1")
        states = [state for state, _ in self.wrapped_keys]
        if not states or states != sorted(set(states)):
            raise EnvelopeMalformed(
                "the wrapped keys must be at least one, in code order, one per State"
            )
        for state, wrapped in self.wrapped_keys:
            check_state(state)
            if len(wrapped) != WRAPPED_KEY_LENGTH:
                raise EnvelopeMalformed(
                    f"a wrapped key is {WRAPPED_KEY_LENGTH} bytes, got {len(wrapped)}"
                )

    @property
    def addressed(self) -> tuple[str, ...]:
        """The States that hold a wrapped key, in code order."""
        return tuple(state for state, _ in self.wrapped_keys)

    @property
    def aad(self) -> bytes:
        """The content's AEAD additional data (``envelope_aad``)."""
        return envelope_aad(self.notification, self.response)

    def info(self, state: str) -> bytes:
        """The HPKE info of ``state``'s wrapped key (``envelope_info``)."""
        return envelope_info(self.notification, self.response, state)

    def wrapped_key(self, state: str) -> bytes:
        for code, wrapped in self.wrapped_keys:
            if code == state:
                return wrapped
        raise EnvelopeNotAddressed(state, self.addressed)

    def with_wrapped_key(self, state: str, wrapped: bytes) -> Envelope:
        """A copy with ``state``'s wrapped key added or replaced (what a re-wrap records, and
        how a third State puts the key shared with it beside the envelope it is served)."""
        keys = dict(self.wrapped_keys)
        keys[check_state(state)] = wrapped
        return Envelope(
            self.notification,
            self.nonce,
            self.ciphertext,
            tuple(sorted(keys.items())),
            self.response,
        )

    def to_bytes(self) -> bytes:
        """The byte-exact form of docs/e2e.md (big-endian lengths, keys in code order)."""
        magic = MAGIC if self.response is None else RESPONSE_MAGIC
        parts = [_HEADER.pack(magic, KEM_ID, KDF_ID, AEAD_ID, self.notification.bytes)]
        if self.response is not None:
            parts.append(_INDEX.pack(self.response))
        parts += [
            _BODY.pack(self.nonce, len(self.ciphertext)),
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
        if len(data) < _HEADER.size + _BODY.size:
            raise EnvelopeMalformed(f"an envelope is at least {_HEADER.size + _BODY.size} bytes")
        magic, kem, kdf, aead, notification = _HEADER.unpack_from(data)
        if magic not in (MAGIC, RESPONSE_MAGIC):
            raise EnvelopeMalformed(
                f"an envelope starts with {MAGIC!r} or {RESPONSE_MAGIC!r}, got {magic!r}"
            )
        if (kem, kdf, aead) != (KEM_ID, KDF_ID, AEAD_ID):
            raise EnvelopeMalformed(
                f"the envelope's suite is KEM 0x{kem:04x}, KDF 0x{kdf:04x}, AEAD 0x{aead:04x}; "
                f"expected 0x{KEM_ID:04x}, 0x{KDF_ID:04x}, 0x{AEAD_ID:04x}"
            )
        offset = _HEADER.size
        response: int | None = None
        if magic == RESPONSE_MAGIC:
            if len(data) < offset + _INDEX.size + _BODY.size:
                raise EnvelopeMalformed("the response envelope's header is cut short")
            (response,) = _INDEX.unpack_from(data, offset)
            offset += _INDEX.size
        nonce, length = _BODY.unpack_from(data, offset)
        offset += _BODY.size
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
        return cls(UUID(bytes=notification), nonce, ciphertext, tuple(keys), response)


def content_aad(notification: UUID) -> bytes:
    """The content's AEAD additional data (binds it to the notification)."""
    return CONTENT_AAD_PREFIX + notification.bytes


def wrap_info(notification: UUID, state: str) -> bytes:
    """The HPKE info of ``state``'s content wrapped key (binds it to notification and State)."""
    return WRAP_INFO_PREFIX + notification.bytes + state.encode("ascii")


def envelope_aad(notification: UUID, response: int | None) -> bytes:
    """The AEAD additional data of a notification's content (``response`` None) or of
    response ``response``: binds the ciphertext to where it was sent."""
    if response is None:
        return content_aad(notification)
    return RESPONSE_AAD_PREFIX + notification.bytes + _INDEX.pack(response)


def envelope_info(notification: UUID, response: int | None, state: str) -> bytes:
    """The HPKE info of ``state``'s wrapped key in such an envelope: binds the key to the
    notification, the response (if one) and the State."""
    if response is None:
        return wrap_info(notification, state)
    return (
        RESPONSE_WRAP_INFO_PREFIX
        + notification.bytes
        + _INDEX.pack(response)
        + state.encode("ascii")
    )


def check_state(state: str) -> str:
    """``state`` if it is a member State's uppercase code, else EnvelopeMalformed."""
    try:
        if check_member_state(state) == state:
            return state
    except NotAMemberState:
        pass
    raise EnvelopeMalformed(f"{state[:10]!r} is not the uppercase code of a member State")


def decode_base64(text: str, field: str, *, limit: int = MAX_ENVELOPE_BYTES) -> bytes:
    """Standard base64 (RFC 4648 §4, padded) of at most ``limit`` bytes, or ValidationError
    naming ``field`` (never echoing the value)."""
    if len(text) > 4 * -(-limit // 3):
        raise ValidationError(f"{field} is larger than {limit} bytes; an envelope is at most that")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{field} is not standard base64") from None


def check_sealed(
    raw: bytes,
    notification: UUID,
    parties: Collection[str],
    *,
    response: int | None = None,
    field: str = "envelope",
) -> Envelope:
    """What the server checks of an envelope it cannot open: it is of the documented
    format, no larger than :data:`MAX_ENVELOPE_BYTES`, for ``notification`` (and response
    index ``response``, or a notification's content if None), and addressed to exactly
    ``parties``. Anything else is EnvelopeMalformed saying what to fix."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeMalformed(f"{field} is larger than {MAX_ENVELOPE_BYTES} bytes")
    envelope = Envelope.from_bytes(raw)
    if envelope.notification != notification:
        raise EnvelopeMalformed(
            f"{field} was sealed for notification {envelope.notification}, not {notification}; "
            "seal it again for this notification"
        )
    if envelope.response != response:
        wanted = "a notification's content" if response is None else f"response {response}"
        found = (
            "a notification's content"
            if envelope.response is None
            else f"response {envelope.response}"
        )
        raise EnvelopeMalformed(f"{field} was sealed as {found}; it must be {wanted}")
    if set(envelope.addressed) != set(parties):
        raise EnvelopeMalformed(
            f"{field} is addressed to {', '.join(envelope.addressed)}; it must be addressed to "
            f"exactly the parties, {', '.join(sorted(parties))}"
        )
    return envelope


def parse_wrapped_key(text: str, field: str) -> bytes:
    """One wrapped key sent in base64 (a share with a third State): exactly
    :data:`WRAPPED_KEY_LENGTH` bytes."""
    raw = decode_base64(text, field, limit=WRAPPED_KEY_LENGTH)
    if len(raw) != WRAPPED_KEY_LENGTH:
        raise ValidationError(
            f"{field} is a wrapped key of {WRAPPED_KEY_LENGTH} bytes, got {len(raw)}"
        )
    return raw
