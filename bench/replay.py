"""Replay benchmark: rebuilding every view from the record, and projection lag. Not a test.

For each backend (a SQLite file, a PostgreSQL schema) it

* generates ``--events`` real domain events through the application (a separate phase, not
  timed as replay): all 193 States register with two contacts, a coordination contact and a
  preferred channel; then notifications, each going send -> acknowledge -> respond -> close,
  consents to share (requested, then granted or denied, some granted ones revoked), contact
  updates (a few reported late, so the directory records late notices) and annual
  confirmations. The aggregates' own command methods trigger the events and
  ``app.save(*aggregates)`` writes one wave of them (about 2,000 events, each aggregate once) in
  one transaction through the chained recorder. The stages of one notification are one wave
  apart, so its events are about 2,000 positions apart, as in a record where replies come
  later. Time comes from a ``SimulatedClock`` advanced one second per event, ids from a seeded
  factory, so a size always writes the same record;
* reads and decodes every event as the runner does (``app.recorder.select_notifications`` in
  pages of ``--batch``, ``app.facts_mapper.to_domain_event`` on each: the content withheld,
  which no view holds): the floor for any replay, and the reference (``read+facts-decode``).
  Run once before and once after the rebuild; the faster pass is the reference (the
  conservative one). Beside it, the same passes decoding every event whole (``app.mapper``, as
  loading an aggregate does: ``read+decode whole``), about twice as slow, shown with no goal: it was
  the reference until issue 14, and against it a rebuild looked faster than it is;
* rebuilds every view as ``pocdir replay`` does (``build_view_runner(app, view,
  settings).rebuild(batch=--batch)``: directory, late notices, review facts and per-State
  histories, written to the view tables in the same database by a writer process) and
  reports events/s and the ratio rebuild / read+facts-decode (goal >= 0.50);
* measures projection lag under a steady write load: a writer runs the service's real commands
  (send, acknowledge, respond, close: one event each) at ``--rate`` events/s for ``--duration``
  s through its own application instance, while a runner thread calls ``catch_up`` again and
  again (sleeping ``--poll`` s when there was nothing to do); every ``--sample`` s the lag,
  ``app.recorder.max_notification_id() - view.max_tracking_id(VIEWS_NAME)`` events, is
  sampled. Max / p50 / p95 of the samples, the lag when the writer stops and the time to drain
  it are reported. The writer is another process by default (``--writer process``), as the
  service's API would be: as a thread of this process, its short database waits queue behind
  the runner's CPU-bound work for the interpreter lock, and on PostgreSQL it no longer kept
  200 commands/s (``--writer thread`` shows it);
* with ``--profile auto`` (the default) and a ratio under the goal, or ``--profile always``,
  profiles (cProfile) a rebuild of the first ``--profile-events`` events and prints where the
  time goes.

Generation is set-up: with ``--backend both`` the two stores are generated at the same time,
one process each; everything measured runs afterwards, one backend at a time.

Without ``--reuse-sqlite``/``--reuse-pg`` the store is a temporary file or a new schema, dropped
at the end. With them the store is kept, and a store that already holds events is reused as it
is (generation skipped; the lag phase of earlier runs will have added a few thousand events).

Usage::

    .venv/bin/python bench/replay.py [--events 1000000] [--backend sqlite|postgresql|both]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--batch 10000]
        [--rate 200] [--duration 20] [--sample 0.5] [--poll 0.05] [--writer process|thread]
        [--profile auto|always|never] [--profile-events 100000]
        [--reuse-sqlite PATH] [--reuse-pg SCHEMA]
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
import math
import multiprocessing
import os
import pstats
import random
import resource
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from common import machine  # noqa: E402
from psycopg import sql

import projections.runner as runner_module
from domain.application import PocDirectory
from domain.base import PocdirAggregate
from domain.clock import SimulatedClock
from domain.consent import SharingConsent
from domain.members import member_states
from domain.notification import Notification, SupportingInformation
from domain.state_entry import StateEntry
from domain.taxonomy import INCIDENT_TYPES, Level
from domain.values import Contact, Principal, Role, Text
from infra.settings import Settings
from infra.wiring import (
    build_application,
    build_view_runner,
    build_views,
    eventsourcing_env,
    open_views,
)
from projections.runner import REBUILD_BATCH, VIEWS_NAME, ViewRunner, project_views
from projections.store import HISTORY_TABLE, VIEW_TABLE, ViewRecorder

GOAL_RATIO = 0.50
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
SEED = 20261123
STEP = timedelta(seconds=1)  # the simulated clock moves one second per event
SETUP_EVENTS_PER_STATE = 5  # registered, two contacts, coordination contact, preferred channel


# -- workload -------------------------------------------------------------------------------


def _contact(code: str, contact_id: str, level: Level, variant: int) -> Contact:
    c = code.lower()
    return Contact.from_dict(
        {
            "contact_id": contact_id,
            "level": str(level),
            "agency": {"language": "fr", "text": f"Agence nationale ({code})",
                       "english": f"National agency ({code})"},
            "function": "Incident handling" if level is Level.TECHNICAL else "Policy",
            "channels": [
                {"kind": "email", "address": f"{contact_id}@{c}.bench.example"},
                {"kind": "phone", "address": f"+4122791{7000 + variant:04d}"},
                {
                    "kind": "secure",
                    "address": f"xmpp:{contact_id}@{c}.bench.example",
                    "fingerprint": hashlib.sha256(f"{code}{contact_id}{variant}".encode())
                    .hexdigest(),
                },
            ],
            "languages": ["en", "fr"],
            "time_zone": "Europe/Paris",
            "hours": "24/7" if variant == 0 else "Mon-Fri 08:00-18:00",
            "incident_types": ["malware", "ransomware", "intrusion"],
        }
    )


@dataclass
class Inputs:
    """Values built once, so generation spends its time in the domain and the store."""

    codes: list[str]
    principals: dict[str, Principal] = field(init=False)
    contacts: dict[str, tuple[Contact, Contact]] = field(init=False)
    policy: dict[str, Contact] = field(init=False)
    supporting: list[SupportingInformation] = field(init=False)
    descriptions: list[Text] = field(init=False)
    responses: list[Text] = field(init=False)

    def __post_init__(self) -> None:
        self.principals = {c: Principal(f"bench-{c.lower()}", Role.STATE, c) for c in self.codes}
        self.contacts = {
            c: (_contact(c, "cert", Level.TECHNICAL, 0), _contact(c, "cert", Level.TECHNICAL, 1))
            for c in self.codes
        }
        self.policy = {c: _contact(c, "mfa", Level.DIPLOMATIC, 0) for c in self.codes}
        rng = random.Random(SEED)
        self.supporting = [
            SupportingInformation.parse(
                [
                    {"kind": "ipv4", "value": f"203.0.113.{rng.randrange(1, 255)}"},
                    {"kind": "domain", "value": f"c2-{rng.randrange(10**6)}.example.net"},
                    {"kind": "sha256", "value": hashlib.sha256(rng.randbytes(16)).hexdigest()},
                ][: 1 + k % 3]
            )
            for k in range(32)
        ]
        self.descriptions = [
            Text.parse(
                "fr",
                "Signalement d'activité malveillante depuis votre territoire",
                "Report of malicious activity from your territory",
            ),
            Text.english_only("Scanning and brute-force attempts from hosts in your networks."),
        ]
        self.responses = [
            Text.english_only("Investigating; the host has been isolated."),
            Text.parse("es", "Hemos contactado al proveedor.", "We have contacted the provider."),
        ]


class Generator:
    """Writes the record in waves: each wave triggers one event on each of about 4.3 x
    ``sends`` aggregates and saves them all in one transaction."""

    def __init__(self, app: PocDirectory, clock: SimulatedClock, inputs: Inputs,
                 sends: int) -> None:
        self.app, self.clock, self.inputs, self.sends = app, clock, inputs, sends
        self.rng = random.Random(SEED)
        self.entries: dict[str, StateEntry] = {}
        self.variant = dict.fromkeys(inputs.codes, 0)
        self.sent: list[Notification] = []
        self.acked: list[Notification] = []
        self.responded: list[Notification] = []
        self.requested: list[SharingConsent] = []
        self.granted: list[SharingConsent] = []
        self.written = 0
        self.waves = 0
        self.kinds: Counter[str] = Counter()

    def at(self) -> datetime:
        return self.clock.advance(STEP)

    def new_id(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def setup(self) -> None:
        """All 193 States register with two contacts, a coordination contact and a preferred
        channel (five events each, contiguous), saved in waves of 40 States."""
        codes = self.inputs.codes
        for i in range(0, len(codes), 40):
            wave: list[PocdirAggregate] = []
            for code in codes[i : i + 40]:
                by = self.inputs.principals[code]
                entry = StateEntry.register(code, by, self.at())
                at = self.at()
                entry.add_contact(self.inputs.contacts[code][0], by, at, at.date())
                at = self.at()
                entry.add_contact(self.inputs.policy[code], by, at, at.date())
                at = self.at()
                entry.set_coordination_contact("mfa", by, at, at.date())
                at = self.at()
                entry.set_preferred_channel("cert", "secure", by, at, at.date())
                self.entries[code] = entry
                wave.append(entry)
            self._save(wave, SETUP_EVENTS_PER_STATE * len(wave))

    def _save(self, aggregates: Sequence[PocdirAggregate], events: int) -> None:
        self.app.save(*aggregates)
        self.written += events

    def wave_actions(self) -> list[Callable[[], PocdirAggregate]]:
        """One wave: each action triggers exactly one event on a distinct aggregate."""
        rng, inputs = self.rng, self.inputs
        actions: list[Callable[[], PocdirAggregate]] = []
        p = inputs.principals
        sent, acked, responded = self.sent, self.acked, self.responded
        requested, granted = self.requested, self.granted
        self.sent, self.acked, self.responded, self.requested, self.granted = [], [], [], [], []

        for n in responded:
            def close(n: Notification = n) -> PocdirAggregate:
                n.close(p[n.sender], self.at())
                self.kinds["notification closed"] += 1
                return n
            actions.append(close)
        for n in acked:
            def respond(n: Notification = n) -> PocdirAggregate:
                k = rng.randrange(100)
                n.respond(p[n.recipient], self.at(), inputs.responses[k % 2], k < 10)
                self.kinds["notification responded"] += 1
                self.responded.append(n)
                return n
            actions.append(respond)
            if rng.random() < 0.125:
                def request(n: Notification = n) -> PocdirAggregate:
                    third = rng.choice(inputs.codes)
                    while third in n.parties:
                        third = rng.choice(inputs.codes)
                    c = SharingConsent.request(
                        self.new_id(), p[n.sender], self.at(), n.id, n.parties, third
                    )
                    self.kinds["consent requested"] += 1
                    self.requested.append(c)
                    return c
                actions.append(request)
        for c in requested:
            def decide(c: SharingConsent = c) -> PocdirAggregate:
                other = next(s for s in c.parties if s not in c.granted_by)
                if rng.random() < 0.8:
                    c.grant(p[other], self.at())
                    self.kinds["consent granted"] += 1
                    self.granted.append(c)
                else:
                    c.deny(p[other], self.at())
                    self.kinds["consent denied"] += 1
                return c
            actions.append(decide)
        for c in granted:
            if rng.random() < 0.25:
                def revoke(c: SharingConsent = c) -> PocdirAggregate:
                    c.revoke(p[rng.choice(c.parties)], self.at())
                    self.kinds["consent revoked"] += 1
                    return c
                actions.append(revoke)
        for n in sent:
            def acknowledge(n: Notification = n) -> PocdirAggregate:
                n.acknowledge(p[n.recipient], self.at())
                self.kinds["notification acknowledged"] += 1
                self.acked.append(n)
                return n
            actions.append(acknowledge)
        for _ in range(self.sends):
            def send() -> PocdirAggregate:
                sender, recipient = rng.sample(inputs.codes, 2)
                k = rng.randrange(1 << 16)
                n = Notification.send(
                    self.new_id(),
                    p[sender],
                    self.at(),
                    recipient,
                    _INCIDENT_TYPES[k % len(_INCIDENT_TYPES)],
                    inputs.descriptions[k % 2],
                    inputs.supporting[k % len(inputs.supporting)],
                    True,
                )
                self.kinds["notification sent"] += 1
                self.sent.append(n)
                return n
            actions.append(send)
        # Entries: about 2% of a wave, each State at most once.
        for code in rng.sample(inputs.codes, max(1, self.sends // 25)):
            actions.append(partial(self._entry_change, code))
        return actions

    def _entry_change(self, code: str) -> PocdirAggregate:
        entry, by, at = self.entries[code], self.inputs.principals[code], self.at()
        if self.rng.random() < 0.6:
            late = self.rng.random() < 0.05
            effective_on = at.date() - timedelta(days=40 if late else 0)
            self.variant[code] ^= 1
            entry.update_contact(self.inputs.contacts[code][self.variant[code]], by, at,
                                 effective_on)
            self.kinds["contact updated (late)" if late else "contact updated"] += 1
        else:
            entry.confirm(by, at)
            self.kinds["entry confirmed"] += 1
        return entry

    def run(self, total: int, progress: Callable[[int], None]) -> None:
        if self.written == 0:
            self.setup()
            self.kinds["entry set-up"] += self.written
        next_report = 100_000
        while self.written < total:
            actions = self.wave_actions()[: total - self.written]
            aggregates = [action() for action in actions]
            self._save(aggregates, len(aggregates))
            self.waves += 1
            if self.written >= next_report:
                progress(self.written)
                next_report += 100_000


_INCIDENT_TYPES = sorted(INCIDENT_TYPES)


# -- stores ---------------------------------------------------------------------------------


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _pg_conninfo(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


@dataclass
class Store:
    backend: str
    location: str  # file path or schema name
    settings: Settings
    keep: bool
    pg_url: str | None = None

    def drop(self) -> None:
        if self.keep:
            return
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

    def view_counts(self) -> dict[str, int]:
        """Documents per kind in the view table, and history items (as ``history``), read
        directly, for the report."""
        documents = f"SELECT kind, count(*) FROM {VIEW_TABLE} GROUP BY kind"
        items = f"SELECT 'history', count(*) FROM {HISTORY_TABLE}"
        if self.backend == "sqlite":
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.location)) as conn:
                rows = conn.execute(documents).fetchall() + conn.execute(items).fetchall()
        else:
            assert self.pg_url is not None
            with psycopg.connect(_pg_conninfo(self.pg_url)) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(
                    sql.Identifier(self.location)))
                rows = conn.execute(documents).fetchall() + conn.execute(items).fetchall()
        return {str(k): int(n) for k, n in sorted(rows)}

    def topic_counts(self, table: str) -> dict[str, int]:
        """Stored events per type (``Class.Event`` of the topic), read directly."""
        if self.backend == "sqlite":
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.location)) as conn:
                rows = conn.execute(
                    f"SELECT topic, count(*) FROM {table} GROUP BY topic"
                ).fetchall()
        else:
            assert self.pg_url is not None
            with psycopg.connect(_pg_conninfo(self.pg_url)) as conn:
                rows = conn.execute(
                    sql.SQL("SELECT topic, count(*) FROM {}.{} GROUP BY topic").format(
                        sql.Identifier(self.location), sql.Identifier(table)
                    )
                ).fetchall()
        counts = {str(t).rsplit(":", 1)[-1]: int(n) for t, n in rows}
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def size(self) -> str:
        if self.backend == "sqlite":
            total = sum(
                os.path.getsize(self.location + s)
                for s in ("", "-wal")
                if os.path.exists(self.location + s)
            )
        else:
            assert self.pg_url is not None
            with psycopg.connect(_pg_conninfo(self.pg_url)) as conn:
                row = conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                    (self.location,),
                ).fetchone()
                total = int(row[0]) if row else 0
        return f"{total / 2**20:,.0f} MiB"


@contextlib.contextmanager
def open_store(backend: str, args: argparse.Namespace, tmpdir: str) -> Iterator[Store]:
    if backend == "sqlite":
        keep = args.reuse_sqlite is not None
        path = args.reuse_sqlite or os.path.join(tmpdir, "replay.sqlite3")
        path = os.path.abspath(path)
        store = Store(backend, path, Settings(database_url=f"sqlite:///{path}"), keep)
    else:
        keep = args.reuse_pg is not None
        schema = args.reuse_pg or f"bench_replay_{secrets.token_hex(4)}"
        with psycopg.connect(_pg_conninfo(args.pg_url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        url = _with_schema(args.pg_url, schema)
        store = Store(backend, schema, Settings(database_url=url), keep, args.pg_url)
    try:
        yield store
    finally:
        store.drop()


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Pass:
    events: int
    seconds: float
    cpu_seconds: float
    #: CPU of the processes it started and waited for (a rebuild's writer process).
    child_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def read_decode(app: Any, batch: int, *, facts_only: bool = False) -> Pass:
    """What any replay must do at least: read every event in pages of ``batch`` and decode
    each one, with nothing projected or written. ``facts_only`` decodes as the runner does
    (``app.facts_mapper``: content withheld), the goal's reference; without it every event is
    decoded whole (``app.mapper``, as loading an aggregate does), shown for comparison."""
    mapper = app.facts_mapper if facts_only else app.mapper
    select, decode = app.recorder.select_notifications, mapper.to_domain_event
    cpu, started = time.process_time(), time.perf_counter()
    start, count = 0, 0
    while True:
        records = select(start, batch, inclusive_of_start=False)
        if not records:
            break
        for record in records:
            decode(record)
        count += len(records)
        start = records[-1].id
    return Pass(count, time.perf_counter() - started, time.process_time() - cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rebuild(app: Any, view: ViewRecorder, batch: int, settings: Settings) -> Pass:
    """As ``pocdir replay`` does it: the runner that ``build_view_runner`` makes (batches
    written by a writer process)."""
    cpu, children, started = time.process_time(), _children_cpu(), time.perf_counter()
    count = build_view_runner(app, view, settings).rebuild(batch=batch)
    return Pass(count, time.perf_counter() - started, time.process_time() - cpu,
                _children_cpu() - children)


@dataclass
class LagResult:
    seconds: float
    written: int
    projected: int
    catch_ups: int
    samples: list[int]
    final: int
    drain_seconds: float | None

    @property
    def write_rate(self) -> float:
        return self.written / self.seconds

    def percentile(self, q: float) -> int:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def writer_commands(app: PocDirectory, inputs: Inputs, seed: int) -> Iterator[Callable[[], Any]]:
    """The service's real commands, one event each: send, acknowledge, respond, close."""
    rng, p = random.Random(seed), inputs.principals
    while True:
        sender, recipient = rng.sample(inputs.codes, 2)
        box: list[UUID] = []

        def send(sender: str = sender, recipient: str = recipient, box: list[UUID] = box) -> Any:
            n = app.send_notification(
                p[sender], recipient, "malware", inputs.descriptions[0],
                [i.to_dict() for i in inputs.supporting[0].indicators], good_faith_attested=True,
            )
            box.append(n.id)
            return n

        yield send
        yield partial(lambda r, b: app.acknowledge_notification(p[r], b[0]), recipient, box)
        yield partial(
            lambda r, b: app.respond_to_notification(p[r], b[0], inputs.responses[0]),
            recipient, box,
        )
        yield partial(lambda s, b: app.close_notification(p[s], b[0]), sender, box)


