"""Mirror benchmark: what ``pocdir mirror`` costs on a large record, from a real pocdir server
(issue 16: "a bench mirrors a 1,000,000-event record, which may be bulk-generated directly
into the store; name the backend. A second run after 1,000 new events fetches only the tiles
that changed"). Figures, not a test.

For each backend (``--backend sqlite``, the default, ``postgresql`` or ``both``) it

* makes a fresh record (a SQLite file in a temporary directory, or a PostgreSQL schema of its
  own, dropped afterwards: ``bench.common.fresh_database``) and bulk-generates ``--events``
  synthetic events into it through the chained recorder's own ``insert_events``, with real
  links (``bench.common.fill``, as ``bench/proofs.py`` does); issues an auditor's bearer token
  with ``pocdir principals add --role auditor`` (one more event);
* brings the Merkle tree up to date (``TreeStore.catch_up``, timed), signs a checkpoint with a
  log key made by the bench, and stores the cosignatures of two of three bench witnesses
  (``infra.cosignature.cosign``, ``Transparency.record_cosignature``), so the mirror checks a
  real quorum policy (``group 2 of w0 w1 w2``);
* starts the real server, ``pocdir serve``, in a process of its own on that record, and mirrors
  it into an empty directory (``infra.mirror.mirror`` over HTTP with the auditor's token):
  time, tiles fetched, bytes on the wire (entry bundles are gzipped by the server);
* appends ``--new`` events, brings the tree up to date (timed), signs a new checkpoint that
  two other witnesses cosign, and mirrors again: time, tiles, bytes. The tiles fetched must be
  exactly those ``infra.tiles`` says differ between the two tree sizes (the bench raises
  otherwise);
* for comparison, a full copy: a fresh mirror of the grown record into an empty directory,
  and ``pocdir audit export`` of it (``--no-export`` skips it): time and size;
* verifies the incrementally kept mirror offline (``infra.mirror.verify_mirror``) and reports
  the time.

The synthetic events are unsigned by design, so the mirror's signature check is its cheapest
case. Run as a module from the project's root (``-m``: the script's own directory must not
come first on the path, where ``bench/http.py`` would hide the standard library's ``http``).
Usage::

    .venv/bin/python -m bench.mirror [--events 1000000] [--new 1000]
        [--backend sqlite|postgresql|both] [--dir var/bench-mirror]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--no-export]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import fill, fresh_database, load_average, machine
from infra.cosignature import WitnessKey, cosign
from infra.mirror import MirrorResult, mirror, verify_mirror
from infra.note import Checkpoint, SignerKey
from infra.settings import Settings
from infra.tiles import TileId, bundles_for_size, tiles_for_size
from infra.transparency import CheckpointView, Transparency
from infra.tree_store import build_tree_store
from infra.wiring import build_application
from infra.witness_policy import Policy

ORIGIN = "bench.example/pocdir"
#: The ``pocdir`` command, with this interpreter (as tests/support/cli.py runs it).
POCDIR = [sys.executable, "-c", "from api.cli.main import main; main()"]
ROOT = Path(__file__).resolve().parents[1]
#: Seconds the server has to answer ``/health`` after it starts.
START_TIMEOUT = 120.0


class BenchFailed(RuntimeError):
    """A run did not do what the issue asks (e.g. fetched a tile that did not change)."""


@dataclass
class Run:
    """One mirror run's figures."""

    label: str
    seconds: float
    result: MirrorResult

    @property
    def tiles(self) -> int:
        return len(self.result.fetched)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def changed_tiles(old_size: int, new_size: int) -> set[str]:
    """The paths of the tiles and bundles of the tree of ``new_size`` that the tree of
    ``old_size`` does not have (new ones, and partial ones that grew or became full)."""

    def every(size: int) -> set[TileId]:
        return set(tiles_for_size(size)) | set(bundles_for_size(size))

    return {t.path for t in every(new_size) - every(old_size)}


def directory_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


class Log:
    """The log's key and three witnesses; the verifier's policy wants two of them."""

    def __init__(self, key_file: Path) -> None:
        self.key = SignerKey.generate(ORIGIN)
        self.key.write_new(key_file)
        self.witnesses = [WitnessKey.generate(f"witness.example/w{i}") for i in range(3)]

    def policy(self) -> Policy:
        return Policy.parse(
            f"log {self.key.verifier}\n"
            + "".join(f"witness w{i} {w.verifier}\n" for i, w in enumerate(self.witnesses))
            + "group regions 2 w0 w1 w2\nquorum regions\n"
        )

    def checkpoint(self, transparency: Transparency, cosigners: tuple[int, ...]) -> CheckpointView:
        """Sign the tree's head and store the cosignatures of ``cosigners``, as
        ``infra.witnessing`` stores what the witnesses return."""
        view = transparency.record_checkpoint()
        body = Checkpoint(transparency.origin, view.tree_size, view.root_hash).body()
        for i in cosigners:
            at = int(time.time())
            line = cosign(body, at, self.witnesses[i])
            transparency.record_cosignature(view, str(self.witnesses[i].verifier), line, at)
        return transparency.with_cosignatures(view)


