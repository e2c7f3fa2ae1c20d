"""Communication checks, capacity-building needs, and the provisional-operation review report
(R16, R17): on both backends, from a simulated year, and rendered in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from api.review_html import CHARTS, render_html
from domain.application import PocDirectory
from domain.capacity import CAPACITY_CATEGORIES, CapacityNeed, NeedStatus
from domain.check import CommunicationCheck
from domain.clock import SimulatedClock
from domain.errors import (
    InvalidTransition,
    NotFound,
    NotPermitted,
    TranslationRequired,
    ValidationError,
)
from domain.notification import Notification
from domain.state_entry import StateEntry
from domain.values import Text
from infra.wiring import build_application, build_views
from projections.asof import MemoryView
from projections.queries import ViewQueries, history_csv
from projections.review import check_summaries
from projections.review_report import build_report, report_csv, report_json, report_tables
from projections.runner import ViewRunner, project_views
from projections.store import ViewRecorder
from simulation.simulator import DEFAULT_START, Simulator, seeded_ids
from tests.support import builders
from tests.support.browser import CHROMIUM_FLAGS
from tests.support.builders import SECRETARIAT, register, state
from tests.support.db import Backend, pg_schema, sqlite_backend_at


def view_of(app: PocDirectory, backend: Backend) -> ViewRecorder:
    view = build_views(app, backend.settings)
    ViewRunner(app, view).catch_up()
    return view


# -- communication checks ---------------------------------------------------------------------


def test_a_check_judges_each_state_answered_in_time_late_or_no_answer(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    register(app, "FRA", "technical")
    register(app, "DEU", "technical", "diplomatic")
    register(app, "ITA", "technical")
    register(app, "ESP", "diplomatic")  # no technical contact: not part of a technical check
    check = app.launch_check(
        SECRETARIAT, "technical", clock.now() + timedelta(hours=48), challenge=False
    )
    assert check.states == ("DEU", "FRA", "ITA")
    clock.advance(timedelta(hours=2))
    app.answer_check(state("FRA"), check.id, "tec-0")
    awaiting = app.check_results(SECRETARIAT, check.id)
    assert [r["result"] for r in awaiting["states"]] == ["awaiting", "answered in time", "awaiting"]
    clock.advance(timedelta(hours=48))
    app.answer_check(state("DEU"), check.id, "tec-0")
    clock.advance(timedelta(days=3))
    app.close_check(SECRETARIAT, check.id)
    results = app.check_results(SECRETARIAT, check.id)
    by_state = {r["state"]: r for r in results["states"]}
    assert by_state["FRA"]["result"] == "answered in time"
    assert by_state["FRA"]["hours_to_answer"] == 2.0
    assert by_state["DEU"]["result"] == "answered late"
    assert by_state["DEU"]["hours_to_answer"] == 50.0
    assert by_state["ITA"]["result"] == "no answer"
    assert results["counts"] == {
        "answered in time": 1,
        "answered late": 1,
        "no answer": 1,
        "awaiting": 0,
    }
    stored = app.get_check(check.id)  # read back from the record
    assert stored.closed_at is not None and set(stored.answers) == {"FRA", "DEU"}


def test_only_the_secretariat_runs_checks_and_states_answer_once_at_the_checks_level(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    register(app, "FRA", "technical", "diplomatic")
    register(app, "DEU", "technical")
    deadline = clock.now() + timedelta(hours=24)
    with pytest.raises(NotPermitted):
        app.launch_check(state("FRA"), "technical", deadline)
    with pytest.raises(ValidationError, match="not registered"):
        app.launch_check(SECRETARIAT, "technical", deadline, ["ITA"])
    with pytest.raises(ValidationError, match="no contact at the diplomatic level"):
        app.launch_check(SECRETARIAT, "diplomatic", deadline, ["DEU"])
    with pytest.raises(ValidationError, match="deadline"):
        app.launch_check(SECRETARIAT, "technical", clock.now())
    check = app.launch_check(SECRETARIAT, "technical", deadline, ["FRA"], challenge=False)
    with pytest.raises(ValidationError, match="no technical contact"):
        app.answer_check(state("FRA"), check.id, "dip-1")
    with pytest.raises(NotPermitted, match="not part"):
        app.answer_check(state("DEU"), check.id, "tec-0")
    with pytest.raises(NotPermitted):
        app.check_results(state("FRA"), check.id)
    with pytest.raises(InvalidTransition, match="after its deadline"):
        app.close_check(SECRETARIAT, check.id)
    app.answer_check(state("FRA"), check.id, "tec-0")
    with pytest.raises(InvalidTransition, match="already answered"):
        app.answer_check(state("FRA"), check.id, "tec-0")
    other = app.launch_check(SECRETARIAT, "technical", deadline, challenge=False)
    clock.advance(timedelta(hours=25))
    app.close_check(SECRETARIAT, other.id)
    with pytest.raises(InvalidTransition, match="closed"):
        app.answer_check(state("DEU"), other.id, "tec-0")
    with pytest.raises(NotFound):
        app.get_check(UUID(int=1))


def test_checks_and_capacity_needs_appear_in_per_state_histories_without_text(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register(app, "FRA", "technical")
    register(app, "DEU", "technical")
    check = app.launch_check(
        SECRETARIAT, "technical", clock.now() + timedelta(hours=12), challenge=False
    )
    clock.advance(timedelta(hours=3))
    app.answer_check(state("DEU"), check.id, "tec-0")
    clock.advance(timedelta(days=1))
    app.close_check(SECRETARIAT, check.id)
    need = app.record_need(state("FRA"), "forensics", Text.english_only("NEED TEXT QWERTY"))
    app.offer_assistance(state("DEU"), need.id, Text.english_only("OFFER TEXT ASDF"))
    app.accept_offer(state("FRA"), need.id, "DEU")
    view = view_of(app, backend)
    queries = ViewQueries(view)
    deu, fra = queries.history("DEU"), queries.history("FRA")
    (for_deu,) = check_summaries(view, "DEU")  # what a State sees of its checks
    assert for_deu["answered_at"] is not None and "answers" not in for_deu
    assert check_summaries(view, "FRA")[0]["answered_at"] is None
    assert check_summaries(view)[0]["answers"] == 1
    deu_review = [i for i in deu if not i["event"].startswith("entry")]
    assert [i["event"] for i in deu_review] == [
        "check launched",
        "check answered",
        "assistance offered",
        "offer accepted",
    ]
    assert deu_review[1]["hours_to_answer"] == 3.0
    assert deu_review[1]["result"] == "answered in time"
    assert [i["event"] for i in fra if not i["event"].startswith("entry")] == [
        "check launched",
        "check closed: no answer",
        "capacity need recorded",
        "assistance offer received",
        "need matched",
    ]
    exported = json.dumps(fra + deu) + history_csv(fra + deu)
    assert "forensics" in history_csv(fra)  # the category is a fact ...
    assert "QWERTY" not in exported and "ASDF" not in exported  # ... the text is not


# -- capacity building (R16) ------------------------------------------------------------------


def test_a_capacity_need_goes_open_matched_fulfilled_with_offers_from_other_states(
    app: PocDirectory,
) -> None:
    for code in ("FRA", "DEU", "ITA"):
        register(app, code, "technical")
    with pytest.raises(TranslationRequired):
        app.record_need(state("FRA"), "training", Text.parse("fr", "Formation", None))
    with pytest.raises(ValidationError, match="capacity-building category"):
        app.record_need(state("FRA"), "money", Text.english_only("x"))
    need = app.record_need(
        state("FRA"), "training", Text.parse("fr", "Formation des équipes", "Team training")
    )
    assert app.get_need(need.id).status is NeedStatus.OPEN
    with pytest.raises(ValidationError, match="own need"):
        app.offer_assistance(state("FRA"), need.id, Text.english_only("x"))
    with pytest.raises(InvalidTransition, match="has not offered"):
        app.accept_offer(state("FRA"), need.id, "DEU")
    app.offer_assistance(state("DEU"), need.id, Text.english_only("Trainers"))
    app.offer_assistance(state("ITA"), need.id, Text.english_only("Course"))
    with pytest.raises(InvalidTransition, match="already offered"):
        app.offer_assistance(state("ITA"), need.id, Text.english_only("Again"))
    with pytest.raises(NotPermitted):
        app.accept_offer(state("DEU"), need.id, "DEU")
    with pytest.raises(InvalidTransition, match="only a matched need"):
        app.fulfil_need(state("FRA"), need.id)
    app.accept_offer(state("FRA"), need.id, "ITA")
    matched = app.get_need(need.id)
    assert (matched.status, matched.matched_with) == (NeedStatus.MATCHED, "ITA")
    with pytest.raises(InvalidTransition, match="no more offers"):
        app.offer_assistance(state("DEU"), need.id, Text.english_only("More"))
    app.fulfil_need(state("FRA"), need.id)
    assert app.get_need(need.id).status is NeedStatus.FULFILLED
    with pytest.raises(InvalidTransition, match="final"):
        app.withdraw_need(state("FRA"), need.id)
    other = app.record_need(state("DEU"), "tooling", Text.english_only("Sensors"))
    app.withdraw_need(state("DEU"), other.id)
    assert app.get_need(other.id).status is NeedStatus.WITHDRAWN


def fra_notifies_deu(app: PocDirectory) -> Notification:
    """FRA, DEU and ITA register; FRA notifies DEU of a botnet."""
    for code in ("FRA", "DEU", "ITA"):
        register(app, code, "technical")
    return builders.fra_notifies_deu(app, "Botnet")


def test_a_need_may_cite_a_response_that_asked_for_assistance_by_a_party_only(
    app: PocDirectory,
) -> None:
    n = fra_notifies_deu(app)
    app.acknowledge_notification(state("DEU"), n.id)
    responded = app.respond_to_notification(
        state("DEU"), n.id, Text.english_only("We need help"), assistance_requested=True
    )
    assert responded.assistance_requested
    need = app.record_need(state("DEU"), "incident-handling", Text.english_only("CSIRT"), n.id)
    assert app.get_need(need.id).notification_id == n.id
    with pytest.raises(NotFound):
        app.record_need(state("ITA"), "forensics", Text.english_only("x"), n.id)


def test_taxonomy_doc_lists_every_capacity_building_category() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "taxonomy.md").read_text("utf-8")
    for code, meaning in CAPACITY_CATEGORIES.items():
        assert f"| `{code}` | {meaning} |" in doc


def test_the_report_counts_consent_decisions_but_not_consented_reads(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    n = fra_notifies_deu(app)
    consent = app.request_consent(state("FRA"), n.id, "ITA")
    app.grant_consent(state("DEU"), consent.id)
    _, readable = app.read_notification(state("ITA"), n.id, [consent.id])
    assert readable
    day = clock.now().date()
    use = build_report(view_of(app, backend), day, day)["use"]["summary"]
    assert (use["consents_requested"], use["consents_granted"]) == (1, 1)
    assert (use["consents_denied"], use["consents_revoked"]) == (0, 0)


# -- the review report over a simulated year --------------------------------------------------

PERIOD = (date(2025, 1, 6), date(2026, 2, 9))


@dataclass
class SimulatedYear:
    backend: Backend
    app: PocDirectory
    view: ViewRecorder

    def report(self, start: date = PERIOD[0], end: date = PERIOD[1]) -> dict[str, Any]:
        return build_report(self.view, start, end)


def _simulate_year(backend: Backend) -> SimulatedYear:
    clock = SimulatedClock(DEFAULT_START)
    app = build_application(backend.settings, clock=clock, new_id=seeded_ids(1))
    Simulator(app, clock, states=40, days=400, seed=1).run()
    return SimulatedYear(backend, app, view_of(app, backend))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def year(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatedYear]:
    """One simulated year (40 States, 400 days) per backend, shared by this module's tests."""
    if request.param == "sqlite":
        simulated = _simulate_year(sqlite_backend_at(tmp_path_factory.mktemp("year")))
        yield simulated
        simulated.app.close()
        return
    base = request.getfixturevalue("postgres_url")
    with pg_schema(base) as (url, schema):
        backend = Backend(
            "postgresql", url, "pocdir_events", "notification_id", pg_dsn=base, pg_schema=schema
        )
        simulated = _simulate_year(backend)
        yield simulated
        simulated.app.close()