def last_timestamp(app: PocDirectory) -> datetime:
    last = app.recorder.max_notification_id() or 0
    records = app.recorder.select_notifications(last, 1)
    if not records:
        return START
    event: Any = app.mapper.to_domain_event(records[0])
    return event.timestamp  # type: ignore[no-any-return]


def write_load(
    url: str, rate: float, duration: float, first: datetime, started: Any = None
) -> tuple[int, float]:
    """The writer: the service's real commands, one event each, at ``rate`` events/s for
    ``duration`` s, through its own application instance (uuid4 ids). Its aggregate cache
    (a single writer: no fast-forward) spares each command the reads of the aggregates it
    changes, so it keeps to its rate. Returns (events written, seconds)."""
    clock = SimulatedClock(first)
    env = eventsourcing_env(Settings(database_url=url))
    env.update(AGGREGATE_CACHE_MAXSIZE="1000", AGGREGATE_CACHE_FASTFORWARD="n",
               DEEPCOPY_FROM_AGGREGATE_CACHE="n")
    app = PocDirectory(env, clock=clock)
    try:
        commands = writer_commands(app, Inputs(sorted(member_states())), SEED + 1)
        interval = 1.0 / rate
        if started is not None:
            started.set()
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < duration:
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next(commands)()
            clock.advance(STEP)
            i += 1
        return i, time.perf_counter() - t0
    finally:
        app.close()