def pocdir(env: dict[str, str], *args: str) -> str:
    """``pocdir ARGS`` in a process of its own; its standard output."""
    done = subprocess.run(
        [*POCDIR, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchFailed(f"pocdir {shlex.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[str]:
    """``pocdir serve`` on the record, in a process of its own; its base URL."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [*POCDIR, "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                raise BenchFailed(f"pocdir serve exited ({server.returncode}); see {log}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == httpx.codes.OK:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchFailed(f"pocdir serve did not answer /health in time; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def timed_mirror(label: str, base: str, directory: Path, policy: Policy, token: str) -> Run:
    started = time.perf_counter()
    result = mirror(base, directory, policy, token=token)
    return Run(label, time.perf_counter() - started, result)


def bench(backend: str, url: str, work: Path, args: argparse.Namespace) -> list[str]:
    """Every figure of one backend, as lines of the table."""
    rng = random.Random(16)
    key_file = work / "log.key"
    log = Log(key_file)
    policy = log.policy()
    settings = Settings(database_url=url, origin=ORIGIN, signing_key_file=key_file)
    env = {
        **os.environ,
        "POCDIR_DATABASE_URL": url,
        "POCDIR_ORIGIN": ORIGIN,
        "POCDIR_SIGNING_KEY_FILE": str(key_file),
    }
    lines: list[str] = []
    out = pocdir(env, "principals", "add", "--role", "auditor", "--label", "bench mirror")
    found = re.search(r"^(pocdir_\S+)$", out, re.MULTILINE)
    if found is None:
        raise BenchFailed(f"pocdir principals add printed no token: {out}")
    token = found.group(1)
    app = build_application(settings)
    try:
        print(f"  {backend}: filling {args.events:,} events", flush=True)
        secs = fill(app, args.events, rng)
        lines.append(f"fill {args.events:,} events (chained insert_events): {secs:.1f} s")
        transparency = Transparency(build_tree_store(app.recorder), ORIGIN, lambda: log.key)
        started = time.perf_counter()
        size = transparency.tree.catch_up()
        lines.append(f"tree brought up to date over {size:,} leaves: "
                     f"{time.perf_counter() - started:.1f} s")
        first = log.checkpoint(transparency, (0, 1))
        mirror_dir, full_dir = work / "mirror", work / "full-copy"
        with served(env, work.parent / "server.log") as base:
            runs = [timed_mirror("first run (empty directory)", base, mirror_dir, policy, token)]
            fill(app, args.new, rng)
            started = time.perf_counter()
            grown = transparency.tree.catch_up()
            lines.append(f"tree catch-up over {args.new:,} new events: "
                         f"{time.perf_counter() - started:.2f} s (tree size {grown:,})")
            second = log.checkpoint(transparency, (1, 2))
            runs.append(timed_mirror(f"second run, {args.new:,} new events", base, mirror_dir,
                                     policy, token))
            expected = changed_tiles(first.tree_size, second.tree_size)
            fetched = set(runs[1].result.fetched)
            if fetched != expected or len(runs[1].result.fetched) != len(fetched):
                raise BenchFailed(
                    f"the second run fetched {sorted(fetched)}, not the tiles that changed "
                    f"between {first.tree_size} and {second.tree_size}: {sorted(expected)}"
                )
            runs.append(timed_mirror("full copy (empty directory)", base, full_dir, policy, token))
        for run in runs:
            r = run.result
            lines.append(
                f"mirror, {run.label}: {r.previous_size:,} -> {r.tree_size:,} entries, "
                f"{run.tiles:,} tiles, {r.bytes_fetched:,} bytes on the wire, {run.seconds:.2f} s"
            )
        incremental, full = runs[1], runs[2]
        lines.append(
            f"  second run / full copy: {incremental.tiles / full.tiles:.5f} of the tiles, "
            f"{incremental.result.bytes_fetched / full.result.bytes_fetched:.6f} of the bytes, "
            f"{incremental.seconds / full.seconds:.4f} of the time"
        )
        lines.append(f"  second run fetched: {', '.join(incremental.result.fetched)}")
        lines.append(f"  mirror on disk: {directory_bytes(mirror_dir) / 2**20:,.0f} MiB")
        if args.export:
            bundle = work / "bundle"
            started = time.perf_counter()
            pocdir(env, "audit", "export", str(bundle))
            secs = time.perf_counter() - started
            lines.append(f"pocdir audit export of the grown record (for comparison): {secs:.1f} s, "
                         f"{directory_bytes(bundle) / 2**20:,.0f} MiB")
        started = time.perf_counter()
        verified = verify_mirror(mirror_dir, policy)
        lines.append(
            f"verify_mirror (offline) of the whole mirror: {time.perf_counter() - started:.1f} s "
            f"({verified.events:,} entries, quorum of {sorted(verified.checkpoint.cosigned_by)})"
        )
    finally:
        app.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--dir", type=Path, default=Path("var/bench-mirror"),
                        help="where the SQLite record, the mirrors and the bundle are made "
                        "(emptied first, removed afterwards)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "POCDIR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="skip timing pocdir audit export")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"machine: {machine()}; load average {load_average()} at the start", flush=True)
    results: dict[str, list[str]] = {}
    for backend in backends:
        shutil.rmtree(args.dir / backend, ignore_errors=True)
        (args.dir / backend).mkdir(parents=True)
        work = Path(tempfile.mkdtemp(dir=args.dir / backend)).resolve()
        try:
            with fresh_database(backend, "mirror", str(work), args.pg_url) as url:
                results[backend] = bench(backend, url, work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  {backend} done; load average {load_average()}", flush=True)
    print("-" * 100)
    print("Mirror (bench/mirror.py)")
    print("command: .venv/bin/python -m bench.mirror " + shlex.join(sys.argv[1:]))
    print(f"machine: {machine()}; load average {load_average()} at the end")
    print("-" * 100)
    for backend, lines in results.items():
        for line in lines:
            print(f"{backend:<11}{line}")
        print("-" * 100)


if __name__ == "__main__":
    main()
