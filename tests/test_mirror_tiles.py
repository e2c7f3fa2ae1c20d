"""``infra.mirror`` on synthetic records at the tile boundaries, from a directory (no server,
no database): what a run fetches is what the spec says changed (computed by the tests'
independent writer), a partial tile the log deleted is cut from its full tile, a mirror is
itself a source, and a run stopped before its state is written leaves the previous mirror
verified and is finished by the next run."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest

import infra.mirror
from infra.chain import encode_record
from infra.mirror import (
    MIRROR_FILE,
    EntryMismatch,
    MirrorRollback,
    mirror,
    read_state,
    verify_mirror,
)
from infra.witness_policy import Policy
from tests.support.tlog_tiles import Log, spec_tiles, write_tiles

IDS = [UUID(int=i + 1) for i in range(5)]


def entries(count: int, start: int = 1) -> list[bytes]:
    return [
        encode_record(p, IDS[p % 5], p, "domain.x:X.Happened", f'{{"n":{p}}}'.encode())
        for p in range(start, start + count)
    ]


@pytest.fixture
def log() -> Log:
    return Log()


def publish(directory: Path, log: Log, records: list[bytes]) -> None:
    write_tiles(directory, records, log.note(records), "")


@pytest.mark.parametrize(
    ("first", "second"),
    [(0, 1), (1, 2), (255, 256), (256, 257), (300, 600), (511, 513), (65535, 65537)],
)
def test_a_run_fetches_what_the_spec_says_changed(
    tmp_path: Path, log: Log, first: int, second: int
) -> None:
    source, target = tmp_path / "source", tmp_path / "mirror"
    source.mkdir()
    policy = Policy.parse(log.policy())
    records = entries(second)
    publish(source, log, records[:first])
    done = mirror(str(source), target, policy)
    assert set(done.fetched) == set(spec_tiles(records[:first]))
    publish(source, log, records)
    again = mirror(str(source), target, policy)
    assert set(again.fetched) == set(spec_tiles(records)) - set(spec_tiles(records[:first]))
    assert again.tree_size == second and again.last_position == second
    held = {str(p.relative_to(target)) for p in (target / "tile").rglob("*") if p.is_file()}
    assert held == set(spec_tiles(records))
    assert verify_mirror(target, policy).events == second


def test_a_deleted_partial_tile_is_cut_from_its_full_tile(tmp_path: Path, log: Log) -> None:
    """The log grew past the checkpoint the mirror fetched and deleted the partial tiles
    (C2SP tlog-tiles allows it): the full tiles' first hashes and entries are used."""
    source, target = tmp_path / "source", tmp_path / "mirror"
    source.mkdir()
    records = entries(600)
    write_tiles(source, records, log.note(records), "")
    publish(source, log, records[:300])
    for path in ("tile/0/001.p/44", "tile/entries/001.p/44"):
        (source / path).unlink()
    done = mirror(str(source), target, Policy.parse(log.policy()))
    assert {"tile/0/001", "tile/entries/001"} <= set(done.fetched)
    assert (target / "tile/0/001.p/44").read_bytes() == spec_tiles(records[:300])["tile/0/001.p/44"]
    assert verify_mirror(target, Policy.parse(log.policy())).events == 300


def test_a_mirror_is_a_source_and_a_rollback_from_it_is_refused(tmp_path: Path, log: Log) -> None:
    source, first, second = tmp_path / "source", tmp_path / "first", tmp_path / "second"
    source.mkdir()
    policy = Policy.parse(log.policy())
    records = entries(400)
    publish(source, log, records)
    mirror(str(source), first, policy)
    copied = mirror(str(first), second, policy)
    assert copied.tree_size == 400
    assert (second / "checkpoint").read_bytes() == (source / "checkpoint").read_bytes()
    publish(source, log, records[:399])
    with pytest.raises(MirrorRollback):
        mirror(str(source), first, policy)


def test_a_run_stopped_before_its_state_is_written_keeps_the_previous_mirror(
    tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "source", tmp_path / "mirror"
    source.mkdir()
    policy = Policy.parse(log.policy())
    records = entries(700)
    publish(source, log, records[:300])
    mirror(str(source), target, policy)
    before = (target / MIRROR_FILE).read_bytes()
    publish(source, log, records)
    written = infra.mirror._atomic_write

    def stopped(path: Path, data: bytes, *, durable: bool = True) -> None:
        if path.name == MIRROR_FILE:
            raise KeyboardInterrupt  # as if the process were killed here
        written(path, data, durable=durable)

    monkeypatch.setattr(infra.mirror, "_atomic_write", stopped)
    with pytest.raises(KeyboardInterrupt):
        mirror(str(source), target, policy)
    monkeypatch.undo()
    assert (target / MIRROR_FILE).read_bytes() == before
    state = read_state(target)
    assert state is not None and state.tree_size == 300
    assert verify_mirror(target, policy).events == 300
    assert mirror(str(source), target, policy).tree_size == 700
    assert verify_mirror(target, policy).events == 700


def test_a_tampered_grown_bundle_is_named(tmp_path: Path, log: Log) -> None:
    source, target = tmp_path / "source", tmp_path / "mirror"
    source.mkdir()
    policy = Policy.parse(log.policy())
    records = entries(20)
    publish(source, log, records[:10])
    mirror(str(source), target, policy)
    publish(source, log, records)
    bundle = source / "tile/entries/000.p/20"
    data = bytearray(bundle.read_bytes())
    data[5] ^= 1  # inside the first entry, which the mirror already holds
    bundle.write_bytes(bytes(data))
    with pytest.raises(EntryMismatch, match="does not extend tile/entries/000.p/10"):
        mirror(str(source), target, policy)
    assert json.loads((target / MIRROR_FILE).read_text())["tree_size"] == 10
