"""``pocdir mirror URL DIR`` and ``pocdir audit verify MIRROR`` (issue 16, item 5): a real
signed record, published as C2SP tlog-tiles by an independent writer (``tests.support.
tlog_tiles``, from the spec's text) and served over HTTP by a process of its own, is mirrored
by the CLI as a State or a regional organisation runs it. A second run fetches exactly the
tiles that changed; a tampered entry or tile, a checkpoint short of the witness quorum, a
rollback and another log's checkpoint are refused and leave the mirror as it was; the mirror
verifies offline, and a flipped byte in it is named. On SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import json
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.cli.console import CONSOLE
from domain.application import PocDirectory
from domain.values import Role
from infra.note import SignerKey
from infra.verify import chained_recorder
from tests.support.builders import contact_data
from tests.support.cli import free_port, issue, run, serving
from tests.support.db import Backend
from tests.support.http import Api
from tests.support.officials import onboard, signed_call
from tests.support.record_keys import record_key_files
from tests.support.tlog_tiles import Log, publish, served_tiles, spec_tiles, stored_entries

#: Slow: a served process and CLI processes.
pytestmark = pytest.mark.slow

#: Events added between two runs: enough to fill the first tile and start the second.
GROWTH = 300


@dataclass
class Published:
    """A record served as tlog-tiles, and a mirror of it to be made in ``mirror``."""

    api: Api
    backend: Backend
    log: Log
    source: Path
    mirror: Path
    policy: Path
    token: Path
    requests: Path
    base: str
    entries: list[bytes]

    def republish(self, cosigners: Sequence[int] = (0, 1)) -> list[bytes]:
        self.entries = publish(self.api.application, self.source, self.log, cosigners)
        return self.entries

    def run_mirror(self) -> subprocess.CompletedProcess[str]:
        self.requests.write_text("", encoding="utf-8")
        return run(
            self.backend.url,
            "mirror",
            self.base,
            str(self.mirror),
            "--policy",
            str(self.policy),
            "--token-file",
            str(self.token),
        )

    def requested(self) -> set[str]:
        return set(self.requests.read_text(encoding="utf-8").split())

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        return run(
            self.backend.url, "audit", "verify", str(self.mirror), "--policy", str(self.policy)
        )


@pytest.fixture
def published(api: Api, backend: Backend, tmp_path: Path) -> Iterator[Published]:
    fra = onboard(api.application, "FRA")
    assert signed_call(api, fra, "POST", "/entries/FRA", {}).status_code == 201
    r = signed_call(
        api,
        fra,
        "POST",
        "/entries/FRA/contacts",
        {"contact": contact_data("cert")},
        if_match='"1"',
    )
    assert r.status_code == 200, r.text
    log, source = Log(), tmp_path / "served"
    source.mkdir()
    entries = publish(api.application, source, log)
    policy, token = tmp_path / "policy.txt", tmp_path / "token"
    policy.write_text(log.policy(), encoding="utf-8")
    secret = secrets.token_urlsafe(24)
    token.write_text(secret + "\n", encoding="utf-8")
    requests = tmp_path / "requests.log"
    with served_tiles(source, secret, requests) as base:
        yield Published(
            api,
            backend,
            log,
            source,
            tmp_path / "mirror",
            policy,
            token,
            requests,
            base,
            entries,
        )


def grow(api: Api, events: int) -> None:
    for _ in range(events):
        api.application.issue_credential(CONSOLE, Role.AUDITOR)


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def tile_files(directory: Path) -> set[str]:
    return {p for p in files(directory) if p.startswith("tile/")}


def test_a_mirror_is_a_verified_copy_and_a_second_run_fetches_only_what_changed(
    published: Published,
) -> None:
    p = published
    first = p.run_mirror()
    assert first.returncode == 0, first.stderr
    size = len(p.entries)
    assert f"tree size {size} (new mirror)" in first.stdout
    assert "cosigned by w0, w1" in first.stdout
    tiles = spec_tiles(p.entries)
    assert p.requested() == {
        "/tlog/checkpoint",
        "/audit/statements",
        *(f"/tlog/{path}" for path in tiles),
    }
    mirrored = files(p.mirror)
    assert {k: v for k, v in mirrored.items() if k.startswith("tile/")} == tiles
    assert mirrored["checkpoint"] == (p.source / "checkpoint").read_bytes()
    assert mirrored["statements.jsonl"] == (p.source / "statements.jsonl").read_bytes()
    state = json.loads(mirrored["mirror.json"])
    assert state["format"] == "pocdir-mirror/1"
    assert state["origin"] == p.log.origin
    assert state["tree_size"] == size
    assert state["last_position"] == p.api.application.recorder.max_notification_id()
    assert state["checkpoint"] == (p.source / "checkpoint").read_text(encoding="utf-8")
    verified = p.audit_verify()
    assert verified.returncode == 0, verified.stderr
    assert f"mirror intact: {size} entries checked" in verified.stdout
    assert "signatures:" in verified.stdout

    grow(p.api, GROWTH)
    new_tiles = spec_tiles(p.republish())
    changed = set(new_tiles) - set(tiles)
    assert len(p.entries) == size + GROWTH and changed
    second = p.run_mirror()
    assert second.returncode == 0, second.stderr
    assert f"tree size {size + GROWTH} (was {size}), {len(changed)} tiles fetched" in second.stdout
    assert p.requested() == {"/tlog/checkpoint", "/audit/statements"} | {
        f"/tlog/{path}" for path in changed
    }
    state = json.loads((p.mirror / "mirror.json").read_text(encoding="utf-8"))
    assert set(state["last_run"]["fetched"]) == changed
    assert state["tree_size"] == size + GROWTH
    # The mirror is the new tree's static copy: no partial tile the tree no longer has.
    assert {k: v for k, v in files(p.mirror).items() if k.startswith("tile/")} == new_tiles
    assert (p.mirror / "statements.jsonl").read_bytes() == (
        p.source / "statements.jsonl"
    ).read_bytes()
    again = p.audit_verify()
    assert again.returncode == 0, again.stderr
    assert f"mirror intact: {size + GROWTH} entries checked" in again.stdout


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_what_does_not_verify_is_refused_and_the_mirror_is_kept(published: Published) -> None:
    p = published
    assert p.run_mirror().returncode == 0
    old_entries = list(p.entries)
    kept = files(p.mirror)
    grow(p.api, GROWTH)
    entries = p.republish()
    last_bundle = p.source / sorted(k for k in spec_tiles(entries) if "entries" in k)[-1]

    def refused(fault: str, *named: str) -> None:
        r = p.run_mirror()
        assert r.returncode == 1, (fault, r.stdout)
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith("error: verification FAILED")
        for text in named:
            assert text in line, (fault, line)
        assert files(p.mirror) == kept, fault
        p.republish()

    flip(last_bundle, -1)
    refused("an entry", "does not hash to its level-0 tile hash")
    flip(p.source / "tile/0/000", 255 * 32)
    refused("a new hash in a tile", "tile/0/000 does not hash to its hash in tile/1/000.p/1")
    flip(p.source / "tile/0/000", 0)
    refused("a hash the mirror holds", "does not extend tile/0/000.p/", "rewrote entries")
    p.republish(cosigners=(0,))
    refused("a checkpoint short of quorum", "lacks the witness quorum", "w1, w2")
    (p.source / "checkpoint").write_text(p.log.note(old_entries[:-1]), encoding="utf-8")
    refused("a rollback", f"mirror holds {len(old_entries)}", "rolled back")
    (p.source / "checkpoint").write_text(
        p.log.note(entries, origin="other.example/log"), encoding="utf-8"
    )
    refused("another log", "another log", "origin other.example/log")
    fine = p.run_mirror()
    assert fine.returncode == 0, fine.stderr
    assert f"tree size {len(entries)}" in fine.stdout


def test_audit_verify_names_a_flipped_byte_in_the_mirror(published: Published) -> None:
    p = published
    assert p.run_mirror().returncode == 0
    size = len(p.entries)
    bundle = p.mirror / f"tile/entries/000.p/{size}"
    flip(bundle, -1)  # the last byte of the last entry's state
    r = p.audit_verify()
    assert r.returncode == 1, r.stdout
    assert f"entry {size - 1} (tile/entries/000.p/{size}) does not hash" in r.stderr
    assert "Traceback" not in r.stderr
    no_policy = run(p.backend.url, "audit", "verify", str(p.mirror))
    assert no_policy.returncode == 2
    assert "give --policy FILE" in no_policy.stderr


# -- the real server ---------------------------------------------------------------------------


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """``pocdir serve`` over the test's database, in its own process."""
    with serving(backend.url, tmp_path / "serve.log") as base:
        yield base


