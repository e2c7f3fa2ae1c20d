"""The stored Merkle tree, checkpoints and proofs, on SQLite and PostgreSQL, and what an auditor
detects with a checkpoint kept outside the database and with the offline bundle."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from infra.audit import (
    BundleError,
    HistoryRewritten,
    TailTruncated,
    export_bundle,
    verify_against_checkpoint,
    verify_bundle,
)
from infra.chain import RecordAltered, compute_links
from infra.merkle import root_of
from infra.note import SignatureInvalid, SignerKey, open_checkpoint
from infra.transparency import NotRecorded, Transparency
from infra.tree_store import RecordNotVerified, TreeDiverged, build_tree_store
from infra.verify import chained_recorder
from infra.wiring import build_transparency
from simulation.simulator import Simulator
from tests.support.builders import state
from tests.support.cli import run
from tests.support.db import Backend

KEY = SignerKey.generate("test.example/pocdir")


def simulate(app: PocDirectory, clock: SimulatedClock, days: int = 20, seed: int = 1) -> None:
    """The first call simulates; later ones on the same record add confirmations by the
    States already registered (a simulator registers its States, so it runs once)."""
    registered = getattr(app, "_test_states", None)
    if registered is None:
        simulator = Simulator(app, clock, states=6, days=days, seed=seed)
        simulator.run()
        app._test_states = list(simulator.active)  # type: ignore[attr-defined]
        return
    for _ in range(days):
        clock.advance(timedelta(days=1))
        for code in registered:
            app.confirm_entry(state(code), code)


def service(app: PocDirectory, backend: Backend, key: SignerKey = KEY) -> Transparency:
    build_transparency(app, backend.settings)  # the composition root's own path works
    return Transparency(build_tree_store(app.recorder), backend.settings.origin, lambda: key)


def chain_leaves(app: PocDirectory) -> list[bytes]:
    return [row.leaf_hash for row in chained_recorder(app).iter_stored_rows()]  # type: ignore[misc]


def test_the_stored_tree_has_the_roots_and_proofs_of_the_reference_tree(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock)
    transparency = service(app, backend)
    assert transparency.tree.catch_up(batch=7) == len(leaves := chain_leaves(app))
    for size in range(1, len(leaves) + 1):
        assert transparency.root_hash(size) == root_of(leaves[:size])
        proof = transparency.inclusion_proof(size // 2, size)
        assert proof.leaf_hash == leaves[size // 2]
        proof.verify()
        transparency.consistency_proof(max(1, size // 3), size).verify()


def test_the_tree_catches_up_over_new_events_and_stays_consistent(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=10)
    transparency = service(app, backend)
    first = transparency.record_checkpoint()
    simulate(app, clock, days=10, seed=2)
    second = transparency.record_checkpoint()
    assert second.tree_size > first.tree_size
    assert second.root_hash == root_of(chain_leaves(app))
    proof = transparency.consistency_proof(first.tree_size, second.tree_size)
    assert (proof.first_root, proof.second_root) == (first.root_hash, second.root_hash)
    proof.verify()


def test_an_event_is_proved_by_its_aggregate_and_version(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=5)
    transparency = service(app, backend)
    row = list(chained_recorder(app).iter_stored_rows())[4]
    from uuid import UUID

    proof = transparency.inclusion_proof_for(UUID(str(row.originator_id)), row.originator_version)  # type: ignore[arg-type]
    assert (proof.index, proof.position, proof.leaf_hash) == (4, row.position, row.leaf_hash)
    proof.verify()
    with pytest.raises(NotRecorded):
        transparency.inclusion_proof_for(UUID(int=1), 1)


def test_checkpoints_signed_before_a_key_rotation_stay_verifiable(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=5)
    old = service(app, backend).record_checkpoint()
    simulate(app, clock, days=5, seed=3)
    new_key = SignerKey.generate("test.example/pocdir")
    transparency = service(app, backend, new_key)
    latest = transparency.record_checkpoint()
    keys = transparency.trusted_keys()
    assert {str(k) for k in keys} == {str(KEY.verifier), str(new_key.verifier)}
    assert open_checkpoint(old.note, keys).signed_by == (KEY.verifier,)
    assert open_checkpoint(latest.note, keys).signed_by == (new_key.verifier,)
    assert transparency.checkpoint_by_size(old.tree_size).note == old.note
    assert transparency.latest_checkpoint().note == latest.note


def test_the_tree_does_not_grow_over_an_event_that_does_not_verify(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=5)
    transparency = service(app, backend)
    size = transparency.tree_size()
    simulate(app, clock, days=3, seed=4)
    last = backend.execute(f"SELECT MAX({backend.position_column}) FROM {backend.events_table}")
    backend.execute(
        f"UPDATE {backend.events_table} SET state = %s WHERE {backend.position_column} = %s",
        (b"{}", last[0][0]),
    )
    with pytest.raises(RecordNotVerified):
        transparency.record_checkpoint()
    assert transparency.tree.size() >= size


def test_the_tree_refuses_a_record_truncated_below_it(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=5)
    transparency = service(app, backend)
    transparency.record_checkpoint()
    truncate(backend, 2)
    with pytest.raises(TreeDiverged, match="deleted"):
        transparency.record_checkpoint()


# -- tampering after a checkpoint --------------------------------------------------------------


def truncate(backend: Backend, count: int) -> None:
    """Delete the newest ``count`` events and their links: a valid, shorter chain."""
    rows = backend.execute(
        f"SELECT {backend.position_column} FROM {backend.events_table} "
        f"ORDER BY {backend.position_column} DESC LIMIT {count}"
    )
    for (position,) in rows:
        backend.execute(
            f"DELETE FROM {backend.events_table} WHERE {backend.position_column} = %s",
            (position,),
        )
        backend.execute("DELETE FROM event_chain WHERE position = %s", (position,))


def rewrite(app: PocDirectory, backend: Backend, position: int) -> None:
    """Change one event's bytes and recompute every leaf and link: a self-consistent chain."""
    backend.execute(
        f"UPDATE {backend.events_table} SET state = %s WHERE {backend.position_column} = %s",
        (b'{"rewritten":true}', position),
    )
    recorder = chained_recorder(app)
    rows = list(recorder.iter_stored_rows())
    links = compute_links(
        0,
        bytes(32),
        [(r.position, r.originator_id, r.originator_version, r.topic, r.state) for r in rows],  # type: ignore[misc]
        recorder.id_spelling,
    )
    for link in links:
        backend.execute(
            "UPDATE event_chain SET prev_position = %s, leaf_hash = %s, link = %s "
            "WHERE position = %s",
            (link.prev_position, link.leaf_hash, link.link, link.position),
        )


