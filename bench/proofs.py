"""Merkle proofs benchmark: what the transparency layer costs at scale. Figures, not a test.

For each backend it

* fills a chained store with ``--leaves`` synthetic events through the chained recorder's own
  ``insert_events`` (real links, 10,000 events a transaction; the application's commands would
  take hours at this size and the tree only sees leaf hashes), or reuses the store from an
  earlier run (SQLite: ``--db-dir``; PostgreSQL: the schema ``--pg-schema``, kept);
* builds the Merkle tree over all of it (``TreeStore.catch_up``) and reports the time;
* appends ``--new`` more events and times bringing the tree up to date (the lazy catch-up
  re-checks every new event's record and link and writes its leaves and nodes);
* generates inclusion proofs for random leaves of the whole tree for ``--seconds`` and reports
  proofs/s; verifies them (``infra.merkle.verify_inclusion``, in memory) and reports proofs/s;
* generates consistency proofs between random sizes and reports proofs/s;
* signs a checkpoint, then times ``export_bundle`` and ``verify_bundle`` of the whole record.

Baselines: the raw hashing rate of ``hashlib`` over the same leaf count (what rebuilding the
tree from leaf hashes in memory would cost) is printed beside the catch-up.

Usage::

    .venv/bin/python bench/proofs.py [--leaves 1000000] [--new 10000]
        [--backend sqlite|postgresql|both] [--db-dir var/bench]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--pg-schema pocdir_bench_proofs]
        [--seconds 5]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
import argparse
import os
import random
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from common import fill, machine

from infra.audit import export_bundle, verify_bundle
from infra.merkle import CompactRange, verify_inclusion
from infra.note import SignerKey
from infra.settings import Settings
from infra.transparency import Transparency
from infra.tree_store import build_tree_store
from infra.wiring import build_application


def rate(work: Callable[[], None], seconds: float) -> tuple[float, int]:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - started), count


def bench(name: str, url: str, args: argparse.Namespace) -> list[str]:
    rng = random.Random(1)
    settings = Settings(database_url=url)
    app = build_application(settings)
    lines: list[str] = []
    try:
        existing = app.recorder.max_notification_id() or 0
        if existing < args.leaves:
            print(f"  {name}: filling {args.leaves - existing:,} events", flush=True)
            secs = fill(app, args.leaves - existing, rng)
            lines.append(f"fill {args.leaves - existing:,} events (chained insert): {secs:.1f} s")
        key = SignerKey.generate("bench.example/pocdir")
        transparency = Transparency(build_tree_store(app.recorder), settings.origin, lambda: key)

        started = time.perf_counter()
        size = transparency.tree.catch_up()
        build = time.perf_counter() - started
        lines.append(f"tree brought up to date over {size:,} leaves: {build:.1f} s")

        leaves = [os.urandom(32) for _ in range(size)]
        started = time.perf_counter()
        CompactRange().extend(leaves)
        raw = time.perf_counter() - started
        del leaves
        lines.append(f"  baseline: hashlib tree over {size:,} leaf hashes in memory: {raw:.1f} s")

        fill(app, args.new, rng)
        started = time.perf_counter()
        size = transparency.tree.catch_up()
        lines.append(
            f"catch-up after {args.new:,} new events: {time.perf_counter() - started:.2f} s "
            f"(tree size now {size:,})"
        )

        proofs = []

        def one_inclusion() -> None:
            proofs.append(transparency.inclusion_proof(rng.randrange(size), size))

        per_s, n = rate(one_inclusion, args.seconds)
        lines.append(f"inclusion proofs generated: {per_s:,.0f}/s ({n:,} proofs, tree {size:,})")
        started = time.perf_counter()
        for p in proofs:
            verify_inclusion(p.index, p.tree_size, p.leaf_hash, p.proof, p.root_hash)
        per_s = len(proofs) / (time.perf_counter() - started)
        lines.append(f"inclusion proofs verified:  {per_s:,.0f}/s (hashes per proof "
                     f"{len(proofs[0].proof)})")

        def one_consistency() -> None:
            second = rng.randrange(2, size + 1)
            transparency.consistency_proof(rng.randrange(1, second), second)

        per_s, n = rate(one_consistency, args.seconds)
        lines.append(f"consistency proofs generated: {per_s:,.0f}/s ({n:,} proofs)")

        transparency.record_checkpoint()
        with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
            directory = Path(tmp) / "bundle"
            started = time.perf_counter()
            summary = export_bundle(app, transparency, directory)
            exported = time.perf_counter() - started
            started = time.perf_counter()
            result = verify_bundle(directory, transparency.trusted_keys())
            verified = time.perf_counter() - started
            mib = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20
        lines.append(
            f"bundle export: {exported:.1f} s ({summary.records:,} records, {mib:,.0f} MiB)"
        )
        lines.append(
            f"bundle verify (no DB): {verified:.1f} s ({result.records:,} records, "
            f"{result.checkpoints} checkpoints)"
        )
    finally:
        app.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--db-dir", default="var/bench")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "POCDIR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--pg-schema", default="pocdir_bench_proofs")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fresh", action="store_true", help="drop any reused store first")
    args = parser.parse_args()
    Path(args.db_dir).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[str]] = {}
    if args.backend in ("sqlite", "both"):
        path = Path(args.db_dir) / f"proofs-{args.leaves}.sqlite3"
        if args.fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        results["sqlite"] = bench("sqlite", f"sqlite:///{path.resolve()}", args)
    if args.backend in ("postgresql", "both"):
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            if args.fresh:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.pg_schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{args.pg_schema}"')
        parts = urlsplit(args.pg_url)
        url = urlunsplit(parts._replace(query=urlencode({"schema": args.pg_schema})))
        results["postgresql"] = bench("postgresql", url, args)
    print("-" * 100)
    print("Merkle proofs (bench/proofs.py)")
    print("command: python bench/proofs.py " + shlex.join(_sys.argv[1:]))
    print(f"machine: {machine()}")
    print("-" * 100)
    for backend, lines in results.items():
        for line in lines:
            print(f"{backend:<11}{line}")
        print("-" * 100)
    shutil.rmtree(Path(args.db_dir) / "bundle", ignore_errors=True)


if __name__ == "__main__":
    main()
