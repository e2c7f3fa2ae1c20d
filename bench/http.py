"""HTTP benchmark: route lookup, inbox, a write and a trivial endpoint, with one and with two
server processes on one record. Not a test.

It

* prepares a record (set-up, not timed), with ``--backend``:

  - ``sqlite`` (default): a SQLite file loaded with a simulated record (``pocdir simulate
    --states --days --seed``, the service's real commands over simulated time), or a copy of
    ``--db`` if given (the copy is served, so the original is untouched);
  - ``postgresql``: a fresh schema ``bench_<random>`` in the database of ``--database-url``
    (default ``postgresql://postgres@127.0.0.1:5432/test``; a ``schema=`` in the URL is
    replaced, so an existing record is never touched), loaded with ``pocdir simulate`` as for
    SQLite, and dropped afterwards;

* issues bearer tokens for ``--inbox-states`` States through the application (as
  ``pocdir principals add`` does);
* starts the real server, ``pocdir serve`` (uvicorn, as ``make run`` does), as ``--processes``
  processes on one record: ``1`` (default), ``2``, or ``1,2`` to measure both and compare.
  Process i listens on loopback port ``--port`` + i (default: free ports). Each start is warmed
  up (the first query projects the record into the views);
* applies concurrent load with ``wrk`` (Debian package ``wrk``; C, event-driven, so the client
  takes little of the CPU the server needs) and its script ``bench/wrk.lua`` to four
  endpoints, one after the other, in ``--rounds`` rounds that alternate them (and alternate the
  process counts, a server set kept running while the next run needs the same count),
  ``--duration`` s each. wrk runs ``--threads`` threads per server process, thread i connected
  to process i mod N, so each process gets the same share of the ``--connections`` open
  connections (which must divide evenly among the threads):

  - route lookup: ``GET /directory/{state}/route?incident_type=malware``, the State cycling
    through all registered States, as one State's token;
  - inbox: ``GET /notifications/inbox``, the token cycling through ``--inbox-states`` States;
  - write: ``POST /notifications``, a small fixed notification from one of those States to
    another registered State (both cycling), each request with an ``Idempotency-Key`` of its
    own, so it can be repeated without end and always creates a notification (201);
  - trivial: ``GET /health`` (no token, no database);

* prints, per process count and endpoint, answers per second (2xx answers / all seconds over
  the rounds), p50 and p99 latency (the median over rounds of wrk's per-round percentiles over
  all requests), the server processes' CPU per request (from ``/proc``; the database server's
  own CPU is not counted), and the answers that were not 2xx, by status, and socket errors.
  They are counted and reported, not hidden: the run goes on, the figures of a run with any
  are marked not valid, and the script exits 1;
* then the goals, each met or not: route lookup / trivial throughput >= 0.50 (each process
  count), and with ``--processes 1,2``: route lookups with two processes >= 1.3 x one process,
  writes with two >= 0.9 x one (appends are serialised at the chain head);
* with ``--profile PATH``, runs ``py-spy record`` on the first server process during one extra
  route-lookup run and writes its profile there (py-spy must be installed).

Usage::

    .venv/bin/python bench/http.py [--backend sqlite|postgresql] [--database-url URL]
        [--processes 1|2|1,2] [--port PORT] [--states 193] [--days 400] [--seed 1] [--db PATH]
        [--duration 10] [--rounds 3] [--connections 16] [--threads 1] [--inbox-states 16]
        [--profile PATH]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

# This file is named http.py: its folder, which Python puts first on the path (run as a
# script), must come after the standard library, or ``http`` (used by urllib and uvicorn)
# would resolve to this file.
_sys.path.remove(str(_Path(__file__).resolve().parent))
_sys.path.append(str(_Path(__file__).resolve().parent))
import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from common import machine  # noqa: E402
from psycopg import sql

from api.cli.console import CONSOLE
from domain.values import Role
from infra.settings import Settings
from infra.wiring import build_services

GOAL_RATIO = 0.50
#: Two processes against one: lookups should scale (2 cores, shared with the database and
#: wrk); appends are serialised at the chain head, so writes need only not lose much.
GOAL_LOOKUPS_2_VS_1 = 1.3
GOAL_WRITES_2_VS_1 = 0.9
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = _Path(__file__).resolve().parent.parent
BIN = _Path(sys.executable).parent
WRK_SCRIPT = _Path(__file__).resolve().parent / "wrk.lua"
#: The write: small and fixed, valid for any two registered States (docs/access.md).
WRITE_BODY = {"incident_type": "malware", "description": "bench/http.py write",
              "supporting_text": "load test", "good_faith_attested": True}


@dataclass(frozen=True)
class Target:
    """One request of an endpoint's cycle."""

    path: str
    token: str = ""
    method: str = "GET"
    body: str = ""
    #: a fresh Idempotency-Key with each request (writes)
    keyed: bool = False

    def line(self) -> str:
        return "\t".join((self.method, self.path, self.token, self.body, "1" if self.keyed else ""))


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    statuses: Counter[int]
    socket_errors: Counter[str]
    per_port: dict[int, int]

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def not_ok(self) -> Counter[int]:
        return Counter({s: n for s, n in self.statuses.items() if not 200 <= s < 300})

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