@pytest.mark.slow
def test_a_simulated_year_shows_every_figure_and_chart_of_the_report(year: SimulatedYear) -> None:
    report = year.report()
    for chart in CHARTS:
        table = report[chart.section]["tables"][chart.table]
        numbers = [v for row in table["rows"] for v in row[1:] if isinstance(v, int | float)]
        assert any(numbers), f"{chart.section}/{chart.table} is empty"
    expected_zero = {"never_registered_by_end", "awaiting_at_end"}
    for section in ("participation", "freshness", "responsiveness", "use", "capacity"):
        for figure, value in report[section]["summary"].items():
            if figure not in expected_zero:
                assert value, f"{section}: {figure} is {value!r}"
    responsiveness = report["responsiveness"]["summary"]
    assert responsiveness["answered_late"] > 0 and responsiveness["no_answer"] > 0
    assert report["participation"]["summary"]["registered_at_end"] <= 40


@pytest.mark.slow
def test_the_same_period_on_a_replayed_record_gives_byte_identical_json(
    year: SimulatedYear,
) -> None:
    before = report_json(year.report())
    ViewRunner(year.app, year.view).rebuild()
    assert report_json(year.report()) == before
    folded = MemoryView()  # the same projectors folded in memory, without the stored view
    for notification in year.app.recorder.select_notifications(0, 10**7):
        project_views(year.app.mapper.to_domain_event(notification), notification.id, folded)
    assert report_json(build_report(folded, *PERIOD)) == before
    assert report_json(year.report(date(2025, 6, 1), date(2025, 9, 30))) != before
    states = sorted({item["state"] for item in folded.items})
    assert states
    for code in states:  # and the histories as stored are, to the byte, those projected
        for period in ((None, None), ("2025-03-01", "2025-03-31")):
            stored = json.dumps(year.view.history(code, *period))
            assert stored == json.dumps(folded.history(code, *period))