def _writer_process(url: str, rate: float, duration: float, first: str, started: Any,
                    results: Any) -> None:
    try:
        results.put(write_load(url, rate, duration, datetime.fromisoformat(first), started))
    except BaseException as e:  # noqa: BLE001 - re-raised by the parent
        started.set()
        results.put(f"{type(e).__name__}: {e}")


def lag_phase(
    store: Store, app: PocDirectory, view: ViewRecorder, args: argparse.Namespace
) -> LagResult:
    """A writer (another process by default, or a thread) at a fixed rate, a runner thread
    calling ``catch_up`` again and again, the lag sampled here every ``--sample`` s."""
    runner = ViewRunner(app, view)
    runner.catch_up(batch=args.batch)  # start from a caught-up view
    first = last_timestamp(app) + STEP
    url = store.settings.database_url
    stop_runner = threading.Event()
    counts = {"projected": 0, "catch_ups": 0}
    errors: list[BaseException | str] = []
    written: list[tuple[int, float]] = []

    def run() -> None:
        try:
            while not stop_runner.is_set():
                n = runner.catch_up(batch=args.batch)
                counts["catch_ups"] += 1
                counts["projected"] += n
                if n == 0:
                    time.sleep(args.poll)
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            errors.append(e)

    def lag() -> int:
        return (app.recorder.max_notification_id() or 0) - (
            view.max_tracking_id(VIEWS_NAME) or 0
        )

    runner_thread = threading.Thread(target=run, name="runner")
    writer: Any
    if args.writer == "process":
        context = multiprocessing.get_context("spawn")
        started: Any = context.Event()
        results: Any = context.Queue()
        writer = context.Process(
            target=_writer_process,
            args=(url, args.rate, args.duration, first.isoformat(), started, results),
            name="writer",
        )
    else:
        started = threading.Event()

        def write() -> None:
            try:
                written.append(write_load(url, args.rate, args.duration, first, started))
            except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
                started.set()
                errors.append(e)

        writer = threading.Thread(target=write, name="writer")
    samples: list[int] = []
    runner_thread.start()
    try:
        writer.start()
        if not started.wait(120):
            raise RuntimeError("the writer did not start")
        next_sample = time.perf_counter() + args.sample
        while writer.is_alive() and not errors:
            time.sleep(max(0.0, next_sample - time.perf_counter()))
            if not writer.is_alive():
                break
            samples.append(lag())
            next_sample += args.sample
        writer.join()
        final = lag()
        stopped = time.perf_counter()
        drain: float | None = None
        while time.perf_counter() - stopped < 60 and not errors:
            if lag() == 0:
                drain = time.perf_counter() - stopped
                break
            time.sleep(0.01)
        if args.writer == "process":
            outcome = results.get(timeout=10)
            if isinstance(outcome, str):
                errors.append(outcome)
            else:
                written.append(outcome)
    finally:
        stop_runner.set()
        runner_thread.join()
        if writer.is_alive():
            writer.join()
    if errors:
        error = errors[0]
        raise error if isinstance(error, BaseException) else RuntimeError(error)
    events, seconds = written[0]
    return LagResult(seconds, events, counts["projected"], counts["catch_ups"],
                     samples, final, drain)


