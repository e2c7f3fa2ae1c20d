"""The witness (``infra.witness``): C2SP tlog-witness ``add-checkpoint`` as the spec says, every
refusal with the spec's status, fork evidence kept and the log refused until cleared, and two
submissions at once never both moving the log.

The witness keeps its state in files of its own (a SQLite file in its directory, never the
operator's database), so these tests need no ``backend``; the served ones are in
``tests/test_witness_served.py``."""

from __future__ import annotations

import base64
import os
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from infra import witness_client
from infra.cosignature import WitnessKey, verify_cosignature
from infra.note import KeyFormatError, SignerKey
from infra.witness import (
    INCONSISTENT,
    KEY_FILE,
    ROLLBACK,
    SPLIT_VIEW,
    LogForked,
    MalformedRequest,
    NotSignedByLog,
    OldSizeTooLarge,
    ProofRejected,
    RootMismatch,
    SizeMismatch,
    UnknownLog,
    Witness,
    WitnessRefusal,
    WitnessSetupError,
    parse_key,
    parse_request,
    serialise_key,
)
from tests.support.witness import Log, body
from tests.test_cosignature import spec_verify

NOW = 1_800_000_000


@pytest.fixture
def log() -> Log:
    return Log.new().grow(5)


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Witness:
    w = Witness.init(tmp_path / "w", "witness.example.org/fra")
    w.add_log(log.origin, [log.key.verifier], NOW)
    return w


def submit(witness: Witness, log: Log, old: int, size: int | None = None, t: int = NOW) -> str:
    """Submit ``log``'s checkpoint of ``size`` with the honest proof from ``old``."""
    size = log.size if size is None else size
    return witness.add_checkpoint(body(log.checkpoint(size), old, log.proof(old, size)), t)


def refused(witness: Witness, request: bytes) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(request, NOW)
    return caught.value


# -- key and state ----------------------------------------------------------------------------


def test_init_writes_an_owner_only_key_in_the_documented_format(tmp_path: Path) -> None:
    w = Witness.init(tmp_path / "w", "witness.example.org/fra")
    path = tmp_path / "w" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    vkey = w.verifier
    # PRIVATE+KEY+<name>+<cosigner key id>+<base64(0x04 ‖ seed)>
    prefix = f"PRIVATE+KEY+witness.example.org/fra+{vkey.key_id.hex()}+"
    assert text.startswith(prefix) and text.endswith("\n")
    raw = base64.b64decode(text[len(prefix) :].strip(), validate=True)
    assert raw == b"\x04" + w.key.seed
    assert parse_key(text) == w.key
    assert Witness.open(tmp_path / "w").verifier == vkey
    with pytest.raises(WitnessSetupError, match="already holds a witness"):
        Witness.init(tmp_path / "w", "witness.example.org/fra")


def test_a_key_file_others_may_read_or_of_another_type_is_refused(tmp_path: Path) -> None:
    Witness.init(tmp_path / "w", "witness.example.org/fra")
    path = tmp_path / "w" / KEY_FILE
    os.chmod(path, 0o644)
    with pytest.raises(WitnessSetupError, match="chmod 600"):
        Witness.open(tmp_path / "w")
    with pytest.raises(KeyFormatError, match="type 0x04"):
        parse_key(SignerKey.generate("a").serialise())  # a log key (type 0x01)
    good = serialise_key(WitnessKey.generate("a"))
    with pytest.raises(KeyFormatError, match="id does not match"):
        parse_key(good.replace("+a+", "+b+", 1).replace("PRIVATE+KEY+a", "PRIVATE+KEY+b"))


def test_a_directory_without_a_witness_is_named(tmp_path: Path) -> None:
    with pytest.raises(WitnessSetupError, match="pocdir witness init"):
        Witness.open(tmp_path)


# -- the protocol -----------------------------------------------------------------------------


def test_the_first_checkpoint_comes_from_size_zero_and_is_cosigned(
    witness: Witness, log: Log
) -> None:
    line = submit(witness, log, 0)
    note = log.checkpoint() + line
    assert line.startswith("— witness.example.org/fra ") and line.endswith("\n")
    assert verify_cosignature(note, witness.verifier) == NOW
    assert spec_verify(note, witness.verifier.name, witness.verifier.public_key) == NOW
    held = witness.log(log.origin)
    assert held is not None
    assert (held.tree_size, held.root_hash, held.note) == (5, log.root(), log.checkpoint())


