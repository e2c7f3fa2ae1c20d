"""Mirror benchmark: what ``pocdir mirror`` costs on a large record (issue 16: "a bench
mirrors a 1,000,000-event record ... a second run after 1,000 new events fetches only the
tiles that changed"). Figures, not a test.

It writes a synthetic record of ``--events`` canonical records (``infra.chain.encode_record``;
``--state-bytes`` random bytes each, spread over 2,000 aggregates) as C2SP tlog-tiles into a
source directory, as ``pocdir tiles write`` would, with a checkpoint signed by a log key and
cosigned by two of three witnesses; then

* mirrors it into an empty directory (``infra.mirror.mirror``), over HTTP from
  ``python -m http.server`` in a process of its own (``--source http``, the default) or from
  the directory itself (``--source dir``), and reports the time, tiles and bytes;
* appends ``--new`` events to the source (only the tiles that changed are written), mirrors
  again, and reports the same, with the tiles fetched;
* verifies the whole mirror offline (``infra.mirror.verify_mirror``) and reports the time.

The synthetic record has no signed statements: every event is unsigned by design, so the
signature check is its cheapest case. Run as a module from the project's root (``-m``: the
script's own directory must not come first on the path, where ``bench/http.py`` would hide
the standard library's ``http``). Usage::

    .venv/bin/python -m bench.mirror [--events 1000000] [--new 1000] [--state-bytes 300]
        [--source http|dir] [--dir var/bench-mirror]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench.common import load_average, machine
from infra.chain import encode_record, leaf_hash
from infra.cosignature import WitnessKey, cosign
from infra.merkle import root_of
from infra.mirror import mirror, verify_mirror
from infra.note import Checkpoint, SignerKey, sign_note
from infra.tiles import (
    TILE_WIDTH,
    bundles_for_size,
    encode_bundle,
    encode_tile,
    tiles_for_size,
)
from infra.witness_policy import Policy

ORIGIN = "bench.example/pocdir"
TOPICS = [f"domain.state_entry:StateEntry.{name}" for name in ("Registered", "ContactAdded")]


def records(start: int, count: int, state_bytes: int, rng: random.Random) -> list[bytes]:
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(2000)]
    return [
        encode_record(
            position, rng.choice(ids), position, rng.choice(TOPICS), rng.randbytes(state_bytes)
        )
        for position in range(start, start + count)
    ]


class Source:
    """The server's side: the tree's levels in memory, tiles written to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.entries: list[bytes] = []
        self.levels: list[list[bytes]] = [[]]

    def append(self, new: list[bytes]) -> None:
        old = len(self.entries)
        self.entries += new
        self.levels[0] += [leaf_hash(e) for e in new]
        level = 0
        while len(self.levels[level]) >= TILE_WIDTH:
            if len(self.levels) == level + 1:
                self.levels.append([])
            below, above = self.levels[level], self.levels[level + 1]
            for n in range(len(above), len(below) // TILE_WIDTH):
                above.append(root_of(below[n * TILE_WIDTH : (n + 1) * TILE_WIDTH]))
            level += 1
        held = set(tiles_for_size(old)) | set(bundles_for_size(old))
        size = len(self.entries)
        for tile in [*tiles_for_size(size), *bundles_for_size(size)]:
            if tile in held:
                continue
            start = tile.index * TILE_WIDTH
            if tile.is_entries:
                data = encode_bundle(self.entries[start : start + tile.width])
            else:
                data = encode_tile(self.levels[tile.level or 0][start : start + tile.width])
            path = self.directory / tile.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def publish(self, log: SignerKey, witnesses: list[WitnessKey]) -> None:
        body = Checkpoint(ORIGIN, len(self.entries), root_of(self.levels[0])).body()
        note = sign_note(body, log) + "".join(cosign(body, int(time.time()), w) for w in witnesses)
        (self.directory / "checkpoint").write_text(note, encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--state-bytes", type=int, default=300)
    parser.add_argument("--source", choices=("http", "dir"), default="http")
    parser.add_argument("--dir", type=Path, default=Path("var/bench-mirror"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    root, mirror_dir = args.dir / "served", args.dir / "mirror"
    tiles_dir = root / "tlog"
    tiles_dir.mkdir(parents=True)
    (root / "audit").mkdir()
    (root / "audit" / "statements").write_text('{"statements": [], "next_after": null}')
    log = SignerKey.generate(ORIGIN)
    witnesses = [WitnessKey.generate(f"witness.example/w{i}") for i in range(3)]
    policy = Policy.parse(
        f"log {log.verifier}\n"
        + "".join(f"witness w{i} {w.verifier}\n" for i, w in enumerate(witnesses))
        + "group all3 2 w0 w1 w2\nquorum all3\n"
    )
    rng = random.Random(16)
    print(f"machine: {machine()}; load {load_average()}")
    started = time.perf_counter()
    source = Source(tiles_dir)
    source.append(records(1, args.events, args.state_bytes, rng))
    source.publish(log, witnesses[:2])
    print(f"source: {args.events} events written as tiles in {time.perf_counter() - started:.1f} s")
    server = None
    url = str(tiles_dir)
    if args.source == "http":
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/tlog/checkpoint", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    try:
        for label in ("first run", f"after {args.new} new events"):
            if label != "first run":
                source.append(records(args.events + 1, args.new, args.state_bytes, rng))
                source.publish(log, witnesses[1:])
            started = time.perf_counter()
            result = mirror(url, mirror_dir, policy)
            took = time.perf_counter() - started
            print(
                f"mirror, {label} ({args.source}): tree size {result.tree_size}, "
                f"{len(result.fetched)} tiles fetched, {result.bytes_fetched} bytes, "
                f"{took:.1f} s ({result.tree_size - result.previous_size} new entries)"
            )
            if label != "first run":
                print(f"  fetched: {', '.join(result.fetched)}")
        started = time.perf_counter()
        verified = verify_mirror(mirror_dir, policy)
        took = time.perf_counter() - started
        digest = hashlib.sha256(verified.root_hash).hexdigest()[:16]
        print(f"verify_mirror: {verified.events} entries, root sha256 {digest}..., {took:.1f} s")
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
