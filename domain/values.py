"""Value objects of the directory: texts (R6), channels, contacts (R2-R4) and principals.

Each is a frozen dataclass built through a ``parse``/``from_dict`` constructor that validates
and normalises, so an invalid value never reaches an event. ``to_dict`` gives the JSON-native
form stored in events; ``from_dict`` of that form returns an equal value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import TranslationRequired, ValidationError
from domain.taxonomy import UN_LANGUAGES, Level, check_incident_type, check_level

MAX_TEXT = 4000
_DAY = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAYS = rf"{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*"
# re.ASCII: \d would otherwise also match other scripts' digits ('٣'), stored as sent.
_HOURS_RE = re.compile(
    rf"^(24/7|({_DAYS} )?([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d)$", re.ASCII
)
_CONTACT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
_FINGERPRINT_RE = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")


def check_unicode(value: str, field: str) -> str:
    """``value``, if UTF-8 can hold it: every character a Unicode scalar value.

    A lone UTF-16 surrogate is not one, yet JSON spells it (``"\\ud800"``) and Python
    decodes undecodable command-line bytes to such surrogates. Events are stored as UTF-8
    JSON, so such text is invalid input, refused here with the field's name (never the text).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(
            f"{field}: not valid Unicode text (a lone surrogate at character {e.start + 1}); "
            "send the text as UTF-8"
        ) from None
    return value


def parse_uuid(raw: str) -> UUID:
    """An id as a caller spells it: hexadecimal digits in ASCII, in any form ``UUID`` reads.
    ``UUID`` itself (through ``int``) also reads other scripts' digits ('١' as 1), which would
    give one resource several spellings. Raises ``ValueError`` for anything else."""
    if not raw.isascii():
        raise ValueError("an id is written in ASCII")
    return UUID(raw)


def _require_str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what}: '{key}' is required and must be a non-empty string")
    return check_unicode(value.strip(), f"{what}.{key}")


@dataclass(frozen=True)
class Text:
    """Free text in one of the six UN languages, with an English translation unless English.

    R6: information may be submitted in any official UN language accompanied by an English
    translation, or in English only.
    """

    language: str
    text: str
    english: str | None = None

    @classmethod
    def parse(
        cls, language: str, text: str, english: str | None = None, *, field: str = "text"
    ) -> Text:
        """Validate R6, length limits and that the text is Unicode (UTF-8 can hold it).
        ``english`` must be absent for English text. ``field`` names the text in messages
        (e.g. ``description``), so the caller learns which of several texts to fix."""
        if language not in UN_LANGUAGES:
            raise ValidationError(
                f"{field}: language {language[:10]!r} is not an official UN language; "
                f"use one of: {', '.join(UN_LANGUAGES)}"
            )
        text = check_unicode(text, field).strip()
        if not text:
            raise ValidationError(f"{field} must not be empty")
        if len(text) > MAX_TEXT:
            raise ValidationError(f"{field} is longer than {MAX_TEXT} characters")
        if english is not None:
            english = check_unicode(english, f"{field}.english")
        if language == "en":
            if english is not None and english.strip() and english.strip() != text:
                raise ValidationError(f"{field}: English text takes no separate 'english'")
            return cls("en", text, None)
        if english is None or not english.strip():
            raise TranslationRequired(
                f"{field} in {UN_LANGUAGES[language]} needs an English translation in "
                "'english' (R6)"
            )
        if len(english) > MAX_TEXT:
            raise ValidationError(f"{field}.english is longer than {MAX_TEXT} characters")
        return cls(language, text, english.strip())

    @classmethod
    def english_only(cls, text: str, *, field: str = "text") -> Text:
        return cls.parse("en", text, field=field)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, *, field: str = "text") -> Text:
        """Accept ``{"language", "text", "english"}`` or a bare string (English)."""
        if isinstance(data, str):
            return cls.parse("en", data, field=field)
        if not isinstance(data, Mapping):
            raise ValidationError(f"{field} must be a string or an object with language and text")
        english = data.get("english")
        if english is not None and not isinstance(english, str):
            raise ValidationError(f"{field}: 'english' must be a string")
        return cls.parse(
            _require_str(data, "language", field),
            _require_str(data, "text", field),
            english,
            field=field,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "text": self.text, "english": self.english}

    @property
    def in_english(self) -> str:
        return self.english if self.english is not None else self.text


class ChannelKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    SECURE = "secure"