# -- profiling ------------------------------------------------------------------------------


class _CappedRecorder:
    """The application recorder, seen only up to position ``stop``."""

    def __init__(self, recorder: Any, stop: int) -> None:
        self.recorder, self.stop = recorder, stop

    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *, inclusive_of_start: bool = True
                             ) -> Any:
        stop = self.stop if stop is None else min(stop, self.stop)
        return self.recorder.select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )


class _CappedApp:
    """A ``RecordReader``, what ``ViewRunner`` reads of the record (recorder and facts
    mapper), capped."""

    def __init__(self, app: PocDirectory, stop: int) -> None:
        self.recorder = _CappedRecorder(app.recorder, stop)
        self.facts_mapper = app.facts_mapper


#: (label, file suffix, function name) of the steps reported from the profile.
_STEPS = [
    ("read: recorder.select_notifications", "", "select_notifications"),
    ("decode: facts_mapper.to_domain_event", "eventsourcing/persistence.py", "to_domain_event"),
    ("prefetch: BatchDocuments.prefetch", "projections/runner.py", "prefetch"),
    ("  ViewRecorder.get_many (1 query per kind)", "projections/store.py", "get_many"),
    ("project: project_views", "projections/runner.py", "project_views"),
    ("  point reads: ViewRecorder.get (misses)", "projections/store.py", "get"),
    ("  project_directory", "projections/directory.py", "project_directory"),
    ("  project_history", "projections/history.py", "project_history"),
    ("serialise: split_changes", "projections/store.py", "split_changes"),
    ("wait for the writer process (Future.result)", "concurrent/futures/_base.py", "result"),
    ("tracking: view.max_tracking_id", "", "max_tracking_id"),
]


