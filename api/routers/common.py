"""Request parsing shared by the routers."""

from __future__ import annotations

from uuid import UUID

from api.schemas import TextIn
from domain.errors import NotFound
from domain.values import Text, parse_uuid


def parse_id(raw: str, what: str = "notification") -> UUID:
    """Ids are UUIDs; anything else names nothing (404, not 422, so probing reveals nothing)."""
    try:
        return parse_uuid(raw)
    except ValueError:
        raise NotFound(f"no such {what}") from None


def text(value: TextIn | str, field: str) -> Text:
    """Free text as sent: a bare string (English) or ``{language, text, english}`` (R6).
    ``field`` is the body's field, named in any refusal."""
    return Text.from_dict(value if isinstance(value, str) else value.model_dump(), field=field)
