"""The delivery worker as the tests run it: over the test's record, to a real SMTP server
process (``tests.support.smtp_server``), with a delivery key of the test's own."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.delivery import Alert
from infra.delivery import DeliveryWorker
from infra.note import SignerKey
from infra.settings import Settings
from infra.wiring import build_application, build_delivery_worker, delivery_key
from tests.support.db import Backend
from tests.support.smtp_server import SmtpServer, smtp_server


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[SmtpServer]:
    """A real SMTP server process for the test (``from tests.support.delivery import mail``)."""
    with smtp_server(tmp_path / "smtp") as server:
        yield server


def delivery_settings(backend: Backend, mail: SmtpServer, tmp_path: Path) -> Settings:
    key_file = tmp_path / "delivery.key"
    if not key_file.exists():
        SignerKey.generate("delivery.test.example").write_new(key_file)
    return dataclasses.replace(
        backend.settings,
        delivery_key_file=key_file,
        smtp_host=mail.host,
        smtp_port=mail.port,
        smtp_starttls=False,
        smtp_sender="alerts@pocdir.test",
        delivery_retry_seconds=60,
        delivery_max_attempts=3,
    )


def worker_for(app: PocDirectory, settings: Settings) -> DeliveryWorker:
    key = delivery_key(settings)
    assert key is not None
    return build_delivery_worker(app, settings, key)


def enable(app: PocDirectory, settings: Settings) -> None:
    key = delivery_key(settings)
    assert key is not None
    app.enable_delivery(key.public_key().public_bytes_raw(), "pocdir-delivery:test")


def outcomes(app: PocDirectory) -> dict[str, list[str]]:
    """Each alert's outcomes in the record, by Message-ID (read from the stored events)."""
    found: dict[str, list[str]] = {}
    for record in app.recorder.select_notifications(None, 100_000):
        event = app.facts_mapper.to_domain_event(record)
        if isinstance(event, Alert.Outcome):
            alert: Alert = app.repository.get(event.originator_id)
            found.setdefault(alert.message_id, []).append(type(event).__name__)
    return found


@dataclasses.dataclass(frozen=True)
class Delivering:
    """The test's application over a record that delivers to the test's mail server, with
    the settings that say so (delivery is not enabled yet: ``enable``)."""

    app: PocDirectory
    settings: Settings


@pytest.fixture
def delivering(
    backend: Backend, clock: SimulatedClock, mail: SmtpServer, tmp_path: Path
) -> Iterator[Delivering]:
    settings = delivery_settings(backend, mail, tmp_path)
    app = build_application(settings, clock=clock)
    yield Delivering(app, settings)
    app.close()