def alter(backend: Backend, position: int) -> None:
    backend.execute(
        f"UPDATE {backend.events_table} SET state = %s WHERE {backend.position_column} = %s",
        (b'{"altered":true}', position),
    )


def test_the_record_verifies_against_its_checkpoint_after_growing(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    simulate(app, clock, days=5)
    transparency = service(app, backend)
    note = transparency.record_checkpoint().note
    simulate(app, clock, days=5, seed=5)
    result = verify_against_checkpoint(app, transparency, note, [KEY.verifier])
    assert result.events > result.checkpoint.checkpoint.tree_size


@pytest.mark.parametrize(
    ("tamper", "error", "reason"),
    [
        ("truncate", TailTruncated, "tail truncation"),
        ("rewrite", HistoryRewritten, "rewritten"),
        ("alter", RecordAltered, "stored event changed"),
    ],
)
def test_tampering_after_a_checkpoint_is_named_by_verify_against_it(
    app: PocDirectory,
    clock: SimulatedClock,
    backend: Backend,
    tamper: str,
    error: type[Exception],
    reason: str,
) -> None:
    simulate(app, clock, days=8)
    transparency = service(app, backend)
    note = transparency.record_checkpoint().note
    if tamper == "truncate":
        truncate(backend, 3)
    elif tamper == "rewrite":
        rewrite(app, backend, 2)
    else:
        alter(backend, 2)
    with pytest.raises(error, match=reason):
        verify_against_checkpoint(app, transparency, note, [KEY.verifier])


# -- the CLI, as an auditor runs it ------------------------------------------------------------


def cli(backend: Backend, key_file: Path, *args: str) -> Any:
    """``pocdir ARGS`` with this test's signing key (the process's environment is left as it
    was: the session's keys are other tests' settings)."""
    return run(backend.url, *args, env={"POCDIR_SIGNING_KEY_FILE": str(key_file)})


@pytest.mark.slow
@pytest.mark.parametrize("tamper", ["truncate", "rewrite", "alter"])
def test_verify_with_a_checkpoint_exits_one_naming_each_tamper_class(
    backend: Backend, tmp_path: Path, tamper: str
) -> None:
    key_file = tmp_path / "signing.key"
    assert run(backend.url, "keys", "generate", str(key_file)).returncode == 0
    assert run(backend.url, "simulate", "--states", "5", "--days", "15").returncode == 0
    checkpoint = cli(backend, key_file, "checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    note = tmp_path / "checkpoint.txt"
    note.write_text(checkpoint.stdout)
    public = cli(backend, key_file, "keys", "public").stdout.strip()
    intact = run(backend.url, "verify", "--checkpoint", str(note), "--key", public)
    assert intact.returncode == 0, intact.stderr
    assert "the record extends it" in intact.stdout
    if tamper == "truncate":
        truncate(backend, 2)
        reason = "tail truncation"
    elif tamper == "rewrite":
        from infra.wiring import build_application

        app = build_application(backend.settings)
        rewrite(app, backend, 3)
        app.close()
        reason = "rewritten"
    else:
        alter(backend, 3)
        reason = "position 3"
    plain = run(backend.url, "verify")
    assert plain.returncode == (1 if tamper == "alter" else 0)
    result = run(backend.url, "verify", "--checkpoint", str(note), "--key", public)
    assert result.returncode == 1
    assert reason in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_proof_commands_print_the_json_auditors_rely_on(backend: Backend, tmp_path: Path) -> None:
    assert run(backend.url, "simulate", "--states", "4", "--days", "10").returncode == 0
    inclusion = run(backend.url, "proof", "inclusion", "3", "--size", "9")
    assert inclusion.returncode == 0, inclusion.stderr
    data = json.loads(inclusion.stdout)
    assert set(data) == {"index", "tree_size", "leaf_hash", "root_hash", "proof"}
    assert (data["index"], data["tree_size"]) == (3, 9)
    consistency = json.loads(run(backend.url, "proof", "consistency", "4", "9").stdout)
    assert set(consistency) == {"first_size", "second_size", "first_root", "second_root", "proof"}
    assert consistency["second_root"] == data["root_hash"]
    beyond = run(backend.url, "proof", "inclusion", "100000")
    assert beyond.returncode == 2 and "not in a tree" in beyond.stderr
    no_key = run(backend.url, "checkpoint", env={"POCDIR_SIGNING_KEY_FILE": ""})
    assert no_key.returncode == 2 and "POCDIR_SIGNING_KEY_FILE" in no_key.stderr


# -- the offline bundle ------------------------------------------------------------------------


@pytest.fixture
def bundle(app: PocDirectory, clock: SimulatedClock, backend: Backend, tmp_path: Path) -> Path:
    simulate(app, clock, days=5)
    transparency = service(app, backend)
    transparency.record_checkpoint()
    simulate(app, clock, days=5, seed=6)
    transparency.record_checkpoint()
    directory = tmp_path / "bundle"
    export_bundle(app, transparency, directory)
    return directory


def _records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "records.jsonl").read_text().splitlines()]