def test_growth_is_cosigned_with_a_proof_from_the_size_held(witness: Witness, log: Log) -> None:
    submit(witness, log, 0, 3)
    log.grow(9)
    line = submit(witness, log, 3, t=NOW + 5)
    assert verify_cosignature(log.checkpoint() + line, witness.verifier) == NOW + 5
    held = witness.log(log.origin)
    assert held is not None and held.tree_size == 14
    # the same checkpoint again: cosigned again, nothing changes, nothing kept
    again = submit(witness, log, 14, t=NOW + 9)
    assert verify_cosignature(log.checkpoint() + again, witness.verifier) == NOW + 9
    assert witness.evidence() == []


def test_a_checkpoint_with_other_signatures_too_is_cosigned_over_its_text(
    witness: Witness, log: Log
) -> None:
    other = SignerKey.generate("someone.else")
    note = log.checkpoint()
    extra = note + log.checkpoint(key=other).rsplit("\n\n", 1)[1]
    line = witness.add_checkpoint(body(extra, 0, []), NOW)
    assert verify_cosignature(note + line, witness.verifier) == NOW


@pytest.mark.parametrize(
    "request_body, says",
    [
        (b"old 0\n", "no empty line"),
        (b"old 01\n\nx", "old <size>"),
        (b"old -1\n\nx", "old <size>"),
        (b"new 0\n\nx", "old <size>"),
        (b"old  0\n\nx", "old <size>"),
        (b"old 0\nnot base64!\n\nx", "proof line 1"),
        (b"old 0\nAAAA\n\nx", "proof line 1"),
        (b"old 0\n" + b"A" * 43 + b"=\n" * 64 + b"\nx", "too many"),
        (b"old 0\n\n\xff\xfe", "UTF-8"),
        (b"old 0\n\nexample\n", "not a signed note"),
    ],
)
def test_a_malformed_body_is_400_saying_what_is_wrong(
    witness: Witness, request_body: bytes, says: str
) -> None:
    e = refused(witness, request_body)
    assert isinstance(e, MalformedRequest) and e.status == 400
    assert says in str(e)


def test_sixty_three_proof_lines_are_parsed() -> None:
    hashes = b"A" * 43 + b"=\n"
    parsed = parse_request(b"old 7\n" + hashes * 63 + b"\nnote")
    assert (parsed.old_size, len(parsed.proof), parsed.note) == (7, 63, "note")


def test_an_unknown_origin_is_404(witness: Witness) -> None:
    stranger = Log.new("other.example/log").grow(2)
    e = refused(witness, body(stranger.checkpoint(), 0, []))
    assert isinstance(e, UnknownLog) and e.status == 404


def test_a_checkpoint_no_trusted_key_signed_is_403(witness: Witness, log: Log) -> None:
    impostor = SignerKey.generate(log.origin)  # same name, another key
    e = refused(witness, body(log.checkpoint(key=impostor), 0, []))
    assert isinstance(e, NotSignedByLog) and e.status == 403
    note = log.checkpoint()
    text, signature = note.rsplit("\n\n", 1)
    altered = text.replace("\n5\n", "\n6\n") + "\n\n" + signature  # the log's key, altered body
    e = refused(witness, body(altered, 0, []))
    assert isinstance(e, NotSignedByLog) and e.status == 403
    assert witness.evidence() == []


def test_an_old_size_above_the_checkpoint_is_400(witness: Witness, log: Log) -> None:
    e = refused(witness, body(log.checkpoint(3), 4, []))
    assert isinstance(e, OldSizeTooLarge) and e.status == 400


def test_an_old_size_other_than_the_held_is_409_with_the_size_held(
    witness: Witness, log: Log
) -> None:
    submit(witness, log, 0, 3)
    log.grow(2)
    e = refused(witness, body(log.checkpoint(), 2, log.proof(2)))
    assert isinstance(e, SizeMismatch) and e.status == 409
    assert e.content_type == "text/x.tlog.size" and e.body() == "3\n"
    assert e.held_size == 3
    e = refused(witness, body(log.checkpoint(), 0, []))
    assert isinstance(e, SizeMismatch) and e.body() == "3\n"


def test_a_proof_from_size_zero_must_be_empty(witness: Witness, log: Log) -> None:
    e = refused(witness, body(log.checkpoint(), 0, log.proof(2)))
    assert isinstance(e, ProofRejected) and e.status == 422
    assert witness.evidence() == []  # nothing held: nothing it could contradict


# -- forks ------------------------------------------------------------------------------------


