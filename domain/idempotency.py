"""Idempotency keys: a caller names a request so that retrying it never writes twice.

A write answered 500 or 503 may still have committed (a full disk can fail after the commit),
so a client that retries must be able to say "this is the same request as before". It sends
a key of its choosing with the request. The key, scoped to the caller's credential, and a
digest of the request are written in the same transaction as the request's events, so no
crash can separate them: a request either committed together with its key, or neither.

The application's commands take an ``IdempotencyKey``; the recorder writes it beside the
events (``infra.idempotency`` keeps the rows and the first outcome of each request).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from eventsourcing.persistence import IntegrityError

from domain.errors import ConcurrentChange, ValidationError

#: The most characters a key may have. A UUID (36) or a ULID (26) fits with room to spare.
MAX_KEY_LENGTH: Final = 255
_KEY_RE: Final = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$")

#: Keys are kept at least this long after their request; a retry within it is recognised.
MIN_RETENTION: Final = timedelta(hours=24)


class KeyAlreadyRecorded(IntegrityError):
    """Raised by a recorder, inside the events' transaction, when the key was recorded by
    another request meanwhile; the transaction is rolled back, so nothing is written."""


class RequestInFlight(ConcurrentChange):
    """The same key is being used by a request that has not finished (HTTP 409)."""


class KeyReused(ValidationError):
    """The key was used before for a different request (HTTP 422)."""


def check_key(key: str) -> str:
    """A key is 1-255 visible ASCII characters (no spaces), as the caller sent it."""
    if not _KEY_RE.match(key):
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "without spaces, for example a UUID"
        )
    return key


def request_digest(parts: Iterable[bytes]) -> str:
    """SHA-256 of a request's parts, each length-prefixed so no two requests share one."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class IdempotencyKey:
    """One request's key: who sent it (``scope``, the credential's principal ref), the key it
    chose, the digest of what it asked, and, when the request reserved the key before it ran
    (``infra.idempotency``), the reservation's ``holder`` token."""

    scope: str
    key: str
    digest: str
    holder: str | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if not self.scope:
            raise ValidationError("an idempotency key is scoped to a principal")
