"""The audit format in ``docs/audit-format.md`` is exact enough to verify the record without pocdir.

An auditor writes an independent verifier from that document alone, so its worked example must be
what the code really computes, and the document's prose must be enough to recompute it. These
tests read the example out of the document and recompute it three ways: with ``infra.chain``
(the reference implementation), with an implementation written here from the document's prose
using only ``hashlib`` and ``struct``, and with the Python snippet printed in the document. They
also check that the reference verifier accepts the example and names the right failure, at the
right position, when it is tampered with.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from infra import chain

DOC = Path(__file__).resolve().parents[1] / "docs" / "audit-format.md"


# -- reading the document ---------------------------------------------------------------------


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced_block_after(heading: str, info: str) -> str:
    """The body of the first fenced block with info string ``info`` after ``heading``."""
    pattern = (
        rf"^#+ {re.escape(heading)}[ \t]*$"  # the heading line
        rf".*?^```{re.escape(info)}[ \t]*\n"  # the first such fence after it
        r"(.*?)^```[ \t]*$"  # up to the closing fence
    )
    match = re.search(pattern, doc_text(), re.MULTILINE | re.DOTALL)
    assert match, f"no ```{info} block after the heading {heading!r} in {DOC.name}"
    return match.group(1)


@dataclass(frozen=True)
class ExampleEvent:
    position: int
    prev_position: int
    originator_id: str
    sqlite_originator_id: str
    originator_version: int
    topic: str
    state: bytes
    state_text: str
    record: bytes | None
    leaf_hash: bytes
    link: bytes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExampleEvent:
        return cls(
            position=data["position"],
            prev_position=data["prev_position"],
            originator_id=data["originator_id"],
            sqlite_originator_id=data["sqlite_originator_id"],
            originator_version=data["originator_version"],
            topic=data["topic"],
            state=bytes.fromhex(data["state_hex"]),
            state_text=data["state"],
            record=bytes.fromhex(data["record_hex"]) if "record_hex" in data else None,
            leaf_hash=bytes.fromhex(data["leaf_hash"]),
            link=bytes.fromhex(data["link"]),
        )

    def stored_row(self, *, state: bytes | None = None) -> chain.StoredRow:
        return chain.StoredRow(
            self.position,
            self.originator_id,
            self.originator_version,
            self.topic,
            self.state if state is None else state,
            self.prev_position,
            self.leaf_hash,
            self.link,
        )


@cache
def example() -> tuple[ExampleEvent, ...]:
    data = json.loads(fenced_block_after("Worked example data", "json"))
    return tuple(ExampleEvent.from_json(item) for item in data)


# -- an implementation written from the document's prose only ---------------------------------

_HEX_DIGITS = "0123456789abcdefABCDEF"


def independent_canonical_id(text: str) -> bytes:
    """§2: 32 hex digits (SQLite) or the hyphenated form, in either case; 36 ASCII bytes out."""
    if len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23)):
        text = text.replace("-", "")
    if len(text) != 32 or any(c not in _HEX_DIGITS for c in text):
        raise ValueError(f"not a UUID: {text!r}")
    d = text.lower()
    return f"{d[0:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}".encode("ascii")


def independent_record(
    position: int, originator_id: str, version: int, topic: str, state: bytes
) -> bytes:
    """§2: u64be(position) ‖ u32be(len(id)) ‖ id ‖ u64be(version) ‖ u32be(len(topic)) ‖ topic
    ‖ u32be(len(state)) ‖ state."""
    oid = independent_canonical_id(originator_id)
    topic_bytes = topic.encode("utf-8")
    return (
        struct.pack(">Q", position)
        + struct.pack(">I", len(oid))
        + oid
        + struct.pack(">Q", version)
        + struct.pack(">I", len(topic_bytes))
        + topic_bytes
        + struct.pack(">I", len(state))
        + state
    )


def independent_leaf(record: bytes) -> bytes:
    """§3: SHA-256(0x00 ‖ record)."""
    return hashlib.sha256(bytes([0x00]) + record).digest()


def independent_link(previous_link: bytes, leaf: bytes) -> bytes:
    """§3: SHA-256(0x02 ‖ previous link ‖ leaf hash)."""
    return hashlib.sha256(bytes([0x02]) + previous_link + leaf).digest()


# -- the document is self-consistent ----------------------------------------------------------


def test_worked_example_has_three_events_at_positions_with_a_gap_linked_from_genesis() -> None:
    events = example()
    assert [e.position for e in events] == [1, 2, 4]
    assert [e.prev_position for e in events] == [0, 1, 2]
    assert events[0].record is not None, "the first event's record_hex is missing"


def test_worked_example_state_text_hex_dump_and_head_hash_agree_with_the_data_block() -> None:
    events = example()
    for event in events:
        assert event.state_text.encode("utf-8") == event.state, event.position
        assert event.sqlite_originator_id == event.originator_id.replace("-", "")
    dump = fenced_block_after("Record of event 1", "text")
    dumped = bytes.fromhex("".join(line.split(maxsplit=1)[1] for line in dump.splitlines()))
    assert dumped == events[0].record
    for e in events:  # the "Results" table shows the same values
        row = f"| {e.position} | {e.prev_position} | `{e.leaf_hash.hex()}` | `{e.link.hex()}` |"
        assert row in doc_text(), row
    head = re.search(r"head hash of this record.*?`([0-9a-f]{64})`", doc_text(), re.DOTALL)
    assert head and head.group(1) == events[-1].link.hex()


# -- recomputing the example --------------------------------------------------------------------


def test_worked_example_in_audit_format_doc_is_recomputed_by_infra_chain() -> None:
    previous = chain.GENESIS_LINK
    for event in example():
        record = chain.encode_record(
            event.position,
            event.originator_id,
            event.originator_version,
            event.topic,
            event.state,
        )
        if event.record is not None:
            assert record.hex() == event.record.hex()
        leaf = chain.leaf_hash(record)
        assert leaf.hex() == event.leaf_hash.hex(), event.position
        link = chain.chain_link(previous, leaf)
        assert link.hex() == event.link.hex(), event.position
        previous = link


def test_worked_example_in_audit_format_doc_is_recomputed_by_an_independent_implementation() -> (
    None
):
    previous = bytes(32)  # §3: the genesis link
    for event in example():
        record = independent_record(
            event.position,
            event.originator_id,
            event.originator_version,
            event.topic,
            event.state,
        )
        if event.record is not None:
            assert record.hex() == event.record.hex()
        leaf = independent_leaf(record)
        assert leaf.hex() == event.leaf_hash.hex(), event.position
        link = independent_link(previous, leaf)
        assert link.hex() == event.link.hex(), event.position
        previous = link


@pytest.mark.parametrize("spell", [str.lower, str.upper], ids=["as-stored", "upper-case"])
def test_sqlite_spelling_of_the_originator_id_gives_the_same_record(
    spell: Callable[[str], str],
) -> None:
    for e in example():
        sqlite_id = spell(e.sqlite_originator_id)
        canonical = independent_record(
            e.position, e.originator_id, e.originator_version, e.topic, e.state
        )
        assert (
            independent_record(e.position, sqlite_id, e.originator_version, e.topic, e.state)
            == canonical
        )
        assert (
            chain.encode_record(e.position, sqlite_id, e.originator_version, e.topic, e.state)
            == canonical
        )


def test_python_snippet_in_audit_format_doc_verifies_the_worked_example() -> None:
    snippet = fenced_block_after("8. A verifier in 15 lines of Python", "python")
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 15
    namespace: dict[str, Any] = {}
    exec(compile(snippet, f"{DOC.name} (snippet)", "exec"), namespace)
    rows = [
        (
            e.position,
            e.sqlite_originator_id,
            e.originator_version,
            e.topic,
            e.state,
            e.prev_position,
            e.leaf_hash,
            e.link,
        )
        for e in example()
    ]
    assert namespace["verify"](rows) == example()[-1].link.hex()
    with pytest.raises(ValueError, match="ChainBroken at position 4"):
        namespace["verify"]([rows[0], rows[2]])


# -- the reference verifier on the example -----------------------------------------------------


def verify(rows: list[chain.StoredRow]) -> chain.VerificationResult:
    verifier = chain.ChainVerifier()
    for row in rows:
        verifier.check(row)
    return verifier.result


def test_chain_verifier_accepts_the_worked_example_and_reports_its_head_hash() -> None:
    events = example()
    result = verify([e.stored_row() for e in events])
    assert result.events == 3
    assert result.head_position == 4
    assert result.head_hash == events[-1].link.hex()


@pytest.mark.parametrize("index", [0, 1, 2], ids=["position-1", "position-2", "position-4"])
def test_flipping_one_state_byte_is_reported_as_record_altered_at_that_position(
    index: int,
) -> None:
    events = example()
    tampered = bytearray(events[index].state)
    tampered[len(tampered) // 2] ^= 0x01
    rows = [e.stored_row() for e in events]
    rows[index] = events[index].stored_row(state=bytes(tampered))
    with pytest.raises(chain.RecordAltered) as caught:
        verify(rows)
    assert caught.value.position == events[index].position


def test_dropping_the_middle_event_is_reported_as_chain_broken_at_the_next_position() -> None:
    first, _, last = example()
    with pytest.raises(chain.ChainBroken) as caught:
        verify([first.stored_row(), last.stored_row()])
    assert caught.value.position == 4
