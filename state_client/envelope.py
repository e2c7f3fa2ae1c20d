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

A response is an envelope of its own (:func:`seal_response`), bound likewise to the
notification and the response's index. The byte format is ``domain/envelope.py``'s, which the
server reads too (it checks what it can without keys); this module holds the cryptography.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.envelope import (
    CONTENT_AAD_PREFIX,
    MAGIC,
    RESPONSE_AAD_PREFIX,
    RESPONSE_MAGIC,
    RESPONSE_WRAP_INFO_PREFIX,
    WRAP_INFO_PREFIX,
    WRAPPED_KEY_LENGTH,
    Envelope,
    EnvelopeError,
    EnvelopeMalformed,
    EnvelopeNotAddressed,
    check_state,
    content_aad,
    envelope_aad,
    envelope_info,
    wrap_info,
)
from domain.errors import ValidationError
from domain.notification import SupportingInformation
from domain.values import Text
from state_client.keys import SUITE, EncryptionPrivateKey, EncryptionPublicKey

__all__ = [
    "CONTENT_AAD_PREFIX",
    "MAGIC",
    "RESPONSE_AAD_PREFIX",
    "RESPONSE_MAGIC",
    "RESPONSE_WRAP_INFO_PREFIX",
    "WRAP_INFO_PREFIX",
    "WRAPPED_KEY_LENGTH",
    "Content",
    "Envelope",
    "EnvelopeError",
    "EnvelopeMalformed",
    "EnvelopeNotAddressed",
    "EnvelopeUndecryptable",
    "content_aad",
    "open_envelope",
    "open_response",
    "rewrap",
    "rewrap_response",
    "seal",
    "seal_response",
    "wrap_info",
]

_CONTENT_KEY_LENGTH: Final = 32
_NONCE_LENGTH: Final = 12


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
            f"{state}: it was altered, moved from another notification, response or State, "
            "or the private key is not this State's"
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
    return _seal(checked.to_bytes(), notification, None, recipients)


