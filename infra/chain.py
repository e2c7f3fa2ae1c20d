"""The hash chain over the stored record: canonical encoding, hashes and verification.

Byte-exact definitions are in ``docs/audit-format.md``; this module is their reference
implementation and ``tests/test_audit_format.py`` recomputes the worked example there.

For every stored event, in position order::

    record   = u64(position) ‖ u32(len(id)) ‖ id ‖ u64(version)
               ‖ u32(len(topic)) ‖ topic ‖ u32(len(state)) ‖ state
    leaf     = SHA-256(0x00 ‖ record)                # RFC 9162 §2.1.1 leaf hash
    link     = SHA-256(0x02 ‖ previous link ‖ leaf)  # GENESIS_LINK before the first event

``state`` is the event's bytes as stored (ciphertext when encryption is on), so verification
needs no key. The leaf hash is the one the Merkle tree of RFC 9162 uses, so checkpoints reuse it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, cast
from uuid import UUID

#: RFC 9162 §2.1.1: prefix of a leaf hash.
LEAF_HASH_PREFIX = b"\x00"
#: RFC 9162 §2.1.1: prefix of an interior node hash (used by the Merkle tree).
NODE_HASH_PREFIX = b"\x01"
#: pocdir: prefix of a chain link, distinct from both tree prefixes.
LINK_HASH_PREFIX = b"\x02"
#: The link that precedes the first event.
GENESIS_LINK = bytes(32)
#: ``prev_position`` of the first event.
GENESIS_POSITION = 0

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


class IdSpelling(Enum):
    """The one text spelling of an originator id that a source of rows holds.

    The eventsourcing library finds an aggregate's events by exact match on the stored
    spelling, so a row spelled any other way, even naming the same UUID, would be left out
    when its aggregate is loaded (a credential could no longer be revoked). So each source
    accepts only the spelling pocdir writes there; a UUID value (PostgreSQL's ``uuid``, read
    as such) has no spelling and is always accepted.
    """

    #: SQLite's ``TEXT`` column: 32 lowercase hex digits, no hyphens (``UUID.hex``).
    HEX = "32 lowercase hex digits"
    #: PostgreSQL's ``uuid`` as ``::text``, and the audit bundle: the 36-character form.
    CANONICAL = "the 36-character canonical form"

    def spell(self, uuid: UUID) -> str:
        return uuid.hex if self is IdSpelling.HEX else str(uuid)


@dataclass(frozen=True)
class MalformedValue:
    """A stored value that no column holds when pocdir writes it: text that is not valid
    UTF-8 (SQLite does not check), or a value exported from such a column (the audit
    bundle). The verifier reports it as ``RecordAltered``; it is never encoded."""

    stored_type: str
    data: bytes

    def describe(self) -> str:
        if self.stored_type == "blob":
            return f"a blob of {len(self.data)} bytes"
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError:
            return f"{self.stored_type} that is not valid UTF-8 ({len(self.data)} bytes)"
        return f"{self.stored_type} {text[:60]!r}"


def describe_value(value: object) -> str:
    """What a stored value is, for the ``computed`` side of an error (never its content)."""
    if isinstance(value, MalformedValue):
        return value.describe()
    if isinstance(value, bytes):
        return f"a blob of {len(value)} bytes"
    if isinstance(value, str):
        return f"text {value[:60]!r}"
    return f"a {type(value).__name__} ({str(value)[:40]})"


class IdSpellingError(ValueError):
    """An originator id that is not a UUID in the spelling its source holds."""

    def __init__(self, reason: str, *, expected: str, computed: str) -> None:
        self.reason = reason
        self.expected = expected
        self.computed = computed
        super().__init__(f"{reason} (expected {expected}, computed {computed})")


def canonical_originator_id(
    originator_id: UUID | str, spelling: IdSpelling = IdSpelling.CANONICAL
) -> bytes:
    """A UUID as its 36-character lowercase hyphenated form, in ASCII.

    A text id is accepted only in ``spelling``, the one its source holds (see
    ``IdSpelling``); raises ``IdSpellingError`` for anything else.
    """
    if isinstance(originator_id, UUID):
        return str(originator_id).encode("ascii")
    if not isinstance(originator_id, str):
        raise IdSpellingError(
            "originator id is not a UUID as pocdir writes it",
            expected=f"a UUID in {spelling.value}",
            computed=describe_value(originator_id),
        )
    try:
        uuid = UUID(originator_id)
    except ValueError:
        raise IdSpellingError(
            "originator id is not a UUID",
            expected=f"a UUID in {spelling.value}",
            computed=describe_value(originator_id),
        ) from None
    expected = spelling.spell(uuid)
    if originator_id != expected:
        raise IdSpellingError(
            f"originator id is not in the spelling pocdir writes ({spelling.value})",
            expected=expected,
            computed=originator_id[:60],
        )
    return str(uuid).encode("ascii")


def encode_record(
    position: int,
    originator_id: UUID | str,
    version: int,
    topic: str,
    state: bytes,
    spelling: IdSpelling = IdSpelling.CANONICAL,
) -> bytes:
    """The canonical record of one stored event (see module docstring); a text id must be
    in ``spelling``."""
    oid = canonical_originator_id(originator_id, spelling)
    topic_bytes = topic.encode("utf-8")
    return b"".join(
        (
            _U64.pack(position),
            _U32.pack(len(oid)),
            oid,
            _U64.pack(version),
            _U32.pack(len(topic_bytes)),
            topic_bytes,
            _U32.pack(len(state)),
            state,
        )
    )


#: Bytes of a record besides its topic and state: position, id length, id, version and the
#: two other lengths (§2 of the audit format: 8 + 4 + 36 + 8 + 4 + 4).
RECORD_OVERHEAD = 64


def record_size(topic: str, state: bytes) -> int:
    """The length of the record of an event with this topic and stored state, without
    encoding it (its id is always 36 bytes, its integers fixed-size)."""
    return RECORD_OVERHEAD + len(topic.encode("utf-8")) + len(state)


class MalformedRecord(ValueError):
    """Bytes that are not a canonical record (§2 of the audit format): what is wrong, with
    the expected and the computed values, as the verification errors carry them."""

    def __init__(self, reason: str, *, expected: str, computed: str) -> None:
        self.reason = reason
        self.expected = expected
        self.computed = computed
        super().__init__(f"{reason} (expected {expected}, computed {computed})")


class ParsedRecord(NamedTuple):
    """The fields of one canonical record, as ``encode_record`` took them."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


