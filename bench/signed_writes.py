"""Signed writes benchmark: what signing each State write costs, end to end over HTTP, against
the plain writes of the code before issue 15. Figures, not a test.

For each backend it

* prepares two fresh records (a SQLite file each, or a PostgreSQL schema each, dropped
  afterwards), set-up not timed: ``--states`` States register and add a contact, each gets a
  bearer token; in the *after* record the Secretariat also binds every State's first keys
  (signed with the operator key). Each set-up runs in a child process with the code of its own
  tree: *before* is commit ``e6720ed`` (plain, unsigned writes; ``--before-tree``, a worktree
  of it), *after* is this tree;
* starts one real server per record, ``pocdir serve`` (uvicorn, one process, plain HTTP on
  127.0.0.1), *before* with ``PYTHONPATH`` and working directory at the old tree, *after* with
  this tree's code and the operator and server keys (it checks each statement, stores it and
  signs a receipt);
* loads them with one Python client loop (``httpx``, keep-alive, ``--workers`` threads, each
  writing as its own States in turn, so no two workers change the same entry), in blocks of
  ``--seconds``, alternating before and after (and which goes first) for ``--rounds`` rounds,
  so both see the same machine noise. After each block the bench waits until the server's
  views have caught up (``/ready``), so no block pays for another's projection:

  - *contact updates* (default): ``PUT /entries/{state}/contacts/{id}`` with ``If-Match``
    (the ETag of the previous answer) and an ``Idempotency-Key``. Before: plain. After: the
    client signs each request with ``domain.signed_requests.sign_request`` (salted commitments
    of the personal values, Ed25519), in the timed loop;
  - *notifications* (``--notifications``): ``POST /notifications``. Before: plain (a
    description, good faith attested). After: the client seals the content
    (``state_client.envelope.seal``: HPKE ML-KEM-768+X25519 to sender and recipient) and signs
    the request, and sends ``{"recipient", "incident_type", "good_faith_attested",
    "envelope"}`` (docs/e2e.md); it needs the sealed sends on the server;

* reports 2xx answers per second of each (total over its blocks), the ratio after/before with
  the spread of the block pairs' ratios, the server's CPU per request (``/proc``; the database
  server's own CPU is not counted) and the client's, and the goal (issue 15): signed writes at
  least 0.8 x the plain writes. Any answer that is not 2xx is counted and makes the run
  invalid (exit 1).

Usage::

    .venv/bin/python bench/signed_writes.py [--backend sqlite|postgresql|both]
        [--before-tree /work/wt/bench-before] [--seconds 10] [--rounds 3] [--workers 4]
        [--states 16] [--notifications] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

# The bench folder, which Python puts first on the path (run as a script), must come after the
# standard library: bench/http.py would otherwise shadow ``http`` (used by httpx and uvicorn).
with __import__("contextlib").suppress(ValueError):
    _sys.path.remove(str(_Path(__file__).resolve().parent))
_sys.path.append(str(_Path(__file__).resolve().parent))
import argparse
import base64
import contextlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from common import fresh_database, load_average, machine  # noqa: E402

GOAL = 0.8
ROOT = _Path(__file__).resolve().parent.parent
BIN = _Path(sys.executable).parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_BEFORE = "/work/wt/bench-before"
BEFORE_COMMIT = "e6720ed"
VARIANTS = ("before", "after")
#: The receipt header of a signed write's answer (domain.signing.RECEIPT_HEADER; not imported,
#: so that the set-up child under the old tree imports nothing it lacks).
RECEIPT_HEADER = "Pocdir-Receipt"
#: Counted as a status: a 2xx answer to a signed write without a receipt.
RECEIPTLESS = 0


def contact_dict(code: str, variant: int) -> dict[str, Any]:
    """A State's technical contact as the API takes it; ``variant`` changes its phone."""
    c = code.lower()
    return {
        "contact_id": "tech-1",
        "level": "technical",
        "agency": {"language": "en", "text": f"National CERT of {code}"},
        "function": "Incident handling",
        "channels": [
            {"kind": "email", "address": f"cert@{c}.bench.example"},
            {"kind": "phone", "address": f"+4122791{variant % 10000:04d}"},
        ],
        "languages": ["en", "fr"],
        "time_zone": "Europe/Paris",
        "hours": "24/7" if variant % 2 == 0 else "Mon-Fri 08:00-18:00",
        "incident_types": ["malware", "ransomware", "intrusion"],
    }