@pytest.mark.slow
def test_a_report_counts_only_what_had_happened_by_the_end_of_its_period(
    year: SimulatedYear,
) -> None:
    spring = year.report(date(2025, 3, 1), date(2025, 5, 31))
    per_month = spring["use"]["tables"]["notifications_per_month"]["rows"]
    assert [row[0] for row in per_month] == ["2025-03", "2025-04", "2025-05"]
    sent = spring["use"]["summary"]["notifications_sent"]
    assert sent == sum(row[-1] for row in per_month)
    year_sent = year.report()["use"]["summary"]["notifications_sent"]
    assert 0 < sent < year_sent
    with pytest.raises(ValidationError, match="after its end"):
        year.report(date(2025, 5, 31), date(2025, 3, 1))


def _secrets(app: PocDirectory) -> set[str]:
    """Every contact detail, indicator value and exchange or need text in the record."""
    found: set[str] = set()
    for notification in app.recorder.select_notifications(0, 10**7):
        event: Any = app.mapper.to_domain_event(notification)
        if isinstance(event, StateEntry.ContactAdded):
            for channel in event.contact.channels:
                found.add(channel.address)
                if channel.fingerprint:
                    found.add(channel.fingerprint)
        elif isinstance(event, Notification.Sent):
            found.update(i.value for i in event.supporting_information.indicators)
            found.update((event.description.text, event.description.in_english))
        elif isinstance(event, Notification.Responded):
            found.update((event.response.text, event.response.in_english))
        elif isinstance(event, CapacityNeed.Recorded | CapacityNeed.AssistanceOffered):
            found.update((event.text.text, event.text.in_english))
        elif isinstance(event, CommunicationCheck.Answered):
            pass  # a contact id names no detail
    return found