#: The canonical originator id: the 36-character lowercase hyphenated UUID, in ASCII.
CANONICAL_ID_LENGTH = 36


def parse_record(record: bytes) -> ParsedRecord:
    """The exact inverse of ``encode_record``: ``encode_record(*parse_record(r)) == r`` for
    every ``r`` it accepts. A mirror reads the record from tlog-tiles entries with no
    database, so everything a reader relies on is checked here: every length inside the
    bytes, no trailing bytes, a topic in UTF-8 and an id in the one canonical spelling (any
    other spelling would hash differently from what pocdir writes). Raises
    ``MalformedRecord`` naming the first fault."""
    if not isinstance(record, bytes | bytearray | memoryview):
        raise MalformedRecord(
            "a record is bytes", expected="bytes", computed=type(record).__name__
        )
    data = bytes(record)
    offset = 0

    def take(size: int, what: str) -> bytes:
        nonlocal offset
        if offset + size > len(data):
            raise MalformedRecord(
                f"the record ends inside its {what}",
                expected=f"{size} bytes of {what} at offset {offset}",
                computed=f"{len(data) - offset} bytes left",
            )
        part = data[offset : offset + size]
        offset += size
        return part

    position = _U64.unpack(take(_U64.size, "position"))[0]
    id_length = _U32.unpack(take(_U32.size, "id length"))[0]
    if id_length != CANONICAL_ID_LENGTH:
        raise MalformedRecord(
            "the originator id's length is not that of a canonical UUID",
            expected=f"{CANONICAL_ID_LENGTH} bytes",
            computed=f"{id_length} bytes",
        )
    raw_id = take(id_length, "originator id")
    try:
        text_id = raw_id.decode("ascii")
        originator_id = UUID(text_id)
    except (UnicodeDecodeError, ValueError):
        raise MalformedRecord(
            "the originator id is not a UUID",
            expected="a UUID in the 36-character canonical form",
            computed=raw_id.hex()[:72],
        ) from None
    if str(originator_id) != text_id:
        raise MalformedRecord(
            "the originator id is not in the canonical spelling",
            expected=str(originator_id),
            computed=text_id,
        )
    version = _U64.unpack(take(_U64.size, "version"))[0]
    topic_length = _U32.unpack(take(_U32.size, "topic length"))[0]
    raw_topic = take(topic_length, "topic")
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRecord(
            "the topic is not valid UTF-8",
            expected="UTF-8 text",
            computed=f"{len(raw_topic)} bytes that are not UTF-8",
        ) from None
    state_length = _U32.unpack(take(_U32.size, "state length"))[0]
    state = take(state_length, "state")
    if offset != len(data):
        raise MalformedRecord(
            "the record has bytes after its state",
            expected=f"{offset} bytes",
            computed=f"{len(data)} bytes",
        )
    return ParsedRecord(position, originator_id, version, topic, state)


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(LEAF_HASH_PREFIX + record).digest()


