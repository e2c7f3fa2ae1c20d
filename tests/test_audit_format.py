"""The audit format in ``docs/audit-format.md`` is exact enough to verify the record without pocdir.

An auditor writes an independent verifier from that document alone, so its worked example must be
what the code really computes, and the document's prose must be enough to recompute it. These
tests read the example out of the document and recompute it three ways: with ``infra.chain``
(the reference implementation), with an implementation written here from the document's prose
using only ``hashlib`` and ``struct``, and with the Python snippet printed in the document. They
also check that the reference verifier accepts the example and names the right failure, at the
right position, when it is tampered with: a changed byte, a dropped event, an originator id
re-spelled out of the spelling pocdir writes, and columns of the wrong type. Finally they check
that what §5.1 says about reading the record (one snapshot, from the lowest possible position)
is what ``infra.store`` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra import chain, store
from tests.support.audit_doc import DOC, ExampleEvent, doc_text, example, fenced_block_after

# -- an implementation written from the document's prose only ---------------------------------

_LOWER_HEX_DIGITS = "0123456789abcdef"


def independent_canonical_id(text: str, sqlite: bool = False) -> bytes:
    """§2: exactly 32 lowercase hex digits as SQLite stores it (``sqlite``), or else (PostgreSQL's
    ``uuid::text``, the bundle) exactly the 36-character lowercase hyphenated form; any other
    spelling is refused. 36 ASCII bytes out."""
    if sqlite:
        digits = text
    elif len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23)):
        digits = text.replace("-", "")
    else:
        raise ValueError(f"not the 36-character form: {text!r}")
    if len(digits) != 32 or any(c not in _LOWER_HEX_DIGITS for c in digits):
        raise ValueError(f"not a UUID in the spelling pocdir writes: {text!r}")
    d = digits
    return f"{d[0:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}".encode("ascii")


def independent_record(
    position: int, originator_id: str, version: int, topic: str, state: bytes, sqlite: bool = False
) -> bytes:
    """§2: u64be(position) ‖ u32be(len(id)) ‖ id ‖ u64be(version) ‖ u32be(len(topic)) ‖ topic
    ‖ u32be(len(state)) ‖ state."""
    oid = independent_canonical_id(originator_id, sqlite)
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


@pytest.mark.parametrize(
    ("spell", "spelling"),
    [
        (lambda e: e.sqlite_originator_id, chain.IdSpelling.HEX),
        (lambda e: e.originator_id, chain.IdSpelling.CANONICAL),
    ],
    ids=["sqlite-32-lowercase-hex", "hyphenated-lowercase"],
)
def test_the_spelling_each_source_holds_gives_the_same_record_and_the_other_is_refused(
    spell: Callable[[ExampleEvent], str], spelling: chain.IdSpelling
) -> None:
    """§2: SQLite holds 32 hex digits, PostgreSQL's ``uuid::text`` and the bundle the 36-character
    form; each source accepts only its own spelling, since the library finds an aggregate's
    events by the exact stored text (a re-spelled credential could not be revoked)."""
    sqlite = spelling is chain.IdSpelling.HEX
    for e in example():
        spelled = spell(e)
        canonical = independent_record(
            e.position, e.originator_id, e.originator_version, e.topic, e.state
        )
        assert (
            independent_record(e.position, spelled, e.originator_version, e.topic, e.state, sqlite)
            == canonical
        )
        assert (
            chain.encode_record(
                e.position, spelled, e.originator_version, e.topic, e.state, spelling
            )
            == canonical
        )
        assert chain.canonical_originator_id(spelled, spelling) == e.originator_id.encode("ascii")
        other = e.originator_id if sqlite else e.sqlite_originator_id
        with pytest.raises(chain.IdSpellingError, match="not in the spelling pocdir writes") as no:
            chain.canonical_originator_id(other, spelling)
        assert (no.value.expected, no.value.computed) == (spelled, other)
        with pytest.raises(ValueError):
            independent_record(e.position, other, e.originator_version, e.topic, e.state, sqlite)


#: Spellings of the same UUID that §2 refuses: a fault of the row, not the same record.
NON_CANONICAL_SPELLINGS: dict[str, Callable[[ExampleEvent], str]] = {
    "upper-case": lambda e: e.sqlite_originator_id.upper(),
    "upper-case-hyphenated": lambda e: e.originator_id.upper(),
    "mixed-case": lambda e: e.sqlite_originator_id[:16] + e.sqlite_originator_id[16:].upper(),
    "braces": lambda e: "{" + e.originator_id + "}",
    "urn": lambda e: "urn:uuid:" + e.originator_id,
    "misplaced-hyphen": lambda e: e.sqlite_originator_id[:16] + "-" + e.sqlite_originator_id[16:],
}


@pytest.mark.parametrize(
    "spell", NON_CANONICAL_SPELLINGS.values(), ids=NON_CANONICAL_SPELLINGS.keys()
)
def test_a_non_canonical_spelling_of_the_originator_id_cannot_be_encoded(
    spell: Callable[[ExampleEvent], str],
) -> None:
    for e in example():
        spelled = spell(e)
        assert spelled != e.sqlite_originator_id and spelled != e.originator_id
        for spelling in chain.IdSpelling:
            with pytest.raises(ValueError, match="not in the spelling pocdir writes"):
                chain.canonical_originator_id(spelled, spelling)
            with pytest.raises(ValueError):
                chain.encode_record(
                    e.position, spelled, e.originator_version, e.topic, e.state, spelling
                )
        for sqlite in (True, False):
            with pytest.raises(ValueError):
                independent_record(
                    e.position, spelled, e.originator_version, e.topic, e.state, sqlite
                )


@pytest.mark.parametrize("index", [0, 1, 2], ids=["position-1", "position-2", "position-4"])
def test_an_upper_case_originator_id_is_reported_as_record_altered_at_that_position(
    index: int,
) -> None:
    """§2, §6: upper-casing SQLite's stored hex names the same UUID but would hide the event
    from its aggregate, so the verifier reports it instead of accepting it."""
    events = example()
    rows = [
        dataclasses.replace(e.stored_row(), originator_id=e.sqlite_originator_id) for e in events
    ]
    sqlite = chain.IdSpelling.HEX
    assert verify(rows, sqlite).head_hash == events[-1].link.hex()  # as stored: accepted
    for respelled in (
        events[index].sqlite_originator_id.upper(),
        events[index].originator_id,  # §2: the 36-character form is not what SQLite holds
    ):
        rows[index] = dataclasses.replace(rows[index], originator_id=respelled)
        with pytest.raises(
            chain.RecordAltered, match="not in the spelling pocdir writes"
        ) as caught:
            verify(rows, sqlite)
        assert caught.value.position == events[index].position
        assert caught.value.expected == events[index].sqlite_originator_id
        assert caught.value.computed == respelled


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
    verify = namespace["verify"]
    assert verify(rows, True) == example()[-1].link.hex()
    with pytest.raises(ValueError, match="ChainBroken at position 4"):
        verify([rows[0], rows[2]], True)
    hyphenated = [
        (e.position, e.originator_id, *row[2:]) for e, row in zip(example(), rows, strict=True)
    ]
    assert verify(hyphenated, False) == example()[-1].link.hex()  # PostgreSQL's uuid::text
    with pytest.raises(ValueError, match="RecordAltered at position 1"):
        verify(hyphenated, True)  # §2: SQLite holds 32 hex digits, not the 36-character form
    with pytest.raises(ValueError, match="RecordAltered at position 1"):
        verify(rows, False)
    upper_case = [rows[0], (rows[1][0], rows[1][1].upper(), *rows[1][2:]), rows[2]]
    with pytest.raises(ValueError, match="RecordAltered at position 2"):
        verify(upper_case, True)
    forged_link = [*rows[:2], (*rows[2][:7], bytes(32))]
    with pytest.raises(ValueError, match="LinkMismatch at position 4"):
        verify(forged_link, True)


# -- the reference verifier on the example -----------------------------------------------------


def verify(
    rows: list[chain.StoredRow], spelling: chain.IdSpelling = chain.IdSpelling.CANONICAL
) -> chain.VerificationResult:
    verifier = chain.ChainVerifier(spelling)
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


# -- column types (§2, §4, §5.2) ----------------------------------------------------------------

EVENT_COLUMNS_OF_THE_WRONG_TYPE: dict[str, Callable[[ExampleEvent], dict[str, Any]]] = {
    "state-as-text": lambda e: {"state": e.state_text},
    "state-as-memoryview": lambda e: {"state": memoryview(e.state)},
    "topic-as-bytes": lambda e: {"topic": e.topic.encode("utf-8")},
    "version-as-text": lambda e: {"originator_version": str(e.originator_version)},
    "version-as-real": lambda e: {"originator_version": float(e.originator_version)},
    "originator-id-as-bytes": lambda e: {"originator_id": e.sqlite_originator_id.encode()},
}


@pytest.mark.parametrize(
    "change",
    EVENT_COLUMNS_OF_THE_WRONG_TYPE.values(),
    ids=EVENT_COLUMNS_OF_THE_WRONG_TYPE.keys(),
)
def test_an_event_column_of_the_wrong_type_is_reported_as_record_altered(
    change: Callable[[ExampleEvent], dict[str, Any]],
) -> None:
    events = example()
    rows = [e.stored_row() for e in events]
    rows[1] = dataclasses.replace(rows[1], **change(events[1]))
    with pytest.raises(chain.RecordAltered, match="cannot be encoded") as caught:
        verify(rows)
    assert caught.value.position == 2


LINK_COLUMNS_OF_THE_WRONG_TYPE: dict[str, Callable[[ExampleEvent], dict[str, Any]]] = {
    "prev-position-as-text": lambda e: {"prev_position": str(e.prev_position)},
    "prev-position-as-real": lambda e: {"prev_position": float(e.prev_position)},
    "leaf-hash-as-hex-text": lambda e: {"leaf_hash": e.leaf_hash.hex()},
    "link-as-hex-text": lambda e: {"link": e.link.hex()},
}


@pytest.mark.parametrize(
    "change",
    LINK_COLUMNS_OF_THE_WRONG_TYPE.values(),
    ids=LINK_COLUMNS_OF_THE_WRONG_TYPE.keys(),
)
def test_a_link_column_of_the_wrong_type_is_reported_as_link_mismatch(
    change: Callable[[ExampleEvent], dict[str, Any]],
) -> None:
    events = example()
    rows = [e.stored_row() for e in events]
    rows[2] = dataclasses.replace(rows[2], **change(events[2]))
    with pytest.raises(chain.LinkMismatch, match="link row has a column of the wrong type") as c:
        verify(rows)
    assert c.value.position == 4


def test_the_failure_table_names_the_column_type_checks() -> None:
    table = doc_text()[doc_text().index("| failure ") : doc_text().index("### 5.3")]
    link_types = next(line for line in table.splitlines() if "wrong type" in line)
    assert link_types.startswith("| `LinkMismatch`")
    for column in ("prev_position", "leaf_hash", "link"):
        assert f"`{column}`" in link_types
    event_types = next(line for line in table.splitlines() if "not bytes, `topic`" in line)
    assert event_types.startswith("| `RecordAltered`")
    assert "not in the spelling pocdir writes" in event_types


# -- reading the record (§5.1) ------------------------------------------------------------------


def test_reading_starts_at_the_lowest_position_the_document_names() -> None:
    stated = re.search(r"`FIRST_POSITION = (-2\*\*63)`", doc_text())
    assert stated and store.FIRST_POSITION == -(2**63)
    starts: list[int] = []

    def fetch(start: int) -> list[tuple[int]]:
        starts.append(start)
        return [(p,) for p in (-5, 0, 1, 2)] if start == store.FIRST_POSITION else []

    assert [row[0] for row in store.paged(fetch, batch=4)] == [-5, 0, 1, 2]
    assert starts == [store.FIRST_POSITION, 3]


def test_the_record_is_read_from_one_snapshot_as_the_document_says() -> None:
    section = doc_text()[doc_text().index("### 5.1") : doc_text().index("### 5.2")]
    assert "one read transaction" in section
    assert "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" in section
    sqlite = inspect.getsource(store.ChainedSQLiteApplicationRecorder.iter_stored_rows)
    assert "self.datastore.transaction(commit=False)" in sqlite
    assert sqlite.index("transaction(") < sqlite.index("merge_stored_rows(")
    postgres = inspect.getsource(store.ChainedPostgresApplicationRecorder.iter_stored_rows)
    assert "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" in postgres
    assert postgres.index("SET TRANSACTION") < postgres.index("merge_stored_rows(")


def _merged(events: list[store.EventRow], links: list[chain.LinkRow]) -> Iterator[chain.StoredRow]:
    return store.merge_stored_rows(iter(events), iter(links))


def verify_stored(rows: list[chain.StoredRow]) -> chain.VerificationResult:
    """``verify`` of rows as SQLite stores them (ids in 32 hex digits)."""
    return verify(rows, chain.IdSpelling.HEX)


def _rows_of_the_example() -> tuple[list[store.EventRow], list[chain.LinkRow]]:
    events = example()
    return (
        [
            (e.position, e.sqlite_originator_id, e.originator_version, e.topic, e.state)
            for e in events
        ],
        [chain.LinkRow(e.position, e.prev_position, e.leaf_hash, e.link) for e in events],
    )


def test_an_event_forged_below_position_one_is_walked_and_reported_as_unlinked() -> None:
    event_rows, link_rows = _rows_of_the_example()
    assert verify_stored(list(_merged(event_rows, link_rows))).head_hash == example()[-1].link.hex()
    for position in (0, -1, store.FIRST_POSITION):
        forged = (position, *event_rows[0][1:])
        with pytest.raises(chain.UnlinkedEvent) as caught:
            verify_stored(list(_merged([forged, *event_rows], link_rows)))
        assert caught.value.position == position


def test_a_link_forged_below_position_one_is_walked_and_reported_as_event_missing() -> None:
    event_rows, link_rows = _rows_of_the_example()
    forged = chain.LinkRow(-1, 0, link_rows[0].leaf_hash, link_rows[0].link)
    with pytest.raises(chain.EventMissing) as caught:
        verify_stored(list(_merged(event_rows, [forged, *link_rows])))
    assert caught.value.position == -1


def test_a_linked_pair_forged_at_a_negative_position_cannot_be_encoded() -> None:
    event_rows, link_rows = _rows_of_the_example()
    forged_event = (-1, *event_rows[0][1:])
    forged_link = chain.LinkRow(-1, 0, link_rows[0].leaf_hash, link_rows[0].link)
    with pytest.raises(chain.RecordAltered, match="cannot be encoded") as caught:
        verify_stored(list(_merged([forged_event, *event_rows], [forged_link, *link_rows])))
    assert caught.value.position == -1


def test_a_linked_pair_forged_at_position_zero_breaks_the_first_genuine_link() -> None:
    event_rows, link_rows = _rows_of_the_example()
    _, oid, version, topic, state = event_rows[0]
    leaf = chain.leaf_hash(chain.encode_record(0, oid, version, topic, state, chain.IdSpelling.HEX))
    forged_link = chain.LinkRow(0, 0, leaf, chain.chain_link(chain.GENESIS_LINK, leaf))
    rows = list(_merged([(0, oid, version, topic, state), *event_rows], [forged_link, *link_rows]))
    with pytest.raises(chain.LinkMismatch) as caught:
        verify_stored(rows)
    assert caught.value.position == 1
