"""Append and verify benchmark: what the hash chain costs. Figures, not a test.

For each backend (a fresh SQLite file, a fresh PostgreSQL schema) it

* appends ``--events`` events through the application service's real commands to a store with
  the library's plain recorder and to one with the chained recorder of ``infra.store``. The
  machine is noisy, so the two are fed alternately in blocks of ``--block`` commands (plain
  first, then chained first, ...), both seeing the same noise; events/s of each is the total
  over its blocks, and the ratio chained/plain is reported with the spread of the per-block
  ratios. ``--rounds`` repeats all of this on fresh stores (the median round is reported);
* verifies the chained record with ``infra.verify.verify_record`` (reads every event and link
  from the database) and, alternately in the same run, hashes the same canonical record bytes,
  already in memory, with ``hashlib`` in a tight loop (leaf hash and link, nothing read), and
  reports both speeds (best of a few) and the ratio verification/raw.

Workload: all 193 States register and add a contact (set-up, not timed); then, timed, a cycle
of six commands, each making one event: a State sends a notification with indicators, the
recipient acknowledges and responds, the sender closes it and updates one of its contacts, the
recipient confirms its entry. Time comes from a ``SimulatedClock`` advanced one second a
command, ids from a seeded factory.

Events per transaction (``--per-transaction``, default ``1,10``: each measured on fresh stores):
with 1, each command saves its event in its own transaction, as the service does. With N > 1,
the aggregates of N consecutive commands are held (and put in the aggregate cache, so the next
command finds them there) and saved together, N events in one transaction, as a batch of
writes would be: the commit's fixed cost is shared by N events, while the chain's work (the
head, N links) is not, so the chain's share of the cost shows more.

Commands load the aggregates they change. To keep reads out of the measurement as far as the
real commands allow, both variants run with the library's aggregate cache
(``AGGREGATE_CACHE_MAXSIZE``, no fast-forward, no deep copy: there is a single writer), so a
command reuses the aggregate the previous command saved instead of reading its events back.
``--no-cache`` measures the service's default configuration instead (every command reads).

Usage::

    .venv/bin/python bench/append_verify.py [--events 100000] [--backend sqlite|postgresql|both]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--block 1000] [--rounds 1]
        [--per-transaction 1,10] [--no-cache] [--profile]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
import argparse
import contextlib
import cProfile
import hashlib
import io
import itertools
import os
import pstats
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from common import machine  # noqa: E402
from psycopg import sql

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.members import member_states
from domain.taxonomy import Level
from domain.values import Contact, Principal, Role, Text
from infra.chain import (
    GENESIS_LINK,
    LEAF_HASH_PREFIX,
    LINK_HASH_PREFIX,
    StoredRow,
    encode_record,
)
from infra.settings import Settings
from infra.verify import chained_recorder, verify_record
from infra.wiring import eventsourcing_env

PLAIN_FACTORIES = {
    "sqlite": "eventsourcing.sqlite:SQLiteFactory",
    "postgresql": "eventsourcing.postgres:PostgresFactory",
}
GOAL_APPEND = 0.90
GOAL_VERIFY = 0.30
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SEED = 20261123
RAW_REPEATS = 3
VERIFY_REPEATS = 3


# -- workload -------------------------------------------------------------------------------


def _contact(code: str, variant: int) -> Contact:
    c = code.lower()
    return Contact.from_dict(
        {
            "contact_id": "tech-1",
            "level": str(Level.TECHNICAL),
            "agency": {"language": "en", "text": f"National CERT of {code}"},
            "function": "Incident handling",
            "channels": [
                {"kind": "email", "address": f"cert@{c}.bench.example"},
                {"kind": "phone", "address": f"+4122791{7000 + variant:04d}"},
                {
                    "kind": "secure",
                    "address": f"xmpp:cert@{c}.bench.example",
                    "fingerprint": hashlib.sha256(f"{code}{variant}".encode()).hexdigest(),
                },
            ],
            "languages": ["en", "fr"],
            "time_zone": "Europe/Paris",
            "hours": "24/7" if variant == 0 else "Mon-Fri 08:00-18:00",
            "incident_types": ["malware", "ransomware", "intrusion"],
        }
    )


@dataclass
class Workload:
    """Inputs built once, outside the timed phase, so only commands are measured."""

    codes: list[str]
    principals: dict[str, Principal] = field(init=False)
    contacts: dict[str, tuple[Contact, Contact]] = field(init=False)
    indicators: list[list[dict[str, str]]] = field(init=False)
    description: Text = field(init=False)
    response: Text = field(init=False)

    def __post_init__(self) -> None:
        self.principals = {c: Principal(f"bench-{c.lower()}", Role.STATE, c) for c in self.codes}
        self.contacts = {c: (_contact(c, 0), _contact(c, 1)) for c in self.codes}
        rng = random.Random(SEED)
        self.indicators = [
            [
                {"kind": "ipv4", "value": f"203.0.113.{rng.randrange(1, 255)}"},
                {"kind": "domain", "value": f"c2-{rng.randrange(10**6)}.example.net"},
                {"kind": "sha256", "value": hashlib.sha256(rng.randbytes(16)).hexdigest()},
            ]
            for _ in range(16)
        ]
        self.description = Text.parse(
            "fr",
            "Signalement d'activité malveillante depuis votre territoire",
            "Report of malicious activity from your territory",
        )
        self.response = Text.english_only("Investigating; the host has been isolated.")

    def setup(self, app: PocDirectory, clock: SimulatedClock) -> int:
        """Register every State with one contact (not timed). Returns events saved."""
        for code in self.codes:
            by = self.principals[code]
            app.register_state(by, code)
            clock.advance(timedelta(seconds=1))
            app.add_contact(by, code, self.contacts[code][0])
            clock.advance(timedelta(seconds=1))
        return 2 * len(self.codes)

    def commands(self, app: PocDirectory) -> Iterator[Callable[[], object]]:
        """An endless cycle of commands, each saving exactly one event."""
        codes, principals, n = self.codes, self.principals, len(self.codes)
        variant = dict.fromkeys(codes, 0)
        cycle = 0
        while True:
            sender = codes[cycle % n]
            recipient = codes[(cycle * 7 + 1 + cycle // n) % n]
            if recipient == sender:
                recipient = codes[(cycle + 1) % n]
            by_s, by_r = principals[sender], principals[recipient]
            box: list[UUID] = []

            def send(
                by: Principal = by_s, to: str = recipient, k: int = cycle, b: list[UUID] = box
            ) -> object:
                n_ = app.send_notification(
                    by, to, "malware", self.description,
                    self.indicators[k % len(self.indicators)], good_faith_attested=True,
                )
                b.append(n_.id)
                return n_

            def on_notification(command: Callable[..., object], by: Principal, *more: Any,
                                b: list[UUID] = box) -> Callable[[], object]:
                return lambda: command(by, b[0], *more)

            yield send
            yield on_notification(app.acknowledge_notification, by_r)
            yield on_notification(app.respond_to_notification, by_r, self.response)
            yield on_notification(app.close_notification, by_s)
            variant[sender] ^= 1
            yield partial(app.update_contact, by_s, sender, self.contacts[sender][variant[sender]])
            yield partial(app.confirm_entry, by_r, recipient)
            cycle += 1


class Batched:
    """Saves of ``size`` consecutive commands made as one transaction (``size`` 1: each
    command's own save, untouched).

    The application's ``save`` is replaced by one that holds the command's aggregates, with
    their new events, and puts them in the aggregate cache, so the next command that loads one
    gets it, events and all, from there; the ``size``-th command saves every held aggregate
    with the library's real ``save``: one transaction of ``size`` events. Commands see no
    recordings from a held save, so they report no position (nothing here reads one)."""

    def __init__(self, app: PocDirectory, size: int) -> None:
        self.app, self.size, self.real_save = app, size, app.save
        self.held: dict[UUID, Any] = {}
        self.commands = 0
        if size > 1:
            app.save = self.hold  # type: ignore[method-assign]

    def hold(self, *objs: Any, **kwargs: Any) -> list[Any]:
        if kwargs:
            raise ValueError("a batched save takes no idempotency key")
        cache = self.app.repository.cache
        if cache is None:
            raise ValueError("batched saves need the aggregate cache")
        for aggregate in objs:
            self.held[aggregate.id] = aggregate
            cache.put(aggregate.id, aggregate)
        self.commands += 1
        if self.commands == self.size:
            self.real_save(*self.held.values())
            self.held.clear()
            self.commands = 0
        return []


# -- stores ---------------------------------------------------------------------------------


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _pg_conninfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=""))


@dataclass
class Store:
    """A fresh database for one variant: a new SQLite file or a new PostgreSQL schema."""

    backend: str
    chained: bool
    location: str
    settings: Settings
    pg_url: str | None = None

    def env(self, cache: bool) -> dict[str, str]:
        env = eventsourcing_env(self.settings)
        if not self.chained:
            env["PERSISTENCE_MODULE"] = PLAIN_FACTORIES[self.backend]
        if cache:
            env.update(
                AGGREGATE_CACHE_MAXSIZE="2000",
                AGGREGATE_CACHE_FASTFORWARD="n",
                DEEPCOPY_FROM_AGGREGATE_CACHE="n",
            )
        return env

    def drop(self) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.location + suffix)
        else:
            assert self.pg_url is not None
            with psycopg.connect(_pg_conninfo(self.pg_url), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(self.location)
                    )
                )


@contextlib.contextmanager
def fresh_store(
    backend: str, chained: bool, tag: str, tmpdir: str, pg_url: str
) -> Iterator[Store]:
    variant = "chained" if chained else "plain"
    if backend == "sqlite":
        path = os.path.join(tmpdir, f"{variant}-{tag}.sqlite3")
        store = Store(backend, chained, path, Settings(database_url=f"sqlite:///{path}"))
    else:
        schema = f"bench_av_{os.getpid()}_{variant}_{tag}"
        with psycopg.connect(_pg_conninfo(pg_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        store = Store(
            backend, chained, schema, Settings(database_url=_with_schema(pg_url, schema)), pg_url
        )
    try:
        yield store
    finally:
        store.drop()


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Block:
    variant: str
    events: int
    seconds: float
    cpu_seconds: float  # this process only: the database server's work is not in it

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class AppendRun:
    """One round: a plain and a chained store, fed alternately in blocks of commands."""

    round: int
    per_transaction: int
    blocks: list[Block] = field(default_factory=list)

    def events(self, variant: str) -> int:
        return sum(b.events for b in self.blocks if b.variant == variant)

    def seconds(self, variant: str) -> float:
        return sum(b.seconds for b in self.blocks if b.variant == variant)

    def cpu_us_per_event(self, variant: str) -> float:
        cpu = sum(b.cpu_seconds for b in self.blocks if b.variant == variant)
        return 1e6 * cpu / self.events(variant)

    def rate(self, variant: str) -> float:
        return self.events(variant) / self.seconds(variant)

    @property
    def ratio(self) -> float:
        return self.rate("chained") / self.rate("plain")

    @property
    def block_ratios(self) -> list[float]:
        """chained/plain of each pair of adjacent blocks (same moment of the run)."""
        plain = [b.rate for b in self.blocks if b.variant == "plain"]
        chained = [b.rate for b in self.blocks if b.variant == "chained"]
        return [c / p for p, c in zip(plain, chained, strict=True)]


@dataclass
class VerifyRun:
    events: int
    verify_seconds: float
    raw_seconds: float
    per_transaction: int = 1  # how the verified record was committed

    @property
    def verify_rate(self) -> float:
        return self.events / self.verify_seconds

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.raw_seconds / self.verify_seconds


@dataclass
class BackendResult:
    backend: str
    appends: list[AppendRun] = field(default_factory=list)
    verifies: list[VerifyRun] = field(default_factory=list)

    def rounds(self, per_transaction: int) -> list[AppendRun]:
        return [a for a in self.appends if a.per_transaction == per_transaction]

    def best(self, per_transaction: int) -> AppendRun:
        """The round whose ratio is the median (the only one when there is one round)."""
        ordered = sorted(self.rounds(per_transaction), key=lambda a: a.ratio)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def verify(self) -> VerifyRun:
        ordered = sorted(self.verifies, key=lambda v: v.ratio)
        return ordered[(len(ordered) - 1) // 2]


class Profiler:
    """cProfile of one phase when ``--profile`` is given, accumulated over its blocks and
    printed to stderr. Profiling slows Python code several times more than waiting on the
    database, so read it for where the time goes, not for rates."""

    def __init__(self, enabled: bool, title: str) -> None:
        self.profile = cProfile.Profile() if enabled else None
        self.title = title

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        if self.profile is None:
            yield
            return
        self.profile.enable()
        try:
            yield
        finally:
            self.profile.disable()

    def print(self) -> None:
        if self.profile is None:
            return
        out = io.StringIO()
        stats = pstats.Stats(self.profile, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)
        print(f"\n===== profile: {self.title} =====\n{out.getvalue()}", file=sys.stderr)


def build_app(
    store: Store, workload: Workload, cache: bool, per_transaction: int
) -> tuple[PocDirectory, SimulatedClock]:
    """The application over ``store``, with every State set up (not timed, one event a
    transaction), then saving ``per_transaction`` events a transaction."""
    clock = SimulatedClock(START)
    ids = random.Random(SEED)
    app = PocDirectory(
        store.env(cache), clock=clock, new_id=lambda: UUID(int=ids.getrandbits(128), version=4)
    )
    workload.setup(app, clock)
    Batched(app, per_transaction)
    return app, clock


def timed_block(
    commands: Iterator[Callable[[], object]], clock: SimulatedClock, size: int, profiler: Profiler
) -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds for ``size`` commands."""
    second = timedelta(seconds=1)
    with profiler.on():
        cpu, started = time.process_time(), time.perf_counter()
        for _ in range(size):
            next(commands)()
            clock.advance(second)
        return time.perf_counter() - started, time.process_time() - cpu


def append_phase(
    stores: dict[str, Store],
    workload: Workload,
    args: argparse.Namespace,
    rnd: int,
    per_transaction: int,
) -> tuple[AppendRun, PocDirectory, list[PocDirectory]]:
    """Append ``--events`` commands to each store, alternating blocks of ``--block`` commands
    between plain and chained (and which goes first), so both see the same machine noise. A
    block is a whole number of transactions, so each block commits all it made."""
    apps = {v: build_app(s, workload, args.cache, per_transaction) for v, s in stores.items()}
    commands = {v: workload.commands(app) for v, (app, _) in apps.items()}
    profilers = {
        v: Profiler(
            args.profile and rnd == 1, f"{stores[v].backend} {v} append, {per_transaction}/tx"
        )
        for v in stores
    }
    run = AppendRun(rnd, per_transaction)
    done, index = 0, 0
    while done < args.events:
        size = min(args.block, args.events - done)
        order = ("plain", "chained") if index % 2 == 0 else ("chained", "plain")
        for v in order:
            seconds, cpu = timed_block(commands[v], apps[v][1], size, profilers[v])
            run.blocks.append(Block(v, size, seconds, cpu))
        done += size
        index += 1
    for p in profilers.values():
        p.print()
    return run, apps["chained"][0], [app for app, _ in apps.values()]


def stored_rows(app: PocDirectory) -> Iterator[StoredRow]:
    """Every stored row, read as ``verify_record`` reads them (consumed to the end)."""
    yield from chained_recorder(app).iter_stored_rows()


def raw_chain(records: list[bytes]) -> bytes:
    """Leaf hash and link of every record, nothing else: the floor for verification."""
    sha256 = hashlib.sha256
    leaf_prefix, link_prefix = LEAF_HASH_PREFIX, LINK_HASH_PREFIX
    link = GENESIS_LINK
    for record in records:
        leaf = sha256(leaf_prefix + record).digest()
        link = sha256(link_prefix + link + leaf).digest()
    return link


def verify_phase(app: PocDirectory, args: argparse.Namespace, rnd: int, title: str) -> VerifyRun:
    """Time ``verify_record`` (reads the database) and raw hashing of the same bytes,
    alternately, best of ``VERIFY_REPEATS`` each."""
    # The same canonical record bytes verification hashes, read once, outside the timing.
    spelling = chained_recorder(app).id_spelling
    records = [
        encode_record(r.position, r.originator_id, r.originator_version, r.topic, r.state, spelling)  # type: ignore[arg-type]
        for r in stored_rows(app)
    ]
    profiler = Profiler(args.profile and rnd == 1, title)
    best_verify = best_raw = float("inf")
    for i in range(VERIFY_REPEATS):
        started = time.perf_counter()
        result = verify_record(app)
        best_verify = min(best_verify, time.perf_counter() - started)
        for _ in range(RAW_REPEATS):
            started = time.perf_counter()
            head = raw_chain(records)
            best_raw = min(best_raw, time.perf_counter() - started)
        if result.events != len(records) or head != result.head_link:
            raise RuntimeError("raw chaining did not reproduce the verified record")
        if i == 0:
            with profiler.on():
                verify_record(app)
    profiler.print()
    return VerifyRun(len(records), best_verify, best_raw)


def run_backend(args: argparse.Namespace, backend: str, workload: Workload) -> BackendResult:
    """Each round: for each ``--per-transaction``, fresh stores fed alternately, then the
    chained one verified (the verify phase reads the record, however it was committed)."""
    result = BackendResult(backend)
    with tempfile.TemporaryDirectory(prefix="pocdir-bench-") as tmpdir:
        for rnd, per_tx in itertools.product(range(1, args.rounds + 1), args.per_transaction):
            with contextlib.ExitStack() as stack:
                tag = f"{rnd}_{per_tx}"
                stores = {
                    v: stack.enter_context(
                        fresh_store(backend, v == "chained", tag, tmpdir, args.pg_url)
                    )
                    for v in ("plain", "chained")
                }
                run, chained_app, apps = append_phase(stores, workload, args, rnd, per_tx)
                for app in apps:
                    stack.callback(app.close)
                result.appends.append(run)
                ratios = sorted(run.block_ratios)
                print(
                    f"  {backend:<10} round {rnd}, {per_tx:>2} event(s)/transaction: "
                    f"plain {run.rate('plain'):,.0f} events/s, "
                    f"chained {run.rate('chained'):,.0f} events/s, ratio {run.ratio:.3f} "
                    f"(blocks: min {ratios[0]:.2f}, median {statistics.median(ratios):.2f}, "
                    f"max {ratios[-1]:.2f}; {run.seconds('plain') + run.seconds('chained'):.0f} s)",
                    flush=True,
                )
                v = verify_phase(chained_app, args, rnd, f"{backend} verify_record")
                v.per_transaction = per_tx
                result.verifies.append(v)
                print(
                    f"  {backend:<10} round {rnd}: verify_record {v.verify_rate:,.0f} events/s, "
                    f"raw hashlib {v.raw_rate:,.0f} events/s, ratio {v.ratio:.3f} "
                    f"({v.events:,} events)",
                    flush=True,
                )
    return result


# -- report ---------------------------------------------------------------------------------


def report(args: argparse.Namespace, results: list[BackendResult]) -> None:
    rule = "-" * 100
    sizes = ", ".join(str(n) for n in args.per_transaction)
    print()
    print(rule)
    print("Append and verify (bench/append_verify.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(
        f"appended per store: {args.events:,} events (commands), {sizes} event(s) a "
        f"transaction, plain and chained alternating in blocks of {args.block:,}; rounds: "
        f"{args.rounds}; aggregate cache: "
        + ("on (commands read nothing)" if args.cache else "off (every command reads)")
    )
    print(rule)
    print(f"{'backend':<11}{'measure':<42}{'events/s':>12}{'ratio':>9}{'goal':>10}  result")
    print(rule)
    goal_a, goal_v = f">= {GOAL_APPEND:.2f}", f">= {GOAL_VERIFY:.2f}"
    for r in results:
        print(r.backend)
        for per_tx in args.per_transaction:
            run = r.best(per_tx)
            plain, chained = run.rate("plain"), run.rate("chained")
            ratios = sorted(run.block_ratios)
            met_a = "met" if run.ratio >= GOAL_APPEND else "MISSED"
            print(f"{'':<11}{per_tx} event(s) a transaction")
            print(f"{'':<11}{'  append, plain recorder':<42}{plain:>12,.0f}")
            print(
                f"{'':<11}{'  append, chained recorder':<42}{chained:>12,.0f}"
                f"{run.ratio:>9.3f}{goal_a:>10}  {met_a}"
            )
            print(
                f"{'':<11}{'    chained/plain per block pair, median':<42}{'':>12}"
                f"{statistics.median(ratios):>9.3f}"
            )
            print(
                f"{'':<11}{'    ... min / max':<42}{'':>12}"
                f"{ratios[0]:>9.3f} / {ratios[-1]:.3f}"
            )
            extra_us = 1e6 / chained - 1e6 / plain
            cpu_p, cpu_c = run.cpu_us_per_event("plain"), run.cpu_us_per_event("chained")
            print(
                f"{'':<11}{'    wall time per event, plain / chained':<42}"
                f"{1e6 / plain:>9.0f} us / {1e6 / chained:.0f} us  (+{extra_us:.0f} us)"
            )
            print(
                f"{'':<11}{'    client CPU per event, plain / chained':<42}"
                f"{cpu_p:>9.0f} us / {cpu_c:.0f} us  (+{cpu_c - cpu_p:.0f} us)"
            )
            if len(r.rounds(per_tx)) > 1:
                all_ratios = ", ".join(f"{a.ratio:.3f}" for a in r.rounds(per_tx))
                print(f"{'':<11}{'    ratio of each round (median shown)':<42}{all_ratios:>12}")
        v = r.verify
        met_v = "met" if v.ratio >= GOAL_VERIFY else "MISSED"
        print(f"{'':<11}{'raw hashlib chaining, same bytes in memory':<42}{v.raw_rate:>12,.0f}")
        print(
            f"{'':<11}{'verify_record (reads DB, checks all)':<42}{v.verify_rate:>12,.0f}"
            f"{v.ratio:>9.3f}{goal_v:>10}  {met_v}"
        )
        print(f"{'':<11}{'  events verified':<42}{v.events:>12,}")
        if len(r.verifies) > 1:
            each = ", ".join(f"{x.ratio:.3f} ({x.per_transaction}/tx)" for x in r.verifies)
            print(f"{'':<11}{'  ratio of each verified record (median shown)':<42} {each}")
        print(rule)
    print(
        "append ratio = chained/plain events/s over all blocks; verify ratio = "
        "verify_record/raw events/s (best of each)."
    )


def _sizes(text: str) -> list[int]:
    """``1,10`` -> [1, 10]: each at least 1."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,10") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("each size must be at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events appended per run")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--block", type=int, default=1000, help="commands per block (plain/chained alternate)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="fresh plain+chained store pairs per backend"
    )
    parser.add_argument(
        "--per-transaction", type=_sizes, default=[1, 10], metavar="1,10",
        help="events saved in one transaction, each size on fresh stores",
    )
    parser.add_argument(
        "--no-cache", dest="cache", action="store_false",
        help="no aggregate cache: every command reads its aggregate (service default)",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="cProfile the first round's phases; statistics go to stderr",
    )
    args = parser.parse_args(argv)
    if min(args.events, args.rounds, args.block) < 1:
        parser.error("--events, --block and --rounds must be at least 1")
    if any(args.block % n or args.events % n for n in args.per_transaction):
        parser.error("--block and --events must be multiples of each --per-transaction")
    if not args.cache and max(args.per_transaction) > 1:
        parser.error("--per-transaction above 1 needs the aggregate cache (drop --no-cache)")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    workload = Workload(sorted(member_states()))
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    results = [run_backend(args, backend, workload) for backend in backends]
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
