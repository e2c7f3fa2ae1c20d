"""The views decode the record with every exchange's content withheld (``facts_mapper``):
the facts they hold are decoded exactly as the record has them, the content never is. Which
fields are content is read off the event classes: a field typed with a value type the codec
stores under a content transcoding (``CONTENT_TRANSCODINGS``)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any, get_args, get_type_hints

import pytest
from eventsourcing.persistence import JSONTranscoder
from eventsourcing.utils import resolve_topic

from domain.application import WITHHELD, PocDirectory
from domain.base import PocdirAggregate
from domain.capacity import CapacityNeed
from domain.clock import SimulatedClock
from domain.codec import CONTENT_TRANSCODINGS
from domain.notification import Notification
from domain.values import Text
from infra.settings import Settings
from infra.wiring import build_application, build_views
from projections.runner import VIEWS_NAME, ViewRunner
from simulation.simulator import DEFAULT_START, Simulator, seeded_ids
from tests.support.builders import START, fra_notifies_deu, register_states, state
from tests.support.db import Backend


def event_classes() -> set[type]:
    """Every event class of pocdir's aggregates (those defined in ``domain/``), as the
    record's topics name them (the library derives copies of some classes; the topic
    resolves to the one the mapper decodes to)."""
    topics: set[str] = set()
    pending: list[type] = [PocdirAggregate.Event]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("domain.") and cls is not PocdirAggregate.Event:
            topics.add(f"{cls.__module__}:{cls.__qualname__}")
    return {resolve_topic(topic) for topic in topics}


def content_types(app: PocDirectory) -> set[type]:
    """The value types the codec stores under a content transcoding: what it withholds."""
    transcoder = JSONTranscoder()
    app.register_transcodings(transcoder)
    return {transcoder.names[name].type for name in CONTENT_TRANSCODINGS}


def holds(hint: Any, types: set[type]) -> bool:
    """Whether a field typed ``hint`` (``Text``, ``Text | None``, ``list[Text]``...) holds
    a value of one of ``types``."""
    return hint in types or any(holds(arg, types) for arg in get_args(hint))


def content_fields(app: PocDirectory) -> dict[type, set[str]]:
    """By event class, the fields that hold an exchange's content: those typed with a type
    the codec withholds. Derived from the event classes, so a new content field is in it."""
    types = content_types(app)
    content: dict[type, set[str]] = {}
    for cls in event_classes():
        names = {n for n, hint in get_type_hints(cls).items() if holds(hint, types)}
        if names:
            content[cls] = names
    return content


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
    need citing the notification; FRA offers assistance and DEU accepts. Every event class
    with content is among them (the test below checks it)."""
    register_states(app, "FRA", "DEU")
    n = fra_notifies_deu(
        app,
        "Botnet command server",
        [{"kind": "ipv4", "value": "192.0.2.1"}, {"kind": "domain", "value": "EVIL.example"}],
        supporting_text="Seen since Monday",
    )
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(
        state("DEU"), n.id, Text.english_only("We need forensics help"), assistance_requested=True
    )
    need = app.record_need(state("DEU"), "forensics", Text.english_only("Disk images"), n.id)
    app.offer_assistance(state("FRA"), need.id, Text.english_only("Two analysts next week"))
    app.accept_offer(state("DEU"), need.id, "FRA")


def check_facts(app: PocDirectory, facts_mapper: Any) -> set[type]:
    """Each stored event, decoded by ``facts_mapper``, has every fact as the whole event has
    it and every content field ``WITHHELD``. Returns the classes whose content was withheld."""
    content = content_fields(app)
    withheld_in: set[type] = set()
    for s in app.recorder.select_notifications(0, 100):
        whole: Any = app.mapper.to_domain_event(s)
        facts: Any = facts_mapper.to_domain_event(s)
        assert type(facts) is type(whole)
        for name, value in vars(whole).items():
            if name in content.get(type(whole), set()):
                assert getattr(facts, name) is WITHHELD, (type(whole).__name__, name)
                withheld_in.add(type(whole))
            else:
                assert getattr(facts, name) == value, (type(whole).__name__, name)
    return withheld_in


def test_the_content_fields_are_read_off_the_event_classes(encrypted_app: PocDirectory) -> None:
    """The derivation finds every content field the domain has today, offers' texts too."""
    assert content_fields(encrypted_app) == {
        Notification.Sent: {"description", "supporting_information"},
        Notification.Responded: {"response"},
        CapacityNeed.Recorded: {"text"},
        CapacityNeed.AssistanceOffered: {"text"},
    }


def test_views_decode_every_fact_of_the_record_and_none_of_its_content(
    encrypted_app: PocDirectory,
) -> None:
    exchange(encrypted_app)
    withheld_in = check_facts(encrypted_app, encrypted_app.facts_mapper)
    assert withheld_in == set(content_fields(encrypted_app))


class Leaking:
    """A facts mapper that leaks one content field: the whole event's value, not WITHHELD."""

    def __init__(self, app: PocDirectory, cls: type, name: str) -> None:
        self.app, self.cls, self.name = app, cls, name

    def to_domain_event(self, stored: Any) -> Any:
        facts = self.app.facts_mapper.to_domain_event(stored)
        if type(facts) is self.cls:
            whole = self.app.mapper.to_domain_event(stored)
            object.__setattr__(facts, self.name, getattr(whole, self.name))
        return facts


def test_the_check_fails_for_any_content_field_not_withheld(encrypted_app: PocDirectory) -> None:
    """The check above is not vacuous: let any one content field through and it fails."""
    exchange(encrypted_app)
    leaks = [(c, n) for c, names in content_fields(encrypted_app).items() for n in names]
    assert len(leaks) == 5
    for cls, name in leaks:
        with pytest.raises(AssertionError, match=name):
            check_facts(encrypted_app, Leaking(encrypted_app, cls, name))


def test_an_event_decoded_for_the_views_cannot_be_stored(encrypted_app: PocDirectory) -> None:
    exchange(encrypted_app)
    sent = next(
        s for s in encrypted_app.recorder.select_notifications(0, 100) if s.topic.endswith("Sent")
    )
    facts = encrypted_app.facts_mapper.to_domain_event(sent)
    for mapper in (encrypted_app.facts_mapper, encrypted_app.mapper):
        with pytest.raises(TypeError):
            mapper.to_stored_event(facts)


@pytest.mark.slow
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
        assert {cls.__qualname__ for cls in content_fields(app)} <= topics
        view = build_views(app, backend.settings)
        ViewRunner(app, view).rebuild()
        from_facts = view.dump()
        monkeypatch.setattr(app, "facts_mapper", app.mapper)
        ViewRunner(app, view).rebuild()
        assert view.max_tracking_id(VIEWS_NAME) == app.recorder.max_notification_id()
        assert view.dump() == from_facts
    finally:
        app.close()