def test_a_proof_that_fails_is_422_kept_as_evidence_and_the_log_refused(
    witness: Witness, log: Log
) -> None:
    submit(witness, log, 0, 4)
    other = log.fork(2, 6, "rewritten")  # the operator rewrote leaves 2.. and grew to 8
    request = body(other.checkpoint(), 4, other.proof(4))
    e = refused(witness, request)
    assert isinstance(e, ProofRejected) and e.status == 422
    assert e.expected and e.computed
    [evidence] = witness.evidence()
    assert evidence.kind == INCONSISTENT and evidence.marks_fork and not evidence.cleared
    assert evidence.held_note == log.checkpoint(4)
    assert evidence.submitted_note == other.checkpoint()
    assert evidence.old_size == 4 and len(evidence.proof) == len(other.proof(4))
    assert evidence.detected_at == "2027-01-15T08:00:00Z"
    held = witness.log(log.origin)
    assert held is not None and held.forked and held.tree_size == 4
    # refused from now on, even the honest history
    log.grow(3)
    e = refused(witness, body(log.checkpoint(), 4, log.proof(4)))
    assert isinstance(e, LogForked) and e.status == 409 and "clears" in str(e)
    # the same sighting again is not a second piece of evidence
    assert len(witness.evidence()) == 1


def test_clearing_lifts_the_refusal_from_the_checkpoint_held(witness: Witness, log: Log) -> None:
    submit(witness, log, 0, 4)
    other = log.fork(2, 6, "rewritten")
    refused(witness, body(other.checkpoint(), 4, other.proof(4)))
    state = witness.clear(log.origin, NOW + 60)
    assert not state.forked and state.tree_size == 4
    [evidence] = witness.evidence()
    assert evidence.cleared and evidence.cleared_at == "2027-01-15T08:01:00Z"
    # the rewritten history is still inconsistent with what is held
    e = refused(witness, body(other.checkpoint(), 4, other.proof(4)))
    assert isinstance(e, ProofRejected)
    witness.clear(log.origin, NOW + 61)
    log.grow(3)
    line = submit(witness, log, 4)
    assert verify_cosignature(log.checkpoint() + line, witness.verifier) == NOW


def test_clearing_with_reset_starts_the_log_over(witness: Witness, log: Log) -> None:
    submit(witness, log, 0, 4)
    other = log.fork(2, 6, "rewritten")
    refused(witness, body(other.checkpoint(), 4, other.proof(4)))
    state = witness.clear(log.origin, NOW, reset=True)
    assert (state.tree_size, state.note, state.forked) == (0, None, False)
    line = submit(witness, other, 0)
    assert verify_cosignature(other.checkpoint() + line, witness.verifier) == NOW
    assert len(witness.evidence()) == 1
    with pytest.raises(WitnessSetupError, match="does not witness"):
        witness.clear("nobody.example/log", NOW)


def test_two_signed_checkpoints_of_one_size_are_a_split_view(witness: Witness, log: Log) -> None:
    submit(witness, log, 0)
    other = log.fork(3, 2, "other")  # size 5 too, another root
    e = refused(witness, body(other.checkpoint(), 5, []))
    assert isinstance(e, RootMismatch) and e.status == 409
    [evidence] = witness.evidence()
    assert evidence.kind == SPLIT_VIEW and evidence.marks_fork
    assert (evidence.held_note, evidence.submitted_note) == (log.checkpoint(), other.checkpoint())
    assert isinstance(refused(witness, body(log.checkpoint(), 5, [])), LogForked)


def test_a_split_view_sent_with_a_stale_old_size_is_kept_too(witness: Witness, log: Log) -> None:
    submit(witness, log, 0)
    other = log.fork(3, 2, "other")
    e = refused(witness, body(other.checkpoint(), 3, other.proof(3)))
    assert isinstance(e, SizeMismatch) and e.body() == "5\n"  # the spec's answer first
    assert [x.kind for x in witness.evidence()] == [SPLIT_VIEW]
    assert isinstance(refused(witness, body(log.checkpoint(), 5, [])), LogForked)


def test_a_smaller_checkpoint_is_refused_and_noted_without_wedging_the_log(
    witness: Witness, log: Log
) -> None:
    submit(witness, log, 0)
    stale = body(log.checkpoint(3), 0, [])  # e.g. a lagging server process's checkpoint
    e = refused(witness, stale)
    assert isinstance(e, SizeMismatch) and e.body() == "5\n"
    e = refused(witness, body(log.checkpoint(3), 5, []))
    assert isinstance(e, OldSizeTooLarge)
    notes = witness.evidence()
    assert {n.kind for n in notes} == {ROLLBACK} and not any(n.marks_fork for n in notes)
    assert notes[0].held_note == log.checkpoint() and notes[0].submitted_note == log.checkpoint(3)
    held = witness.log(log.origin)
    assert held is not None and not held.forked
    log.grow(1)
    submit(witness, log, 5)  # the log goes on