def _write_records(directory: Path, records: list[dict[str, Any]]) -> None:
    (directory / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_an_exported_bundle_verifies_with_the_published_key(bundle: Path) -> None:
    result = verify_bundle(bundle, [KEY.verifier])
    assert result.checkpoints == 2 and result.records == len(_records(bundle))


def test_a_bundle_cut_at_the_tail_is_named_truncated(bundle: Path) -> None:
    _write_records(bundle, _records(bundle)[:-3])
    with pytest.raises(TailTruncated):
        verify_bundle(bundle, [KEY.verifier])


def test_a_bundle_with_a_recomputed_history_is_named_rewritten(bundle: Path) -> None:
    import base64

    records = _records(bundle)
    records[1]["state"] = base64.b64encode(b'{"rewritten":true}').decode()
    links = compute_links(
        0,
        bytes(32),
        [
            (
                r["position"],
                r["originator_id"],
                r["originator_version"],
                r["topic"],
                base64.b64decode(r["state"]),
            )
            for r in records
        ],
    )
    for record, link in zip(records, links, strict=True):
        record["leaf_hash"] = base64.b64encode(link.leaf_hash).decode()
        record["link"] = base64.b64encode(link.link).decode()
    _write_records(bundle, records)
    with pytest.raises(HistoryRewritten):
        verify_bundle(bundle, [KEY.verifier])


def test_a_changed_byte_in_a_bundle_is_named_at_its_position(bundle: Path) -> None:
    import base64

    records = _records(bundle)
    state = bytearray(base64.b64decode(records[2]["state"]))
    state[5] ^= 1
    records[2]["state"] = base64.b64encode(bytes(state)).decode()
    _write_records(bundle, records)
    with pytest.raises(RecordAltered) as failure:
        verify_bundle(bundle, [KEY.verifier])
    assert failure.value.position == records[2]["position"]


def test_a_forged_checkpoint_or_manifest_is_caught(bundle: Path, tmp_path: Path) -> None:
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    checkpoint = sorted((forged / "checkpoints").iterdir())[0]
    text = checkpoint.read_text().split("\n")
    text[1] = str(int(text[1]) - 1)
    checkpoint.write_text("\n".join(text))
    with pytest.raises(SignatureInvalid):
        verify_bundle(forged, [KEY.verifier])
    (bundle / "keys.txt").write_text((bundle / "keys.txt").read_text() + "")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["records"]["count"] += 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="number of records"):
        verify_bundle(bundle, [KEY.verifier])


