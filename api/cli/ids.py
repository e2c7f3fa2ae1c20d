"""Ids as a person types them at the CLI: a full UUID, or an unambiguous prefix of one (as
git takes commit ids), resolved against the aggregates the record holds. The HTTP API takes
full ids only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from uuid import UUID

from api.cli.errors import EXIT_NOT_FOUND, fail
from domain.application import PocDirectory
from domain.values import parse_uuid
from infra.ids import CREATED, created_ids

#: The fewest hexadecimal digits a prefix has: fewer would match most of a large record.
MIN_PREFIX = 4

_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]*")


def full_id(value: str) -> UUID | None:
    """``value`` as a UUID if it spells a whole one, else ``None`` (a prefix, or not an id)."""
    try:
        return parse_uuid(value)
    except ValueError:
        return None


def check_prefix(value: str, name: str, what: str) -> str:
    """``value`` trimmed and lower-cased if it can start a UUID (with or without its
    hyphens); else exit 2 saying what ``name`` (``CHECK_ID``, ``--aggregate``) takes."""
    spelled = value.strip().lower()
    digits = spelled.replace("-", "")
    if not (spelled.isascii() and _PREFIX.fullmatch(spelled)) or len(digits) < MIN_PREFIX:
        fail(
            f"{name} must be the {what}'s id, such as 0b6e7c1a-3f1e-4c3a-9a55-0d6f2e8b9c01, or "
            f"its first {MIN_PREFIX} or more characters, not {value[:40]!r}"
        )
    return spelled


def resolve(value: str, candidates: Iterable[UUID], what: str) -> UUID:
    """The one id among ``candidates`` that ``value`` (a checked prefix) starts; exit 4 if
    none does, exit 2 if several do, saying how many."""
    digits = value.replace("-", "").lower()
    matches = [c for c in dict.fromkeys(candidates) if c.hex.startswith(digits)]
    if not matches:
        fail(f"no {what} id starts with {value!r}", EXIT_NOT_FOUND)
    if len(matches) > 1:
        fail(f"{value!r} is ambiguous: {len(matches)} {what} ids start with it; type more of it")
    return matches[0]


def parse_id(value: str, name: str, what: str) -> UUID | str:
    """``value`` as a full id, or as a checked prefix to resolve once the record is open
    (``record_id``); exit 2 if it is neither. Checked before the record is opened, so that
    bad input is named first."""
    whole = full_id(value)
    return whole if whole is not None else check_prefix(value, name, what)


def record_id(application: PocDirectory, value: UUID | str, what: str) -> UUID:
    """The id ``value`` (from ``parse_id``) stands for, among the record's ``what``
    aggregates (a kind named in ``infra.ids.CREATED``; ``"aggregate"`` for any kind)."""
    if isinstance(value, UUID):
        return value
    kinds = () if what == "aggregate" else (CREATED[what],)
    return resolve(value, created_ids(application, *kinds), what)