def chain_link(previous_link: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(LINK_HASH_PREFIX + previous_link + leaf).digest()


@dataclass(frozen=True)
class LinkRow:
    """A row of the chain table: the link of the event at ``position``."""

    position: int
    prev_position: int
    leaf_hash: bytes
    link: bytes


def compute_links(
    head_position: int,
    head_link: bytes,
    events: Iterable[tuple[int, UUID | str, int, str, bytes]],
    spelling: IdSpelling = IdSpelling.CANONICAL,
) -> list[LinkRow]:
    """Links for new events ``(position, originator_id, version, topic, state)`` that follow
    the stored head (text ids in ``spelling``; pocdir's writes pass UUID values).
    Precondition: the caller holds the store's write lock, so the head is the last committed
    event and no other writer can interleave.

    Raises ``ChainBroken`` if a position does not follow the head (the store was tampered
    with, e.g. rows deleted at the tail so that positions were reused).
    """
    rows: list[LinkRow] = []
    prev_position, prev_link = head_position, head_link
    for position, originator_id, version, topic, state in events:
        if position <= prev_position:
            raise ChainBroken(
                position,
                f"new event at position {position} does not follow the head "
                f"at {prev_position}; the store needs an audit",
                expected=f"> {prev_position}",
                computed=str(position),
            )
        leaf = leaf_hash(encode_record(position, originator_id, version, topic, state, spelling))
        link = chain_link(prev_link, leaf)
        rows.append(LinkRow(position, prev_position, leaf, link))
        prev_position, prev_link = position, link
    return rows


# -- verification -----------------------------------------------------------------------------


class VerificationError(Exception):
    """The stored record is not intact. Carries the first bad position and what is wrong,
    with the expected and the computed values (hex for hashes)."""

    def __init__(self, position: int, reason: str, *, expected: str, computed: str) -> None:
        self.position = position
        self.reason = reason
        self.expected = expected
        self.computed = computed
        super().__init__(
            f"position {position}: {reason} (expected {expected}, computed {computed})"
        )


class RecordAltered(VerificationError):
    """The event's stored bytes, topic, originator id, version or position changed."""


class LinkMismatch(VerificationError):
    """The stored link does not follow from the previous link and this record."""


class EventMissing(VerificationError):
    """A link exists for a position whose event row is gone (deleted)."""


class UnlinkedEvent(VerificationError):
    """An event row has no link: it was inserted outside the chained write path."""


class ChainBroken(VerificationError):
    """The link's predecessor is not the previous stored event (rows deleted, inserted or
    reordered), or a new event does not follow the head."""


@dataclass(frozen=True)
class StoredRow:
    """One position of the record as read for verification: the event columns (None when
    the event row is missing) and the link columns (None when the link row is missing)."""

    position: int
    originator_id: UUID | str | None
    originator_version: int | None
    topic: str | None
    state: bytes | None
    prev_position: int | None
    leaf_hash: bytes | None
    link: bytes | None


@dataclass(frozen=True)
class VerificationResult:
    events: int
    head_position: int
    head_link: bytes
    #: What the signature check found (``infra.signatures.SignatureSummary``), once run.
    signatures: Any = None

    @property
    def head_hash(self) -> str:
        return self.head_link.hex()


_U64_RANGE = "an integer from 0 to 2**64 - 1"


def record_of(row: StoredRow, spelling: IdSpelling) -> bytes:
    """The canonical record of ``row``, or ``RecordAltered`` naming the first column that
    cannot be encoded, with what it should be and what is stored (§2 of the audit format).
    Public because the tlog-tiles entry bundles (``infra.tile_reader``) serve these bytes."""
    position = row.position

    def altered(reason: str, expected: str, computed: str) -> RecordAltered:
        return RecordAltered(
            position,
            f"stored event cannot be encoded: {reason}",
            expected=expected,
            computed=computed,
        )

    if not 0 <= position < 2**64:
        raise altered("its position is out of range", f"a position, {_U64_RANGE}", str(position))
    if type(row.state) is not bytes:
        raise altered("its state is not bytes", "state as bytes", describe_value(row.state))
    if type(row.topic) is not str:
        undecodable = isinstance(row.topic, MalformedValue) and row.topic.stored_type == "text"
        reason = "its topic is not valid UTF-8" if undecodable else "its topic is not text"
        raise altered(reason, "topic as UTF-8 text", describe_value(row.topic))
    version = row.originator_version
    if type(version) is not int or not 0 <= version < 2**64:
        raise altered(
            "its version is not an integer that fits",
            f"a version, {_U64_RANGE}",
            describe_value(version),
        )
    try:
        oid = cast(UUID | str, row.originator_id)  # not None: checked before (EventMissing)
        return encode_record(position, oid, version, row.topic, row.state, spelling)
    except IdSpellingError as e:
        raise altered(e.reason, e.expected, e.computed) from None
    except UnicodeError:
        raise altered(
            "its topic is not valid Unicode", "topic as UTF-8 text", "text with a lone surrogate"
        ) from None
    except struct.error as e:
        raise altered(f"a value does not fit ({e})", "lengths below 2**32", "too long") from None


class ChainVerifier:
    """Stateful walk over the record; ``check`` each row in position order. ``spelling``
    is the one text spelling of an originator id that the rows' source holds."""

    def __init__(self, spelling: IdSpelling = IdSpelling.CANONICAL) -> None:
        self.spelling = spelling
        self.events = 0
        self.head_position = GENESIS_POSITION
        self.head_link = GENESIS_LINK

    def check(self, row: StoredRow) -> None:
        position = row.position
        if row.link is None or row.leaf_hash is None or row.prev_position is None:
            raise UnlinkedEvent(
                position,
                "event has no link: it was inserted outside the chain",
                expected="a link row",
                computed="none",
            )
        if (
            row.originator_id is None
            or row.originator_version is None
            or row.topic is None
            or row.state is None
        ):
            raise EventMissing(
                position,
                "the event this link covers is missing: a stored event was deleted",
                expected="an event row",
                computed="none",
            )
        if not (
            isinstance(row.prev_position, int)
            and isinstance(row.leaf_hash, bytes)
            and isinstance(row.link, bytes)
        ):
            raise LinkMismatch(
                position,
                "link row has a column of the wrong type",
                expected="integer prev_position and 32-byte hashes",
                computed=f"{type(row.leaf_hash).__name__} / {type(row.link).__name__}",
            )
        if row.prev_position != self.head_position:
            raise ChainBroken(
                position,
                "the link's predecessor is not the previous stored event: "
                "rows were deleted, inserted or reordered",
                expected=f"predecessor {self.head_position}",
                computed=f"predecessor {row.prev_position}",
            )
        leaf = leaf_hash(record_of(row, self.spelling))
        if leaf != row.leaf_hash:
            raise RecordAltered(
                position,
                "stored event changed: its bytes, topic, originator, version or position "
                "no longer match the record that was linked",
                expected=f"leaf {row.leaf_hash.hex()}",
                computed=f"leaf {leaf.hex()}",
            )
        link = chain_link(self.head_link, leaf)
        if link != row.link:
            raise LinkMismatch(
                position,
                "stored link does not follow from the previous link and this record",
                expected=f"link {row.link.hex()}",
                computed=f"link {link.hex()}",
            )
        self.events += 1
        self.head_position = position
        self.head_link = link

    @property
    def result(self) -> VerificationResult:
        return VerificationResult(self.events, self.head_position, self.head_link)


class NeedsDetailedWalk(Exception):  # noqa: N818 - a signal, not a failure
    """Raised by ``FastChainWalk`` at the first anomaly; the detailed walk then names it."""


class FastChainWalk:
    """The common case, fast: every event has its link, in order, and all hashes match.

    Checks pages of joined rows ``(position, id, version, topic, state, prev_position,
    leaf_hash, link)`` with the same encoding and hashes as ``ChainVerifier``, caching the
    encoded ids and topics. At the first anomaly of any kind it raises ``NeedsDetailedWalk``
    and says nothing more: ``ChainVerifier`` over the merged tables then finds and names it.
    """

    def __init__(self, spelling: IdSpelling = IdSpelling.CANONICAL) -> None:
        self.spelling = spelling
        self.events = 0
        self.head_position = GENESIS_POSITION
        self.head_link = GENESIS_LINK
        self._ids: dict[object, bytes] = {}
        self._topics: dict[object, bytes] = {}

    def check_page(self, rows: Iterable[tuple[object, ...]]) -> None:
        sha256, pack_u64, pack_u32 = hashlib.sha256, _U64.pack, _U32.pack
        ids, topics = self._ids, self._topics
        head_position, head_link, events = self.head_position, self.head_link, self.events
        spelling = self.spelling
        for position, oid, version, topic, state, prev, leaf, link in rows:
            if (
                prev != head_position
                or type(state) is not bytes
                or type(leaf) is not bytes
                or type(link) is not bytes
                or type(version) is not int
                or type(position) is not int
                or position < 0  # forged (pocdir's start at 1): not encodable
                or version < 0
            ):
                raise NeedsDetailedWalk
            oid_part = ids.get(oid)
            if oid_part is None:
                try:
                    canonical = canonical_originator_id(oid, spelling)  # type: ignore[arg-type]
                except (ValueError, TypeError):  # TypeError: an unhashable forged value
                    raise NeedsDetailedWalk from None
                oid_part = ids[oid] = pack_u32(len(canonical)) + canonical
            topic_part = topics.get(topic)
            if topic_part is None:
                if type(topic) is not str:
                    raise NeedsDetailedWalk
                encoded = topic.encode("utf-8")
                topic_part = topics[topic] = pack_u32(len(encoded)) + encoded
            computed = sha256(
                LEAF_HASH_PREFIX
                + pack_u64(position)
                + oid_part
                + pack_u64(version)
                + topic_part
                + pack_u32(len(state))
                + state
            ).digest()
            if computed != leaf:
                raise NeedsDetailedWalk
            head_link = sha256(LINK_HASH_PREFIX + head_link + computed).digest()
            if head_link != link:
                raise NeedsDetailedWalk
            head_position = position
            events += 1
        self.head_position, self.head_link, self.events = head_position, head_link, events

    @property
    def result(self) -> VerificationResult:
        return VerificationResult(self.events, self.head_position, self.head_link)
