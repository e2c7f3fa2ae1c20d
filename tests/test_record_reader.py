"""The projections read the record through ``projections.records.RecordReader``, not the
application: any object with the stored events and their decoder for the views will do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.application import PocDirectory
from domain.values import Contact, Text
from infra.wiring import build_views
from projections.asof import directory_as_of
from projections.queries import ViewQueries
from projections.records import Record, RecordReader, StoredRecords, ViewsDecoder
from projections.runner import VIEWS_NAME, ViewRunner
from tests.conftest import Backend, contact_data, state


class _RecordUpTo:
    """The record as far as position ``stop``, with nothing but ``select_notifications``:
    any other use of the recorder fails."""

    def __init__(self, recorder: StoredRecords, stop: int) -> None:
        self._recorder, self.stop = recorder, stop

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Record]:
        stop = self.stop if stop is None else min(stop, self.stop)
        return self._recorder.select_notifications(
            start, limit, stop, inclusive_of_start=inclusive_of_start
        )


class _Decoder:
    """Only ``to_domain_event``, and a count of the events it decoded."""

    def __init__(self, decoder: ViewsDecoder) -> None:
        self._decoder, self.decoded = decoder, 0

    def to_domain_event(self, stored_event: Any) -> Any:
        self.decoded += 1
        return self._decoder.to_domain_event(stored_event)


class _Reader:
    """A ``RecordReader`` that is not the application; ``__slots__``: nothing else to use."""

    __slots__ = ("recorder", "facts_mapper")

    def __init__(self, recorder: _RecordUpTo, facts_mapper: _Decoder) -> None:
        self.recorder, self.facts_mapper = recorder, facts_mapper


def _exchange(app: PocDirectory) -> None:
    fra, deu = state("FRA"), state("DEU")
    for who in (fra, deu):
        assert who.state is not None
        app.register_state(who, who.state)
        app.add_contact(who, who.state, Contact.from_dict(contact_data("cert")))
    sent = app.send_notification(
        fra,
        "DEU",
        "malware",
        Text.english_only("An incident"),
        [{"kind": "ipv4", "value": "203.0.113.77"}],
        good_faith_attested=True,
    )
    app.acknowledge_notification(deu, sent.id)


def test_the_runner_and_the_views_as_of_read_any_record_reader(
    backend: Backend, app: PocDirectory
) -> None:
    """A runner given a reader projects what the reader shows, from the position the view is
    at, and nothing beyond it; the views come out as the application's own runner makes
    them. (The reader's members are the protocol's and no more.)"""
    _exchange(app)
    head = app.recorder.max_notification_id() or 0
    middle = head // 2
    decoder = _Decoder(app.facts_mapper)
    reader: RecordReader = _Reader(_RecordUpTo(app.recorder, middle), decoder)
    view = build_views(app, backend.settings)
    runner = ViewRunner(reader, view)

    assert runner.catch_up() == middle
    assert view.max_tracking_id(VIEWS_NAME) == middle
    assert runner.catch_up() == 0  # nothing after the reader's last record
    assert decoder.decoded == middle  # each record decoded once
    as_of = ViewQueries(directory_as_of(reader)).entries()
    assert as_of == ViewQueries(directory_as_of(app, position=middle)).entries()

    reader.recorder.stop = head  # type: ignore[attr-defined]  # the record grows
    decoder.decoded = 0
    assert runner.catch_up() == head - middle  # from where the view was
    assert decoder.decoded == head - middle
    from_reader = view.dump()
    ViewRunner(app, view).rebuild()
    assert view.dump() == from_reader
