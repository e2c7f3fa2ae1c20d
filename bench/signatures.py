"""Signature verification benchmark: what checking every signature costs ``pocdir verify``,
against the floor, raw Ed25519 verification of the same signatures. Figures, not a test.

For each backend (a fresh SQLite file, a fresh PostgreSQL schema) it

* builds a record (set-up, not timed as verification): all 193 States register and add a
  contact (unsigned: no State has keys yet); the Secretariat binds each State's first keys
  (signed with the operator key, as ``pocdir keys bind`` does); then ``--writes`` signed
  contact updates, the States in turn, each one statement and one event. Each statement is
  made by ``domain.signed_requests.sign_request`` for ``PUT /entries/{state}/contacts/{id}``
  with ``If-Match``, exactly as the State client signs it, and the command runs inside
  ``domain.signing.signing(SigningContext(..., state_write=SignedWrite(...)))`` with the
  request's idempotency key, as the HTTP gate runs it once it has checked the statement, so
  the record holds what the gate would store (events, links, statements, salts);
* times, alternately and best of ``--repeats`` each, on one core (this process):

  - ``verify_record``: ``infra.verify.verify_record(app)`` over the whole record (reads every
    event, link and statement; checks the chain and every signature), events/s;
  - ``chain only``: the same fast chain walk without the signature check
    (``FastChainWalk`` over ``walk_linked``), events/s, for context;
  - ``raw Ed25519``: ``Ed25519PublicKey.verify`` of every stored signature over its stored
    signing input (``STATEMENT_PREFIX`` and the statement's bytes), the public keys already
    loaded and everything already in memory: verifications/s, the limit on one core;

* reports the ratio verify_record events/s / raw verifications/s against the goal (issue 15):
  at least 0.6. Nearly every event has its own statement (the set-up's unsigned events are
  counted, and named, in the output), so events/s and verifications/s compare like with like.

``--profile`` prints a cProfile of one ``verify_record`` pass to stderr (read it for where
the time goes, not for rates).

Usage::

    .venv/bin/python bench/signatures.py [--writes 20000] [--backend sqlite|postgresql|both]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--repeats 3] [--profile]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
import argparse
import cProfile
import hashlib
import io
import pstats
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from common import fresh_database, load_average, machine  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.idempotency import IdempotencyKey
from domain.members import member_states
from domain.signed_requests import SALTS_HEADER, decode_salts, sign_request
from domain.signing import RecordSigners, SignedWrite, SignerKind, SigningContext, signing
from domain.state_keys import EncryptionKey, SigningKey
from domain.statement import STATEMENT_PREFIX
from domain.taxonomy import Level
from domain.values import Contact, Principal, Role
from infra.chain import FastChainWalk
from infra.settings import Settings
from infra.verify import chained_recorder, verify_record
from infra.wiring import eventsourcing_env
from state_client.keys import EncryptionPrivateKey

GOAL = 0.6
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SEED = 20261201
SECRETARIAT = Principal("bench-secretariat", Role.SECRETARIAT)
#: The cache keeps set-up fast (commands do not read their aggregates back); verification
#: reads the database whatever the cache holds.
CACHE_ENV = {
    "AGGREGATE_CACHE_MAXSIZE": "2000",
    "AGGREGATE_CACHE_FASTFORWARD": "n",
    "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
}


def contact(code: str, variant: int) -> Contact:
    """A State's technical contact; ``variant`` changes its phone number and hours."""
    c = code.lower()
    return Contact.from_dict(
        {
            "contact_id": "tech-1",
            "level": str(Level.TECHNICAL),
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
    )


@dataclass
class Built:
    app: PocDirectory
    events: int
    signed_writes: int
    build_seconds: float


def build_record(database_url: str, codes: list[str], writes: int) -> Built:
    """The record: States registered unsigned, their keys bound by the Secretariat, then
    ``writes`` signed contact updates as the gate would store them."""
    started = time.perf_counter()
    clock = SimulatedClock(START)
    ids = random.Random(SEED)
    env = {**eventsourcing_env(Settings(database_url=database_url)), **CACHE_ENV}
    app = PocDirectory(env, clock=clock, new_id=lambda: UUID(int=ids.getrandbits(128), version=4))
    app.signers = RecordSigners(
        operator=Ed25519PrivateKey.generate(), server=Ed25519PrivateKey.generate()
    )
    second = timedelta(seconds=1)
    principals = {c: Principal(f"bench-{c.lower()}", Role.STATE, c) for c in codes}
    for code in codes:
        app.register_state(principals[code], code)
        app.add_contact(principals[code], code, contact(code, 0))
        clock.advance(second)
    keys: dict[str, Ed25519PrivateKey] = {}
    for code in codes:
        keys[code] = Ed25519PrivateKey.generate()
        signing_key = SigningKey.from_bytes(keys[code].public_key().public_bytes_raw())
        encryption = EncryptionKey.from_bytes(
            EncryptionPrivateKey.generate().public_key().to_bytes()
        )
        with signing(SigningContext(SignerKind.SECRETARIAT)):
            app.bind_state_keys(SECRETARIAT, code, encryption, (signing_key,))
        clock.advance(second)
    public = {c: k.public_key().public_bytes_raw() for c, k in keys.items()}
    versions = {c: app.get_entry(c).version for c in codes}
    for i in range(writes):
        code = codes[i % len(codes)]
        changed = contact(code, i + 1)
        body = {"contact": changed.to_dict()}
        version = versions[code]
        key = f"bench-sig-{i}"
        request = sign_request(
            method="PUT",
            path=f"/entries/{code}/contacts/tech-1",
            body=body,
            state=code,
            private_key=keys[code],
            idempotency_key=key,
            created_at=clock.now(),
            if_match=f'"{version}"',
        )
        salts = decode_salts(request.headers.get(SALTS_HEADER))
        write = SignedWrite(request.signed, f"state:{code}", public[code], salts)
        by = principals[code]
        digest = hashlib.sha256(repr(body).encode()).hexdigest()
        with signing(SigningContext(SignerKind.STATE, state_write=write)):
            app.update_contact(
                by,
                code,
                changed,
                expected_version=version,
                idempotency=IdempotencyKey(by.ref, key, digest),
            )
        versions[code] = version + 1
        clock.advance(second)
    events = app.recorder.max_notification_id() or 0
    return Built(app, events, writes, time.perf_counter() - started)


@dataclass
class Timings:
    events: int
    statements: int
    verify: float = float("inf")
    chain: float = float("inf")
    raw: float = float("inf")

    @property
    def verify_rate(self) -> float:
        return self.events / self.verify

    @property
    def chain_rate(self) -> float:
        return self.events / self.chain

    @property
    def raw_rate(self) -> float:
        return self.statements / self.raw

    @property
    def ratio(self) -> float:
        return self.verify_rate / self.raw_rate

    @property
    def signature_ratio(self) -> float:
        """The stricter reading: statements verify_record checks per second (its unsigned
        set-up events not counted) against raw verifications per second."""
        return (self.statements / self.verify) / self.raw_rate


def chain_only(app: PocDirectory) -> int:
    """The fast chain walk ``verify_record`` makes, without the signature check."""
    recorder = chained_recorder(app)
    fast = FastChainWalk(recorder.id_spelling)
    links = recorder.walk_linked(fast.check_page)
    if links != fast.events:
        raise RuntimeError("the record's chain is not intact")
    return fast.events


def raw_inputs(app: PocDirectory) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    """(public key, signature, signing input) of every stored statement, in memory, each
    distinct key loaded once: nothing left but the verification itself."""
    loaded: dict[str, Ed25519PublicKey] = {}
    inputs = []
    for row in chained_recorder(app).statement_rows():
        key = loaded.get(row.public_key)
        if key is None:
            key = loaded[row.public_key] = Ed25519PublicKey.from_public_bytes(
                bytes.fromhex(row.public_key)
            )
        inputs.append(
            (key, bytes.fromhex(row.signature), STATEMENT_PREFIX + row.statement.encode())
        )
    return inputs


def raw_verify(inputs: list[tuple[Ed25519PublicKey, bytes, bytes]]) -> None:
    for key, signature, message in inputs:
        key.verify(signature, message)  # raises InvalidSignature: a broken record


def measure(app: PocDirectory, repeats: int, profile: bool) -> Timings:
    """verify_record, chain only and raw Ed25519, alternating, best of ``repeats`` each."""
    inputs = raw_inputs(app)
    timings = Timings(0, len(inputs))
    for i in range(repeats):
        order = ("verify", "chain", "raw") if i % 2 == 0 else ("raw", "chain", "verify")
        for what in order:
            started = time.perf_counter()
            if what == "verify":
                result = verify_record(app)
                if result.signatures is None or result.signatures.signed < len(inputs) - 1:
                    raise RuntimeError(f"verify_record checked too few signatures: {result}")
                timings.events = result.events
            elif what == "chain":
                chain_only(app)
            else:
                raw_verify(inputs)
            took = time.perf_counter() - started
            setattr(timings, what, min(getattr(timings, what), took))
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        verify_record(app)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        print(f"\n===== profile: verify_record =====\n{out.getvalue()}", file=sys.stderr)
    return timings


def run_backend(args: argparse.Namespace, backend: str, codes: list[str]) -> Timings:
    with (
        tempfile.TemporaryDirectory(prefix="pocdir-bench-sig-") as tmpdir,
        fresh_database(backend, "sig", tmpdir, args.pg_url) as url,
    ):
        built = build_record(url, codes, args.writes)
        try:
            load = load_average()
            print(
                f"  {backend:<10} record: {built.events:,} events, {built.signed_writes:,} "
                f"signed writes by States, {len(codes)} key bindings, {2 * len(codes)} unsigned "
                f"set-up events (built in {built.build_seconds:.0f} s); load average {load}",
                flush=True,
            )
            timings = measure(built.app, args.repeats, args.profile)
        finally:
            built.app.close()
    print(
        f"  {backend:<10} verify_record {timings.verify_rate:,.0f} events/s, chain only "
        f"{timings.chain_rate:,.0f} events/s, raw Ed25519 {timings.raw_rate:,.0f} "
        f"verifications/s, ratio {timings.ratio:.3f}; load average {load_average()}",
        flush=True,
    )
    return timings


def report(args: argparse.Namespace, results: dict[str, Timings]) -> None:
    rule = "-" * 100
    print()
    print(rule)
    print("Signature verification (bench/signatures.py)")
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"machine: {machine()}")
    print(f"signed writes per record: {args.writes:,}; best of {args.repeats} passes each")
    print(rule)
    print(f"{'backend':<11}{'measure':<46}{'per s':>12}{'ratio':>9}{'goal':>9}  result")
    print(rule)
    for backend, t in results.items():
        met = "met" if t.ratio >= GOAL else "MISSED"
        print(backend)
        print(f"{'':<11}{'raw Ed25519 verify, in memory (verifications)':<46}{t.raw_rate:>12,.0f}")
        print(
            f"{'':<11}{'verify_record, chain + signatures (events)':<46}{t.verify_rate:>12,.0f}"
            f"{t.ratio:>9.3f}{'>= ' + str(GOAL):>9}  {met}"
        )
        print(f"{'':<11}{'chain only, fast walk (events)':<46}{t.chain_rate:>12,.0f}")
        per_event = 1e6 / t.verify_rate - 1e6 / t.chain_rate
        print(
            f"{'':<11}{'  signature check per event (verify - chain)':<46}"
            f"{per_event:>9.1f} us; raw verify {1e6 / t.raw_rate:.1f} us"
        )
        print(f"{'':<11}{'  events / statements':<46}{t.events:>12,} / {t.statements:,}")
        print(
            f"{'':<11}{'  verify_record statements/s, ratio to raw':<46}"
            f"{t.statements / t.verify:>12,.0f}{t.signature_ratio:>9.3f}"
        )
        print(rule)
    print("ratio = verify_record events/s / raw Ed25519 verifications/s (best pass of each).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=20_000, help="signed writes in the record")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeats", type=int, default=3, help="passes of each measurement")
    parser.add_argument("--profile", action="store_true", help="cProfile one verify_record")
    args = parser.parse_args(argv)
    if min(args.writes, args.repeats) < 1:
        parser.error("--writes and --repeats must be at least 1")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    codes = sorted(member_states())
    print(f"command: {shlex.join(['python', *sys.argv])}", flush=True)
    print(f"load average at the start: {load_average()}", flush=True)
    results = {b: run_backend(args, b, codes) for b in backends}
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