@pytest.mark.slow
def test_audit_cli_exports_and_verifies_a_bundle_without_settings(
    backend: Backend, tmp_path: Path
) -> None:
    key_file = tmp_path / "signing.key"
    assert run(backend.url, "keys", "generate", str(key_file)).returncode == 0
    assert run(backend.url, "simulate", "--states", "4", "--days", "10").returncode == 0
    assert cli(backend, key_file, "checkpoint").returncode == 0
    directory = tmp_path / "bundle"
    exported = run(backend.url, "audit", "export", str(directory))
    assert exported.returncode == 0, exported.stderr
    # No database: an unreachable URL proves the verifier never connects.
    ok = run("postgresql://postgres@127.0.0.1:1/nowhere", "audit", "verify", str(directory))
    assert ok.returncode == 0, ok.stderr
    _write_records(directory, _records(directory)[:-1])
    cut = run("postgresql://postgres@127.0.0.1:1/nowhere", "audit", "verify", str(directory))
    assert cut.returncode == 1 and "tail truncation" in cut.stderr
    again = run(backend.url, "audit", "export", str(directory))
    assert again.returncode == 2 and "not an empty directory" in again.stderr


def test_the_bundle_snippet_in_the_audit_format_doc_checks_an_exported_bundle(
    bundle: Path,
) -> None:
    from tests.support.audit_doc import fenced_block_after

    namespace: dict[str, Any] = {}
    exec(fenced_block_after("13. The offline audit bundle", "python"), namespace)  # noqa: S102
    for note_file in sorted((bundle / "checkpoints").iterdir()):
        size, root = namespace["checkpoint"](note_file.read_text(), str(KEY.verifier))
        assert namespace["leaves_root"](bundle / "records.jsonl", size) == root


def test_the_worked_example_tree_in_the_audit_format_doc_is_recomputed() -> None:
    import base64
    import re

    from infra.merkle import inclusion_ranges
    from tests.support.audit_doc import doc_text, example

    leaves = [e.leaf_hash for e in example()]
    section = doc_text().split("## 11. Checkpoints", 1)[1].split("## 12.", 1)[0]
    for size in (1, 2, 3):
        row = re.search(rf"^\| {size} \| `([0-9a-f]{{64}})` \| `([^`]+)` \|$", section, re.M)
        assert row is not None
        assert bytes.fromhex(row.group(1)) == root_of(leaves[:size])
        assert base64.b64decode(row.group(2)) == root_of(leaves[:size])
    proofs = [
        json.loads(line) for line in section.split("```json\n", 1)[1].split("```")[0].splitlines()
    ]
    from infra.merkle import ConsistencyProof, InclusionProof

    for data in proofs:
        proof = (
            InclusionProof.from_json(data) if "index" in data else ConsistencyProof.from_json(data)
        )
        proof.verify()
    assert len(inclusion_ranges(0, 3)) == len(proofs[0]["proof"])


def test_a_checkpoint_of_another_log_is_refused(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    from infra.note import Checkpoint, CheckpointError, sign_note

    simulate(app, clock, days=3)
    transparency = service(app, backend)
    size = transparency.tree_size()
    other = sign_note(
        Checkpoint("other.example/log", size, transparency.root_hash(size)).body(), KEY
    )
    with pytest.raises(CheckpointError, match="another log"):
        verify_against_checkpoint(app, transparency, other, [KEY.verifier])


def test_a_verifier_key_raises_on_a_signature_of_other_bytes_naming_the_key() -> None:
    signature = KEY.sign(b"size 7")
    KEY.verifier.verify(b"size 7", signature)
    with pytest.raises(SignatureInvalid) as failure:
        KEY.verifier.verify(b"size 8", signature)
    assert failure.value.expected == f"a valid Ed25519 signature by {KEY.verifier}"
    assert failure.value.computed == "an invalid signature"
