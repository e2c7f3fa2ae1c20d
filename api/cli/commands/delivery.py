"""``pocdir delivery``: enable delivery of alerts for the record, run the delivery worker, and
see where it stands (issue 17; ``infra.delivery``, docs/delivery.md)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from api.cli.console import out
from api.cli.errors import fail
from api.cli.session import command_application, settings
from domain.application import PocDirectory
from infra.delivery import DeliveryWorker, StepReport
from infra.lease import DELIVERY_LEASE, build_lease
from infra.webhook import delivery_key_id
from infra.wiring import OpenMode, build_delivery_worker, delivery_key

delivery_app = typer.Typer(help="Alerts to the contacts the directory lists (issue 17).")


def _worker(application: PocDirectory) -> DeliveryWorker:
    config = settings()
    key = delivery_key(config)
    if key is None:
        fail("set POCDIR_DELIVERY_KEY_FILE (pocdir keys generate PATH makes one)")
    return build_delivery_worker(application, config, key)


def enable_delivery(application: PocDirectory) -> int:
    """Record ``DeliverySwitch.Enabled`` with the delivery key's public half (signed by the
    server's key, as every event the server records by itself); return its record position,
    where the worker starts."""
    config = settings()
    key = delivery_key(config)
    if key is None:
        fail("set POCDIR_DELIVERY_KEY_FILE (pocdir keys generate PATH makes one)")
    public = key.public_key()
    application.enable_delivery(public.public_bytes_raw(), delivery_key_id(public))
    return application.recorder.max_notification_id() or 0


@delivery_app.command("enable")
def enable() -> None:
    """Start delivering alerts for the events recorded from now on (never for earlier ones),
    and publish the delivery key that signs webhook requests."""
    with command_application(mode=OpenMode.EXISTING) as application:
        position = enable_delivery(application)
    out.print(f"delivery enabled from record position {position}", highlight=False)


def _summary(report: StepReport) -> str:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "none"
    return f"planned {report.planned}, escalated {report.escalated}, outcomes: {outcomes}"


@delivery_app.command("run")
def run(
    once: Annotated[bool, typer.Option("--once", help="send what is due now, then stop")] = False,
) -> None:
    """Run the delivery worker (as a server does when it has POCDIR_DELIVERY_KEY_FILE): plan
    alerts from the record, escalate overdue notifications, send what is due, record every
    outcome. Holds the delivery lease: one worker per record."""
    config = settings()
    with command_application(mode=OpenMode.EXISTING) as application:
        worker = _worker(application)
        if worker.enabled_position() is None:
            fail("delivery is not enabled for this record: run pocdir delivery enable")
        lease = build_lease(application.recorder, config, DELIVERY_LEASE)
        # A worker that died holds the lease until it expires: --once waits that long.
        give_up = time.monotonic() + 2 * config.runner_lease_seconds
        try:
            while True:
                if not lease.keep():
                    if once and time.monotonic() > give_up:
                        fail("another process runs the delivery worker of this record", 3)
                    time.sleep(min(config.delivery_poll_seconds, 0.5))
                    continue
                report = worker.run_until_idle()
                if report.busy:
                    out.print(_summary(report), highlight=False)
                if once:
                    break
                time.sleep(config.delivery_poll_seconds)
        except KeyboardInterrupt:
            pass
        finally:
            lease.release()


@delivery_app.command("status")
def status() -> None:
    """Where delivery stands: enabled from which position, planned up to where, and how many
    alerts are pending or settled."""
    with command_application(mode=OpenMode.EXISTING) as application:
        worker = _worker(application)
        enabled = worker.enabled_position()
        if enabled is None:
            out.print("delivery is not enabled for this record", highlight=False)
            return
        counts = worker.store.counts()
        out.print(
            f"enabled from position {enabled}; planned up to {worker.position()}; "
            f"{counts['pending']} pending, {counts['settled']} settled",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``pocdir delivery`` to the ``pocdir`` app."""
    app.add_typer(delivery_app, name="delivery", no_args_is_help=True)