@dataclass
class Endpoint:
    name: str
    shown: str
    targets: list[Target]
    #: process count -> its runs
    runs: dict[int, list[Run]] = field(default_factory=dict)

    def rate(self, n: int) -> float:
        runs = self.runs[n]
        return sum(r.ok for r in runs) / sum(r.seconds for r in runs)

    def p50(self, n: int) -> float:
        return statistics.median(r.p50_ms for r in self.runs[n])

    def p99(self, n: int) -> float:
        return statistics.median(r.p99_ms for r in self.runs[n])

    def cpu_us(self, n: int) -> float:
        runs = self.runs[n]
        return 1e6 * sum(r.server_cpu for r in runs) / max(1, sum(r.requests for r in runs))

    def not_ok(self, n: int) -> Counter[int]:
        return sum((r.not_ok for r in self.runs[n]), Counter())

    def socket_errors(self, n: int) -> Counter[str]:
        return sum((r.socket_errors for r in self.runs[n]), Counter())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = _Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def simulate(args: argparse.Namespace, database_url: str) -> str:
    """Load a simulated record into ``database_url``; a description of it."""
    started = time.perf_counter()
    cmd = [str(BIN / "pocdir"), "simulate", "--states", str(args.states), "--days",
           str(args.days), "--seed", str(args.seed)]
    print(f"  simulating: {shlex.join(cmd[1:])} ...", flush=True)
    env = {**os.environ, "POCDIR_DATABASE_URL": database_url}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - started
    return (f"simulated in this run ({args.states} States, {args.days} days, seed "
            f"{args.seed}; {took:.0f} s)")


