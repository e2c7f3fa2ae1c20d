"""Communication checks and escalation over a real SMTP server (issue 17): each contact's
challenge arrives over its own channel, the State answers with the code from the message, a
wrong or reused code is refused, and the results and unverified marks are what the mail server
saw; an overdue notification's alert goes down the route, within contact hours when urgent,
stops on acknowledgement, and reads the same after ``pocdir replay``."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import InvalidTransition, ValidationError
from domain.values import Contact, Text
from infra.wiring import build_application
from tests.support.builders import SECRETARIAT, contact_data, register_states, state
from tests.support.cli import run
from tests.support.db import Backend
from tests.support.delivery import (
    Delivering,
    delivering,
    delivery_settings,
    enable,
    mail,
    worker_for,
)
from tests.support.smtp_server import Received, SmtpServer

__all__ = ["delivering", "mail"]  # the fixtures

CODE = re.compile(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b")


def code_in(message: Received) -> str:
    """The challenge code, as the contact reads it in the message."""
    found = CODE.search(message.message.get_content())
    assert found, message.message.get_content()
    return found.group(1)


def to(mail: SmtpServer, address: str, subject_part: str) -> list[Received]:
    return [
        m
        for m in mail.messages()
        if m.recipients == [address] and subject_part in m.message["Subject"]
    ]


def results_by_contact(app: PocDirectory, check_id: Any) -> dict[str, str]:
    results = app.check_results(SECRETARIAT, check_id)
    return {f"{r['state']}/{r['contact_id']}": r["result"] for r in results["contacts"]}


def register_three(app: PocDirectory) -> None:
    for code in ("FRA", "DEU", "ITA"):
        contact = contact_data(
            "cert", channels=[{"kind": "email", "address": f"cert@{code.lower()}.example.org"}]
        )
        register_states(app, code, contact=contact)


def run_check(
    app: PocDirectory, clock: SimulatedClock, mail: SmtpServer, worker: Any, answer: set[str]
) -> Any:
    """Launch a technical check, deliver its challenges (spread over the window), have the
    States in ``answer`` confirm with the code from their mail, and close it."""
    check = app.launch_check(SECRETARIAT, "technical", clock.now() + timedelta(hours=48))
    for _ in range(app.check_window_hours + 1):  # the window's spread, hour by hour
        worker.run_until_idle()
        clock.advance(timedelta(hours=1))
    worker.run_until_idle()
    for code in sorted(answer):
        [message] = [
            m
            for m in to(mail, f"cert@{code.lower()}.example.org", "Communication check")
            if str(check.id) in m.message.get_content()
        ]
        app.answer_check_code(state(code), check.id, code_in(message))
    clock.advance(timedelta(days=3 + app.check_window_hours))
    app.close_check(SECRETARIAT, check.id)
    worker.run_until_idle()
    return check


def test_a_checks_results_are_what_the_mail_server_received(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_three(app)
    enable(app, settings)
    mail.set_rules(refuse={"cert@deu.example.org"})
    worker = worker_for(app, settings)
    check = app.launch_check(SECRETARIAT, "technical", clock.now() + timedelta(hours=48))
    for _ in range(app.check_window_hours + 1):
        worker.run_until_idle()
        clock.advance(timedelta(hours=1))
    challenges = [m for m in mail.messages() if "Communication check" in m.message["Subject"]]
    assert sorted(m.recipients[0] for m in challenges) == [
        "cert@fra.example.org",
        "cert@ita.example.org",
    ]
    codes = {m.recipients[0]: code_in(m) for m in challenges}
    assert len(set(codes.values())) == 2  # one code per contact

    with pytest.raises(ValidationError):  # ITA's code is not one of FRA's
        app.answer_check_code(state("FRA"), check.id, codes["cert@ita.example.org"])
    with pytest.raises(ValidationError):
        app.answer_check_code(state("FRA"), check.id, "AAAA-BBBB-CCCC-DDDD")
    app.answer_check_code(state("FRA"), check.id, codes["cert@fra.example.org"].lower())
    with pytest.raises(InvalidTransition):  # used already
        app.answer_check_code(state("FRA"), check.id, codes["cert@fra.example.org"])

    clock.advance(timedelta(days=3))
    app.close_check(SECRETARIAT, check.id)
    assert results_by_contact(app, check.id) == {
        "DEU/cert": "unreachable",  # refused at SMTP time
        "FRA/cert": "confirmed in time",
        "ITA/cert": "no answer",  # received, never confirmed
    }


def test_two_failed_checks_in_a_row_mark_a_contact_unverified_and_its_state_is_told(
    backend: Backend, clock: SimulatedClock, mail: SmtpServer, tmp_path: Path
) -> None:
    settings = delivery_settings(backend, mail, tmp_path)
    app = build_application(settings, clock=clock)
    try:
        register_three(app)
        enable(app, settings)
        worker = worker_for(app, settings)
        run_check(app, clock, mail, worker, answer={"FRA", "DEU"})
        assert to(mail, "cert@ita.example.org", "did not pass") == []
        run_check(app, clock, mail, worker, answer={"FRA"})
        told = to(mail, "cert@ita.example.org", "did not pass two communication checks")
        assert len(told) == 1
        assert "contact cert" in told[0].message.get_content()
        assert to(mail, "cert@deu.example.org", "did not pass") == []  # one failure only
        verification = app.get_verification("ITA")
        assert verification is not None and "cert" in verification.unverified
        # Passing again clears the mark.
        run_check(app, clock, mail, worker, answer={"FRA", "DEU", "ITA"})
        assert "cert" not in app.get_verification("ITA").unverified  # type: ignore[union-attr]
    finally:
        app.close()


def escalation_contacts() -> tuple[dict[str, Any], ...]:
    """DEU's route: the technical contact in Tokyo's office hours, the coordination contact
    in Berlin's, and a diplomat around the clock."""
    return (
        contact_data(
            "cert",
            channels=[{"kind": "email", "address": "cert@deu.example.org"}],
            time_zone="Asia/Tokyo",
            hours="Mon-Fri 09:00-17:00",
        ),
        contact_data(
            "coord",
            channels=[{"kind": "email", "address": "coord@deu.example.org"}],
            incident_types=[],
            time_zone="Europe/Berlin",
            hours="Mon-Fri 08:00-18:00",
        ),
        contact_data(
            "dip",
            level="diplomatic",
            incident_types=[],
            channels=[{"kind": "email", "address": "dip@deu.example.org"}],
        ),
    )


