"""Checkpoints and proofs over HTTP: auditors get them for anything; a State gets inclusion
proofs only for the events of exchanges it is party to. Proofs verify with the project's
verifier, against a checkpoint the API served."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from domain.clock import SimulatedClock
from domain.values import Role
from infra.merkle import ConsistencyProof, InclusionProof, unb64
from infra.note import SignerKey, VerifierKey, open_checkpoint
from tests.support.db import Backend
from tests.support.http import Api, api_for, assert_error, register, send


@pytest.fixture
def api(backend: Backend, clock: SimulatedClock, tmp_path: Path) -> Iterator[Api]:
    key_file = tmp_path / "signing.key"
    SignerKey.generate("test.example/pocdir").write_new(key_file)
    settings = replace(backend.settings, origin="test.example/pocdir", signing_key_file=key_file)
    with api_for(settings, clock) as a:
        yield a


def test_auditors_verify_an_inclusion_proof_against_the_served_checkpoint(api: Api) -> None:
    auditor = api.auth(Role.AUDITOR)
    assert_error(api.call("GET", "/audit/checkpoints/latest", auditor), 404)
    for code in ("FRA", "DEU", "ITA"):
        register(api, code)
    n = send(api, "FRA", "DEU")
    services = api.client.app.state.services.get()  # type: ignore[attr-defined]
    recorded = services.transparency.record_checkpoint()
    latest = api.call("GET", "/audit/checkpoints/latest", auditor).json()
    assert latest["tree_size"] == recorded.tree_size
    assert latest["recorded_at"].endswith("Z"), latest  # the one JSON convention's times
    keys = [VerifierKey.parse(k) for k in api.call("GET", "/audit/keys", auditor).json()]
    note = api.call("GET", f"/audit/checkpoints/{recorded.tree_size}?format=note", auditor).text
    signed = open_checkpoint(note, keys)
    size = signed.checkpoint.tree_size
    proof = api.call("GET", f"/audit/proofs/inclusion?index=3&size={size}", auditor).json()
    InclusionProof.from_json(proof).verify()
    assert unb64(proof["root_hash"]) == signed.checkpoint.root_hash
    send(api, "DEU", "FRA")
    consistency = api.call(
        "GET", f"/audit/proofs/consistency?first={size}&second={size + 1}", auditor
    ).json()
    ConsistencyProof.from_json(consistency).verify()
    own = api.call(
        "GET", f"/audit/proofs/inclusion?aggregate_id={n['id']}&version=1", api.as_state("DEU")
    )
    assert own.status_code == 200, own.text
    InclusionProof.from_json(own.json()).verify()
    outsider = api.call(
        "GET", f"/audit/proofs/inclusion?aggregate_id={n['id']}&version=1", api.as_state("ITA")
    )
    assert_error(outsider, 404)
    assert_error(api.call("GET", "/audit/proofs/inclusion?index=0", api.as_state("ITA")), 404)
    assert_error(api.call("GET", "/audit/proofs/inclusion?index=999", auditor), 422)
    assert_error(api.call("GET", "/audit/proofs/consistency?first=1", auditor), 422)


@pytest.mark.slow
def test_the_server_signs_checkpoints_on_a_period(backend: Backend, tmp_path: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.support.cli import issued, run

    key_file = tmp_path / "signing.key"
    SignerKey.generate("test.example/pocdir").write_new(key_file)
    settings = replace(backend.settings, origin="test.example/pocdir", signing_key_file=key_file)
    _, token = issued(run(backend.url, "principals", "add", "--role", "auditor").stdout)
    with TestClient(create_app(settings, checkpoint_every=0.2)) as client:
        who = {"Authorization": f"Bearer {token}"}
        for _ in range(100):
            latest = client.get("/audit/checkpoints/latest", headers=who)
            if latest.status_code == 200:
                break
            time.sleep(0.1)
        assert latest.status_code == 200, latest.text
        assert latest.json()["tree_size"] == 1


def positions(api: Api) -> list[tuple[int, str, int]]:
    """(position, aggregate id, version) of every stored event, in position order."""
    rows = api.application.recorder.select_notifications(0, 100_000)
    return [(r.id, str(r.originator_id), r.originator_version) for r in rows]


def lose_a_race(api: Api, code: str) -> None:
    """Two writers change the same entry from the same version: the second one's insert is
    rolled back, and on PostgreSQL the position it drew from the sequence stays unused."""
    from eventsourcing.persistence import IntegrityError

    from domain.state_entry import state_entry_id
    from tests.support.builders import state

    app = api.application
    first, second = (app.repository.get(state_entry_id(code)) for _ in range(2))
    for entry in (first, second):
        entry.confirm(state(code), app.clock.now())
    app.save(first)
    with pytest.raises(IntegrityError):
        app.save(second)


def test_the_head_counts_the_events_where_positions_have_gaps(api: Api, backend: Backend) -> None:
    register(api, "FRA")
    lose_a_race(api, "FRA")
    register(api, "DEU")
    stored = positions(api)
    if backend.name == "postgresql":
        assert stored[-1][0] > len(stored), "no gap: the test does not show what it should"
    head = api.call("GET", "/audit/head", api.auth(Role.AUDITOR)).json()
    stored = positions(api)  # issuing the auditor's token recorded an event
    assert head["size"] == len(stored) and head["position"] == stored[-1][0]


def test_a_state_gets_an_inclusion_proof_by_index_before_anyone_grew_the_tree(
    api: Api,
) -> None:
    for code in ("FRA", "DEU"):
        register(api, code)
    n = send(api, "FRA", "DEU")
    deu = api.as_state("DEU")
    index = next(i for i, (_, aid, v) in enumerate(positions(api)) if (aid, v) == (n["id"], 1))
    r = api.call("GET", f"/audit/proofs/inclusion?index={index}", deu)
    assert r.status_code == 200, r.text
    proof = InclusionProof.from_json(r.json())
    proof.verify()
    assert proof.index == index
