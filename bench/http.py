"""HTTP benchmark: route lookup, inbox and a trivial endpoint of the same server. Not a test.

It

* prepares a record: a SQLite file loaded with a simulated record (``pocdir simulate
  --states --days --seed``, the service's real commands over simulated time; set-up, not
  timed), or a copy of ``--db`` if given (the copy is served, so the original is untouched);
* issues bearer tokens for ``--inbox-states`` States through the application (as
  ``pocdir principals add`` does);
* starts the real server, ``pocdir serve`` (uvicorn, one process, as ``make run`` does), on a
  free loopback port, and warms it up (the first query projects the record into the views);
* applies concurrent load with ``wrk`` (Debian package ``wrk``; C, event-driven, so the client
  takes little of the CPU the server needs) to three endpoints, one after the other, in
  ``--rounds`` rounds that alternate them, ``--duration`` s each, ``--connections`` open
  connections:

  - route lookup: ``GET /directory/{state}/route?incident_type=malware``, the State cycling
    through all registered States, as one State's token;
  - inbox: ``GET /notifications/inbox``, the token cycling through ``--inbox-states`` States;
  - trivial: ``GET /health`` (no token, no database);

* prints, per endpoint, req/s (all requests / all seconds over the rounds), p50 and p99
  latency (the median over rounds of wrk's per-round percentiles), the server's CPU per request
  (from ``/proc``), and the ratio route-lookup / trivial throughput (goal >= 0.50). Any answer
  other than 200 stops the run;
* with ``--profile PATH``, runs ``py-spy record`` on the server during one extra route-lookup
  run and writes its profile there (py-spy must be installed).

Usage::

    .venv/bin/python bench/http.py [--states 193] [--days 400] [--seed 1] [--db PATH]
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
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from common import machine  # noqa: E402

from api.cli_serve import CONSOLE
from domain.values import Role
from infra.settings import Settings
from infra.wiring import build_services

GOAL_RATIO = 0.50
ROOT = _Path(__file__).resolve().parent.parent
BIN = _Path(sys.executable).parent

#: wrk script: requests cycle through (path, token) pairs; done() prints one JSON line.
LUA = """
local targets = {%(targets)s}
local i = 0
request = function()
  i = i %% #targets + 1
  local t = targets[i]
  local headers = {}
  if t[2] ~= "" then headers["Authorization"] = "Bearer " .. t[2] end
  return wrk.format("GET", t[1], headers)
