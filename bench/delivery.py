"""Delivery benchmark (issue 17): alerts delivered per second to a local SMTP server, and the
delay from an event being recorded to its alert leaving, at p50 and p99. Figures, not a test.

For each backend (``--backend sqlite``, the default, ``postgresql`` or ``both``) it makes a
fresh record (``bench.common.fresh_database``), registers ``--states`` States with one
technical contact each, starts the tests' real SMTP server process
(``tests.support.smtp_server``: aiosmtpd on loopback, no TLS), enables delivery, and:

* **throughput**: sends ``--backlog`` notifications with the worker stopped, then times one
  worker (``DeliveryWorker.run_until_idle``) draining them: plan, render, one SMTP session per
  batch of 100, and one recorded, signed outcome event per alert. Alerts per second counts
  those the mail server holds at the end (each checked to have arrived once);
* **delay**: starts the worker thread a server runs (``infra.delivery.DeliveryThread``, poll
  ``--poll`` seconds) and sends ``--rate`` notifications a second for ``--seconds`` seconds
  from another thread; each alert's delay is the worker's clock when the mail server accepted
  it minus the notification event's timestamp (both the system clock of this machine).

Run from the project's root::

    .venv/bin/python -m bench.delivery [--backend sqlite|postgresql|both] [--states 50]
        [--backlog 2000] [--rate 20] [--seconds 30] [--poll 1.0]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import fresh_database, load_average, machine
from domain.application import PocDirectory
from domain.members import member_states
from domain.values import Contact, Principal, Role, Text
from infra.delivery import DeliveryThread, StepReport
from infra.lease import DELIVERY_LEASE, build_lease
from infra.note import SignerKey
from infra.settings import Settings
from infra.wiring import build_application, build_delivery_worker, delivery_key
from tests.support.record_keys import record_key_files
from tests.support.smtp_server import smtp_server


def contact(code: str) -> Contact:
    return Contact.from_dict(
        {
            "contact_id": "cert",
            "level": "technical",
            "agency": "National CERT",
            "function": "CERT",
            "channels": [{"kind": "email", "address": f"cert@{code.lower()}.example.org"}],
            "languages": ["en"],
            "time_zone": "UTC",
            "hours": "24/7",
            "incident_types": ["malware"],
        }
    )


def principal(code: str) -> Principal:
    return Principal(f"bench-{code.lower()}", Role.STATE, code)


def notify(app: PocDirectory, codes: list[str], i: int) -> None:
    sender, recipient = codes[i % len(codes)], codes[(i + 1) % len(codes)]
    app.send_notification(
        principal(sender),
        recipient,
        "malware",
        Text.english_only(f"bench notification {i}"),
        [{"kind": "ipv4", "value": "192.0.2.1"}],
        good_faith_attested=True,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> None:
    operator, server = record_key_files()
    with (
        fresh_database(backend, "delivery", str(tmp), args.pg_url) as url,
        smtp_server(tmp / f"smtp-{backend}") as mail,
    ):
        key_file = tmp / f"delivery-{backend}.key"
        SignerKey.generate("delivery.bench.example").write_new(key_file)
        settings = dataclasses.replace(
            Settings(database_url=url, operator_key_file=operator, signing_key_file=server),
            delivery_key_file=key_file,
            smtp_host=mail.host,
            smtp_port=mail.port,
            smtp_starttls=False,
            smtp_sender="alerts@bench.example",
            delivery_poll_seconds=args.poll,
        )
        app = build_application(settings)
        try:
            codes = sorted(member_states())[: args.states]
            for code in codes:
                app.register_state(principal(code), code)
                app.add_contact(principal(code), code, contact(code))
            key = delivery_key(settings)
            assert key is not None
            app.enable_delivery(key.public_key().public_bytes_raw(), "pocdir-delivery:bench")
            worker = build_delivery_worker(app, settings, key)

            for i in range(args.backlog):
                notify(app, codes, i)
            started = time.perf_counter()
            report = worker.run_until_idle()
            elapsed = time.perf_counter() - started
            received = mail.messages()
            ids = {m.message["Message-ID"] for m in received}
            if len(ids) != args.backlog or len(received) != args.backlog:
                raise SystemExit(f"{len(received)} messages for {args.backlog} alerts")
            print(
                f"[{backend}] throughput: {args.backlog} alerts in {elapsed:.2f} s = "
                f"{args.backlog / elapsed:.0f} alerts/s ({report.outcomes})"
            )

            delays: list[float] = []
            thread = DeliveryThread(
                worker, build_lease(app.recorder, settings, DELIVERY_LEASE), args.poll
            )

            def collect(step: StepReport) -> None:
                delays.extend(step.delays)

            thread.on_step = collect
            thread.start()
            total = int(args.rate * args.seconds)
            begin = time.monotonic()
            for i in range(total):
                wait = begin + i / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                notify(app, codes, args.backlog + i)
            deadline = time.monotonic() + 30
            while len(delays) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            thread.stop()
            if len(delays) != total:
                raise SystemExit(f"{len(delays)} of {total} alerts left within 30 s")
            print(
                f"[{backend}] delay at {args.rate}/s for {args.seconds} s, poll {args.poll} s: "
                f"p50 {percentile(delays, 50) * 1000:.0f} ms, "
                f"p99 {percentile(delays, 99) * 1000:.0f} ms, "
                f"max {max(delays) * 1000:.0f} ms, mean {statistics.mean(delays) * 1000:.0f} ms "
                f"over {len(delays)} alerts"
            )
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(machine())
    print(f"load average before: {load_average()}")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    with tempfile.TemporaryDirectory(prefix="pocdir-bench-delivery-") as tmp:
        for backend in backends:
            run_backend(backend, args, Path(tmp))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
