"""Append and verify benchmark: what the hash chain costs.

Figures, not a test. For each backend (a fresh SQLite file, a fresh PostgreSQL schema) it

* appends ``--events`` events through the application service's real commands, once with the
  library's plain recorder and once with the chained recorder of ``infra.store``, alternating
  plain and chained for ``--rounds`` rounds because the machine is noisy, and reports events/s
  of each (best round) and the ratio chained/plain;
* verifies the chained record with ``infra.verify.verify_record`` (reads every event and link
  from the database) and, in the same run, hashes the same canonical record bytes, already in
  memory, with ``hashlib`` in a tight loop (leaf hash and link, nothing read from the database),
  and reports both speeds and the ratio verification/raw.

Workload: all 193 States register and add a contact (set-up, not timed); then, timed, a cycle
of six commands, each saving one event in its own transaction as the service does: a State
sends a notification with indicators, the recipient acknowledges and responds, the sender
closes it and updates one of its contacts, the recipient confirms its entry. Time comes from a
``SimulatedClock`` advanced one second a command, ids from a seeded factory.

Commands load the aggregates they change. To keep reads out of the measurement as far as the
real commands allow, both variants run with the library's aggregate cache
(``AGGREGATE_CACHE_MAXSIZE``, no fast-forward, no deep copy: there is a single writer), so a
command reuses the aggregate the previous command saved instead of reading its events back.
``--no-cache`` measures the service's default configuration instead (every command reads).

Usage::

    .venv/bin/python bench/append_verify.py [--events 100000] [--backend both]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--rounds 2] [--no-cache]
        [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import os
import platform
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
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from psycopg import sql

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.members import member_states
from domain.taxonomy import Level
from domain.values import Contact, Principal, Role, Text
from infra.chain import GENESIS_LINK, LEAF_HASH_PREFIX, LINK_HASH_PREFIX, encode_record
from infra.settings import Settings
from infra.store import iter_stored_rows
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
RAW_REPEATS = 5
VERIFY_REPEATS = 2


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

            def send(by: Principal = by_s, to: str = recipient, k: int = cycle) -> object:
                n_ = app.send_notification(
                    by, to, "malware", self.description,
                    self.indicators[k % len(self.indicators)], good_faith_attested=True,
                )
                box.append(n_.id)
                return n_

            yield send
            yield lambda by=by_r, b=box: app.acknowledge_notification(by, b[0])
            yield lambda by=by_r, b=box: app.respond_to_notification(by, b[0], self.response)
            yield lambda by=by_s, b=box: app.close_notification(by, b[0])
            variant[sender] ^= 1
            contact = self.contacts[sender][variant[sender]]
            yield lambda by=by_s, s=sender, c=contact: app.update_contact(by, s, c)
            yield lambda by=by_r, r=recipient: app.confirm_entry(by, r)
            cycle += 1


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
class AppendRun:
    variant: str
    round: int
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class VerifyRun:
    events: int
    verify_seconds: float
    raw_seconds: float

    @property
    def verify_rate(self) -> float:
        return self.events / self.verify_seconds

    @property
    def raw_rate(self) -> float:
        return self.events / self.raw_seconds


@dataclass
class BackendResult:
    backend: str
    appends: list[AppendRun] = field(default_factory=list)
    verifies: list[VerifyRun] = field(default_factory=list)

    def best(self, variant: str) -> AppendRun:
        return max((r for r in self.appends if r.variant == variant), key=lambda r: r.rate)

    def median_rate(self, variant: str) -> float:
        return statistics.median(r.rate for r in self.appends if r.variant == variant)

    @property
    def append_ratio(self) -> float:
        return self.best("chained").rate / self.best("plain").rate

    @property
    def verify_rate(self) -> float:
        return max(v.verify_rate for v in self.verifies)

    @property
    def raw_rate(self) -> float:
        return max(v.raw_rate for v in self.verifies)

    @property
    def verify_ratio(self) -> float:
        return self.verify_rate / self.raw_rate


class Profiler:
    """cProfile around the measured phases when ``--profile`` is given; prints to stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def phase(self, title: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            print(f"\n===== profile: {title} =====\n{out.getvalue()}", file=sys.stderr)


def append_phase(
    store: Store, workload: Workload, events: int, cache: bool, profiler: Profiler, title: str
) -> tuple[PocDirectory, float]:
    """Build the application, set up the States (not timed), then time ``events`` commands."""
    clock = SimulatedClock(START)
    ids = random.Random(SEED)
    app = PocDirectory(
        store.env(cache), clock=clock, new_id=lambda: UUID(int=ids.getrandbits(128), version=4)
    )
    workload.setup(app, clock)
    commands = workload.commands(app)
    second = timedelta(seconds=1)
    with profiler.phase(title):
        started = time.perf_counter()
        for _ in range(events):
            next(commands)()
            clock.advance(second)
        seconds = time.perf_counter() - started
    return app, seconds


def raw_chain(records: list[bytes]) -> bytes:
    """Leaf hash and link of every record, nothing else: the floor for verification."""
    sha256 = hashlib.sha256
    leaf_prefix, link_prefix = LEAF_HASH_PREFIX, LINK_HASH_PREFIX
    link = GENESIS_LINK
    for record in records:
        leaf = sha256(leaf_prefix + record).digest()
        link = sha256(link_prefix + link + leaf).digest()
    return link


def verify_phase(app: PocDirectory, profiler: Profiler, title: str) -> VerifyRun:
    """Time ``verify_record`` (reads the database), then raw hashing of the same bytes."""
    best_verify = float("inf")
    result = None
    for i in range(VERIFY_REPEATS):
        with profiler.phase(title) if i == 0 else contextlib.nullcontext():
            started = time.perf_counter()
            result = verify_record(app)
            best_verify = min(best_verify, time.perf_counter() - started)
    assert result is not None
    # The same canonical record bytes verification hashes, read once, outside the timing.
    records = [
        encode_record(r.position, r.originator_id, r.originator_version, r.topic, r.state)  # type: ignore[arg-type]
        for r in iter_stored_rows(app.recorder, chained_recorder(app))
    ]
    if len(records) != result.events:
        raise RuntimeError(f"read {len(records)} records, verified {result.events}")
    best_raw = float("inf")
    for _ in range(RAW_REPEATS):
        started = time.perf_counter()
        head = raw_chain(records)
        best_raw = min(best_raw, time.perf_counter() - started)
    if head != result.head_link:
        raise RuntimeError("raw chaining did not reproduce the verified head link")
    return VerifyRun(result.events, best_verify, best_raw)


def run_backend(args: argparse.Namespace, backend: str, workload: Workload) -> BackendResult:
    result = BackendResult(backend)
    profiler = Profiler(args.profile)
    with tempfile.TemporaryDirectory(prefix="pocdir-bench-") as tmpdir:
        for rnd in range(1, args.rounds + 1):
            for chained in (False, True):
                variant = "chained" if chained else "plain"
                with fresh_store(backend, chained, str(rnd), tmpdir, args.pg_url) as store:
                    title = f"{backend} {variant} append, round {rnd}"
                    app, seconds = append_phase(
                        store, workload, args.events, args.cache,
                        Profiler(args.profile and rnd == 1), title,
                    )
                    run = AppendRun(variant, rnd, args.events, seconds)
                    result.appends.append(run)
                    print(
                        f"  {backend:<10} round {rnd} {variant:<7} append "
                        f"{run.rate:>9,.0f} events/s ({seconds:.1f} s)",
                        flush=True,
                    )
                    try:
                        if chained:
                            v = verify_phase(
                                app,
                                Profiler(profiler.enabled and rnd == 1),
                                f"{backend} verify_record, round {rnd}",
                            )
                            result.verifies.append(v)
                            print(
                                f"  {backend:<10} round {rnd} verify  {v.verify_rate:>9,.0f} "
                                f"events/s, raw hashlib {v.raw_rate:>10,.0f} events/s "
                                f"({v.events:,} events)",
                                flush=True,
                            )
                    finally:
                        app.close()
    return result


# -- report ---------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def report(args: argparse.Namespace, results: list[BackendResult]) -> None:
    rule = "-" * 96
    print()
    print(rule)
    print("Append and verify benchmark (bench/append_verify.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(
        f"events appended per run: {args.events:,}; rounds: {args.rounds} "
        "(plain, chained alternately); aggregate cache: "
        + ("on (no reads in commands)" if args.cache else "off (every command reads)")
    )
    print(rule)
    head = f"{'backend':<11}{'measure':<34}{'events/s':>14}{'ratio':>9}{'goal':>10}  result"
    print(head)
    print(rule)
    for r in results:
        plain, chained = r.best("plain"), r.best("chained")
        rounds_p = ", ".join(f"{a.rate:,.0f}" for a in r.appends if a.variant == "plain")
        rounds_c = ", ".join(f"{a.rate:,.0f}" for a in r.appends if a.variant == "chained")
        met_a = "met" if r.append_ratio >= GOAL_APPEND else "MISSED"
        met_v = "met" if r.verify_ratio >= GOAL_VERIFY else "MISSED"
        print(f"{r.backend:<11}{'append, plain recorder (best)':<34}{plain.rate:>14,.0f}")
        print(f"{'':<11}{'append, chained recorder (best)':<34}{chained.rate:>14,.0f}"
              f"{r.append_ratio:>9.3f}{'>= ' + format(GOAL_APPEND, '.2f'):>10}  {met_a}")
        print(f"{'':<11}{'  rounds plain':<34}{rounds_p:>14}")
        print(f"{'':<11}{'  rounds chained':<34}{rounds_c:>14}")
        median_ratio = r.median_rate("chained") / r.median_rate("plain")
        print(f"{'':<11}{'  chained/plain of medians':<34}{'':>14}{median_ratio:>9.3f}")
        per_event_us = 1e6 / chained.rate - 1e6 / plain.rate
        print(f"{'':<11}{'  chain cost per event (best)':<34}{per_event_us:>11.1f} us")
        print(f"{'':<11}{'raw hashlib chaining (in memory)':<34}{r.raw_rate:>14,.0f}")
        print(f"{'':<11}{'verify_record (reads the DB)':<34}{r.verify_rate:>14,.0f}"
              f"{r.verify_ratio:>9.3f}{'>= ' + format(GOAL_VERIFY, '.2f'):>10}  {met_v}")
        print(rule)
    print(
        "ratio: chained/plain append events/s; verify/raw events/s. "
        "Best of rounds; verification of the chained stores, raw hashing of the same bytes."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events appended per run")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both"
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=2, help="plain/chained pairs per backend")
    parser.add_argument(
        "--no-cache", dest="cache", action="store_false",
        help="no aggregate cache: every command reads its aggregate (service default)",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="cProfile the first round's phases; statistics go to stderr",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    workload = Workload(sorted(member_states()))
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    results = [run_backend(args, backend, workload) for backend in backends]
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