@dataclass(frozen=True)
class Channel:
    """One way to reach a contact. A secure channel names its public-key fingerprint."""

    kind: ChannelKind
    address: str
    fingerprint: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Channel:
        if not isinstance(data, Mapping):
            raise ValidationError("channel must be an object with kind and address")
        kind_raw = _require_str(data, "kind", "channel")
        try:
            kind = ChannelKind(kind_raw)
        except ValueError:
            raise ValidationError(
                f"unknown channel kind {kind_raw[:20]!r}; use email, phone or secure"
            ) from None
        address = _require_str(data, "address", "channel")
        fingerprint = data.get("fingerprint")
        if kind is ChannelKind.EMAIL:
            if not _EMAIL_RE.match(address):
                raise ValidationError("e-mail channel: address is not a valid e-mail address")
            address = address.lower()
        elif kind is ChannelKind.PHONE:
            address = re.sub(r"[\s().-]", "", address)
            if not _PHONE_RE.match(address):
                raise ValidationError(
                    "phone channel: use the international E.164 form, e.g. +41227917000"
                )
        if kind is ChannelKind.SECURE:
            if not isinstance(fingerprint, str):
                raise ValidationError(
                    "secure channel: 'fingerprint' of the public key is required (hex SHA-1/256)"
                )
            fingerprint = re.sub(r"[\s:]", "", fingerprint).lower()
            if not _FINGERPRINT_RE.match(fingerprint):
                raise ValidationError(
                    "secure channel: fingerprint must be 40 or 64 hexadecimal digits"
                )
            if len(address) > 256:
                raise ValidationError("secure channel: address is longer than 256 characters")
        elif fingerprint is not None:
            raise ValidationError(f"{kind} channel: only a secure channel takes a fingerprint")
        return cls(kind, address, fingerprint)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "address": self.address, "fingerprint": self.fingerprint}


def _str_list(data: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValidationError(f"contact: '{key}' must be a list of strings")
    if any(not isinstance(v, str) for v in value):
        raise ValidationError(f"contact: '{key}' must be a list of strings")
    if required and not value:
        raise ValidationError(f"contact: '{key}' must name at least one")
    return list(value)


@dataclass(frozen=True)
class Contact:
    """A point of contact: level (R2), agency and function (R3), how to reach them, and the
    incident types they handle (R4)."""

    contact_id: str
    level: Level
    agency: Text
    function: Text
    channels: tuple[Channel, ...]
    languages: tuple[str, ...]
    time_zone: str
    hours: str
    incident_types: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contact:
        """Validate every field; the first fault is reported with the field's name."""
        if not isinstance(data, Mapping):
            raise ValidationError("contact must be an object")
        contact_id = _require_str(data, "contact_id", "contact")
        if not _CONTACT_ID_RE.match(contact_id):
            raise ValidationError(
                "contact: 'contact_id' must be 1-63 lowercase letters, digits or hyphens"
            )
        level = check_level(_require_str(data, "level", "contact"))
        channels_raw = data.get("channels")
        if not isinstance(channels_raw, Sequence) or isinstance(channels_raw, str):
            raise ValidationError("contact: 'channels' must be a list of channels")
        if not channels_raw:
            raise ValidationError("contact: give at least one channel")
        if len(channels_raw) > 20:
            raise ValidationError("contact: at most 20 channels")
        channels = tuple(Channel.from_dict(c) for c in channels_raw)
        languages = _str_list(data, "languages", required=True)
        for lang in languages:
            if not _LANGUAGE_RE.match(lang):
                raise ValidationError(
                    f"contact: language {lang[:10]!r} is not an ISO 639 code such as 'en'"
                )
        time_zone = _require_str(data, "time_zone", "contact")
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(
                f"contact: time_zone {time_zone[:40]!r} is not an IANA zone such as 'Europe/Paris'"
            ) from None
        hours = _require_str(data, "hours", "contact")
        if not _HOURS_RE.match(hours):
            raise ValidationError(
                "contact: hours must be '24/7' or like 'Mon-Fri 08:00-18:00' (local time)"
            )
        incident_types = tuple(
            dict.fromkeys(
                check_incident_type(t) for t in _str_list(data, "incident_types", required=False)
            )
        )
        return cls(
            contact_id=contact_id,
            level=level,
            agency=Text.from_dict(data.get("agency", ""), field="contact.agency"),
            function=Text.from_dict(data.get("function", ""), field="contact.function"),
            channels=channels,
            languages=tuple(dict.fromkeys(languages)),
            time_zone=time_zone,
            hours=hours,
            incident_types=incident_types,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "level": str(self.level),
            "agency": self.agency.to_dict(),
            "function": self.function.to_dict(),
            "channels": [c.to_dict() for c in self.channels],
            "languages": list(self.languages),
            "time_zone": self.time_zone,
            "hours": self.hours,
            "incident_types": list(self.incident_types),
        }

    def has_channel(self, kind: ChannelKind) -> bool:
        return any(c.kind is kind for c in self.channels)


class Role(StrEnum):
    """The four roles of docs/domain.md."""

    STATE = "state"
    SECRETARIAT = "secretariat"
    AUDITOR = "auditor"
    REVIEWER = "reviewer"


@dataclass(frozen=True)
class Principal:
    """Who acts. A State principal acts for exactly one State (its ``state`` code)."""

    id: str
    role: Role
    state: str | None = None

    def __post_init__(self) -> None:
        if (self.role is Role.STATE) != (self.state is not None):
            raise ValidationError("a principal has a State code if and only if its role is state")
        # Recorded on every event it causes (``ref``), so it must be text UTF-8 can hold.
        check_unicode(self.id, "the acting principal's id")
        if self.state is not None:
            check_unicode(self.state, "the acting principal's State code")

    @property
    def ref(self) -> str:
        """The form recorded on every event as its acting principal."""
        if self.state is not None:
            return f"{self.role}:{self.state}/{self.id}"
        return f"{self.role}:{self.id}"
