"""Communication checks that test the channel (issue 17, part 2): each contact's challenge
code, the State's answer with it, per-contact results from the time each challenge was sent,
the close rules, and contacts marked unverified after two failed checks in a row.

The delivery worker sends the challenges in production; here the test records what it would
(``challenge_outcome`` then one save), on the test's clock."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.application import PocDirectory
from domain.check import (
    CommunicationCheck,
    challenge_code,
    challenge_times,
    code_digest,
    normalise_code,
)
from domain.clock import SimulatedClock
from domain.errors import ConcurrentChange, InvalidTransition, ValidationError
from domain.hours import covers
from domain.statement import SignedStatement
from domain.verification import ContactVerification
from infra.verify import verify_record
from infra.wiring import build_application, build_views
from projections.queries import ViewQueries
from projections.review_report import build_report
from projections.runner import ViewRunner
from state_client.client import ServerError
from tests.support.builders import SECRETARIAT, contact_data, register, state
from tests.support.db import Backend
from tests.support.http import Api
from tests.support.state_officials import official
from tests.test_old_record import FIXTURE, capture

SECRET = b"test challenge secret, 32 bytes!"
CODE_FORM = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")
OLD_RECORD = FIXTURE


def code_for(check: CommunicationCheck, key: str) -> str:
    code, contact_id = key.split("/")
    return challenge_code(SECRET, check.id, code, contact_id)


def send(
    app: PocDirectory, check: CommunicationCheck, key: str, at: datetime, outcome: str | None = None
) -> None:
    """What the delivery worker records once the mail server answered for ``key``."""
    code, contact_id = key.split("/")
    digest = None if outcome else code_digest(check.id, code_for(check, key))
    changed = app.challenge_outcome(check.id, code, contact_id, at, digest=digest, outcome=outcome)
    app._save(changed)


def launch(app: PocDirectory, clock: SimulatedClock, hours: int = 48) -> CommunicationCheck:
    return app.launch_check(SECRETARIAT, "technical", clock.now() + timedelta(hours=hours))


def by_key(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['state']}/{r['contact_id']}": r for r in results["contacts"]}


# -- codes ------------------------------------------------------------------------------------


def test_a_code_is_stable_distinct_per_contact_and_check_and_typed_loosely() -> None:
    check_id, other_check = UUID(int=7), UUID(int=8)
    code = challenge_code(SECRET, check_id, "FRA", "cert")
    assert CODE_FORM.match(code), code
    assert code == challenge_code(SECRET, check_id, "FRA", "cert")
    others = {
        challenge_code(SECRET, check_id, "FRA", "soc"),
        challenge_code(SECRET, check_id, "DEU", "cert"),
        challenge_code(SECRET, other_check, "FRA", "cert"),
        challenge_code(b"another secret", check_id, "FRA", "cert"),
    }
    assert code not in others and len(others) == 4
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert normalise_code(typed) == code
    assert code_digest(check_id, typed) == code_digest(check_id, code)
    assert code_digest(check_id, code).startswith("sha256:")
    assert code_digest(check_id, code) != code_digest(other_check, code)
    assert code not in code_digest(check_id, code)
    for bad in ("", "K7QD-3MXA", code + "X", "UUUU-UUUU-UUUU-UUUU"):
        with pytest.raises(ValidationError, match="16 letters and digits"):
            normalise_code(bad)


def test_challenge_times_are_spread_within_each_contacts_hours() -> None:
    launched = datetime(2025, 3, 7, 21, 30, tzinfo=datetime.now().astimezone().tzinfo)
    zones = ["Asia/Tokyo", "America/New_York", "Europe/Paris", "Australia/Sydney", "UTC"]
    hours = ["Mon-Fri 08:00-18:00", "22:00-06:00", "24/7", "Sun-Thu 09:00-17:00", "Sat 10:00-12:00"]
    contacts = {
        f"S{i:02d}/c-{i}": (hours[i % len(hours)], zones[i % len(zones)]) for i in range(25)
    }
    times = challenge_times(UUID(int=3), launched, 4, contacts)
    assert times == challenge_times(UUID(int=3), launched, 4, contacts)  # deterministic
    assert set(times) == set(contacts)
    for key, at in times.items():
        h, zone = contacts[key]
        assert covers(h, zone, at), (key, at)
        assert launched <= at <= launched + timedelta(hours=4) + timedelta(weeks=1)
    always = [at for key, at in times.items() if contacts[key][0] == "24/7"]
    assert all(at < launched + timedelta(hours=4) for at in always)
    assert len(set(always)) == len(always) > 1  # spread, not all at the launch
    assert challenge_times(UUID(int=4), launched, 4, contacts) != times


# -- answering --------------------------------------------------------------------------------


def test_a_wrong_or_reused_code_is_refused_over_http_and_records_nothing(
    api: Api, clock: SimulatedClock
) -> None:
    app = api.application
    register(app, "FRA", "technical", "technical")
    register(app, "DEU", "technical")
    check = launch(app, clock)
    assert check.contacts == ("DEU/tec-0", "FRA/tec-0", "FRA/tec-1")
    for key in check.contacts:
        send(app, check, key, clock.now())
    clock.advance(timedelta(hours=1))
    path = f"/checks/{check.id}/answers"
    fra = api.as_state("FRA")
    position = app.recorder.max_notification_id()
    wrong = [
        "not a code",
        challenge_code(b"guessed secret", check.id, "FRA", "tec-0"),
        code_for(check, "DEU/tec-0"),  # another State's contact's code
    ]
    for code in wrong:
        r = api.call("POST", path, fra, json={"code": code})
        assert r.status_code == 422, r.text
        assert "copy it from the message" in r.text
    r = api.call("POST", f"/checks/{check.id}/answer", fra, json={"contact_id": "tec-0"})
    assert r.status_code == 422 and "answer with the code" in r.text
    assert app.recorder.max_notification_id() == position  # nothing recorded
    code = code_for(check, "FRA/tec-1")
    r = api.call("POST", path, fra, json={"code": code.lower()})
    assert r.status_code == 201, r.text
    assert r.json()["contact_id"] == "tec-1" and r.json()["result"] == "confirmed in time"
    position = app.recorder.max_notification_id()
    r = api.call("POST", path, fra, json={"code": code.replace("-", " ")})
    assert r.status_code == 409 and "already been used" in r.text
    assert app.recorder.max_notification_id() == position
    r = api.call("GET", f"/checks/{check.id}", api.auth("secretariat"))
    assert r.status_code == 200, r.text
    rows = by_key(r.json())
    assert rows["FRA/tec-1"]["result"] == "confirmed in time"
    assert rows["FRA/tec-0"]["result"] == rows["DEU/tec-0"]["result"] == "awaiting"
    assert {s["state"]: s["result"] for s in r.json()["states"]} == {
        "DEU": "awaiting",
        "FRA": "answered in time",
    }
    assert code not in r.text  # the record and its reads hold digests only


def test_each_contact_is_judged_from_when_its_challenge_was_sent(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    for code in ("FRA", "DEU", "ITA", "ESP"):
        register(app, code, "technical")
    register(app, "NLD", "technical", "technical")
    start = clock.now()
    check = launch(app, clock, hours=48)
    send(app, check, "FRA/tec-0", start + timedelta(hours=1))
    send(app, check, "DEU/tec-0", start + timedelta(hours=3))
    send(app, check, "ITA/tec-0", start + timedelta(hours=1), outcome="refused")
    send(app, check, "ESP/tec-0", start + timedelta(hours=2))
    send(app, check, "NLD/tec-0", start + timedelta(hours=1), "not deliverable automatically")
    clock.advance(timedelta(hours=49, minutes=30))  # after FRA's own deadline, before DEU's
    app.answer_check_code(state("FRA"), check.id, code_for(check, "FRA/tec-0"))
    app.answer_check_code(state("DEU"), check.id, code_for(check, "DEU/tec-0"))
    rows = by_key(app.check_results(SECRETARIAT, check.id))
    assert rows["FRA/tec-0"]["result"] == "confirmed late"
    assert rows["DEU/tec-0"]["result"] == "confirmed in time"
    assert rows["DEU/tec-0"]["hours_to_answer"] == 46.5
    assert rows["ESP/tec-0"]["result"] == "awaiting"  # its own deadline is +50 h
    assert rows["ITA/tec-0"]["result"] == "unreachable"
    assert rows["NLD/tec-0"]["result"] == "not deliverable automatically"
    assert rows["NLD/tec-1"]["result"] == "not sent"
    clock.advance(timedelta(hours=2))
    results = app.check_results(SECRETARIAT, check.id)
    assert by_key(results)["ESP/tec-0"]["result"] == "no answer"
    assert results["contact_counts"] == {
        "confirmed in time": 1,
        "confirmed late": 1,
        "unreachable": 1,
        "no answer": 1,
        "awaiting": 0,
        "not sent": 1,
        "not deliverable automatically": 1,
    }
    assert {r["state"]: r["result"] for r in results["states"]} == {
        "DEU": "answered in time",
        "ESP": "no answer",
        "FRA": "answered late",
        "ITA": "no answer",
        "NLD": "awaiting",  # one challenge is not sent yet
    }


def test_a_challenged_check_closes_once_every_contact_had_its_time_or_at_the_latest_bound(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    register(app, "FRA", "technical")
    register(app, "DEU", "technical")
    start = clock.now()
    check = launch(app, clock, hours=48)  # window 4 h: bound = +48 + 4 + 48 h
    send(app, check, "FRA/tec-0", start + timedelta(hours=3))
    clock.advance(timedelta(hours=52))
    with pytest.raises(InvalidTransition, match="in any case") as refused:
        app.close_check(SECRETARIAT, check.id)  # DEU's challenge was never sent
    assert (start + timedelta(hours=100)).isoformat() in str(refused.value)
    send(app, check, "DEU/tec-0", start + timedelta(hours=4))
    with pytest.raises(InvalidTransition, match="full time"):
        app.close_check(SECRETARIAT, check.id)  # DEU's own deadline is +52 h
    with pytest.raises(InvalidTransition, match="already has an outcome"):
        send(app, check, "DEU/tec-0", start + timedelta(hours=4), outcome="given up")
    clock.advance(timedelta(minutes=1))
    closed = app.close_check(SECRETARIAT, check.id)
    assert app.get_check(check.id).closed_results == (
        ("DEU", "tec-0", "no answer"),
        ("FRA", "tec-0", "no answer"),
    )
    with pytest.raises(InvalidTransition, match="closed"):
        app.answer_check_code(state("FRA"), closed.id, code_for(check, "FRA/tec-0"))

    other = launch(app, clock, hours=24)
    clock.advance(timedelta(hours=24, minutes=1))
    with pytest.raises(InvalidTransition):
        app.close_check(SECRETARIAT, other.id)  # nothing sent, before the bound
    clock.advance(timedelta(hours=28))
    app.close_check(SECRETARIAT, other.id)  # after deadline + window + duration
    rows = by_key(app.check_results(SECRETARIAT, other.id))
    assert {r["result"] for r in rows.values()} == {"not sent"}


def test_the_state_client_answers_with_a_code_as_a_signed_statement(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    fra = official(tmp_path, "FRA")
    fra.bind(api.application)  # FRA now signs every write
    client = fra.client(api.token("state", "FRA"), http=api.client, clock=clock.now)
    client.register_entry()
    client.add_contact(contact_data("cert"))
    check = launch(api.application, clock)
    send(api.application, check, "FRA/cert", clock.now())
    with pytest.raises(ServerError) as wrong:
        client.answer_check_code(check.id, challenge_code(b"x", check.id, "FRA", "cert"))
    assert wrong.value.status == 422
    answer = client.answer_check_code(check.id, code_for(check, "FRA/cert"))
    assert answer.status == 201, answer.body
    assert answer.body["contact_id"] == "cert"
    signed = SignedStatement.from_dict(answer.statement or {}).statement
    assert (signed.command, signed.aggregate) == ("check.answer_code", check.id)
    with pytest.raises(ServerError) as reused:
        client.answer_check_code(check.id, code_for(check, "FRA/cert"))
    assert reused.value.status == 409
    clock.advance(timedelta(days=3))
    api.application.close_check(SECRETARIAT, check.id)
    # FRA signed its answer; the server its ChallengeSent; the Secretariat launch and close.
    verify_record(api.application)  # raises at the first event signed by the wrong party


# -- unverified contacts ----------------------------------------------------------------------


def run_check(
    app: PocDirectory, clock: SimulatedClock, outcomes: dict[str, str | None]
) -> CommunicationCheck:
    """A 24 h check: each contact's challenge is sent at once and confirmed (None), refused
    ("refused") or left unanswered ("silent"); then closed once every deadline passed."""
    check = launch(app, clock, hours=24)
    for key in check.contacts:
        outcome = outcomes.get(key)
        send(app, check, key, clock.now(), outcome="refused" if outcome == "refused" else None)
        if outcome is None:
            code, _ = key.split("/")
            app.answer_check_code(state(code), check.id, code_for(check, key))
    clock.advance(timedelta(hours=25))
    return app.close_check(SECRETARIAT, check.id)


def contact_in_view(app: PocDirectory, backend: Backend, code: str) -> dict[str, Any]:
    view = build_views(app, backend.settings)
    ViewRunner(app, view).catch_up()
    return dict(ViewQueries(view).entry(code)["contacts"]["tec-0"])


def test_two_failed_checks_in_a_row_mark_a_contact_unverified_until_it_passes_again(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    register(app, "FRA", "technical")
    register(app, "ITA", "technical")
    run_check(app, clock, {"ITA/tec-0": "refused"})
    verification = app.get_verification("ITA")
    assert verification is not None and verification.unverified == set()
    assert contact_in_view(app, backend, "ITA")["verified"] is True
    run_check(app, clock, {"ITA/tec-0": "silent"})
    marked = app.get_verification("ITA")
    assert marked is not None and marked.unverified == {"tec-0"}
    last = list(app.repository.event_store.get(marked.id))[-1]
    assert (type(last).__name__, last.state, last.contact_id) == (
        "MarkedUnverified",
        "ITA",
        "tec-0",
    )
    assert contact_in_view(app, backend, "ITA")["verified"] is False
    assert contact_in_view(app, backend, "FRA")["verified"] is True
    assert app.get_verification("FRA") is None  # never failed: nothing recorded
    run_check(app, clock, {"ITA/tec-0": "refused"})  # still unverified, no second mark
    assert app.get_verification("ITA").unverified == {"tec-0"}  # type: ignore[union-attr]
    run_check(app, clock, {})  # confirmed (late or in time alike)
    assert app.get_verification("ITA").unverified == set()  # type: ignore[union-attr]
    assert contact_in_view(app, backend, "ITA")["verified"] is True
    run_check(app, clock, {"ITA/tec-0": "silent"})  # one failure after passing: verified
    assert contact_in_view(app, backend, "ITA")["verified"] is True
    kinds = [
        type(e).__name__
        for e in app.repository.event_store.get(app.get_verification("ITA").id)  # type: ignore[union-attr]
    ]
    verify_record(app)  # each close and its marks: one statement of the Secretariat's
    assert kinds == [
        "Started",
        "Counted",
        "Counted",
        "MarkedUnverified",
        "Counted",
        "Counted",
        "Reverified",
        "Counted",
    ]


def test_results_that_say_nothing_of_a_contact_neither_break_nor_extend_its_run() -> None:
    at = datetime(2025, 3, 3, tzinfo=UTC)
    v = ContactVerification.start("ITA", SECRETARIAT.ref, at)
    v.count(UUID(int=1), [("a", "no answer"), ("b", "unreachable")], SECRETARIAT.ref, at)
    v.count(UUID(int=2), [("a", "not sent"), ("b", "confirmed late")], SECRETARIAT.ref, at)
    assert v.unverified == set() and v.failures == {"a": 1}
    v.count(UUID(int=3), [("a", "not deliverable automatically")], SECRETARIAT.ref, at)
    v.count(UUID(int=4), [("a", "unreachable"), ("b", "awaiting")], SECRETARIAT.ref, at)
    assert v.unverified == {"a"}


def test_the_directory_served_over_http_shows_the_unverified_mark(
    api: Api, clock: SimulatedClock
) -> None:
    app = api.application
    register(app, "FRA", "technical")
    register(app, "ITA", "technical", "diplomatic")
    for _ in range(2):
        run_check(app, clock, {"ITA/tec-0": "silent"})
    r = api.call("GET", "/directory/ITA", api.as_state("FRA"))
    assert r.status_code == 200, r.text
    marks = {c["contact_id"]: c["verified"] for c in r.json()["contacts"]}
    assert marks == {"tec-0": False, "dip-1": True}


def test_a_close_and_its_marks_are_written_together_or_not_at_all(
    app: PocDirectory, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(app, "ITA", "technical")
    run_check(app, clock, {"ITA/tec-0": "refused"})
    stale = app.get_verification("ITA")
    check = launch(app, clock, hours=24)
    send(app, check, "ITA/tec-0", clock.now(), outcome="refused")
    run_check(app, clock, {"ITA/tec-0": "refused"})  # meanwhile, another close counts ITA
    clock.advance(timedelta(hours=1))
    monkeypatch.setattr(app, "get_verification", lambda code: stale)
    with pytest.raises(ConcurrentChange):
        app.close_check(SECRETARIAT, check.id)
    assert app.get_check(check.id).closed_at is None  # the check's close was not written
    monkeypatch.undo()
    app.close_check(SECRETARIAT, check.id)
    assert app.get_check(check.id).closed_at is not None


# -- reports and old records ------------------------------------------------------------------


def test_the_report_gives_results_per_contact_level_and_regional_group(
    app: PocDirectory, clock: SimulatedClock, backend: Backend
) -> None:
    register(app, "FRA", "technical")
    register(app, "GHA", "technical")
    run_check(app, clock, {"GHA/tec-0": "refused"})
    view = build_views(app, backend.settings)
    ViewRunner(app, view).catch_up()
    day = clock.now().date()
    report = build_report(view, day.replace(day=1), day)
    by_level = report["responsiveness"]["tables"]["check_contacts_by_level"]
    by_group = report["responsiveness"]["tables"]["check_contacts_by_group"]
    assert by_level["columns"][:7] == [
        "level",
        "contacts",
        "confirmed_in_time",
        "confirmed_late",
        "unreachable",
        "no_answer",
        "awaiting",
    ]
    assert by_level["rows"] == [["technical", 2, 1, 0, 1, 0, 0, 0, 0, 0.5]]
    rows = {r[0]: r for r in by_group["rows"]}
    assert set(rows) == {"WEOG", "AG"}
    assert rows["WEOG"][1:5] == [1, 1, 0, 0] and rows["AG"][1:5] == [1, 0, 0, 1]
    checks = report["responsiveness"]["tables"]["checks"]["rows"]
    assert checks[0][5:9] == [1, 0, 1, 0]  # per State: FRA in time, GHA no answer


def test_an_old_check_replays_unchanged_and_keeps_its_per_state_answers(tmp_path: Path) -> None:
    shutil.copy(OLD_RECORD / "record.sqlite3", tmp_path / "record.sqlite3")
    app = build_application(capture.fixture_settings(tmp_path / "record.sqlite3"))
    try:
        ids = [
            n.originator_id
            for n in app.recorder.select_notifications(0, 100_000)
            if n.topic.endswith(":CommunicationCheck.Launched")
        ]
        assert ids
        for check_id in ids:
            check = app.get_check(check_id)
            assert check.contacts == () and check.window_hours == 0 and not check.challenged
            results = check.results(check.closed_at or check.deadline)
            assert "contacts" not in results
            assert {r["result"] for r in results["states"]} <= {
                "answered in time",
                "answered late",
                "no answer",
                "awaiting",
            }
            assert check.closed_results == ()
    finally:
        app.close()