def open_envelope(
    envelope: Envelope,
    state: str,
    private_key: EncryptionPrivateKey,
    *,
    shared_key: bytes | None = None,
) -> Content:
    """Decrypt the content as ``state`` and validate it with the domain's rules.

    A third State passes the wrapped key shared with it (``shared_keys.content`` of
    ``GET /notifications/{id}``, decoded) as ``shared_key``: the envelope it is served is
    addressed to the parties only."""
    key = _unwrap(_with_shared(envelope, state, shared_key), state, private_key)
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
    the party posts to ``POST /consents/{id}/share`` as ``wrapped_keys.content``.
    """
    key = _unwrap(envelope, state, private_key)
    Content.from_bytes(_decrypt_content(envelope, key, state))
    return _rewrapped(envelope, key, third_state, third_public_key)


def seal_response(
    notification: UUID,
    index: int,
    response: Text | Mapping[str, Any] | str,
    recipients: Mapping[str, EncryptionPublicKey],
) -> Envelope:
    """Encrypt response number ``index`` (0 for the first) to ``notification`` for every
    State in ``recipients`` (both parties), under a content key of its own.

    The response is validated first as the server would validate it in plain text (R6; a
    bare string is English). Its AAD and every wrapped key's HPKE info name the notification
    and the index, so the response opens only there (docs/e2e.md, "Responses")."""
    text = _response_text(response)
    if not 0 <= index < 2**32:
        raise ValidationError("a response's index is from 0 to 2^32 - 1")
    return _seal(_response_bytes(text), notification, index, recipients)


def open_response(
    envelope: Envelope,
    state: str,
    private_key: EncryptionPrivateKey,
    *,
    shared_key: bytes | None = None,
) -> Text:
    """Decrypt a response as ``state`` (a third State passes the wrapped key shared with it,
    ``shared_keys.responses[i]`` decoded, as ``shared_key``) and validate it again."""
    if envelope.response is None:
        raise EnvelopeMalformed("this envelope is a notification's content, not a response")
    key = _unwrap(_with_shared(envelope, state, shared_key), state, private_key)
    return _response_from_bytes(_decrypt_content(envelope, key, state))


def rewrap_response(
    envelope: Envelope,
    state: str,
    private_key: EncryptionPrivateKey,
    third_state: str,
    third_public_key: EncryptionPublicKey,
) -> Envelope:
    """R11: ``rewrap`` for one response; ``wrapped_key(third_state)`` of the result is one
    item of ``wrapped_keys.responses`` of ``POST /consents/{id}/share``."""
    if envelope.response is None:
        raise EnvelopeMalformed("this envelope is a notification's content, not a response")
    key = _unwrap(envelope, state, private_key)
    _response_from_bytes(_decrypt_content(envelope, key, state))
    return _rewrapped(envelope, key, third_state, third_public_key)


# --- helpers -------------------------------------------------------------------------------


def _seal(
    plaintext: bytes,
    notification: UUID,
    response: int | None,
    recipients: Mapping[str, EncryptionPublicKey],
) -> Envelope:
    if not recipients:
        raise ValidationError("an envelope needs at least one recipient State")
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_LENGTH)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, envelope_aad(notification, response))
    wrapped = {
        check_state(state): _wrap_with(
            key, envelope_info(notification, response, state), public_key
        )
        for state, public_key in recipients.items()
    }
    return Envelope(notification, nonce, ciphertext, tuple(sorted(wrapped.items())), response)


def _rewrapped(
    envelope: Envelope, key: bytes, third_state: str, third_public_key: EncryptionPublicKey
) -> Envelope:
    third = check_state(third_state)
    return envelope.with_wrapped_key(third, _wrap_with(key, envelope.info(third), third_public_key))


def _with_shared(envelope: Envelope, state: str, shared_key: bytes | None) -> Envelope:
    return envelope if shared_key is None else envelope.with_wrapped_key(state, shared_key)


def _response_text(response: Text | Mapping[str, Any] | str) -> Text:
    if isinstance(response, Text):
        return response
    if isinstance(response, str):
        return Text.english_only(response)
    return Text.from_dict(response, field="response")


def _response_bytes(text: Text) -> bytes:
    """A response's plaintext: RFC 8785 JSON of ``{"response": <Text>}``."""
    return rfc8785.dumps({"response": text.to_dict()})


def _response_from_bytes(data: bytes) -> Text:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationError("the decrypted response is not UTF-8 JSON") from None
    if not isinstance(parsed, Mapping) or set(parsed) != {"response"}:
        raise ValidationError("a decrypted response is an object with exactly the key 'response'")
    return Text.from_dict(parsed["response"], field="response")


def _wrap(key: bytes, notification: UUID, state: str, public_key: EncryptionPublicKey) -> bytes:
    """A content key wrapped to ``state`` for ``notification``'s content."""
    return _wrap_with(key, wrap_info(notification, state), public_key)


def _wrap_with(key: bytes, info: bytes, public_key: EncryptionPublicKey) -> bytes:
    return SUITE.encrypt(key, public_key.hpke(), info=info)


def _unwrap(envelope: Envelope, state: str, private_key: EncryptionPrivateKey) -> bytes:
    wrapped = envelope.wrapped_key(state)
    try:
        key = SUITE.decrypt(wrapped, private_key.hpke(), info=envelope.info(state))
    except (InvalidTag, ValueError):
        raise EnvelopeUndecryptable(
            "wrapped key", state=state, notification=envelope.notification
        ) from None
    if len(key) != _CONTENT_KEY_LENGTH:
        raise EnvelopeUndecryptable("wrapped key", state=state, notification=envelope.notification)
    return key


def _decrypt_content(envelope: Envelope, key: bytes, state: str) -> bytes:
    try:
        return AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, envelope.aad)
    except InvalidTag:
        raise EnvelopeUndecryptable(
            "content", state=state, notification=envelope.notification
        ) from None
