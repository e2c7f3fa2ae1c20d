"""The hash-chained store, on each backend: atomic, tamper-evident, one order."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import PersistenceError

import infra.store
from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import NotFound
from domain.values import Contact, Text
from infra.chain import (
    ChainBroken,
    ChainVerifier,
    EventMissing,
    FastChainWalk,
    LinkMismatch,
    RecordAltered,
    UnlinkedEvent,
    VerificationError,
    chain_link,
    encode_record,
    leaf_hash,
)
from infra.settings import Settings
from infra.verify import chained_recorder, verify_record
from infra.wiring import build_application
from tests.support.builders import contact_data, fra_notifies_deu, register_states, state
from tests.support.db import Backend, pg_schema


def populate(app: PocDirectory, clock: SimulatedClock) -> None:
    """Ten events from two States and one exchange."""
    register_states(app, "FRA", "DEU", clock=clock, apart=timedelta(hours=1))
    n = fra_notifies_deu(app, "C2 traffic")
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(state("DEU"), n.id, Text.english_only("on it"))
    app.close_notification(state("FRA"), n.id)
    app.confirm_entry(state("FRA"), "FRA")
    app.confirm_entry(state("DEU"), "DEU")


def test_an_untouched_record_verifies_with_its_head(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    result = verify_record(app)
    assert result.events == 10
    assert result.head_position == 10
    assert (result.head_position, result.head_link) == chained_recorder(app).chain_head()


def test_an_empty_record_verifies_as_genesis(app: PocDirectory) -> None:
    result = verify_record(app)
    assert (result.events, result.head_position, result.head_link) == (0, 0, bytes(32))


def test_links_are_computed_over_the_stored_bytes(app: PocDirectory, clock: SimulatedClock) -> None:
    populate(app, clock)
    notifications = app.recorder.select_notifications(1, 10)
    rows = list(chained_recorder(app).iter_stored_rows())
    previous = bytes(32)
    for n, row in zip(notifications, rows, strict=True):
        leaf = leaf_hash(
            encode_record(n.id, n.originator_id, n.originator_version, n.topic, n.state)
        )
        assert (row.position, row.leaf_hash) == (n.id, leaf)
        assert row.link == chain_link(previous, leaf)
        previous = row.link


# -- tampering: each is named at the first bad position ----------------------------------------


def _tampered(
    backend: Backend,
    app: PocDirectory,
    clock: SimulatedClock,
    sql: str,
    params: tuple[Any, ...] = (),
) -> VerificationError:
    populate(app, clock)
    backend.execute(sql.format(t=backend.events_table, pos=backend.position_column), params)
    with pytest.raises(VerificationError) as info:
        verify_record(app)
    return info.value


def test_changed_state_bytes_are_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    error = _tampered(
        backend,
        app,
        clock,
        "UPDATE {t} SET state = %s WHERE {pos} = 4",
        (b'{"tampered":true}',),
    )
    assert isinstance(error, RecordAltered) and error.position == 4


def test_a_changed_topic_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    error = _tampered(
        backend,
        app,
        clock,
        "UPDATE {t} SET topic = 'domain.state_entry:StateEntry.Withdrawn' WHERE {pos} = 5",
    )
    assert isinstance(error, RecordAltered) and error.position == 5


def test_a_changed_originator_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    other = UUID("00000000-0000-4000-8000-000000000001")
    value: object = other.hex if backend.name == "sqlite" else other
    error = _tampered(
        backend, app, clock, "UPDATE {t} SET originator_id = %s WHERE {pos} = 3", (value,)
    )
    assert isinstance(error, RecordAltered) and error.position == 3


def test_a_changed_version_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    error = _tampered(backend, app, clock, "UPDATE {t} SET originator_version = 99 WHERE {pos} = 2")
    assert isinstance(error, RecordAltered) and error.position == 2


def test_a_deleted_event_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    error = _tampered(backend, app, clock, "DELETE FROM {t} WHERE {pos} = 6")
    assert isinstance(error, EventMissing) and error.position == 6


def test_a_deleted_event_and_link_are_detected_at_the_next_position(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    backend.execute(f"DELETE FROM {backend.events_table} WHERE {backend.position_column} = 6")
    backend.execute("DELETE FROM event_chain WHERE position = 6")
    with pytest.raises(ChainBroken) as info:
        verify_record(app)
    assert info.value.position == 7
    assert "predecessor 5" in info.value.expected


def test_an_inserted_event_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    row = backend.execute(
        f"SELECT originator_id, topic, state FROM {backend.events_table} "
        f"WHERE {backend.position_column} = 3"
    )[0]
    backend.execute(
        f"INSERT INTO {backend.events_table} (originator_id, originator_version, topic, state) "
        "VALUES (%s, 77, %s, %s)",
        row,
    )
    with pytest.raises(UnlinkedEvent) as info:
        verify_record(app)
    assert info.value.position == 11


def test_a_replaced_event_with_a_forged_link_breaks_the_next_link(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    """A forger who replaces event 6 and links it correctly to event 5 still cannot make
    event 7's stored link follow from it."""
    populate(app, clock)
    t, pos = backend.events_table, backend.position_column
    oid, version, topic = backend.execute(
        f"SELECT originator_id, originator_version, topic FROM {t} WHERE {pos} = 6"
    )[0]
    link5 = bytes(backend.execute("SELECT link FROM event_chain WHERE position = 5")[0][0])
    forged_state = b'{"forged":true}'
    leaf = leaf_hash(encode_record(6, UUID(str(oid)), version, topic, forged_state))
    backend.execute(f"DELETE FROM {t} WHERE {pos} = 6")
    backend.execute("DELETE FROM event_chain WHERE position = 6")
    backend.execute(
        f"INSERT INTO {t} ({pos}, originator_id, originator_version, topic, state) "
        "VALUES (6, %s, %s, %s, %s)",
        (oid, version, topic, forged_state),
    )
    backend.execute(
        "INSERT INTO event_chain VALUES (6, 5, %s, %s)", (leaf, chain_link(link5, leaf))
    )
    with pytest.raises(LinkMismatch) as info:
        verify_record(app)
    assert info.value.position == 7


