"""Three witnesses, each ``pocdir witness serve`` in its own process, spoken to over real HTTP
by a log operator (``tests.support.witness.Log``) through pocdir's client
(``infra.witness_client``): honest growth is cosigned by all three, each cosignature checked
by the independent C2SP verifier of ``tests/test_cosignature.py``; a split view and a rollback
are refused with the evidence kept on the witness's ``/forks`` and ``pocdir witness forks``;
the refused log stays refused until ``pocdir witness clear``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from infra.cosignature import WitnessVerifierKey
from infra.witness_client import (
    SizeConflict,
    WitnessRefused,
    WitnessUnavailable,
    add_checkpoint,
    witness_checkpoint,
)
from tests.support.cli import free_port
from tests.support.db import Backend
from tests.support.witness import Log, ServedWitness, body, pocdir, served_witness
from tests.test_cosignature import spec_verify, spec_vkey
from tests.test_transparency import KEY, service, simulate


@pytest.fixture
def log() -> Log:
    return Log.new()


@pytest.fixture
def witnesses(tmp_path: Path, log: Log) -> Iterator[list[ServedWitness]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                served_witness(
                    tmp_path / f"w{i}",
                    f"witness.example.org/w{i}",
                    log.origin,
                    str(log.key.verifier),
                )
            )
            for i in (1, 2, 3)
        ]


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Iterator[ServedWitness]:
    """One served witness, for what one shows as well as three."""
    with served_witness(
        tmp_path / "w1", "witness.example.org/w1", log.origin, str(log.key.verifier)
    ) as w:
        yield w


def cosigned_by(w: ServedWitness, log: Log, size: int, lines: list[str]) -> int:
    """The time of ``w``'s cosignature among ``lines`` on ``log``'s checkpoint of ``size``,
    checked by the independent verifier against the vkey ``pocdir witness init`` printed."""
    vkey = WitnessVerifierKey.parse(w.vkey)
    assert spec_vkey(vkey.name, vkey.public_key) == w.vkey
    return spec_verify(log.checkpoint(size) + "".join(lines), vkey.name, vkey.public_key)


def witnessed_by(witnesses: list[ServedWitness], log: Log, lines: list[str]) -> list[str]:
    """The witnesses (directory names) whose valid cosignature is among ``lines``."""
    found = []
    for w in witnesses:
        try:
            cosigned_by(w, log, log.size, lines)
        except AssertionError:
            continue
        found.append(w.directory.name)
    return found


def forks(w: ServedWitness) -> list[dict[str, object]]:
    r = httpx.get(w.url + "/forks", timeout=10)
    assert r.status_code == 200
    shown = r.json()
    assert isinstance(shown, list)
    return shown


def held_size(w: ServedWitness) -> int:
    [state] = httpx.get(w.url + "/health", timeout=10).json()["logs"]
    return int(state["tree_size"])


def test_honest_growth_is_cosigned_by_all_three(witnesses: list[ServedWitness], log: Log) -> None:
    sizes = [0]
    with httpx.Client() as client:
        for grow in (1, 6, 9, 16):
            log.grow(grow)
            for w in witnesses:
                lines = witness_checkpoint(
                    w.url, log.checkpoint(), sizes[-1], log.proof, client=client
                )
                assert len(lines) == 1 and lines[0].endswith("\n")
                assert cosigned_by(w, log, log.size, lines) > 1_700_000_000
            sizes.append(log.size)
    assert [held_size(w) for w in witnesses] == [32, 32, 32]
    assert all(forks(w) == [] for w in witnesses)


def test_a_split_view_is_refused_and_kept_until_cleared(
    witnesses: list[ServedWitness], log: Log
) -> None:
    w1, w2, w3 = witnesses
    log.grow(4)
    for w in witnesses:
        witness_checkpoint(w.url, log.checkpoint(), 0, log.proof)
    # the operator shows W1 history A, W2 and W3 history B, both of size 10
    history_a = log.fork(4, 6, "A")
    history_b = log.fork(4, 6, "B")
    assert history_a.root() != history_b.root()
    lines_a = witness_checkpoint(w1.url, history_a.checkpoint(), 4, history_a.proof)
    lines_b: list[str] = []
    for w in (w2, w3):
        lines_b += witness_checkpoint(w.url, history_b.checkpoint(), 4, history_b.proof)
    # then shows W2 history A, to reach a 2-of-3 quorum on it: refused, and W2 keeps both
    with pytest.raises(WitnessRefused) as refused:
        add_checkpoint(w2.url, history_a.checkpoint(), 10, [])
    assert refused.value.status == 409 and not isinstance(refused.value, SizeConflict)
    assert witnessed_by(witnesses, history_a, lines_a) == ["w1"]  # below the quorum
    assert witnessed_by(witnesses, history_b, lines_b) == ["w2", "w3"]
    [evidence] = forks(w2)
    assert evidence["kind"] == "split-view" and evidence["origin"] == log.origin
    assert evidence["notes"] == {
        "held": history_b.checkpoint(),
        "submitted": history_a.checkpoint(),
    }
    assert evidence["cleared"] is False and evidence["marks_fork"] is True
    shown = pocdir("witness", "forks", str(w2.directory))
    assert shown.returncode == 1 and "split-view fork, NOT CLEARED" in shown.stdout
    as_json = pocdir("witness", "forks", str(w2.directory), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout) == [evidence]
    assert forks(w1) == [] and forks(w3) == []
    # W2 now refuses even the honest history, until its operator clears the log
    history_b.grow(3)
    with pytest.raises(WitnessRefused) as refused:
        witness_checkpoint(w2.url, history_b.checkpoint(), 10, history_b.proof)
    assert refused.value.status == 409 and "fork evidence" in refused.value.message
    lines = witness_checkpoint(w3.url, history_b.checkpoint(), 10, history_b.proof)
    cosigned_by(w3, history_b, 13, lines)
    cleared = pocdir("witness", "clear", str(w2.directory), log.origin)
    assert cleared.returncode == 0, cleared.stderr
    assert "holds size 10" in cleared.stdout
    lines = witness_checkpoint(w2.url, history_b.checkpoint(), 10, history_b.proof)
    cosigned_by(w2, history_b, 13, lines)
    [evidence] = forks(w2)
    assert evidence["cleared"] is True
    assert pocdir("witness", "forks", str(w2.directory)).returncode == 0


def test_a_rollback_is_refused_with_the_evidence_kept(witness: ServedWitness, log: Log) -> None:
    w1 = witness
    log.grow(8)
    witness_checkpoint(w1.url, log.checkpoint(), 0, log.proof)
    # the operator truncates to 5, regrows another history to 12, and proves it from 8
    rewritten = log.fork(5, 7, "rewritten")
    with pytest.raises(WitnessRefused) as refused:
        witness_checkpoint(w1.url, rewritten.checkpoint(), 8, rewritten.proof)
    assert refused.value.status == 422
    [evidence] = forks(w1)
    assert evidence["kind"] == "inconsistent" and evidence["marks_fork"] is True
    assert evidence["notes"] == {"held": log.checkpoint(), "submitted": rewritten.checkpoint()}
    assert (
        evidence["proof"]
        == [
            line
            for line in body(rewritten.checkpoint(), 8, rewritten.proof(8))
            .decode()
            .split("\n")[1:6]
        ][: len(rewritten.proof(8))]
    )
    assert held_size(w1) == 8
    shown = pocdir("witness", "forks", str(w1.directory))
    assert shown.returncode == 1 and "inconsistent fork" in shown.stdout


def test_a_plain_smaller_checkpoint_is_refused_and_noted(witness: ServedWitness, log: Log) -> None:
    w1 = witness
    log.grow(8)
    witness_checkpoint(w1.url, log.checkpoint(), 0, log.proof)
    with pytest.raises(SizeConflict) as conflict:  # from the size it had cosigned before
        witness_checkpoint(w1.url, log.checkpoint(5), 0, log.proof)
    assert conflict.value.witness_size == 8  # no retry: the witness is ahead
    with pytest.raises(WitnessRefused) as refused:
        add_checkpoint(w1.url, log.checkpoint(5), 8, [])
    assert refused.value.status == 400
    notes = forks(w1)
    assert {n["kind"] for n in notes} == {"rollback"}
    assert not any(n["marks_fork"] for n in notes)
    assert pocdir("witness", "forks", str(w1.directory)).returncode == 0  # a note, not a fork
    log.grow(2)
    witness_checkpoint(w1.url, log.checkpoint(), 8, log.proof)  # the log is not wedged
    assert held_size(w1) == 10


def test_a_size_conflict_is_recovered_by_one_retry_with_the_right_proof(
    witness: ServedWitness, log: Log
) -> None:
    w1 = witness
    log.grow(5)
    witness_checkpoint(w1.url, log.checkpoint(), 0, log.proof)
    log.grow(4)
    asked: list[tuple[int, int]] = []

    def consistency(first: int, second: int) -> list[bytes]:
        asked.append((first, second))
        return log.proof(first, second)

    # the server believes the witness is at 3 (say, it lost its own record of it)
    lines = witness_checkpoint(w1.url, log.checkpoint(), 3, consistency)
    assert asked == [(3, 9), (5, 9)]
    cosigned_by(w1, log, 9, lines)
    # a server that knows nothing starts from 0 and is told the size
    log.grow(1)
    asked.clear()
    lines = witness_checkpoint(w1.url, log.checkpoint(), 0, consistency)
    assert asked == [(9, 10)]
    cosigned_by(w1, log, 10, lines)
    with pytest.raises(SizeConflict) as conflict:
        add_checkpoint(w1.url, log.checkpoint(), 3, log.proof(3))
    assert conflict.value.witness_size == 10


def test_bad_requests_get_the_spec_statuses_and_one_line(witness: ServedWitness, log: Log) -> None:
    url = witness.url
    log.grow(3)
    stranger = Log.new("other.example/log").grow(3)
    impostor = Log(Log.new(log.origin).key, list(log.leaves), log.origin)
    cases = [
        (b"garbage", 400),
        (b"old 01\n\n" + log.checkpoint().encode(), 400),
        (body(log.checkpoint(), 4, []), 400),
        (body(stranger.checkpoint(), 0, []), 404),
        (body(impostor.checkpoint(), 0, []), 403),
        (body(log.checkpoint(), 0, log.proof(1)), 422),
        (b"old 0\n\n" + b"x" * (70 * 1024), 413),
    ]
    with httpx.Client(timeout=10) as client:
        for request, status in cases:
            r = client.post(url + "/add-checkpoint", content=request)
            assert r.status_code == status, (request[:40], r.text)
            assert r.text.endswith("\n") and r.text.count("\n") == 1, r.text
        r = client.get(url + "/add-checkpoint")
        assert r.status_code == 405
        r = client.post(url + "/add-checkpoint", content=body(log.checkpoint(), 0, []))
        assert r.status_code == 200 and r.text.startswith("— witness.example.org/w1 ")
        r = client.post(url + "/add-checkpoint", content=body(log.checkpoint(), 1, log.proof(1)))
        assert r.status_code == 409 and r.text == "3\n"
        assert r.headers["content-type"] == "text/x.tlog.size"


def test_a_witness_that_is_not_there_is_unavailable(log: Log) -> None:
    log.grow(1)
    with pytest.raises(WitnessUnavailable):
        add_checkpoint(f"http://127.0.0.1:{free_port()}", log.checkpoint(), 0, [], timeout=2)


def test_a_pocdir_record_is_witnessed_as_it_grows(
    app: PocDirectory, clock: SimulatedClock, backend: Backend, tmp_path: Path
) -> None:
    """pocdir's own checkpoints and consistency proofs (``infra.transparency``, on SQLite and
    PostgreSQL) are what the served witness accepts and cosigns."""
    transparency = service(app, backend)
    with served_witness(
        tmp_path / "w", "witness.example.org/fra", backend.settings.origin, str(KEY.verifier)
    ) as w:
        vkey = WitnessVerifierKey.parse(w.vkey)

        def consistency(first: int, second: int) -> tuple[bytes, ...]:
            return transparency.consistency_proof(first, second).proof

        held = 0
        for seed in (1, 2, 3):
            simulate(app, clock, days=4, seed=seed)
            checkpoint = transparency.record_checkpoint()
            assert checkpoint.tree_size > held
            lines = witness_checkpoint(w.url, checkpoint.note, held, consistency)
            assert spec_verify(checkpoint.note + "".join(lines), vkey.name, vkey.public_key)
            held = checkpoint.tree_size
        assert held_size(w) == held and forks(w) == []


def test_witness_commands_say_what_is_wrong_in_one_line(tmp_path: Path, log: Log) -> None:
    directory = tmp_path / "w"
    cases = [
        (("witness", "key", str(directory)), "holds no witness"),
        (("witness", "forks", str(directory)), "holds no witness"),
        (("witness", "init", str(directory), "--name", "has space"), "key name"),
    ]
    for args, says in cases:
        done = pocdir(*args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    made = pocdir("witness", "init", str(directory), "--name", "witness.example.org/fra")
    assert made.returncode == 0
    assert pocdir("witness", "key", str(directory)).stdout == made.stdout
    cases = [
        (("witness", "init", str(directory), "--name", "again"), "already holds a witness"),
        (
            ("witness", "add-log", str(directory), "--origin", log.origin, "--key", "nope"),
            "verifier key",
        ),
        (("witness", "clear", str(directory), log.origin), "does not witness"),
        (("witness", "serve", str(directory), "--host", "0.0.0.0"), "refusing plain HTTP"),
    ]
    for args, says in cases:
        done = pocdir(*args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    added = pocdir(
        "witness", "add-log", str(directory), "--origin", log.origin, "--key", str(log.key.verifier)
    )
    assert added.returncode == 0 and f"witnessing {log.origin} at size 0" in added.stdout


def test_concurrent_submissions_over_http_move_the_log_once(
    witness: ServedWitness, log: Log
) -> None:
    """Eight submissions from size 4 at once, to sizes 5..12: one is cosigned, the others are
    told the winner's size (the spec's race, through the server's thread pool)."""
    log.grow(12)
    witness_checkpoint(witness.url, log.checkpoint(4), 0, log.proof)
    requests = [body(log.checkpoint(size), 4, log.proof(4, size)) for size in range(5, 13)]
    barrier = threading.Barrier(len(requests))

    def send(request: bytes) -> httpx.Response:
        barrier.wait()
        return httpx.post(witness.url + "/add-checkpoint", content=request, timeout=30)

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(send, requests))
    won = [size for size, r in zip(range(5, 13), answers, strict=True) if r.status_code == 200]
    assert len(won) == 1, [(r.status_code, r.text) for r in answers]
    lost = [r for r in answers if r.status_code != 200]
    assert {(r.status_code, r.text) for r in lost} == {(409, f"{won[0]}\n")}
    assert held_size(witness) == won[0]
