"""How events are encoded in the record and decoded from it.

The application's transcoder stores dates and pocdir's frozen value objects as JSON
(``register_transcodings``). The views decode the same stored bytes with an exchange's content
withheld (``facts_mapper``), so that no projector can receive content. Both live here, apart
from the commands, because they are one concern: what a stored event's bytes mean.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date
from typing import Any, Final, final
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, JSONTranscoder, Mapper, Transcoding

from domain.notification import SupportingInformation
from domain.state_keys import EncryptionKey, SigningKey
from domain.values import Contact, Text


class BytesAsBase64(Transcoding):
    """Bytes (a sealed exchange's envelope, a wrapped key) as standard base64 text."""

    type = bytes
    name = "bytes_b64"

    def encode(self, obj: bytes) -> str:
        return base64.b64encode(obj).decode("ascii")

    def decode(self, data: str) -> bytes:
        return base64.b64decode(data)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def _value_transcoding(cls: Any, name: str) -> Transcoding:
    """Store a frozen value object as its ``to_dict`` form, rebuilt through ``from_dict``."""

    class _ValueAsDict(Transcoding):
        type = cls

        def encode(self, obj: Any) -> Any:
            return obj.to_dict()

        def decode(self, data: Any) -> Any:
            return cls.from_dict(data)

    _ValueAsDict.name = name
    return _ValueAsDict()


def register_transcodings(transcoder: JSONTranscoder) -> None:
    """pocdir's own transcodings, beside the library's (``Application.register_transcodings``)."""
    transcoder.register(DateAsISO())
    transcoder.register(BytesAsBase64())
    transcoder.register(_value_transcoding(Text, "text"))
    transcoder.register(_value_transcoding(Contact, "contact"))
    transcoder.register(_value_transcoding(SupportingInformation, "supporting_information"))
    transcoder.register(_value_transcoding(EncryptionKey, "encryption_key"))
    transcoder.register(_value_transcoding(SigningKey, "signing_key"))


@final
class WithheldContent:
    """What an exchange's content (a description, a response, a text, supporting information
    with its indicators) decodes to in events read for the views (``facts_mapper``).

    Why: the views hold the facts of an interaction, never its content, and are read by the
    Secretariat and by reviewers, who never read content. Withholding it when decoding makes
    that structural, not a matter of each projector leaving it alone. It is also nearly half
    of the cost of decoding a record: indicators are validated and normalised again on every
    read, and a rebuild decodes every event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<withheld content>"


#: The one instance: content fields of facts-decoded events are this object.
WITHHELD: Final = WithheldContent()
#: The transcodings (by stored name) whose values are an exchange's content.
CONTENT_TRANSCODINGS: Final = ("text", "supporting_information")


class _WithheldTranscoding(Transcoding):
    """Decodes content to ``WITHHELD`` without reading it; refuses to encode, so that an
    event decoded for the views can never be stored back in place of the real one."""

    type = WithheldContent

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, obj: Any) -> Any:
        raise TypeError("withheld content cannot be stored: this event was decoded for the views")

    def decode(self, data: Any) -> WithheldContent:
        return WITHHELD


def facts_mapper(
    factory: InfrastructureFactory[Any], register: Callable[[JSONTranscoder], None]
) -> Mapper[UUID]:
    """A mapper that decodes stored events for the views: as the application's mapper does
    (``factory``'s cipher and compressor, the transcodings ``register`` adds), except that
    content decodes to ``WITHHELD`` (``WithheldContent``). Read-only: it refuses to encode
    withheld content."""
    transcoder = factory.transcoder()
    if not isinstance(transcoder, JSONTranscoder):  # pragma: no cover - configuration
        raise TypeError("the views decode events with the JSON transcoder only")
    register(transcoder)
    for name in CONTENT_TRANSCODINGS:
        transcoder.register(_WithheldTranscoding(name))
    return factory.mapper(transcoder=transcoder)