end
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %%d, "us": %%d, "p50": %%d, "p99": %%d, "status": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
"""


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass
class Endpoint:
    name: str
    shown: str
    targets: list[tuple[str, str]]
    runs: list[Run] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(r.requests for r in self.runs) / sum(r.seconds for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def cpu_us(self) -> float:
        return 1e6 * sum(r.server_cpu for r in self.runs) / sum(r.requests for r in self.runs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = _Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare_record(args: argparse.Namespace, tmpdir: str) -> tuple[str, str]:
    """(SQLite path, description of the record)."""
    path = os.path.join(tmpdir, "pocdir.sqlite3")
    if args.db:
        shutil.copyfile(args.db, path)
        return path, f"a copy of {args.db}"
    started = time.perf_counter()
    cmd = [str(BIN / "pocdir"), "simulate", "--states", str(args.states), "--days",
           str(args.days), "--seed", str(args.seed)]
    print(f"  simulating: {shlex.join(cmd[1:])} ...", flush=True)
    env = {**os.environ, "POCDIR_DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - started
    return path, (f"simulated in this run ({args.states} States, {args.days} days, seed "
                  f"{args.seed}; {took:.0f} s)")


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


def get(url: str, token: str = "") -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as r:
        r.read()
        return int(r.status)


def start_server(settings: Settings, port: int, log: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "POCDIR_DATABASE_URL": settings.database_url}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(BIN / "pocdir"), "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}); see {log}")
        try:
            if get(f"http://127.0.0.1:{port}/health") == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"the server did not answer /health within 60 s; see {log}")


def run_wrk(args: argparse.Namespace, base: str, ep: Endpoint, script: str,
            server_pid: int, duration: float) -> Run:
    lua = ",".join(f'{{"{p}","{t}"}}' for p, t in ep.targets)
    _Path(script).write_text(LUA % {"targets": lua})
    cpu0 = cpu_seconds(server_pid)
    out = subprocess.run(
        ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration:g}s",
         "--timeout", "30s", "-s", script, base + ep.targets[0][0]],
        check=True, capture_output=True, text=True,
    ).stdout
    cpu = cpu_seconds(server_pid) - cpu0
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    errors = {k: r[k] for k in ("status", "connect", "read", "write", "timeout") if r[k]}
    if errors:
        raise RuntimeError(f"{ep.name}: errors during the run: {errors}\n{out}")
    return Run(r["requests"], r["us"] / 1e6, r["p50"] / 1e3, r["p99"] / 1e3, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=193)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="serve a copy of this SQLite record instead of simulating")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per endpoint, alternating")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--inbox-states", type=int, default=16)
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy profile of the server under route lookups: a flame graph if "
                        "PATH ends in .svg, else collapsed stacks (py-spy --format raw)")
    args = parser.parse_args(argv)
    if min(args.duration, args.rounds, args.connections, args.threads, args.inbox_states) <= 0:
        parser.error("durations and counts must be positive")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    started = time.perf_counter()
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pocdir-http-") as tmpdir:
        path, record = prepare_record(args, tmpdir)
        settings = Settings(database_url=f"sqlite:///{path}")
        codes, tokens, events = issue_tokens(settings, args.inbox_states)
        asker = next(iter(tokens.values()))
        endpoints = [
            Endpoint("trivial", "GET /health", [("/health", "")]),
            Endpoint(
                "route lookup",
                "GET /directory/{state}/route?incident_type=malware",
                [(f"/directory/{c}/route?incident_type=malware", asker) for c in codes],
            ),
            Endpoint(
                "inbox",
                "GET /notifications/inbox",
                [("/notifications/inbox", t) for t in tokens.values()],
            ),
        ]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = os.path.join(tmpdir, "server.log")
        server = start_server(settings, port, log)
        try:
            for ep in endpoints:  # warm-up: views caught up, every path answers 200
                for p, t in ep.targets:
                    if get(base + p, t) != 200:
                        raise RuntimeError(f"{p} did not answer 200")
            script = os.path.join(tmpdir, "wrk.lua")
            for rnd in range(args.rounds):
                order = endpoints if rnd % 2 == 0 else endpoints[::-1]
                for ep in order:
                    run = run_wrk(args, base, ep, script, server.pid, args.duration)
                    ep.runs.append(run)
                    print(f"  round {rnd + 1}: {ep.name:<13} {run.rate:>8,.0f} req/s, "
                          f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, server CPU "
                          f"{run.server_cpu / run.seconds:.0%}", flush=True)
            if args.profile:
                profile(args, base, endpoints[1], script, server.pid)
        finally:
            server.terminate()
            server.wait(30)
        report(args, endpoints, record, events, len(codes))
    print(f"\nbenchmark run: {(time.perf_counter() - started) / 60:.1f} min in all")
    return 0


def profile(args: argparse.Namespace, base: str, ep: Endpoint, script: str, pid: int) -> None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    seconds = max(5, int(args.duration))
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-o", args.profile,
         "--format", "flamegraph" if args.profile.endswith(".svg") else "raw", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    run_wrk(args, base, ep, script, pid, seconds)
    recorder.wait(60)
    print(f"  py-spy profile of the server under {ep.name}: {args.profile}", flush=True)


def report(args: argparse.Namespace, endpoints: list[Endpoint], record: str, events: int,
           states: int) -> None:
    rule = "-" * 100
    print()
    print(rule)
    print("HTTP (bench/http.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(f"record: SQLite, {events:,} events, {states} registered States; {record}")
    print(f"server: pocdir serve (uvicorn, 1 process) on loopback; load: wrk, "
          f"{args.threads} thread(s), {args.connections} connections, {args.rounds} rounds x "
          f"{args.duration:g} s per endpoint, endpoints alternating")
    print(rule)
    print(f"{'endpoint':<14}{'request':<52}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'CPU us/req':>12}")
    print(rule)
    for ep in endpoints:
        print(f"{ep.name:<14}{ep.shown:<52}{ep.rate:>9,.0f}{ep.p50:>9.1f}{ep.p99:>9.1f}"
              f"{ep.cpu_us:>12,.0f}")
    print(rule)
    trivial, route = endpoints[0], endpoints[1]
    ratio = route.rate / trivial.rate
    met = "met" if ratio >= GOAL_RATIO else "MISSED"
    print(f"ratio route lookup / trivial throughput: {ratio:.3f} (goal >= {GOAL_RATIO:.2f}): "
          f"{met}")
    print(f"inbox / trivial: {endpoints[2].rate / trivial.rate:.3f}")
    print("CPU us/req = the server process's user+system CPU during the runs / requests served.")


if __name__ == "__main__":
    sys.exit(main())
