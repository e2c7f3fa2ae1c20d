"""The directory view: route lookup, pending annual updates, exactly-once and rebuildable."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import NotFound, ValidationError
from domain.values import Contact, Text
from infra.wiring import build_view_runner, build_views
from projections.asof import directory_as_of
from projections.history import HistoryItem
from projections.queries import ViewQueries, history_csv
from projections.runner import VIEWS_NAME, ViewRunner
from projections.store import SHADOW_SUFFIX, SHADOW_TABLES, split_changes
from tests.conftest import START, Backend, contact_data, state


def queries(app: PocDirectory, backend: Backend) -> ViewQueries:
    view = build_views(app, backend.settings)
    ViewRunner(app, view).catch_up()
    return ViewQueries(view)


def register_fra(app: PocDirectory) -> None:
    fra = state("FRA")
    app.register_state(fra, "FRA")
    app.add_contact(
        fra, "FRA", Contact.from_dict(contact_data("coord", level="diplomatic", incident_types=[]))
    )
    app.add_contact(
        fra, "FRA", Contact.from_dict(contact_data("cert-a", hours="Mon-Fri 08:00-18:00"))
    )
    app.add_contact(
        fra, "FRA", Contact.from_dict(contact_data("cert-b", time_zone="Pacific/Tahiti"))
    )
    app.set_coordination_contact(fra, "FRA", "coord")
    app.set_preferred_channel(fra, "FRA", "cert-b", "phone")


def test_route_lookup_puts_the_preferred_channel_first_with_working_details(
    backend: Backend, app: PocDirectory
) -> None:
    register_fra(app)
    route = queries(app, backend).route("FRA", "malware", "technical")
    assert not route.fell_back_to_coordination_contact
    assert [c["contact_id"] for c in route.contacts] == ["cert-b", "cert-a"]
    first = route.contacts[0]
    assert first["channels"][0]["kind"] == "phone" and first["preferred_channel"] == "phone"
    assert first["time_zone"] == "Pacific/Tahiti"
    assert route.contacts[1]["hours"] == "Mon-Fri 08:00-18:00"
    assert first["languages"] == ["fr", "en"]


def test_route_lookup_falls_back_to_the_coordination_contact_and_says_so(
    backend: Backend, app: PocDirectory
) -> None:
    register_fra(app)
    q = queries(app, backend)
    route = q.route("FRA", "data-breach", "technical")
    assert route.fell_back_to_coordination_contact
    assert [c["contact_id"] for c in route.contacts] == ["coord"]
    with pytest.raises(ValidationError, match="incident type"):
        q.route("FRA", "gossip")
    with pytest.raises(NotFound):
        q.route("DEU", "malware")


def test_a_withdrawn_entry_leaves_the_directory_but_not_the_record(
    backend: Backend, app: PocDirectory
) -> None:
    register_fra(app)
    app.withdraw_entry(state("FRA"), "FRA")
    q = queries(app, backend)
    assert q.entries() == []
    with pytest.raises(NotFound):
        q.entry("FRA")
    assert app.get_entry("FRA").withdrawn  # the history stays in the record


def test_pending_updates_are_current_due_or_overdue_by_the_clock(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register_fra(app)  # everything on START
    app.register_state(state("DEU"), "DEU")
    app.add_contact(state("DEU"), "DEU", Contact.from_dict(contact_data()))
    clock.advance(timedelta(days=200))
    app.confirm_entry(state("DEU"), "DEU")
    q = queries(app, backend)
    start = START.date()

    def status(day: date) -> dict[str, str]:
        return {s["state"]: s["status"] for s in q.pending(day)["states"]}

    assert status(start + timedelta(days=300)) == {"FRA": "current", "DEU": "current"}
    assert status(start + timedelta(days=350)) == {"FRA": "due", "DEU": "current"}
    assert status(start + timedelta(days=366)) == {"FRA": "overdue", "DEU": "current"}
    report = q.pending(start)
    fra = next(s for s in report["states"] if s["state"] == "FRA")
    assert fra["next_due_on"] == date(start.year + 1, start.month, start.day).isoformat()
    assert len(report["never_registered"]) == 191


def test_changes_notified_more_than_30_days_late_are_listed_with_the_delay(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register_fra(app)
    clock.advance(timedelta(days=60))
    changed = Contact.from_dict(contact_data("cert-a", hours="24/7"))
    app.update_contact(
        state("FRA"), "FRA", changed, effective_on=clock.now().date() - timedelta(days=45)
    )
    app.update_contact(
        state("FRA"),
        "FRA",
        Contact.from_dict(contact_data("cert-a", hours="Mon-Fri 09:00-17:00")),
        effective_on=clock.now().date() - timedelta(days=30),
    )
    notices = queries(app, backend).pending(clock.now().date())["late_notices"]
    assert [(n["state"], n["change"], n["delay_days"]) for n in notices] == [
        ("FRA", "ContactUpdated", 45)
    ]


def _simulate(backend: Backend) -> None:
    env = {**os.environ, "POCDIR_DATABASE_URL": backend.url}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from api.cli.main import main; main()",
            "simulate",
            "--states",
            "30",
            "--days",
            "120",
            "--seed",
            "5",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


#: A runner in its own process, slowed down so that it can be killed mid-stream: following
#: the record (``catch_up``: writer thread) or rebuilding (``rebuild``: writer process).
KILLABLE_RUNNER = """
import sys, time
from infra.settings import Settings
from infra.wiring import build_application, build_views, build_view_runner
settings = Settings.from_env()
app = build_application(settings)
runner = build_view_runner(app, build_views(app, settings), settings)
slowly = lambda position: time.sleep(0.05)
if sys.argv[1] == "rebuild":
    runner.rebuild(batch=20, on_progress=slowly)
