"""The server's checkpoints witnessed by States (issue 16, item 3), end to end: three
``pocdir witness serve`` processes over real HTTP, one per regional group, the server's own
``pocdir checkpoint`` submitting to them, and an auditor's ``verify --checkpoint --policy``
and ``audit verify --policy`` accepting a checkpoint only when the quorum cosigned it.

Every cosignature printed is checked by the independent C2SP implementation of
``tests/test_cosignature.py`` (``spec_verify``), not by pocdir's own verifier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cosignature import WitnessVerifierKey
from tests.support.cli import issue, run
from tests.support.db import Backend
from tests.support.witness import ServedWitness, served_witness
from tests.test_cosignature import spec_verify

pytestmark = pytest.mark.slow

#: The witnesses, by policy name: (key name, regional group).
WITNESSES = {
    "w-fra": ("witness.fra.example", "WEOG"),
    "w-pol": ("witness.pol.example", "EEG"),
    "w-bra": ("witness.bra.example", "GRULAC"),
}


def policy_text(log_vkey: str, served: dict[str, ServedWitness], quorum: str) -> str:
    """A verifier's policy: one witness from each regional group (``regions``), or 2 of 3."""
    lines = [f"log {log_vkey}"]
    lines += [f"witness {name} {w.vkey} {w.url}" for name, w in served.items()]
    for group in ("WEOG", "EEG", "GRULAC"):
        members = [n for n, (_, g) in WITNESSES.items() if g == group]
        lines.append(f"group {group} any {' '.join(members)}")
    lines.append("group regions all WEOG EEG GRULAC")
    lines.append(f"group two 2 {' '.join(served)}")
    lines.append(f"quorum {quorum}")
    return "\n".join(lines) + "\n"


def grow(backend: Backend) -> None:
    """New events: the Secretariat issues an auditor's credential."""
    issue(backend.url, "--role", "auditor", "--label", "an auditor")


def cosigners(note: str, served: dict[str, ServedWitness]) -> set[str]:
    """The witnesses whose cosignature on ``note`` the independent implementation accepts."""
    found = set()
    for name, w in served.items():
        key = WitnessVerifierKey.parse(w.vkey)
        try:
            spec_verify(note, key.name, key.public_key)
        except AssertionError:  # spec_verify's way of saying "not cosigned by this key"
            continue
        found.add(name)
    return found


