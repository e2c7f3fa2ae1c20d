"""``infra.chain.parse_record``: the exact inverse of the canonical record
(docs/audit-format.md §2), which a mirror reads from tlog-tiles entries with no database.
Every record it accepts encodes back to the same bytes; anything else is refused, typed,
naming what is wrong."""

from __future__ import annotations

import struct
from uuid import UUID

import pytest

from infra.chain import MalformedRecord, ParsedRecord, encode_record, parse_record

ID = UUID("0b4f7a3e-6a1d-4c2e-9f3b-2d6e8c1a5b70")
TOPIC = "domain.state_entry:StateEntry.Registered"


@pytest.mark.parametrize(
    "fields",
    [
        (1, ID, 1, TOPIC, b'{"code":"FRA"}'),
        (2**64 - 1, ID, 2**64 - 1, "d:Été.Côte", bytes(range(256)) * 3),
        (7, UUID(int=0), 0, "", b""),
    ],
)
def test_a_record_parses_to_what_was_encoded(fields: tuple[int, UUID, int, str, bytes]) -> None:
    record = encode_record(*fields)
    parsed = parse_record(record)
    assert parsed == ParsedRecord(*fields)
    assert encode_record(*parsed) == record


def good() -> bytes:
    return encode_record(5, ID, 3, TOPIC, b"state")


def with_id(raw: bytes) -> bytes:
    return struct.pack(">QI", 5, len(raw)) + raw + good()[8 + 4 + 36 :]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (good() + b"\x00", "bytes after its state"),
        (good()[:-1], "ends inside its state"),
        (good()[:6], "ends inside its position"),
        (good()[: 8 + 4 + 10], "ends inside its originator id"),
        (with_id(ID.hex.encode() + b"0000"), "not a UUID"),  # 36 bytes, not a UUID
        (with_id(str(ID).upper().encode()), "not in the canonical spelling"),
        (struct.pack(">QI", 5, 32) + ID.hex.encode() + good()[48:], "length is not that of"),
        (with_id("é".encode() * 18), "not a UUID"),
    ],
)
def test_bytes_that_are_not_a_record_are_refused(record: bytes, reason: str) -> None:
    with pytest.raises(MalformedRecord) as refused:
        parse_record(record)
    assert reason in refused.value.reason
    assert refused.value.expected and refused.value.computed


def test_a_topic_that_is_not_utf8_is_refused() -> None:
    head = good()[: 8 + 4 + 36 + 8]
    record = head + struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">I", 0)
    with pytest.raises(MalformedRecord, match="topic is not valid UTF-8"):
        parse_record(record)


def test_a_length_past_the_end_is_refused() -> None:
    head = good()[: 8 + 4 + 36 + 8]
    with pytest.raises(MalformedRecord, match="ends inside its topic"):
        parse_record(head + struct.pack(">I", 2**32 - 1) + b"abc")