def deu_with_route(app: PocDirectory) -> None:
    register_states(app, "FRA")
    app.register_state(state("DEU"), "DEU")
    for data in escalation_contacts():
        app.add_contact(state("DEU"), "DEU", Contact.from_dict(data))
    app.set_coordination_contact(state("DEU"), "DEU", "coord")


def notify(app: PocDirectory, urgency: str) -> Any:
    return app.send_notification(
        state("FRA"),
        "DEU",
        "malware",
        Text.english_only("Botnet command server"),
        [{"kind": "ipv4", "value": "192.0.2.1"}],
        good_faith_attested=True,
        urgency=urgency,
    )


def recipients(mail: SmtpServer) -> list[str]:
    return [m.recipients[0] for m in mail.messages()]


def test_an_overdue_notification_goes_down_the_route_until_acknowledged(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    deu_with_route(app)
    enable(app, settings)
    worker = worker_for(app, settings)
    n = notify(app, "high")  # 12 h to acknowledge
    worker.run_until_idle()
    assert recipients(mail) == ["cert@deu.example.org"]
    clock.advance(timedelta(hours=11))
    worker.run_until_idle()
    assert recipients(mail) == ["cert@deu.example.org"]  # not yet overdue
    clock.advance(timedelta(hours=1, seconds=1))
    worker.run_until_idle()
    assert recipients(mail)[-1] == "coord@deu.example.org"
    escalation = mail.messages()[-1]
    assert "Escalated" in escalation.message["Subject"]
    app.acknowledge_notification(state("DEU"), n.id)
    clock.advance(timedelta(days=2))
    worker.run_until_idle()
    assert recipients(mail) == ["cert@deu.example.org", "coord@deu.example.org"]
    assert [c for _, _, c in app.get_notification(n.id).escalations] == ["coord"]


@pytest.mark.slow
def test_an_urgent_escalation_skips_contacts_outside_their_hours_and_replays_the_same(
    backend: Backend, clock: SimulatedClock, mail: SmtpServer, tmp_path: Path
) -> None:
    settings = delivery_settings(backend, mail, tmp_path)
    app = build_application(settings, clock=clock)
    try:
        deu_with_route(app)
        enable(app, settings)
        worker = worker_for(app, settings)
        # START is Monday 09:00 UTC: Tokyo's office is closed (18:00), Berlin's is open.
        n = notify(app, "urgent")
        worker.run_until_idle()
        assert recipients(mail) == ["coord@deu.example.org"]  # cert is skipped
        clock.advance(timedelta(hours=2, seconds=1))
        worker.run_until_idle()
        assert recipients(mail) == ["coord@deu.example.org", "dip@deu.example.org"]
        clock.advance(timedelta(hours=2, seconds=1))
        worker.run_until_idle()  # nobody is left: exhausted, nothing more sent
        assert len(mail.messages()) == 2
        notification = app.get_notification(n.id)
        assert notification.escalation_exhausted
        before = run(backend.url, "history", "DEU")
    finally:
        app.close()
    assert before.returncode == 0, before.stderr
    replay = run(backend.url, "replay")
    assert replay.returncode == 0, replay.stderr
    after = run(backend.url, "history", "DEU")
    assert after.returncode == 0, after.stderr
    assert "escalated" in after.stdout
    assert after.stdout == before.stdout
