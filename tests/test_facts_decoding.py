"""The views decode the record with every exchange's content withheld (``facts_mapper``):
the facts they hold are decoded exactly as the record has them, the content never is."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from domain.application import WITHHELD, PocDirectory
from domain.capacity import CapacityNeed
from domain.clock import SimulatedClock
from domain.notification import Notification
from domain.values import Contact, Text
from infra.settings import Settings
from infra.wiring import build_application, build_views
from projections.runner import VIEWS_NAME, ViewRunner
from simulation.simulator import DEFAULT_START, Simulator, seeded_ids
from tests.conftest import START, Backend, contact_data, state

#: The fields that hold an exchange's content, by event class.
CONTENT = {
    Notification.Sent: {"description", "supporting_information"},
    Notification.Responded: {"response"},
    CapacityNeed.Recorded: {"text"},
}


@pytest.fixture
def encrypted_app(backend: Backend) -> Iterator[PocDirectory]:
    """An application over an encrypted record: the views decrypt as the record does."""
    key = base64.b64encode(os.urandom(32)).decode()
    app = build_application(
        Settings(database_url=backend.url, cipher_key=key), clock=SimulatedClock(START)
    )
    yield app
    app.close()


def exchange(app: PocDirectory) -> None:
    """FRA notifies DEU with indicators and texts; DEU acknowledges, responds and records a
    need citing the notification."""
    for code in ("FRA", "DEU"):
        app.register_state(state(code), code)
        app.add_contact(state(code), code, Contact.from_dict(contact_data("cert")))
    n = app.send_notification(
        state("FRA"),
        "DEU",
        "malware",
        Text.english_only("Botnet command server"),
        [{"kind": "ipv4", "value": "192.0.2.1"}, {"kind": "domain", "value": "EVIL.example"}],
        good_faith_attested=True,
        supporting_text=Text.english_only("Seen since Monday"),
    )
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(
        state("DEU"), n.id, Text.english_only("We need forensics help"), assistance_requested=True
    )
    app.record_need(state("DEU"), "forensics", Text.english_only("Disk images"), n.id)


def test_views_decode_every_fact_of_the_record_and_none_of_its_content(
    encrypted_app: PocDirectory,
) -> None:
    exchange(encrypted_app)
    stored = encrypted_app.recorder.select_notifications(0, 100)
    withheld_in: set[type] = set()
    for s in stored:
        whole: Any = encrypted_app.mapper.to_domain_event(s)
        facts: Any = encrypted_app.facts_mapper.to_domain_event(s)
        assert type(facts) is type(whole)
        content = CONTENT.get(type(whole), set())
        for name, value in vars(whole).items():
            if name in content:
                assert getattr(facts, name) is WITHHELD, (type(whole).__name__, name)
                withheld_in.add(type(whole))
            else:
                assert getattr(facts, name) == value, (type(whole).__name__, name)
    assert withheld_in == set(CONTENT)


def test_an_event_decoded_for_the_views_cannot_be_stored(encrypted_app: PocDirectory) -> None:
    exchange(encrypted_app)
    sent = next(
        s for s in encrypted_app.recorder.select_notifications(0, 100) if s.topic.endswith("Sent")
    )
    facts = encrypted_app.facts_mapper.to_domain_event(sent)
    for mapper in (encrypted_app.facts_mapper, encrypted_app.mapper):
        with pytest.raises(TypeError):
            mapper.to_stored_event(facts)


def test_views_built_from_facts_equal_views_built_from_whole_events(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No projector reads content: over a simulated record with every kind of exchange, the
    views come out byte-identical whichever way the events are decoded."""
    clock = SimulatedClock(DEFAULT_START)
    app = build_application(backend.settings, clock=clock, new_id=seeded_ids(3))
    try:
        Simulator(app, clock, states=12, days=120, seed=3).run()
        topics = {n.topic.split(":")[-1] for n in app.recorder.select_notifications(0, 100_000)}
        assert {"Notification.Sent", "Notification.Responded", "CapacityNeed.Recorded"} <= topics
        view = build_views(app, backend.settings)
        ViewRunner(app, view).rebuild()
        from_facts = view.dump()
        monkeypatch.setattr(app, "facts_mapper", app.mapper)
        ViewRunner(app, view).rebuild()
        assert view.max_tracking_id(VIEWS_NAME) == app.recorder.max_notification_id()
        assert view.dump() == from_facts
    finally:
        app.close()