def _cum(stats: pstats.Stats, suffix: str, name: str) -> tuple[int, float, float]:
    calls, tottime, cumtime = 0, 0.0, 0.0
    for (filename, _, funcname), (_, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if funcname == name and filename.replace(os.sep, "/").endswith(suffix):
            if name == "select_notifications" and "replay.py" in filename:
                continue  # the cap wrapper
            calls, tottime, cumtime = calls + nc, tottime + tt, max(cumtime, ct)
    return calls, tottime, cumtime


class _Clock:
    """Calls and seconds per step, for the unprofiled breakdown."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - started
                self.calls[step] += 1

        return timed


class _ClockedView:
    """The view recorder with its reads timed (``get_many``: a batch's prefetch; ``get``: a
    document neither prefetched nor in memory). Its writes run in the writer process."""

    def __init__(self, view: ViewRecorder, clock: _Clock) -> None:
        self._view, self._clock = view, clock
        self.get = clock.wrap("reads", view.get)
        self.get_many = clock.wrap("prefetch", view.get_many)

    def open_shadow(self, name: str) -> _ClockedView:
        """A rebuild projects into a copy of the view: time its reads the same way."""
        return _ClockedView(self._view.open_shadow(name), self._clock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


class _ClockedApp:
    def __init__(self, app: PocDirectory, stop: int, clock: _Clock) -> None:
        capped = _CappedRecorder(app.recorder, stop)
        self.recorder = argparse.Namespace(
            select_notifications=clock.wrap("select", capped.select_notifications)
        )
        self.facts_mapper = argparse.Namespace(
            to_domain_event=clock.wrap("decode", app.facts_mapper.to_domain_event)
        )


def breakdown_phase(app: PocDirectory, view: ViewRecorder, args: argparse.Namespace,
                    settings: Settings, title: str) -> list[str]:
    """Rebuild the first ``--breakdown-events`` events without a profiler, timing each step
    around the unchanged ``ViewRunner`` (thin wrappers: a clock read before and after)."""
    clock = _Clock()
    view.reset(VIEWS_NAME)
    runner = ViewRunner(
        _ClockedApp(app, args.breakdown_events, clock),
        _ClockedView(view, clock),  # type: ignore[arg-type]
        projector=clock.wrap("project", project_views),
        open_writer_view=partial(open_views, settings),
    )
    serialise = runner_module.split_changes
    timed_serialise = clock.wrap("serialise", serialise)

    def counted_serialise(*args: Any, **kwargs: Any) -> Any:
        rows = timed_serialise(*args, **kwargs)
        clock.calls["documents"] += len(rows.upserts) + len(rows.deletes)
        clock.calls["items"] += len(rows.items)
        return rows

    runner_module.split_changes = counted_serialise  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        events = runner.rebuild(batch=args.batch)
        total = time.perf_counter() - started
    finally:
        runner_module.split_changes = serialise  # type: ignore[assignment]
    sec, calls = clock.seconds, clock.calls
    rows: list[tuple[str, int, float]] = [
        ("read: select_notifications", calls["select"], sec["select"]),
        ("decode: facts_mapper.to_domain_event", calls["decode"], sec["decode"]),
        ("prefetch (view.get_many, 1 query per kind)", calls["prefetch"], sec["prefetch"]),
        ("project, in memory (project_views less reads)", calls["project"],
         sec["project"] - sec["reads"]),
        ("view point reads (view.get: misses)", calls["reads"], sec["reads"]),
        ("serialise (split_changes)", calls["serialise"], sec["serialise"]),
    ]
    rows.append(("rest (loop, reset, starting and waiting for the writer)", 0,
                 total - sum(r[2] for r in rows)))
    lines = [
        f"===== breakdown: {title}, first {events:,} events, no profiler: {total:.1f} s, "
        f"{events / total:,.0f} events/s =====",
        f"  {'step':<50}{'calls':>9}{'seconds':>9}{'us/event':>10}{'share':>7}",
    ]
    for label, n, seconds in rows:
        lines.append(f"  {label:<50}{f'{n:,}' if n else '':>9}{seconds:>9.2f}"
                     f"{1e6 * seconds / events:>10.1f}{seconds / total:>7.0%}")
    lines.append(f"  per event: {calls['reads'] / events:.2f} view point reads (documents "
                 f"neither prefetched nor in memory), {calls['documents'] / events:.2f} "
                 f"documents and {calls['items'] / events:.2f} history items written (by the "
                 "writer process, not timed here)")
    return lines


def profile_phase(app: PocDirectory, view: ViewRecorder, args: argparse.Namespace,
                  settings: Settings, title: str) -> list[str]:
    """cProfile a rebuild of the first ``--profile-events`` events (the view is reset first,
    so it is left holding only those). Returns the report lines."""
    capped = _CappedApp(app, args.profile_events)
    view.reset(VIEWS_NAME)
    lines = [f"===== profile: {title}, first {args.profile_events:,} events "
             "(cProfile inflates Python calls; read it for shares, not rates; it sees the "
             "runner's thread only, not the writer process's writes) ====="]
    profile = cProfile.Profile()
    profile.enable()
    result = rebuild(capped, view, args.batch, settings)
    profile.disable()
    lines.append(f"rebuild: {result.events:,} events in {result.seconds:.1f} s under the "
                 f"profiler ({result.rate:,.0f} events/s)")
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    lines.append(f"rebuild, where the time goes (cumulative; profiled total {total:.1f} s):")
    lines.append(f"  {'step':<44}{'calls':>10}{'seconds':>10}{'share':>8}{'us/event':>10}")
    for label, suffix, fname in _STEPS:
        calls, _, cum = _cum(stats, suffix, fname)
        if calls == 0:
            continue
        lines.append(f"  {label:<44}{calls:>10,}{cum:>10.2f}{cum / total:>8.0%}"
                     f"{1e6 * cum / result.events:>10.1f}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(18)
    body = out.getvalue()
    lines.append("rebuild, top functions by own time:")
    lines.extend("  " + line for line in body[body.find("ncalls"):].rstrip().splitlines())
    return lines


# -- driver ---------------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    events: int
    generation: Generated | None
    reads: list[Pass]
    #: The same passes, decoding as the runner does (content withheld).
    facts_reads: list[Pass]
    rebuild: Pass
    topics: dict[str, int]
    docs: dict[str, int]
    size: str
    lag: LagResult | None
    profile: list[str]

    @property
    def read(self) -> Pass:
        """The faster read+facts-decode pass: the goal's reference (the conservative one),
        decoding exactly as the runner does."""
        return max(self.facts_reads, key=lambda p: p.rate)

    @property
    def ratio(self) -> float:
        """rebuild / read+facts-decode: the goal's ratio, what a rebuild costs beyond the
        reading and decoding it cannot avoid."""
        return self.rebuild.rate / self.read.rate

    @property
    def whole_read(self) -> Pass:
        return max(self.reads, key=lambda p: p.rate)

    @property
    def whole_ratio(self) -> float:
        """Against decoding every event whole, which the runner does not do: no goal."""
        return self.rebuild.rate / self.whole_read.rate


@dataclass
class Generated:
    """What the generation phase reports (plain values: it may run in a child process)."""

    events: int
    seconds: float
    cpu_seconds: float
    waves: int
    kinds: dict[str, int]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def generate(backend: str, url: str, events: int, sends: int) -> Generated:
    """Write ``events`` events to the empty store at ``url`` through the application."""
    settings = Settings(database_url=url)
    clock = SimulatedClock(START)
    app = build_application(settings, clock=clock)
    try:
        gen = Generator(app, clock, Inputs(sorted(member_states())), sends)
        cpu, started = time.process_time(), time.perf_counter()
        gen.run(events, lambda n: print(
            f"  {backend:<10}   ... generated {n:,} events, {time.perf_counter() - started:.0f} s",
            file=sys.stderr, flush=True))
        return Generated(gen.written, time.perf_counter() - started, time.process_time() - cpu,
                         gen.waves, dict(gen.kinds))
    finally:
        app.close()


def generation_phase(args: argparse.Namespace, stores: list[Store]) -> dict[str, Generated]:
    """Generate every empty store; two stores are generated at the same time, one process
    each (the machine has two cores, and this phase is set-up, not measured)."""
    todo = []
    for store in stores:
        app = build_application(store.settings)
        try:
            existing = app.recorder.max_notification_id() or 0
        finally:
            app.close()
        if existing:
            print(f"  {store.backend:<10} reusing {store.location}: {existing:,} events stored",
                  flush=True)
        else:
            print(f"  {store.backend:<10} generating {args.events:,} events in {store.location}",
                  flush=True)
            todo.append(store)
    if not todo:
        return {}
    started = time.perf_counter()
    if len(todo) == 1:
        s = todo[0]
        done = {s.backend: generate(s.backend, s.settings.database_url, args.events, args.sends)}
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(todo), mp_context=context) as pool:
            futures = {
                s.backend: pool.submit(
                    generate, s.backend, s.settings.database_url, args.events, args.sends
                )
                for s in todo
            }
            done = {b: f.result() for b, f in futures.items()}
    for backend, g in done.items():
        print(f"  {backend:<10} generated {g.events:,} events in {g.seconds:.0f} s "
              f"({g.rate:,.0f} events/s; {g.waves:,} waves of ~{g.events // max(1, g.waves):,} "
              "events, one transaction each)", flush=True)
    if len(todo) > 1:
        print(f"  generation phase: {time.perf_counter() - started:.0f} s "
              f"({len(todo)} stores in parallel)", flush=True)
    return done


def measure_backend(
    args: argparse.Namespace, store: Store, generated: Generated | None
) -> BackendResult:
    backend = store.backend

    def say(text: str) -> None:
        print(f"  {backend:<10} {text}", flush=True)

    app = build_application(store.settings)
    try:
        view = build_views(app, store.settings)
        view.reset(VIEWS_NAME)  # not timed: empties a view left by an earlier run

        reads: list[Pass] = []
        facts_reads: list[Pass] = []

        def read_pass() -> None:
            for passes, facts_only, what in ((reads, False, "read+decode whole"),
                                             (facts_reads, True, "read+facts-decode")):
                passes.append(read_decode(app, args.batch, facts_only=facts_only))
                p = passes[-1]
                say(f"{what} pass {len(passes)}: {p.events:,} events in {p.seconds:.1f} s, "
                    f"{p.rate:,.0f} events/s")

        read_pass()
        rb = rebuild(app, view, args.batch, store.settings)
        say(f"rebuild            : {rb.events:,} events in {rb.seconds:.1f} s, "
            f"{rb.rate:,.0f} events/s")
        for _ in range(1, args.read_passes):
            read_pass()
        if any(p.events != rb.events for p in reads + facts_reads):
            raise RuntimeError("the passes did not see the same events")
        docs, size = store.view_counts(), store.size()
        topics = store.topic_counts(app.recorder.events_table_name)  # type: ignore[attr-defined]
        lag = None
        if args.duration > 0:
            say(f"lag: writer at {args.rate:g} events/s for {args.duration:g} s, "
                "runner catching up ...")
            lag = lag_phase(store, app, view, args)
            say(f"lag: max {max(lag.samples)}, p50 {lag.percentile(0.5)}, "
                f"p95 {lag.percentile(0.95)}, final {lag.final} events")
        result = BackendResult(backend, rb.events, generated, reads, facts_reads, rb, topics,
                               docs, size, lag, [])
        if args.profile == "always" or (args.profile == "auto" and result.ratio < GOAL_RATIO):
            say(f"ratio {result.ratio:.3f} < {GOAL_RATIO}: profiling"
                if result.ratio < GOAL_RATIO else "profiling")
            result.profile = breakdown_phase(app, view, args, store.settings,
                                             f"{backend} rebuild")
            result.profile += profile_phase(app, view, args, store.settings,
                                            f"{backend} rebuild")
        return result
    finally:
        app.close()


def report(args: argparse.Namespace, results: list[BackendResult]) -> None:
    rule = "-" * 100
    print()
    print(rule)
    print("Replay (bench/replay.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(f"runner batch: {args.batch:,}; lag: writer {args.rate:g} events/s for "
          f"{args.duration:g} s (real commands, one event each, in another {args.writer}), "
          f"runner thread sleeps {args.poll:g} s "
          f"when idle, lag sampled every {args.sample:g} s")
    for r in results:
        print(rule)
        if r.generation is not None:
            g = r.generation
            print(f"{r.backend}: generated {g.events:,} events in {g.seconds:.0f} s "
                  f"({g.rate:,.0f} events/s) in this run")
        else:
            print(f"{r.backend}: reused a stored record (generated by an earlier run)")
        mix = ", ".join(f"{k} {v:,}" for k, v in r.topics.items())
        print(f"{'':<11}{r.events:,} events: {mix}")
        docs = ", ".join(f"{k} {v:,}" for k, v in r.docs.items())
        print(f"{'':<11}view documents and history items after rebuild: {docs}; "
              f"store size {r.size}")
    print(rule)
    print(f"{'backend':<11}{'measure':<44}{'events/s':>12}{'ratio':>9}{'goal':>10}  result")
    print(rule)
    def when(i: int) -> str:
        return "before rebuild" if i == 1 else "after rebuild"

    for r in results:
        met = "met" if r.ratio >= GOAL_RATIO else "MISSED"
        for i, p in enumerate(r.facts_reads, 1):
            print(f"{r.backend if i == 1 else '':<11}"
                  f"{f'read+facts-decode, {when(i)} ({p.seconds:.1f} s)':<44}"
                  f"{p.rate:>12,.0f}")
        for i, p in enumerate(r.reads, 1):
            print(f"{'':<11}{f'read+decode whole, {when(i)} ({p.seconds:.1f} s)':<44}"
                  f"{p.rate:>12,.0f}")
        rb = r.rebuild
        print(f"{'':<11}{f'rebuild all views ({rb.seconds:.1f} s)':<44}{rb.rate:>12,.0f}"
              f"{r.ratio:>9.3f}{f'>= {GOAL_RATIO:.2f}':>10}  {met}")
        print(f"{'':<11}{'  ratio against read+decode whole':<44}{'':>12}"
              f"{r.whole_ratio:>9.3f}{'(no goal)':>10}")
        print(f"{'':<11}{'  events replayed':<44}{rb.events:>12,}")
        read = r.read
        print(f"{'':<11}{'  client CPU per event, read+facts-decode / rebuild':<44}"
              f"{1e6 * read.cpu_seconds / read.events:>9.0f} us / "
              f"{1e6 * rb.cpu_seconds / rb.events:.0f} us "
              f"+ writer process {1e6 * rb.child_cpu_seconds / rb.events:.0f} us")
        print(f"{'':<11}{'  wall time per event, read+facts-decode / rebuild':<44}"
              f"{1e6 * read.seconds / read.events:>9.0f} us / "
              f"{1e6 * rb.seconds / rb.events:.0f} us")
        if r.lag is not None:
            lag = r.lag
            drain = f"{lag.drain_seconds:.2f} s" if lag.drain_seconds is not None else "> 60 s"
            print(f"{'':<11}{'lag under write load (events behind)':<44}"
                  f"max {max(lag.samples)}, p50 {lag.percentile(0.5)}, "
                  f"p95 {lag.percentile(0.95)}, final {lag.final}")
            print(f"{'':<11}{'  writer achieved / samples / drained in':<44}"
                  f"{lag.write_rate:,.1f} events/s ({lag.written:,} in {lag.seconds:.1f} s) / "
                  f"{len(lag.samples)} / {drain}")
            print(f"{'':<11}{'  runner catch_up calls / events projected':<44}"
                  f"{lag.catch_ups:,} / {lag.projected:,}")
        print(rule)
    print("ratio = rebuild events/s / the faster read+facts-decode pass (same events, same batch"
          " size, same run).")
    print("read+facts-decode and the rebuild decode each event with its content (descriptions,"
          " responses, texts,")
    print("supporting information) withheld, which no view holds; read+decode whole decodes it"
          " all, as loading an aggregate does.")
    for r in results:
        if r.profile:
            print()
            print("\n".join(r.profile))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=REBUILD_BATCH,
                        help="runner batch (and read page of the read passes)")
    parser.add_argument("--sends", type=int, default=450,
                        help="notifications sent per generation wave (a wave is ~4.5x events)")
    parser.add_argument("--rate", type=float, default=200.0, help="writer events/s (lag phase)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of write load in the lag phase (0: skip the phase)")
    parser.add_argument("--sample", type=float, default=0.5, help="lag sampling interval, s")
    parser.add_argument("--writer", choices=("process", "thread"), default="process",
                        help="lag phase: run the writer in another process or in a thread")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="runner sleep when catch_up found nothing, s")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="auto: profile when the ratio misses the goal")
    parser.add_argument("--profile-events", type=int, default=100_000)
    parser.add_argument("--breakdown-events", type=int, default=100_000,
                        help="events rebuilt with each step timed, no profiler (with profiling)")
    parser.add_argument("--read-passes", type=int, default=2,
                        help="read passes (each decode): one before the rebuild, the others after")
    parser.add_argument("--generate-only", action="store_true",
                        help="stop after generation (with --reuse-*, to prepare stores)")
    parser.add_argument("--reuse-sqlite", metavar="PATH",
                        help="keep the SQLite store here; reuse it if it holds events")
    parser.add_argument("--reuse-pg", metavar="SCHEMA",
                        help="keep the PostgreSQL store in this schema; reuse it if it has events")
    args = parser.parse_args(argv)
    if min(args.events, args.batch, args.sends, args.rate, args.sample, args.profile_events,
           args.breakdown_events, args.read_passes) <= 0:
        parser.error("sizes, rates and intervals must be positive")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pocdir-replay-") as tmpdir, \
            contextlib.ExitStack() as stack:
        stores = [stack.enter_context(open_store(b, args, tmpdir)) for b in backends]
        generated = generation_phase(args, stores)
        if args.generate_only:
            return 0
        results = [
            measure_backend(args, store, generated.get(store.backend))
            for store in stores
        ]
    report(args, results)
    print(f"\nbenchmark run: {(time.perf_counter() - started) / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