def test_the_served_record_is_mirrored_and_verified_offline(
    backend: Backend, server: str, app: PocDirectory, tmp_path: Path
) -> None:
    """``pocdir serve``'s ``/tlog/`` and ``/audit/statements``, with an auditor's token: the
    mirror holds exactly the tiles the independent writer makes of the stored record, a
    second run after new events fetches only those that changed, and the copy verifies
    offline, signatures included. The served checkpoint is signed by the server's key and
    not yet cosigned, so this policy is ``quorum none``."""
    simulated = run(backend.url, "simulate", "--states", "12", "--days", "365")
    assert simulated.returncode == 0, simulated.stderr
    _, secret = issue(backend.url, "--role", "auditor")
    token, policy, mirror = tmp_path / "token", tmp_path / "policy.txt", tmp_path / "mirror"
    token.write_text(secret, encoding="utf-8")
    log_key = SignerKey.load(record_key_files()[1]).verifier
    policy.write_text(f"log {log_key}\nquorum none\n", encoding="utf-8")

    def mirrored() -> tuple[dict[str, bytes], dict[str, Any]]:
        assert run(backend.url, "checkpoint").returncode == 0
        entries = stored_entries(app)
        r = run(
            backend.url,
            "mirror",
            server,
            str(mirror),
            "--policy",
            str(policy),
            "--token-file",
            str(token),
        )
        assert r.returncode == 0, r.stderr
        assert f"tree size {len(entries)}" in r.stdout and "cosigned by no witness" in r.stdout
        tiles = spec_tiles(entries)
        assert {k: v for k, v in files(mirror).items() if k.startswith("tile/")} == tiles
        return tiles, json.loads((mirror / "mirror.json").read_text(encoding="utf-8"))

    before, _ = mirrored()
    assert len(before) > 4  # more than one tile: a full one, its level above, bundles
    for _ in range(3):
        issue(backend.url, "--role", "auditor")
    after, state = mirrored()
    assert state["last_run"]["fetched"] and set(state["last_run"]["fetched"]) == (
        set(after) - set(before)
    )
    statements = (mirror / "statements.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(statements) == len(chained_recorder(app).statement_rows())
    verified = run(backend.url, "audit", "verify", str(mirror), "--policy", str(policy))
    assert verified.returncode == 0, verified.stderr
    assert "mirror intact" in verified.stdout


def test_one_run_at_a_time_and_no_other_directory(published: Published, tmp_path: Path) -> None:
    p = published
    assert p.run_mirror().returncode == 0
    with (p.mirror / ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        busy = p.run_mirror()
    assert busy.returncode == 2 and "another pocdir mirror is running" in busy.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    r = run(p.backend.url, "mirror", p.base, str(other), "--policy", str(p.policy))
    assert r.returncode == 2 and "is not a mirror" in r.stderr
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_unreachable_source_or_a_bad_policy_is_bad_usage(
    published: Published, tmp_path: Path
) -> None:
    p = published
    nobody = f"http://127.0.0.1:{free_port()}"
    r = run(p.backend.url, "mirror", nobody, str(p.mirror), "--policy", str(p.policy))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert nobody in r.stderr and "Traceback" not in r.stderr
    refused = run(p.backend.url, "mirror", p.base, str(p.mirror), "--policy", str(p.policy))
    assert refused.returncode == 2 and "HTTP 401" in refused.stderr  # no token
    bad = tmp_path / "bad-policy.txt"
    bad.write_text("log not-a-key\nquorum none\n", encoding="utf-8")
    r = run(p.backend.url, "mirror", p.base, str(p.mirror), "--policy", str(bad))
    assert r.returncode == 2 and "--policy: policy line 1" in r.stderr
    assert not p.mirror.exists() or not (p.mirror / "mirror.json").exists()