def with_schema(url: str, schema: str | None) -> str:
    """``url`` naming ``schema`` (``None``: naming none, as libpq wants it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    if schema is not None:
        query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def prepare_record(args: argparse.Namespace, tmpdir: str) -> Iterator[tuple[str, str]]:
    """(database URL of the record to serve, description of it); a PostgreSQL schema made
    for it is dropped on the way out, whatever happened."""
    if args.backend == "sqlite":
        path = os.path.join(tmpdir, "pocdir.sqlite3")
        url = f"sqlite:///{path}"
        if args.db:
            shutil.copyfile(args.db, path)
            yield url, f"a copy of {args.db}"
        else:
            yield url, simulate(args, url)
        return
    schema = f"bench_{secrets.token_hex(4)}"
    conninfo = with_schema(args.database_url, None)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        url = with_schema(args.database_url, schema)
        yield url, f"schema {schema} (dropped afterwards); {simulate(args, url)}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def issue_tokens(settings: Settings, count: int) -> tuple[list[str], dict[str, str], int]:
    """(registered States, token per State for the ``count`` with the fullest inboxes,
    events in the record)."""
    services = build_services(settings)
    try:
        queries = services.queries()
        codes = sorted(d["code"] for d in queries.entries())
        fullest = sorted(codes, key=lambda c: -len(queries.inbox(c)))[:count]
        tokens = {}
        for code in fullest:
            _, tokens[code] = services.application.issue_credential(CONSOLE, Role.STATE, code)
        events = services.application.recorder.max_notification_id() or 0
        return codes, tokens, events
    finally:
        services.close()


def call(base: str, t: Target) -> tuple[int, str]:
    """The status and body of one request (an error status too, not an exception)."""
    headers = {"Authorization": f"Bearer {t.token}"}
    if t.keyed:
        headers["Idempotency-Key"] = f"warm-up-{secrets.token_hex(8)}"
    if t.body:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + t.path, data=t.body.encode() or None,
                                     headers=headers, method=t.method)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return int(r.status), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")


def start_server(settings: Settings, port: int, log: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "POCDIR_DATABASE_URL": settings.database_url}
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [str(BIN / "pocdir"), "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            lines = _Path(log).read_text(errors="replace").strip().splitlines() or ["(no log)"]
            why = next((x for x in reversed(lines) if x.startswith("ERROR")), lines[-1])
            raise RuntimeError(f"the server on port {port} exited ({server.returncode}): "
                               f"{why[:300]}")
        try:
            if call(f"http://127.0.0.1:{port}", Target("/health"))[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"the server on port {port} did not answer /health within 60 s; see {log}")


class Fleet:
    """The server processes of the current process count, on one record. They are kept
    running while the next run needs as many, and restarted (and warmed up) otherwise."""

    def __init__(self, settings: Settings, base_port: int | None, logdir: str,
                 endpoints: list[Endpoint]) -> None:
        self.settings = settings
        self.base_port = base_port
        self.logdir = logdir
        self.endpoints = endpoints
        self.servers: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.writes_checked = False

    def ensure(self, count: int) -> None:
        if len(self.servers) == count:
            return
        self.stop()
        for i in range(count):
            port = free_port() if self.base_port is None else self.base_port + i
            log = os.path.join(self.logdir, f"server-{i + 1}.log")
            self.servers.append(start_server(self.settings, port, log))
            self.ports.append(port)
        self.warm_up()
        self.settle()

    def warm_up(self) -> None:
        """Views caught up, and every request of the cycles answered 2xx, at every process.
        One request is sent at a time, so nothing here clashes. Every write of the cycle is
        tried once (at the first start), then one write per start and process."""
        for port in self.ports:
            base = f"http://127.0.0.1:{port}"
            for ep in self.endpoints:
                keyed = any(t.keyed for t in ep.targets)
                targets = ep.targets[:1] if keyed and self.writes_checked else ep.targets
                for t in targets:
                    status, answer = call(base, t)
                    if not 200 <= status < 300:
                        raise RuntimeError(f"warm-up: {t.method} {t.path} answered {status} on "
                                           f"port {port}: {answer[:300]}")
            self.writes_checked = True

    def settle(self) -> None:
        """After a start or a write run: the views brought up to the record before the next
        run is timed, so no run pays for another's writes. At each process, a lookup (today a read
        catches the views up) then ``/ready``, again until it reports no lag (a projection
        runner of its own catches up by itself); at most 30 s in all, then it says so."""
        lookup = self.endpoints[1].targets[0]
        deadline = time.monotonic() + 30
        for port in self.ports:
            base = f"http://127.0.0.1:{port}"
            while True:
                looked, _ = call(base, lookup)
                _, answer = call(base, Target("/ready"))
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(answer).get("lag_events") == 0:
                        break
                if time.monotonic() > deadline:
                    print(f"  (port {port}: the views still lag after 30 s; the lookup "
                          f"answered {looked}, /ready {answer[:160]})", flush=True)
                    break
                time.sleep(0.2)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def stop(self) -> None:
        for s in self.servers:
            s.terminate()
        for s in self.servers:
            s.wait(30)
        self.servers, self.ports = [], []


def run_wrk(args: argparse.Namespace, fleet: Fleet, ep: Endpoint, tmpdir: str,
            duration: float) -> Run:
    """One wrk run of ``ep`` over the fleet's ports; every answer's status counted."""
    targets = os.path.join(tmpdir, "targets.tsv")
    _Path(targets).write_text("".join(t.line() + "\n" for t in ep.targets))
    env = {**os.environ, "BENCH_TARGETS": targets, "BENCH_KEY": secrets.token_hex(8),
           "BENCH_PORTS": ",".join(map(str, fleet.ports))}
    threads = args.threads * len(fleet.ports)
    cpu0 = [cpu_seconds(pid) for pid in fleet.pids]
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(args.connections), "-d", f"{duration:g}s",
         "--timeout", "30s", "-s", str(WRK_SCRIPT),
         f"http://127.0.0.1:{fleet.ports[0]}{ep.targets[0].path}"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    cpu = sum(cpu_seconds(pid) for pid in fleet.pids) - sum(cpu0)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{ep.name}: wrk printed no result:\n{out}")
    r = json.loads(line[len("RESULT "):])
    errors = Counter({k: r[k] for k in ("connect", "read", "write", "timeout") if r[k]})
    return Run(r["requests"], r["us"] / 1e6, r["p50"] / 1e3, r["p99"] / 1e3, cpu,
               Counter({int(s): n for s, n in r["statuses"].items()}), errors,
               {int(p): n for p, n in r["ports"].items()})


def parse_processes(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1, 2 or 1,2") from None
    if not counts or any(c not in (1, 2) for c in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r}: give 1, 2 or 1,2")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url",
                        help="PostgreSQL only: the database in which the bench makes (and "
                        f"drops) a schema of its own; default {DEFAULT_PG_URL}")
    parser.add_argument("--processes", type=parse_processes, default=[1], metavar="1|2|1,2",
                        help="server processes on the one record; 1,2 measures both")
    parser.add_argument("--port", type=int,
                        help="port of the first server process, the next one's is PORT+1 "
                        "(default: free ports)")
    parser.add_argument("--states", type=int, default=193)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="SQLite only: serve a copy of this record instead of "
                        "simulating")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per endpoint, alternating")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads per server process")
    parser.add_argument("--inbox-states", type=int, default=16)
    parser.add_argument("--logs", metavar="DIR",
                        help="keep the servers' logs (server-1.log, ...) in DIR, appended to; "
                        "default: a temporary folder, removed at the end")
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy profile of the server under route lookups: a flame graph if "
                        "PATH ends in .svg, else collapsed stacks (py-spy --format raw)")
    args = parser.parse_args(argv)
    if min(args.duration, args.rounds, args.connections, args.threads, args.inbox_states) <= 0:
        parser.error("durations and counts must be positive")
    if args.inbox_states < 2:
        parser.error("--inbox-states must be at least 2 (writes go from one to another)")
    for n in args.processes:
        if args.connections % (args.threads * n):
            parser.error(f"--connections ({args.connections}) must be a multiple of --threads x "
                         f"processes ({args.threads} x {n}), so each process gets the same share")
    if args.port is not None and not 1024 <= args.port <= 65535 - max(args.processes) + 1:
        parser.error("--port must leave room for one port per process, within 1024-65535")
    if args.db and args.backend != "sqlite":
        parser.error("--db is a SQLite file; with --backend postgresql the record is simulated")
    if args.database_url is not None and args.backend != "postgresql":
        parser.error("--database-url is for --backend postgresql")
    args.database_url = args.database_url or DEFAULT_PG_URL
    if args.backend == "postgresql" and not args.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        parser.error("--database-url must be a postgresql:// URL")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    started = time.perf_counter()
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pocdir-http-") as tmpdir, \
            prepare_record(args, tmpdir) as (url, record):
        settings = Settings(database_url=url)
        codes, tokens, events = issue_tokens(settings, args.inbox_states)
        endpoints = make_endpoints(codes, tokens)
        logdir = args.logs or tmpdir
        os.makedirs(logdir, exist_ok=True)
        fleet = Fleet(settings, args.port, logdir, endpoints)
        try:
            for rnd in range(args.rounds):
                forward = rnd % 2 == 0
                for n in args.processes if forward else args.processes[::-1]:
                    fleet.ensure(n)
                    for ep in endpoints if forward else endpoints[::-1]:
                        run = run_wrk(args, fleet, ep, tmpdir, args.duration)
                        ep.runs.setdefault(n, []).append(run)
                        print_run(rnd, n, ep, run)
                        if any(t.keyed for t in ep.targets):
                            fleet.settle()
            if args.profile:
                fleet.ensure(args.processes[0])
                profile(args, fleet, endpoints[1], tmpdir)
        finally:
            fleet.stop()
        valid = report(args, endpoints, record, events, len(codes), logdir)
    print(f"\nbenchmark run: {(time.perf_counter() - started) / 60:.1f} min in all")
    return 0 if valid else 1


def make_endpoints(codes: list[str], tokens: dict[str, str]) -> list[Endpoint]:
    asker = next(iter(tokens.values()))
    senders = list(tokens)
    # Writes go to the States whose inboxes are not measured, so the inbox runs read the same
    # inboxes all along (to all States but the sender if every State has a token).
    recipients = [c for c in codes if c not in tokens] or codes
    writes = []
    for i, recipient in enumerate(recipients):
        sender = senders[i % len(senders)]
        if sender == recipient:
            sender = senders[(i + 1) % len(senders)]
        body = json.dumps({"recipient": recipient, **WRITE_BODY}, separators=(",", ":"))
        writes.append(Target("/notifications", tokens[sender], "POST", body, keyed=True))
    return [
        Endpoint("trivial", "GET /health", [Target("/health")]),
        Endpoint(
            "route lookup",
            "GET /directory/{state}/route?incident_type=malware",
            [Target(f"/directory/{c}/route?incident_type=malware", asker) for c in codes],
        ),
        Endpoint(
            "inbox",
            "GET /notifications/inbox",
            [Target("/notifications/inbox", t) for t in tokens.values()],
        ),
        Endpoint("write", "POST /notifications (Idempotency-Key each)", writes),
    ]


def describe(statuses: Counter[int], errors: Counter[str]) -> str:
    parts = [f"{n:,} x {s}" for s, n in sorted(statuses.items())]
    parts += [f"{n:,} {k} error(s)" for k, n in sorted(errors.items())]
    return ", ".join(parts)


def print_run(rnd: int, n: int, ep: Endpoint, run: Run) -> None:
    line = (f"  round {rnd + 1}, {n} process{'es' if n > 1 else ''}: {ep.name:<13} "
            f"{run.rate:>8,.0f} 2xx/s, p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, "
            f"server CPU {run.server_cpu / run.seconds:.0%}")
    if n > 1:
        line += ", answers per port " + "/".join(f"{c:,}" for _, c in sorted(run.per_port.items()))
    bad = describe(run.not_ok, run.socket_errors)
    if bad:
        line += f"; NOT 2xx: {bad}"
    print(line, flush=True)


def profile(args: argparse.Namespace, fleet: Fleet, ep: Endpoint, tmpdir: str) -> None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    seconds = max(5, int(args.duration))
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(fleet.pids[0]), "-d", str(seconds), "-r", "200", "-o",
         args.profile, "--format", "flamegraph" if args.profile.endswith(".svg") else "raw",
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    run_wrk(args, fleet, ep, tmpdir, seconds)
    recorder.wait(60)
    print(f"  py-spy profile of the (first) server under {ep.name}: {args.profile}", flush=True)


#: The last line of a logged traceback: the exception and its message.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Unavailable)\w*(: .*)?$")


def logged_errors(logdir: str) -> Counter[str]:
    """The exceptions in the servers' logs, counted, their numbers replaced by N (so
    the same error at other positions counts as one)."""
    found: Counter[str] = Counter()
    for log in sorted(_Path(logdir).glob("server-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if EXCEPTION_LINE.match(line):
                found[re.sub(r"\d+", "N", line)[:200]] += 1
    return found


def report(args: argparse.Namespace, endpoints: list[Endpoint], record: str, events: int,
           states: int, logdir: str) -> bool:
    """Print the table and the goals; whether every answer was 2xx (the figures valid)."""
    rule = "-" * 127
    backend = "SQLite" if args.backend == "sqlite" else "PostgreSQL"
    counts = "/".join(map(str, args.processes))
    print()
    print(rule)
    print("HTTP (bench/http.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(f"record: {backend}, {events:,} events before the runs, {states} registered States; "
          f"{record}")
    print(f"server: pocdir serve (uvicorn), {counts} process(es) on the one record, on loopback; "
          f"load: wrk, {args.threads} thread(s) per process, {args.connections} connections in "
          f"all, {args.rounds} rounds x {args.duration:g} s per endpoint and process count, "
          "alternating")
    print(rule)
    print(f"{'procs':<6}{'endpoint':<14}{'request':<52}{'2xx/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'CPU us/req':>12}{'not 2xx':>9}{'sock err':>9}")
    print(rule)
    invalid = []
    for n in args.processes:
        for ep in endpoints:
            bad, lost = sum(ep.not_ok(n).values()), sum(ep.socket_errors(n).values())
            if bad or lost:
                invalid.append(f"{n} process(es), {ep.name}: "
                               f"{describe(ep.not_ok(n), ep.socket_errors(n))}")
            print(f"{n:<6}{ep.name:<14}{ep.shown:<52}{ep.rate(n):>9,.0f}{ep.p50(n):>9.1f}"
                  f"{ep.p99(n):>9.1f}{ep.cpu_us(n):>12,.0f}{bad:>9,}{lost:>9,}")
    print(rule)
    print("2xx/s = 2xx answers / all seconds over the rounds; p50, p99 over all requests. "
          "CPU us/req = the server processes' user+system CPU during the runs / requests "
          "(the database server's CPU not counted). not 2xx = answers with another status; "
          "sock err = wrk's socket errors (connect, read, write, timeout: e.g. a server closing "
          "the connection after a 500).")
    print()
    trivial, route, inbox, write = endpoints
    print("goals:")
    for n in args.processes:
        ratio = route.rate(n) / trivial.rate(n)
        print(f"  {n} process(es): route lookup / trivial throughput {ratio:.3f} "
              f"(goal >= {GOAL_RATIO:.2f}): {'met' if ratio >= GOAL_RATIO else 'MISSED'}; "
              f"inbox / trivial {inbox.rate(n) / trivial.rate(n):.3f}")
    if set(args.processes) == {1, 2}:
        for ep, goal in ((route, GOAL_LOOKUPS_2_VS_1), (write, GOAL_WRITES_2_VS_1)):
            ratio = ep.rate(2) / ep.rate(1)
            print(f"  {ep.name}s, 2 processes / 1: {ratio:.2f} x (goal >= {goal:.1f} x): "
                  f"{'met' if ratio >= goal else 'MISSED'}")
    else:
        print("  2 processes against 1 (lookups >= 1.3 x, writes >= 0.9 x): not measured; "
              "run with --processes 1,2")
    if invalid:
        print()
        print("NOT VALID: some answers were not 2xx (counted above, the rates count only 2xx):")
        for line in invalid:
            print(f"  {line}")
        errors = logged_errors(logdir)
        print(f"exceptions in the servers' logs ({sum(errors.values()):,} in all"
              + (f"; kept in {args.logs}" if args.logs else "; keep the logs with --logs DIR")
              + "), most frequent first:")
        for line, n in errors.most_common(5):
            print(f"  {n:>6,} x {line}")
    return not invalid


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, psycopg.OperationalError, subprocess.CalledProcessError) as e:
        # a set-up that failed (a server that did not start, a refused warm-up request, an
        # unreachable database): one line, not a traceback; a schema made is already dropped
        print(f"bench/http.py: {e}", file=sys.stderr)
        sys.exit(2)