@pytest.mark.slow
def test_the_rendered_report_holds_no_contact_detail_ioc_or_exchange_text(
    year: SimulatedYear,
) -> None:
    report = year.report()
    rendered = render_html(report) + report_json(report) + "".join(report_csv(report).values())
    secrets = _secrets(year.app)
    kinds = {"@", "://", "xmpp:", "+"}
    assert len(secrets) > 500 and all(any(k in s for s in secrets) for k in kinds)
    leaked = sorted(s for s in secrets if s in rendered)
    assert leaked == []


@pytest.mark.slow
def test_the_report_gives_one_csv_per_table_with_its_rows(year: SimulatedYear) -> None:
    report = year.report()
    files = report_csv(report)
    tables = report_tables(report)
    assert set(files) == {f"{name}.csv" for name in tables} | {"summary.csv"}
    states = list(csv.reader(io.StringIO(files["participation-states.csv"])))
    assert states[0] == tables["participation-states"]["columns"]
    assert len(states) - 1 == len(tables["participation-states"]["rows"])
    summary = list(csv.DictReader(io.StringIO(files["summary.csv"])))
    assert {"section": "use", "figure": "consents_denied"}.items() <= next(
        r for r in summary if r["figure"] == "consents_denied"
    ).items()


# -- the HTML report in a real browser --------------------------------------------------------

CHART_CHECK = """
return Array.from(document.querySelectorAll('figure.chart')).map(function (f) {
  var svg = f.querySelector('svg');
  var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  var marks = Array.from(f.querySelectorAll('.mark')).filter(function (m) {
    var b = m.getBBox(); return b.width > 0 || b.height > 0;
  });
  return {name: f.dataset.chart, width: box.width, height: box.height, marks: marks.length};
});
"""


@pytest.mark.slow
def test_the_html_report_renders_every_chart_in_headless_chromium(
    year: SimulatedYear, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed: `make test` installs them")
    page = tmp_path / "report.html"
    page.write_text(render_html(year.report()), encoding="utf-8")
    options = Options()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.as_uri())
        charts = driver.execute_script(CHART_CHECK)
        requests = driver.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) {return e.name;})"
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
        console = driver.get_log("browser")
    finally:
        driver.quit()
    assert [c["name"] for c in charts] == [
        f"{c.section}-{c.table}".replace("_", "-") for c in CHARTS
    ]
    for chart in charts:
        assert chart["width"] > 0 and chart["height"] > 0, chart
        assert chart["marks"] > 0, chart
    assert requests == []
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