# -- set-up, in a child process running the code of one tree -------------------------------


def setup_record(variant: str, states: int, out: str) -> None:
    """Register ``states`` States with one contact and a token each (and, after, bind their
    keys); write what the client needs to ``out`` (JSON). Runs with the code of the tree the
    server will run, and uses only what both trees have, besides the key binding."""
    from api.cli.console import CONSOLE
    from domain.members import member_states
    from domain.values import Contact, Principal, Role
    from infra.settings import Settings
    from infra.wiring import build_services

    services = build_services(Settings.from_env())
    app = services.application
    codes = sorted(member_states())[:states]
    found: dict[str, Any] = {"states": {}}
    try:
        for code in codes:
            by = Principal(f"bench-{code.lower()}", Role.STATE, code)
            app.register_state(by, code)
            app.add_contact(by, code, Contact.from_dict(contact_dict(code, 0)))
            _, token = app.issue_credential(CONSOLE, Role.STATE, code)
            found["states"][code] = {"token": token}
        if variant == "after":
            _bind_keys(app, codes, found["states"])
        for code in codes:
            found["states"][code]["version"] = app.get_entry(code).version
    finally:
        services.close()
    _Path(out).write_text(json.dumps(found))


def _bind_keys(app: Any, codes: list[str], states: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from domain.signing import SignerKind, SigningContext, signing
    from domain.state_keys import EncryptionKey, SigningKey
    from domain.values import Principal, Role
    from state_client.keys import EncryptionPrivateKey

    secretariat = Principal("bench-secretariat", Role.SECRETARIAT)
    for code in codes:
        key = Ed25519PrivateKey.generate()
        encryption = EncryptionPrivateKey.generate().public_key().to_bytes()
        with signing(SigningContext(SignerKind.SECRETARIAT)):
            app.bind_state_keys(
                secretariat,
                code,
                EncryptionKey.from_bytes(encryption),
                (SigningKey.from_bytes(key.public_key().public_bytes_raw()),),
            )
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        states[code].update(signing_key=raw.hex(), encryption_key=encryption.hex())


# -- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = _Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    """One variant: its tree, record, server and the client's view of its States."""

    variant: str
    tree: str
    env: dict[str, str]
    database_url: str
    states: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    server: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "POCDIR_DATABASE_URL": self.database_url}
        if _Path(self.tree).resolve() != ROOT:
            env["PYTHONPATH"] = self.tree
        else:
            env.pop("PYTHONPATH", None)
        return env

    def set_up(self, states: int, tmpdir: str) -> float:
        started = time.perf_counter()
        out = os.path.join(tmpdir, f"{self.variant}.json")
        code = (
            "import sys; sys.path.append(sys.argv[1]); import signed_writes as s; "
            "s.setup_record(sys.argv[2], int(sys.argv[3]), sys.argv[4])"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(ROOT / "bench"), self.variant, str(states), out],
            check=True,
            env=self.child_env(),
            cwd=self.tree,
        )
        self.states = json.loads(_Path(out).read_text())["states"]
        return time.perf_counter() - started

    def start(self, log: str) -> None:
        import httpx

        self.port = free_port()
        with open(log, "ab") as out:
            self.server = subprocess.Popen(
                [str(BIN / "pocdir"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.child_env(),
                cwd=self.tree,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"the {self.variant} server exited; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the {self.variant} server did not answer /health in 60 s; see {log}")

    def settle(self) -> None:
        """Wait (at most 30 s) until the server's views have caught up with its record."""
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, AttributeError):
                if httpx.get(self.base + "/ready", timeout=10).json().get("lag_events") == 0:
                    return
            time.sleep(0.1)
        print(f"  ({self.variant}: the views still lag after 30 s)", flush=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None


# -- the client loop ------------------------------------------------------------------------


class Writer:
    """Builds one worker's next request for one variant and workload (signing and sealing in
    the after variant, in the timed loop) and takes in its answer."""

    def __init__(self, side: Side, codes: list[str], everyone: list[str], kind: str) -> None:
        self.side, self.codes, self.everyone, self.kind = side, codes, everyone, kind
        self.signs = side.variant == "after"
        self.turn = 0
        self.variant_no = 0
        self.keys: dict[str, Any] = {}
        self.encryption: dict[str, Any] = {}
        if side.variant == "after":
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            for code in codes:
                raw = bytes.fromhex(side.states[code]["signing_key"])
                self.keys[code] = Ed25519PrivateKey.from_private_bytes(raw)
            if kind == "notifications":
                from state_client.keys import EncryptionPublicKey

                self.encryption = {
                    c: EncryptionPublicKey.from_bytes(
                        bytes.fromhex(side.states[c]["encryption_key"])
                    )
                    for c in everyone
                }

    def next_request(self) -> tuple[str, str, dict[str, str], bytes, str]:
        """(method, path, headers, body bytes, State) of the next write."""
        code = self.codes[self.turn % len(self.codes)]
        self.turn += 1
        self.variant_no += 1
        state = self.side.states[code]
        key = f"bench-{self.side.variant}-{uuid4().hex}"
        headers = {
            "Authorization": f"Bearer {state['token']}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        }
        if self.kind == "contacts":
            method, path = "PUT", f"/entries/{code}/contacts/tech-1"
            body: dict[str, Any] = {"contact": contact_dict(code, self.variant_no)}
            if_match: str | None = f'"{state["version"]}"'
            headers["If-Match"] = if_match  # type: ignore[assignment]
            new_aggregate = None
        else:
            method, path, if_match = "POST", "/notifications", None
            others = [c for c in self.everyone if c != code]
            recipient = others[self.turn % len(others)]
            new_aggregate = uuid4()
            body = self._notification(code, recipient, new_aggregate)
        if self.side.variant == "after":
            from domain.signed_requests import sign_request

            signed = sign_request(
                method=method,
                path=path,
                body=body,
                state=code,
                private_key=self.keys[code],
                idempotency_key=key,
                created_at=datetime.now(UTC),
                if_match=if_match,
                new_aggregate=new_aggregate,
            )
            headers.update(signed.headers)
        return method, path, headers, json.dumps(body).encode(), code

    def _notification(self, sender: str, recipient: str, notification: Any) -> dict[str, Any]:
        description = {"language": "en", "text": "bench/signed_writes.py notification"}
        if self.side.variant == "before":
            return {
                "recipient": recipient,
                "incident_type": "malware",
                "description": description,
                "supporting_text": "load test",
                "good_faith_attested": True,
            }
        from state_client.envelope import seal

        content = {
            "description": description,
            "supporting_information": {
                "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
                "text": {"language": "en", "text": "load test"},
            },
        }
        envelope = seal(
            content,
            notification,
            {sender: self.encryption[sender], recipient: self.encryption[recipient]},
        )
        return {
            "recipient": recipient,
            "incident_type": "malware",
            "good_faith_attested": True,
            "envelope": base64.b64encode(envelope.to_bytes()).decode("ascii"),
        }

    def answered(self, code: str, status: int, etag: str | None) -> None:
        if self.kind == "contacts" and 200 <= status < 300 and etag:
            self.side.states[code]["version"] = int(etag.removeprefix("W/").strip('"'))


@dataclass
class Block:
    variant: str
    ok: int
    seconds: float
    server_cpu: float
    client_cpu: float
    statuses: Counter[int]
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def run_block(side: Side, writers: list[Writer], seconds: float) -> Block:
    """``seconds`` of writes by every worker at once; then the views settle (not timed)."""
    import httpx

    if side.server is None:
        raise RuntimeError(f"the {side.variant} server is not running: start it first")
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(len(writers) + 1)

    def work(writer: Writer) -> None:
        seen: Counter[int] = Counter()
        with httpx.Client(base_url=side.base, timeout=60) as client:
            barrier.wait()
            while time.perf_counter() < stop:
                method, path, headers, body, code = writer.next_request()
                answer = client.request(method, path, headers=headers, content=body)
                seen[answer.status_code] += 1
                writer.answered(code, answer.status_code, answer.headers.get("etag"))
                if not 200 <= answer.status_code < 300 and not errors:
                    errors.append(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
                elif writer.signs and RECEIPT_HEADER not in answer.headers and not errors:
                    # a signed write is stored with its statement and receipted: one that is
                    # not was not the write this bench means to measure
                    seen[RECEIPTLESS] += 1
                    errors.append(f"{method} {path}: {answer.status_code} without a receipt")
        with lock:
            statuses.update(seen)

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    server_cpu, client_cpu = cpu_seconds(side.server.pid), time.process_time()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    server_cpu = cpu_seconds(side.server.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    side.settle()
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300) - statuses[RECEIPTLESS]
    return Block(
        side.variant, ok, took, server_cpu, client_cpu, statuses, errors[0] if errors else ""
    )


@dataclass
class Result:
    backend: str
    kind: str
    blocks: list[Block]
    load: tuple[str, str]

    def rate(self, variant: str) -> float:
        bs = [b for b in self.blocks if b.variant == variant]
        return sum(b.ok for b in bs) / sum(b.seconds for b in bs)

    def per_request_us(self, variant: str, what: str) -> float:
        bs = [b for b in self.blocks if b.variant == variant]
        return 1e6 * sum(getattr(b, what) for b in bs) / max(1, sum(b.ok for b in bs))

    @property
    def ratio(self) -> float:
        return self.rate("after") / self.rate("before")

    @property
    def pair_ratios(self) -> list[float]:
        before = [b.rate for b in self.blocks if b.variant == "before"]
        after = [b.rate for b in self.blocks if b.variant == "after"]
        return [a / b for b, a in zip(before, after, strict=True)]

    @property
    def not_ok(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for b in self.blocks:
            out.update({s: n for s, n in b.statuses.items() if not 200 <= s < 300})
        return out


def run_kind(args: argparse.Namespace, sides: dict[str, Side], kind: str, backend: str) -> Result:
    everyone = sorted(sides["after"].states)
    writers = {
        v: [Writer(side, everyone[w :: args.workers], everyone, kind) for w in range(args.workers)]
        for v, side in sides.items()
    }
    for v, side in sides.items():  # warm-up: one short block each, not counted
        warm = run_block(side, writers[v], 1.0)
        if warm.first_error:
            raise RuntimeError(f"warm-up of {v} {kind}: {warm.first_error}")
    load_start = load_average()
    blocks: list[Block] = []
    for rnd in range(args.rounds):
        order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
        for v in order:
            block = run_block(sides[v], writers[v], args.seconds)
            blocks.append(block)
            print(
                f"  {backend:<10} {kind:<13} round {rnd + 1} {v:<6} {block.rate:8,.1f} 2xx/s "
                f"({block.ok:,} in {block.seconds:.1f} s; server CPU "
                f"{1e6 * block.server_cpu / max(1, block.ok):,.0f} us/req, client CPU "
                f"{1e6 * block.client_cpu / max(1, block.ok):,.0f} us/req)"
                + (f"; first error: {block.first_error}" if block.first_error else ""),
                flush=True,
            )
    return Result(backend, kind, blocks, (load_start, load_average()))


def generate_keys(tmpdir: str) -> dict[str, str]:
    """The operator's and the server's key files, made with this tree's ``pocdir keys``."""
    env = {}
    for name, variable in (
        ("operator", "POCDIR_OPERATOR_KEY_FILE"),
        ("server", "POCDIR_SIGNING_KEY_FILE"),
    ):
        path = os.path.join(tmpdir, f"{name}.key")
        subprocess.run(
            [str(BIN / "pocdir"), "keys", "generate", path, "--name", f"{name}.bench.example"],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        env[variable] = path
    return env


def run_backend(args: argparse.Namespace, backend: str) -> list[Result]:
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pocdir-bench-sw-"))
        keys = generate_keys(tmpdir)
        trees = {"before": args.before_tree, "after": args.after_tree}
        sides = {}
        for v in VARIANTS:
            url = stack.enter_context(fresh_database(backend, f"sw_{v}", tmpdir, args.pg_url))
            side = Side(v, trees[v], keys if v == "after" else {}, url)
            took = side.set_up(args.states, tmpdir)
            print(
                f"  {backend:<10} {v}: {args.states} States set up in {took:.0f} s ({side.tree})",
                flush=True,
            )
            side.start(os.path.join(tmpdir, f"server-{v}.log"))
            stack.callback(side.stop)
            sides[v] = side
        kinds = ["contacts"] + (["notifications"] if args.notifications else [])
        return [run_kind(args, sides, kind, backend) for kind in kinds]


def report(args: argparse.Namespace, results: list[Result]) -> bool:
    rule = "-" * 110
    print()
    print(rule)
    print("Signed writes (bench/signed_writes.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(
        f"before: {BEFORE_COMMIT} at {args.before_tree} (plain writes); after: {args.after_tree} "
        "(signed, checked, stored with their statements, receipted); one pocdir serve "
        "(uvicorn) process each, plain HTTP on 127.0.0.1; client: httpx, keep-alive, "
        f"{args.workers} workers, "
        f"{args.states} States; {args.rounds} rounds x {args.seconds:g} s per variant, "
        "alternating"
    )
    print(rule)
    print(
        f"{'backend':<11}{'writes':<15}{'before 2xx/s':>13}{'after 2xx/s':>13}{'ratio':>8}"
        f"{'pairs min/med/max':>20}{'server us/req b/a':>20}{'client us/req b/a':>20}"
        f"{'goal':>8}  result"
    )
    print(rule)
    valid = True
    for r in results:
        pairs = sorted(r.pair_ratios)
        met = "met" if r.ratio >= GOAL else "MISSED"
        if r.not_ok:
            valid = False
            bad = ", ".join(f"{n} x {s}" for s, n in sorted(r.not_ok.items()))
            met += f" (NOT VALID: {bad})"
        server, client = (
            "/".join(f"{r.per_request_us(v, what):,.0f}" for v in VARIANTS)
            for what in ("server_cpu", "client_cpu")
        )
        print(
            f"{r.backend:<11}{r.kind:<15}{r.rate('before'):>13,.1f}{r.rate('after'):>13,.1f}"
            f"{r.ratio:>8.3f}{f'{pairs[0]:.2f}/{statistics.median(pairs):.2f}/{pairs[-1]:.2f}':>20}"
            f"{server:>20}{client:>20}{'>= ' + str(GOAL):>8}  {met}"
        )
        print(f"{'':<11}load average at the start / end: {r.load[0]} / {r.load[1]}")
    print(rule)
    print(
        "2xx/s = 2xx answers / seconds over all blocks of a variant; ratio = after / before; "
        "server us/req = the server process's user+system CPU / 2xx answers (the database "
        "server's not counted); client us/req = this process's CPU (signing, sealing, HTTP); "
        "status 0 = a 2xx answer to a signed write without a receipt."
    )
    return valid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--before-tree",
        default=DEFAULT_BEFORE,
        help=f"a worktree of {BEFORE_COMMIT} (git worktree add PATH {BEFORE_COMMIT})",
    )
    parser.add_argument(
        "--after-tree",
        default=str(ROOT),
        help="the signed server's code (default: this tree; e.g. an export of a branch with the "
        "sealed sends); the client always signs and seals with this tree's code",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per variant")
    parser.add_argument("--workers", type=int, default=4, help="concurrent client workers")
    parser.add_argument("--states", type=int, default=16, help="States writing")
    parser.add_argument(
        "--notifications",
        action="store_true",
        help="also sealed, signed notification sends (needs them on the server)",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    if args.states < max(2, args.workers) or args.rounds < 1 or args.seconds <= 0:
        parser.error("--states must be at least 2 and --workers; --rounds and --seconds positive")
    if not (_Path(args.before_tree) / "domain").is_dir():
        parser.error(
            f"{args.before_tree} is no worktree of {BEFORE_COMMIT}: "
            f"git worktree add {args.before_tree} {BEFORE_COMMIT}"
        )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    print(f"load average at the start: {load_average()}", flush=True)
    results: list[Result] = []
    for backend in backends:
        results.extend(run_backend(args, backend))
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    sys.exit(main())