# -- concurrency ------------------------------------------------------------------------------


def race(submissions: Iterable[tuple[Witness, bytes]]) -> list[tuple[int, str | WitnessRefusal]]:
    """Send each (witness, body) from its own thread at the same moment; (index, answer)."""
    pairs = list(submissions)
    barrier = threading.Barrier(len(pairs))
    results: list[tuple[int, str | WitnessRefusal]] = []

    def send(i: int, w: Witness, request: bytes) -> None:
        barrier.wait()
        try:
            results.append((i, w.add_checkpoint(request, NOW)))
        except WitnessRefusal as e:
            results.append((i, e))

    threads = [threading.Thread(target=send, args=(i, w, r)) for i, (w, r) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_two_submissions_from_one_size_only_one_moves_the_log(tmp_path: Path, log: Log) -> None:
    """The spec's race: A (size N+1) and B (size N+K) both from N. Whatever the order, one is
    cosigned and the other told the new size; the held size is the winner's. Two ``Witness``
    objects on one directory stand for two processes."""
    first = Witness.init(tmp_path / "w", "witness.example.org/fra")
    first.add_log(log.origin, [log.key.verifier], NOW)
    second = Witness.open(tmp_path / "w")
    size = 0
    for round_ in range(15):
        log.grow(3)
        requests = [body(log.checkpoint(size + k), size, log.proof(size, size + k)) for k in (1, 3)]
        results = race(zip((first, second), requests, strict=True))
        won = [i for i, r in results if isinstance(r, str)]
        lost = [r for _, r in results if isinstance(r, WitnessRefusal)]
        assert len(won) == 1 and len(lost) == 1, (round_, results)
        winner = size + (1, 3)[won[0]]
        assert isinstance(lost[0], SizeMismatch) and lost[0].held_size == winner
        held = first.log(log.origin)
        assert held is not None and held.tree_size == winner
        # bring the log to the end of what was grown for the next round
        if winner != log.size:
            submit(first, log, winner)
        size = log.size
    assert [e for e in first.evidence() if e.marks_fork] == []


def test_evidence_is_json_for_the_forks_endpoint(witness: Witness, log: Log) -> None:
    submit(witness, log, 0)
    other = log.fork(3, 2, "other")
    refused(witness, body(other.checkpoint(), 5, []))
    [shown] = [e.to_json() for e in witness.evidence()]
    assert shown["origin"] == log.origin and shown["kind"] == SPLIT_VIEW
    assert shown["notes"] == {"held": log.checkpoint(), "submitted": other.checkpoint()}
    assert shown["cleared"] is False and shown["detected_at"] == "2027-01-15T08:00:00Z"
    assert set(shown) >= {"proof", "reason", "expected", "computed", "marks_fork"}


def test_the_spec_example_request_parses() -> None:
    """The example body of https://c2sp.org/tlog-witness, byte for byte."""
    example = (
        "old 20852014\n"
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
        "\n"
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
        "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks"
        "+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
    )
    parsed = parse_request(example.encode())
    assert parsed.old_size == 20852014 and len(parsed.proof) == 4
    assert parsed.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert parsed.origin == "example.com/behind-the-sofa"
    assert parsed.note.startswith("example.com/behind-the-sofa\n20852163\n")
    assert parsed.note.count("\n— ") == 2


def test_the_client_writes_the_body_the_witness_reads(log: Log) -> None:
    log.grow(3)
    written = witness_client.request_body(log.checkpoint(), 2, log.proof(2))
    assert written == body(log.checkpoint(), 2, log.proof(2))
    parsed = parse_request(written)
    assert (parsed.old_size, list(parsed.proof), parsed.note) == (2, log.proof(2), log.checkpoint())
    with pytest.raises(ValueError, match="non-negative"):
        witness_client.request_body(log.checkpoint(), -1, [])
    with pytest.raises(ValueError, match="SHA-256"):
        witness_client.request_body(log.checkpoint(), 1, [b"short"])


def test_the_docs_list_every_status_the_witness_answers() -> None:
    """docs/witness.md's table of add-checkpoint answers names each status a refusal carries
    (and 200, and the app's 413), and no other."""
    import infra.witness as module

    doc = (Path(__file__).parents[1] / "docs" / "witness.md").read_text("utf-8")
    table = doc.split("### `POST /add-checkpoint`", 1)[1].split("###", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d{3}) ", table, re.MULTILINE)}
    refusals = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, WitnessRefusal) and cls is not WitnessRefusal
    ]
    assert documented == {200, 413} | {cls.status for cls in refusals}