else:
    runner.catch_up(batch=20, on_progress=slowly)
"""


def rebuilt_view(app: PocDirectory, backend: Backend) -> list[tuple[str, str, str]]:
    """Rebuild the view as ``pocdir replay`` does (batches written by a writer process;
    small ones, so that there are many) and return its dump."""
    view = build_views(app, backend.settings)
    assert build_view_runner(app, view, backend.settings).rebuild(batch=50) == (
        app.recorder.max_notification_id()
    )
    return view.dump()


@pytest.mark.parametrize("mode", ["catch_up", "rebuild"])
def test_a_runner_killed_mid_stream_resumes_with_nothing_lost_or_counted_twice(
    backend: Backend, app: PocDirectory, mode: str
) -> None:
    """A rebuild writes a copy of the views and swaps it in at the end: killed mid-stream,
    it leaves the views as they were (here: empty) and its copy is dropped by the next."""
    _simulate(backend)
    total = app.recorder.max_notification_id()
    view = build_views(app, backend.settings)
    view.reset(VIEWS_NAME)
    written = VIEWS_NAME if mode == "catch_up" else VIEWS_NAME + SHADOW_SUFFIX
    env = {**os.environ, "POCDIR_DATABASE_URL": backend.url}
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RUNNER, mode], env=env)
    deadline = time.monotonic() + 60
    while (view.max_tracking_id(written) or 0) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = view.max_tracking_id(written) or 0
    assert 0 < killed_at < total  # it really was killed mid-stream
    time.sleep(0.5)  # a rebuild's writer process dies with it: nothing more is written
    assert view.max_tracking_id(written) == killed_at
    resumes_from = killed_at if mode == "catch_up" else 0  # a rebuild left the views alone

    runner = ViewRunner(app, view)
    assert runner.catch_up() == total - resumes_from  # resumed where the kill left it
    incremental = view.dump()
    rebuilt = rebuilt_view(app, backend)
    assert incremental == rebuilt
    assert rebuilt_view(app, backend) == rebuilt  # two rebuilds give identical output


@pytest.mark.parametrize("mode", ["catch_up", "rebuild"])
def test_a_batch_overtaken_by_another_runner_is_not_written_and_stops_the_runner(
    backend: Backend, app: PocDirectory, mode: str
) -> None:
    """Batches are written by the runner's writer thread (``catch_up``) or writer process
    (``rebuild``, into its copy of the views); a write that fails (here: another runner has
    moved the view, or the copy, past it) must stop the runner with the error, write
    nothing of that batch, and leave the view as the other runner made it (a rebuild's
    views: as they were)."""
    _simulate(backend)
    total = app.recorder.max_notification_id()
    view = build_views(app, backend.settings)
    runner = build_view_runner(app, view, backend.settings)
    if mode == "rebuild":
        copy = build_views(app, backend.settings, SHADOW_TABLES)
        other = ViewRunner(app, copy, VIEWS_NAME + SHADOW_SUFFIX)
    else:
        other = ViewRunner(app, build_views(app, backend.settings))
    before = view.dump()
    overtaken: list[int] = []

    def overtake(position: int) -> None:
        if not overtaken:
            overtaken.append(position)
            other.catch_up()  # the other runner takes the view to the end meanwhile

    with pytest.raises(IntegrityError):
        if mode == "rebuild":
            runner.rebuild(batch=20, on_progress=overtake)
        else:
            runner.catch_up(batch=20, on_progress=overtake)
    assert len(overtaken) == 1 and overtaken[0] < total  # it failed mid-stream
    assert other.view.max_tracking_id(other.name) == total
    if mode == "rebuild":
        assert view.dump() == before and runner.position == 0
    else:
        assert view.dump() == rebuilt_view(app, backend)


def test_a_view_kept_in_the_earlier_layout_is_rebuilt_with_its_history(
    backend: Backend, app: PocDirectory
) -> None:
    """Before history items had a table of their own they were documents of kind
    ``history``. Opening such a view empties it, so that the runner builds it again from
    the record, history included, instead of serving an empty history."""
    register_fra(app)
    q = queries(app, backend)
    expected = q.history("FRA")
    assert expected
    backend.execute("DELETE FROM view_history")
    backend.execute(
        "INSERT INTO view_documents VALUES (%s, %s, %s)",
        ("history", "FRA:00000000000000000001", '{"event":"entry Registered"}'),
    )
    assert queries(app, backend).history("FRA") == expected


def test_a_server_following_from_its_last_position_survives_another_process_moving_on(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    """The server's runner remembers where it left the view; when another runner (the CLI,
    or a server that held the lease meanwhile) moved the view on, the server's stale start
    fails on the tracking position, writes nothing, and it goes on from the view's own
    position: nothing counted twice. (The runner's thread is stopped and its steps driven
    here one by one.)"""
    from infra.wiring import build_services

    services = build_services(backend.settings, clock=clock)
    services.follower.stop()
    try:
        register_fra(services.application)
        services.follower.step()
        cli = ViewRunner(app, build_views(app, backend.settings))
        for code in ("DEU", "ITA"):
            app.register_state(state(code), code)
        cli.catch_up()
        assert services.follower.step() == 0
        app.register_state(state("ESP"), "ESP")
        assert services.follower.step() == 1
        followed = services.view.dump()
        ViewRunner(app, services.view).rebuild()
        assert services.view.dump() == followed
    finally:
        services.close()


def exchange(app: PocDirectory, clock: SimulatedClock) -> None:
    """FRA notifies DEU; DEU acknowledges after 2 h and responds asking for assistance after
    5 h; FRA asks to share with ITA, DEU denies."""
    for code in ("DEU", "ITA"):
        app.register_state(state(code), code)
        app.add_contact(state(code), code, Contact.from_dict(contact_data()))
    clock.advance(timedelta(days=10))
    n = app.send_notification(
        state("FRA"),
        "DEU",
        "ransomware",
        Text.english_only("Confidential finding XYZZY"),
        [{"kind": "ipv4", "value": "203.0.113.77"}, {"kind": "domain", "value": "evil.example"}],
        good_faith_attested=True,
    )
    clock.advance(timedelta(hours=2))
    app.acknowledge_notification(state("DEU"), n.id)
    clock.advance(timedelta(hours=3))
    app.respond_to_notification(state("DEU"), n.id, Text.english_only("SECRET REPLY"), True)
    consent = app.request_consent(state("FRA"), n.id, "ITA")
    app.deny_consent(state("DEU"), consent.id)


def test_history_holds_the_facts_of_each_interaction_and_no_content(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register_fra(app)
    exchange(app, clock)
    q = queries(app, backend)
    deu = q.history("DEU")
    events = [i["event"] for i in deu]
    assert events[:2] == ["entry Registered", "entry ContactAdded"]
    assert events[2:] == [
        "notification received",
        "acknowledged",
        "responded",
        "consent requested",
        "consent denied",
    ]
    ack, responded = deu[3], deu[4]
    assert (ack["counterpart"], ack["hours_to_acknowledge"]) == ("FRA", 2.0)
    assert responded["hours_to_respond"] == 5.0 and responded["assistance_requested"] is True
    assert deu[6]["by"] == "DEU" and deu[6]["third_state"] == "ITA"
    fra = q.history("FRA")
    assert [i["event"] for i in fra if "notification" in i.get("event", "")] == [
        "notification sent"
    ]
    exported = json.dumps(fra + deu) + history_csv(fra + deu)
    for secret in ("XYZZY", "SECRET REPLY", "203.0.113.77", "evil.example", "@example.org"):
        assert secret not in exported
    assert q.history("ITA") == q.history("ITA", START.date(), START.date())  # only its entry


def test_history_filters_by_period_and_exports_csv(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register_fra(app)
    exchange(app, clock)
    q = queries(app, backend)
    later = START.date() + timedelta(days=10)
    period = q.history("DEU", later, later)
    assert [i["event"] for i in period][0] == "notification received"
    rows = list(csv.DictReader(io.StringIO(history_csv(period))))
    assert [r["event"] for r in rows] == [i["event"] for i in period]
    assert rows[1]["hours_to_acknowledge"] == "2.0"
    with pytest.raises(ValidationError, match="after its end"):
        q.history("DEU", later, START.date())


def test_the_directory_as_of_a_past_date_or_position_is_computed_from_the_record(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register_fra(app)  # positions 1-6, on START
    clock.advance(timedelta(days=3))
    app.register_state(state("DEU"), "DEU")  # position 7
    app.remove_contact(state("FRA"), "FRA", "cert-a")  # position 8
    before_deu = ViewQueries(directory_as_of(app, day=START.date()))
    assert [e["code"] for e in before_deu.entries()] == ["FRA"]
    assert "cert-a" in before_deu.entry("FRA")["contacts"]
    assert len(before_deu.pending(START.date())["never_registered"]) == 192
    at_7 = ViewQueries(directory_as_of(app, position=7))
    assert [e["code"] for e in at_7.entries()] == ["DEU", "FRA"]
    assert "cert-a" in at_7.entry("FRA")["contacts"]
    now = ViewQueries(directory_as_of(app))
    assert now.entries() == queries(app, backend).entries()


def test_every_history_field_is_stored_and_read_back_under_its_own_name(
    backend: Backend, app: PocDirectory
) -> None:
    """An item with a distinct value in every field comes back from the view, and out of
    the CSV export, with each value under its own field: a field inserted anywhere in
    ``HistoryItem`` cannot shift the values of the fields after it. A row naming a field
    that ``HistoryItem`` does not have is refused, and nothing of its batch is written."""
    samples: dict[type, Callable[[int, str], Any]] = {
        str: lambda i, name: f"{name}-{i}",
        int: lambda i, name: 1000 + i,
        float: lambda i, name: i + 0.25,
        bool: lambda i, name: True,
    }
    values: dict[str, Any] = {}
    for i, (name, hint) in enumerate(typing.get_type_hints(HistoryItem).items()):
        kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        values[name] = samples[kind](i, name)
    view = build_views(app, backend.settings)
    view.write_batch(Tracking(VIEWS_NAME, 1), split_changes({}, [values]))
    assert view.history(values["state"]) == [values]
    exported = next(csv.DictReader(io.StringIO(history_csv(view.history(values["state"])))))
    assert exported == {name: str(value) for name, value in values.items()}
    # In reverse order too: a row's facts are matched to columns by name, not by place.
    backwards = {**dict(reversed(values.items())), "state": "other", "position": 2}
    view.write_batch(Tracking(VIEWS_NAME, 2), split_changes({}, [backwards]))
    assert view.history("other") == [{**values, "state": "other", "position": 2}]
    misspelt = {"state": "x", "position": 3, "at": values["at"], "event": "e", "countrpart": "y"}
    with pytest.raises(ValueError, match="countrpart"):
        view.write_batch(Tracking(VIEWS_NAME, 3), split_changes({}, [misspelt]))
    assert view.max_tracking_id(VIEWS_NAME) == 2 and view.history("x") == []