def test_checkpoints_are_cosigned_by_the_witnesses_and_accepted_only_with_the_quorum(
    backend: Backend, tmp_path: Path
) -> None:
    key_file = tmp_path / "log.key"
    assert run(backend.url, "keys", "generate", str(key_file)).returncode == 0
    env = {"POCDIR_SIGNING_KEY_FILE": str(key_file)}
    log_vkey = run(backend.url, "keys", "public", env=env).stdout.strip()
    origin = log_vkey.split("+", 1)[0]
    assert run(backend.url, "simulate", "--states", "4", "--days", "6").returncode == 0

    # A checkpoint from before witnesses: accepted only under an explicit no-witness policy.
    before = run(backend.url, "checkpoint", env=env)
    assert before.returncode == 0, before.stderr
    (tmp_path / "before.txt").write_text(before.stdout)

    served: dict[str, ServedWitness] = {}
    with (
        served_witness(tmp_path / "fra", WITNESSES["w-fra"][0], origin, log_vkey) as fra,
        served_witness(tmp_path / "bra", WITNESSES["w-bra"][0], origin, log_vkey) as bra,
    ):
        served["w-fra"], served["w-bra"] = fra, bra
        with served_witness(tmp_path / "pol", WITNESSES["w-pol"][0], origin, log_vkey) as pol:
            served["w-pol"] = pol
            server_policy = tmp_path / "server-witnesses.txt"
            server_policy.write_text(policy_text(log_vkey, served, "none"))
            env["POCDIR_WITNESS_POLICY_FILE"] = str(server_policy)
            for name in ("regions", "two", "none"):
                (tmp_path / f"{name}.policy").write_text(policy_text(log_vkey, served, name))

            grow(backend)
            first = run(backend.url, "checkpoint", env=env)
            assert first.returncode == 0, first.stderr
            assert cosigners(first.stdout, served) == {"w-fra", "w-pol", "w-bra"}
            for name in served:
                assert f"witness {name}: cosigned" in first.stderr
            (tmp_path / "first.txt").write_text(first.stdout)

        # w-pol (the only EEG witness) is down: the next checkpoint lacks a regional group.
        grow(backend)
        second = run(backend.url, "checkpoint", env=env)
        assert second.returncode == 0, second.stderr
        assert "witness w-pol: unavailable" in second.stderr
        assert cosigners(second.stdout, served) == {"w-fra", "w-bra"}
        (tmp_path / "second.txt").write_text(second.stdout)

    def verify(checkpoint: str, policy: str) -> tuple[int, str]:
        done = run(
            backend.url,
            "verify",
            "--checkpoint",
            str(tmp_path / checkpoint),
            "--policy",
            str(tmp_path / f"{policy}.policy"),
        )
        assert "Traceback" not in done.stderr
        return done.returncode, done.stdout + done.stderr

    code, said = verify("first.txt", "regions")
    assert code == 0, said
    assert "cosigned by w-bra, w-fra, w-pol; quorum met" in said
    code, said = verify("second.txt", "regions")
    assert code == 1 and "missing cosignatures from: w-pol" in said
    assert verify("second.txt", "two")[0] == 0
    code, said = verify("before.txt", "two")
    assert code == 1 and "missing cosignatures from: w-fra, w-bra, w-pol" in said
    assert verify("before.txt", "none")[0] == 0

    # The bundle carries the cosigned checkpoints; its newest must meet the policy.
    bundle = tmp_path / "bundle"
    assert run(backend.url, "audit", "export", str(bundle)).returncode == 0
    regions = run("", "audit", "verify", str(bundle), "--policy", str(tmp_path / "regions.policy"))
    assert regions.returncode == 1 and "missing cosignatures from: w-pol" in regions.stderr
    two = run("", "audit", "verify", str(bundle), "--policy", str(tmp_path / "two.policy"))
    assert two.returncode == 0, two.stderr
    assert "cosigned by w-bra, w-fra; quorum met" in two.stdout
    given = run(
        "",
        "audit",
        "verify",
        str(bundle),
        "--policy",
        str(tmp_path / "two.policy"),
        "--checkpoint",
        str(tmp_path / "before.txt"),
    )
    assert given.returncode == 1 and "given checkpoint 1" in given.stderr


def test_a_policy_given_with_key_or_without_a_checkpoint_is_refused_in_one_line(
    backend: Backend, tmp_path: Path
) -> None:
    assert run(backend.url, "simulate", "--states", "2", "--days", "2").returncode == 0
    policy = tmp_path / "p.txt"
    policy.write_text("quorum none\n")
    cases = [
        (("verify", "--policy", str(policy)), "--checkpoint"),
        (("verify", "--checkpoint", str(policy), "--policy", str(policy)), "log key"),
        (
            ("verify", "--checkpoint", str(policy), "--policy", str(policy), "--key", "k"),
            "not with --key",
        ),
        (("audit", "verify", str(tmp_path), "--policy", str(tmp_path / "nope")), "cannot read"),
    ]
    for args, says in cases:
        done = run(backend.url, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_servers_periodic_checkpoints_are_submitted_and_served_cosigned(
    backend: Backend, tmp_path: Path
) -> None:
    import time
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from api.app import create_app
    from infra.note import SignerKey

    key = SignerKey.generate("test.example/pocdir")
    key_file = tmp_path / "signing.key"
    key.write_new(key_file)
    _, token = issue(backend.url, "--role", "auditor")
    who = {"Authorization": f"Bearer {token}"}
    with served_witness(tmp_path / "w", "witness.fra.example", key.name, str(key.verifier)) as w:
        policy = tmp_path / "witnesses.txt"
        policy.write_text(f"log {key.verifier}\nwitness w-fra {w.vkey} {w.url}\nquorum w-fra\n")
        settings = replace(
            backend.settings,
            origin=key.name,
            signing_key_file=key_file,
            witness_policy_file=policy,
        )
        with TestClient(create_app(settings, checkpoint_every=0.2)) as client:
            for _ in range(100):
                latest = client.get("/audit/checkpoints/latest", headers=who)
                if latest.status_code == 200 and latest.json()["cosignatures"]:
                    break
                time.sleep(0.1)
            assert latest.status_code == 200, latest.text
            note = latest.json()["note"]
            assert cosigners(note, {"w-fra": w}) == {"w-fra"}
            served = client.get("/tlog/checkpoint", headers=who).text
            assert cosigners(served, {"w-fra": w}) == {"w-fra"}