def test_reordered_events_are_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    t, pos = backend.events_table, backend.position_column
    backend.execute(f"UPDATE {t} SET {pos} = 1000 WHERE {pos} = 7")
    backend.execute(f"UPDATE {t} SET {pos} = 7 WHERE {pos} = 8")
    backend.execute(f"UPDATE {t} SET {pos} = 8 WHERE {pos} = 1000")
    with pytest.raises(RecordAltered) as info:
        verify_record(app)
    assert info.value.position == 7


def test_a_rewritten_link_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    error = _tampered(
        backend, app, clock, "UPDATE event_chain SET link = %s WHERE position = 8", (bytes(32),)
    )
    assert isinstance(error, LinkMismatch) and error.position == 8


# -- atomicity ---------------------------------------------------------------------------------


def test_a_failure_while_linking_commits_nothing(
    backend: Backend, app: PocDirectory, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(app, clock)
    before = (app.recorder.max_notification_id(), chained_recorder(app).chain_head())
    calls: list[int] = []

    def failing(head_position: int, head_link: bytes, events: Any) -> Any:
        events = list(events)  # the events were inserted: their positions are known
        calls.append(len(events))
        raise RuntimeError("injected failure while computing links")

    monkeypatch.setattr(infra.store, "compute_links", failing)
    with pytest.raises(RuntimeError, match="injected"):
        app.register_state(state("ITA"), "ITA")
    assert calls == [1]
    assert (app.recorder.max_notification_id(), chained_recorder(app).chain_head()) == before
    assert backend.execute(f"SELECT COUNT(*) FROM {backend.events_table}")[0][0] == 10
    monkeypatch.undo()
    app.register_state(state("ITA"), "ITA")  # and the store still works
    assert verify_record(app).events == 11


def test_a_failure_while_writing_the_link_commits_nothing(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    recorder: Any = chained_recorder(app)
    recorder.insert_link_statement = (
        "INSERT INTO no_such_chain_table VALUES (?, ?, ?, ?)"
        if backend.name == "sqlite"
        else "INSERT INTO no_such_chain_table VALUES (%s, %s, %s, %s)"
    )
    with pytest.raises(PersistenceError):
        app.register_state(state("ITA"), "ITA")
    assert backend.execute(f"SELECT COUNT(*) FROM {backend.events_table}")[0][0] == 10
    with pytest.raises(NotFound):
        app.get_entry("ITA")


def test_a_stray_link_ahead_of_the_head_stops_writes_and_commits_nothing(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    backend.execute("INSERT INTO event_chain VALUES (11, 10, %s, %s)", (bytes(32), bytes(32)))
    with pytest.raises(ChainBroken, match="needs an audit"):
        app.register_state(state("ITA"), "ITA")
    assert backend.execute(f"SELECT COUNT(*) FROM {backend.events_table}")[0][0] == 10


# -- same record, same head --------------------------------------------------------------------


def _simulated_head(url: str, seed: int) -> str:
    from simulation.simulator import DEFAULT_START, Simulator, seeded_ids

    clock = SimulatedClock(DEFAULT_START)
    application = build_application(
        Settings(database_url=url), clock=clock, new_id=seeded_ids(seed)
    )
    try:
        Simulator(application, clock, states=12, days=40, seed=seed).run()
        return verify_record(application).head_hash
    finally:
        application.close()


def test_the_same_simulated_record_has_the_same_head_on_both_backends(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_head = _simulated_head(f"sqlite:///{tmp_path / 'a.sqlite3'}", seed=7)
    assert sqlite_head == _simulated_head(f"sqlite:///{tmp_path / 'b.sqlite3'}", seed=7)
    assert sqlite_head != _simulated_head(f"sqlite:///{tmp_path / 'c.sqlite3'}", seed=8)
    with pg_schema(postgres_url) as (url, _):
        assert _simulated_head(url, seed=7) == sqlite_head


# -- edge cases of reading the record -----------------------------------------------------------


def test_an_event_forged_at_a_negative_position_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    t, pos = backend.events_table, backend.position_column
    backend.execute(
        f"INSERT INTO {t} ({pos}, originator_id, originator_version, topic, state) "
        f"SELECT -5, originator_id, 50, topic, state FROM {t} WHERE {pos} = 1"
    )
    with pytest.raises(UnlinkedEvent) as info:
        verify_record(app)
    assert info.value.position == -5


def test_a_state_column_rewritten_as_text_is_reported_not_crashed(
    sqlite_backend: Backend, clock: SimulatedClock
) -> None:
    """SQLite columns take any type; PostgreSQL's bytea cannot hold text."""
    app = build_application(sqlite_backend.settings, clock=clock)
    populate(app, clock)
    sqlite_backend.execute("UPDATE stored_events SET state = CAST(state AS TEXT) WHERE rowid = 4")
    with pytest.raises(RecordAltered) as info:
        verify_record(app)
    assert info.value.position == 4


def test_a_respelled_originator_id_is_detected(
    sqlite_backend: Backend, clock: SimulatedClock
) -> None:
    """Upper-casing SQLite's hex id would hide the event from its aggregate. (PostgreSQL
    stores ids as uuid values, which have one spelling.)"""
    app = build_application(sqlite_backend.settings, clock=clock)
    populate(app, clock)
    sqlite_backend.execute(
        "UPDATE stored_events SET originator_id = UPPER(originator_id) WHERE rowid = 9"
    )
    with pytest.raises(RecordAltered, match="not in the spelling pocdir writes") as info:
        verify_record(app)
    assert info.value.position == 9


def test_verification_reads_one_snapshot_while_events_are_committed(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    rows = chained_recorder(app).iter_stored_rows(batch=3)
    first = [next(rows) for _ in range(4)]
    app.register_state(state("ITA"), "ITA")  # committed while the walk is under way
    seen = first + list(rows)
    assert [r.position for r in seen] == list(range(1, 11))
    assert all(r.link is not None and r.state is not None for r in seen)
    assert verify_record(app).events == 11


def test_two_writers_taking_turns_keep_one_chain(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    """Each application remembers the last link it wrote; after the other one has written,
    that memory is stale and must not be used."""
    other = build_application(backend.settings, clock=clock)
    try:
        for i, code in enumerate(("FRA", "DEU", "ITA", "ESP", "PRT", "BEL")):
            writer = app if i % 2 == 0 else other
            writer.register_state(state(code), code)
            writer.add_contact(state(code), code, Contact.from_dict(contact_data()))
        assert verify_record(app).events == 12
    finally:
        other.close()


def test_the_fast_walk_and_the_detailed_walk_agree_on_an_intact_record(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    populate(app, clock)
    recorder = chained_recorder(app)
    verifier = ChainVerifier(recorder.id_spelling)
    for row in recorder.iter_stored_rows(batch=3):
        verifier.check(row)
    assert replace(verify_record(app), signatures=None) == verifier.result
    fast = FastChainWalk(recorder.id_spelling)  # the fast walk alone accepts it, no fallback
    assert recorder.walk_linked(fast.check_page, batch=4) == 10
    assert fast.result == verifier.result


def test_a_deleted_newest_event_whose_link_remains_is_detected(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    """The join from events sees nothing amiss; the count of links does."""
    error = _tampered(backend, app, clock, "DELETE FROM {t} WHERE {pos} = 10")
    assert isinstance(error, EventMissing) and error.position == 10
