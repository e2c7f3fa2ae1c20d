"""``pocdir check`` and ``pocdir review`` as a Secretariat official or reviewer runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.application import PocDirectory
from domain.check import challenge_code, code_digest
from domain.clock import SimulatedClock
from domain.values import Contact
from infra.wiring import build_application
from tests.support.builders import SECRETARIAT, contact_data, register, state
from tests.support.cli import run
from tests.support.db import Backend

#: Slow (each test runs `pocdir` in processes of its own): `make check` leaves it out.
pytestmark = pytest.mark.slow


def test_the_secretariat_launches_a_check_and_reads_its_results_over_the_cli(
    backend: Backend, app: PocDirectory, clock: SimulatedClock
) -> None:
    register(app, "FRA", "technical")
    register(app, "DEU", "technical", "diplomatic")
    launched = run(backend.url, "check", "launch", "--level", "technical", "--format", "json")
    assert launched.returncode == 0, launched.stderr
    check_id = json.loads(launched.stdout)["id"]
    clock.set(datetime.now(UTC))  # the CLI stamps its events with the system clock
    # What the delivery worker records when FRA's challenge is accepted; FRA quotes its code.
    code = challenge_code(b"test secret", UUID(check_id), "FRA", "tec-0")
    app._save(
        app.challenge_outcome(
            UUID(check_id),
            "FRA",
            "tec-0",
            clock.now(),
            digest=code_digest(UUID(check_id), code),
            outcome=None,
        )
    )
    app.answer_check_code(state("FRA"), UUID(check_id), code)

    results = run(backend.url, "check", "results", check_id, "--format", "json")
    assert results.returncode == 0, results.stderr
    by_state = {r["state"]: r["result"] for r in json.loads(results.stdout)["states"]}
    assert by_state == {"DEU": "awaiting", "FRA": "answered in time"}
    table = run(backend.url, "check", "results", check_id)
    assert "answered in time" in table.stdout and "tec-0" in table.stdout
    listed = run(backend.url, "check", "list", "--format", "json")
    assert [c["id"] for c in json.loads(listed.stdout)] == [check_id]

    subset = run(backend.url, "check", "launch", "--level", "diplomatic", "--state", "DEU")
    assert subset.returncode == 0 and "for 1 States" in subset.stdout
    early = run(backend.url, "check", "close", check_id)
    assert early.returncode == 2 and "after its deadline" in early.stderr


def test_check_commands_refuse_bad_input_with_one_line(
    sqlite_backend: Backend, clock: SimulatedClock
) -> None:
    """Input checks do not depend on the backend: SQLite only."""
    backend = sqlite_backend
    app = build_application(backend.settings, clock=clock)
    register(app, "FRA", "technical")
    app.close()
    for args, code, message in (
        (("check", "results", "not-an-id"), 2, "CHECK_ID"),
        (("check", "results", str(UUID(int=7))), 4, "no such communication check"),
        (("check", "launch", "--state", "XXX"), 2, "UN member State"),
        (("check", "launch", "--state", "ITA"), 2, "not registered"),
        (("check", "launch", "--level", "ministerial"), 2, "diplomatic"),
        (("check", "launch", "--deadline-hours", "0"), 2, "--deadline-hours"),
    ):
        result = run(backend.url, *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_review_writes_the_report_as_html_json_and_csv(backend: Backend, tmp_path: Path) -> None:
    assert (
        run(backend.url, "simulate", "--states", "8", "--days", "60", "--seed", "3").returncode == 0
    )
    period = ("--from", "2025-01-06", "--to", "2025-03-06")
    page = tmp_path / "report.html"
    html = run(backend.url, "review", *period, "--out", str(page))
    assert html.returncode == 0, html.stderr
    text = page.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "<script" not in text
    as_json = run(backend.url, "review", *period, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["period"] == {"from": "2025-01-06", "to": "2025-03-06"}
    assert len(report["participation"]["tables"]["states"]["rows"]) == 8  # all 8 registered
    csv_dir = tmp_path / "csv"
    assert (
        run(backend.url, "review", *period, "--format", "csv", "--out", str(csv_dir)).returncode
        == 0
    )
    assert (csv_dir / "use-notifications-per-month.csv").read_text().startswith("month,malware,")
    assert (csv_dir / "summary.csv").exists()


def test_review_refuses_a_bad_period_or_a_missing_output_with_one_line(
    sqlite_backend: Backend,
) -> None:
    backend = sqlite_backend
    backwards = run(
        backend.url, "review", "--from", "2025-03-01", "--to", "2025-01-01", "--format", "json"
    )
    assert backwards.returncode == 2 and "after its end" in backwards.stderr
    no_out = run(backend.url, "review", "--from", "2025-01-01", "--to", "2025-02-01")
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    bad_date = run(backend.url, "review", "--from", "2025-13-01", "--to", "2025-02-01")
    assert bad_date.returncode == 2 and "--from" in bad_date.stderr
    for result in (backwards, no_out, bad_date):
        assert "Traceback" not in result.stderr


def _ids(*ids: str) -> Callable[[], UUID]:
    """An id factory handing out ``ids`` in turn, then fresh ones."""
    given = iter(UUID(i) for i in ids)
    return lambda: next(given, None) or uuid4()


def test_a_check_id_is_taken_by_an_unambiguous_prefix(
    sqlite_backend: Backend, clock: SimulatedClock
) -> None:
    """A Secretariat official types the first characters of a check id, as git takes commit
    ids: an ambiguous prefix is refused saying how many checks it matches, an unknown one is
    not found. Input handling does not depend on the backend: SQLite only."""
    backend = sqlite_backend
    first, second = "abcd1111-0000-4000-8000-000000000001", "abcd2222-0000-4000-8000-000000000002"
    app = build_application(backend.settings, clock=clock, new_id=_ids(first, second))
    register(app, "FRA", "technical")
    deadline = clock.now() + timedelta(hours=48)
    for _ in range(2):
        app.launch_check(SECRETARIAT, "technical", deadline)
    app.close()

    by_prefix = run(backend.url, "check", "results", "ABCD1", "--format", "json")
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert json.loads(by_prefix.stdout)["id"] == first
    hyphenated = run(backend.url, "check", "results", second[:14], "--format", "json")
    assert json.loads(hyphenated.stdout)["id"] == second
    for prefix, code, message in (
        ("abcd", 2, "'abcd' is ambiguous: 2 communication check ids start with it"),
        ("abcd3", 4, "no communication check id starts with 'abcd3'"),
        ("abc", 2, "CHECK_ID must be the check's id"),
    ):
        for command in ("results", "close"):
            refused = run(backend.url, "check", command, prefix)
            assert refused.returncode == code, (prefix, command, refused.stderr)
            assert message in refused.stderr and "Traceback" not in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1


def _column(output: str, index: int) -> str:
    """The text of a table's ``index``-th column, its wrapped lines joined: a cell wrapped
    over several lines reads whole in the result."""
    return "".join(
        line.split("│")[index + 1].strip() for line in output.splitlines() if line.count("│") > 2
    )


def test_tables_never_cut_an_id_or_a_contact_detail_on_a_narrow_terminal(
    sqlite_backend: Backend, clock: SimulatedClock
) -> None:
    """At 80 columns a check's UUID and a long e-mail address wrap in their cells; before,
    rich cut them with "…" even at 160 columns, and the user came for exactly these."""
    backend = sqlite_backend
    email = "computer-emergency-response-team.duty-officer@cert.ministere-interieur.gouv.fr"
    app = build_application(backend.settings, clock=clock)
    app.register_state(state("FRA"), "FRA")
    contact = contact_data("cert-fr-national-coordination", channels=[
        {"kind": "email", "address": email},
        {"kind": "phone", "address": "+33 1 23 45 67 89"},
    ])  # fmt: skip
    app.add_contact(state("FRA"), "FRA", Contact.from_dict(contact))
    check = app.launch_check(SECRETARIAT, "technical", clock.now() + timedelta(hours=48))
    app.close()
    narrow = {"COLUMNS": "80"}

    listed = run(backend.url, "check", "list", env=narrow)
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout
    assert str(check.id) in _column(listed.stdout, 0)
    entry = run(backend.url, "directory", "FRA", env=narrow)
    assert entry.returncode == 0, entry.stderr
    assert "…" not in entry.stdout
    assert max(len(line) for line in entry.stdout.splitlines()) <= 80
    assert "cert-fr-national-coordination" in _column(entry.stdout, 0)
    assert email in _column(entry.stdout, 3)
    assert "+33123456789" in _column(entry.stdout, 3).replace(" ", "")
