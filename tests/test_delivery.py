"""Alerts over a real SMTP server (issue 17): every alert the record calls for arrives, with one
Message-ID per recipient and cause, through deferrals and a worker killed at each named point;
a refused address is recorded as such; no alert carries what an exchange says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from domain.clock import SimulatedClock
from domain.delivery import AlertOutcome
from domain.values import Contact, Text
from infra.delivery import FAULT_EXIT
from infra.settings import Settings
from infra.wiring import build_application, build_views
from projections.queries import ViewQueries
from projections.review_report import build_report
from projections.runner import ViewRunner
from tests.support.builders import START, contact_data, fra_notifies_deu, register_states, state
from tests.support.cli import run
from tests.support.db import Backend
from tests.support.delivery import (
    Delivering,
    delivering,
    delivery_settings,
    enable,
    mail,
    outcomes,
    worker_for,
)
from tests.support.smtp_server import SmtpServer

__all__ = ["delivering", "mail"]  # the fixtures

SECRET_DESCRIPTION = "Exfiltration via the finance ministry VPN concentrator"
SECRET_INDICATOR = "198.51.100.77"
SECRET_RESPONSE = "We isolated host fin-vpn-02 and reset its credentials"


def test_alerts_start_where_delivery_was_enabled(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU")
    fra_notifies_deu(app)  # before delivery: never alerted
    enable(app, settings)
    worker = worker_for(app, settings)
    worker.run_until_idle()
    assert mail.messages() == []
    clock.advance(timedelta(minutes=5))
    later = fra_notifies_deu(app)
    worker.run_until_idle()
    received = mail.messages()
    assert [m.recipients for m in received] == [["cert@example.org"]]
    assert str(later.id) in received[0].message["X-Pocdir-Reference"]
    assert outcomes(app) == {received[0].message["Message-ID"]: ["Sent"]}


def test_every_alert_the_record_calls_for_arrives_once(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU", "ITA")
    enable(app, settings)
    n = fra_notifies_deu(app)
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(state("DEU"), n.id, Text.english_only("Looking into it"))
    app.request_consent(state("DEU"), n.id, "ITA")
    worker = worker_for(app, settings)
    worker.run_until_idle()
    worker.run_until_idle()  # nothing more: every alert is settled
    received = mail.messages()
    ids = [m.message["Message-ID"] for m in received]
    assert len(ids) == len(set(ids)) == 3
    subjects = sorted(m.message["Subject"] for m in received)
    assert any("acknowledgement" in s for s in subjects)
    assert any("response" in s for s in subjects)
    assert any("consent" in s for s in subjects)
    assert set(outcomes(app)) == set(ids)
    assert all(v == ["Sent"] for v in outcomes(app).values())


def test_deferred_then_accepted_arrives_with_one_message_id(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU")
    enable(app, settings)
    mail.set_rules(defer={"cert@example.org": 2})
    fra_notifies_deu(app)
    worker = worker_for(app, settings)
    worker.run_until_idle()
    assert mail.messages() == []
    clock.advance(timedelta(seconds=59))
    worker.run_until_idle()  # not yet due again
    clock.advance(timedelta(seconds=1))
    worker.run_until_idle()  # second attempt: deferred again, next in 120 s
    assert mail.messages() == []
    clock.advance(timedelta(seconds=120))
    worker.run_until_idle()
    received = mail.messages()
    assert len(received) == 1
    assert outcomes(app) == {received[0].message["Message-ID"]: ["Deferred", "Deferred", "Sent"]}


def test_deferred_too_often_is_given_up(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU")
    enable(app, settings)
    mail.set_rules(defer={"cert@example.org": 10})
    fra_notifies_deu(app)
    worker = worker_for(app, settings)
    for _ in range(5):
        worker.run_until_idle()
        clock.advance(timedelta(hours=1))
    assert mail.messages() == []
    assert list(outcomes(app).values()) == [["Deferred", "Deferred", "GaveUp"]]


def test_refused_address_is_recorded_refused(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU")
    enable(app, settings)
    mail.set_rules(refuse={"cert@example.org"})
    fra_notifies_deu(app)
    worker_for(app, settings).run_until_idle()
    assert mail.messages() == []
    [(message_id, history)] = outcomes(app).items()
    assert history == ["Refused"]
    alert = app.find_alert(message_id)
    assert alert is not None and alert.outcome is AlertOutcome.REFUSED
    assert (alert.state, alert.contact_id) == ("DEU", "cert")


def test_a_contact_without_e_mail_is_not_deliverable_automatically(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    phone_only = contact_data("cert", channels=[{"kind": "phone", "address": "+49 30 1234567"}])
    register_states(app, "FRA")
    register_states(app, "DEU", contact=phone_only)
    enable(app, settings)
    fra_notifies_deu(app)
    worker_for(app, settings).run_until_idle()
    assert mail.messages() == []
    assert list(outcomes(app).values()) == [["NotDeliverable"]]


def test_an_alert_speaks_the_contacts_languages_and_time_zone(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA")
    register_states(
        app, "DEU", contact=contact_data("cert", languages=["ru"], time_zone="Asia/Tokyo")
    )
    enable(app, settings)
    n = fra_notifies_deu(app)
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(state("DEU"), n.id, Text.english_only("Seen"))
    worker_for(app, settings).run_until_idle()
    to_fra = next(
        m
        for m in mail.messages()
        if m.recipients == ["cert@example.org"] and "response" in m.message["Subject"]
    )
    body = to_fra.message.get_content()
    assert "Lisez-la dans le client de l'État." in body  # FRA's contact reads French
    assert "Read it in the State client." in body  # and English, always (R6)
    assert to_fra.message["Content-Language"] == "fr"


def test_no_alert_carries_what_an_exchange_says(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU", "ITA")
    app.add_contact(
        state("DEU"),
        "DEU",
        Contact.from_dict(
            contact_data(
                "dip",
                level="diplomatic",
                incident_types=[],
                channels=[{"kind": "email", "address": "ambassador-private@example.org"}],
            )
        ),
    )
    enable(app, settings)
    n = fra_notifies_deu(
        app,
        SECRET_DESCRIPTION,
        [{"kind": "ipv4", "value": SECRET_INDICATOR}],
        supporting_text="Seen by our sensor grid",
    )
    app.acknowledge_notification(state("DEU"), n.id)
    app.respond_to_notification(state("DEU"), n.id, Text.english_only(SECRET_RESPONSE))
    app.request_consent(state("FRA"), n.id, "ITA")
    worker_for(app, settings).run_until_idle()
    received = mail.messages()
    assert len(received) == 3
    for m in received:
        text = m.raw.decode("utf-8", "replace") + m.message.get_content()
        for secret in (
            SECRET_DESCRIPTION,
            SECRET_INDICATOR,
            SECRET_RESPONSE,
            "sensor grid",
            "malware",
            "ambassador-private",
            "+33",
        ):
            assert secret not in text, (secret, m.message["Subject"])
        # No other contact's address: only the recipient's own.
        assert text.count("@example.org") == text.count(m.recipients[0])


def kill_and_restart(backend: Backend, settings: Settings, mail: SmtpServer, point: str) -> None:
    """``pocdir delivery run --once`` in a process of its own, dying at the named point, then
    again to the end."""
    env = {
        "POCDIR_DELIVERY_KEY_FILE": str(settings.delivery_key_file),
        "POCDIR_SMTP_HOST": mail.host,
        "POCDIR_SMTP_PORT": str(mail.port),
        "POCDIR_SMTP_STARTTLS": "false",
        "POCDIR_SMTP_SENDER": "alerts@pocdir.test",
    }
    died = run(
        backend.url, "delivery", "run", "--once", env={**env, "POCDIR_DELIVERY_FAULT": point}
    )
    assert died.returncode == FAULT_EXIT, died.stderr
    again = run(backend.url, "delivery", "run", "--once", env=env)
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("point", ["sent", "recorded"])
def test_a_worker_killed_at_a_named_point_loses_nothing(
    backend: Backend, clock: SimulatedClock, mail: SmtpServer, tmp_path: Path, point: str
) -> None:
    """The worker runs as ``pocdir delivery run --once``, in a process of its own, and dies at
    the named point; run again, it delivers everything, any duplicate with the same
    Message-ID."""
    settings = delivery_settings(backend, mail, tmp_path)
    app = build_application(settings, clock=clock)
    try:
        register_states(app, "FRA", "DEU", "ITA")
        enable(app, settings)
        n = fra_notifies_deu(app)
        app.acknowledge_notification(state("DEU"), n.id)
        app.request_consent(state("DEU"), n.id, "ITA")
    finally:
        app.close()
    kill_and_restart(backend, settings, mail, point)
    app = build_application(settings, clock=clock)
    try:
        recorded = outcomes(app)
        received = [m.message["Message-ID"] for m in mail.messages()]
        assert set(received) == set(recorded)
        assert len(recorded) == 2
        assert all(v == ["Sent"] for v in recorded.values())
        times = sorted(received.count(m) for m in set(received))
        if point == "recorded":
            # The first outcome was recorded before it died: that alert is not sent again;
            # the rest of its batch, taken by the mail server but not recorded, is.
            assert times == [1, 2]
        else:
            assert times == [2, 2]  # the whole batch again, under the same Message-IDs
    finally:
        app.close()


def test_smtp_password_is_never_sent_in_the_clear() -> None:
    from infra.settings import SettingsError

    with pytest.raises(SettingsError, match="STARTTLS"):
        Settings.from_env(
            {
                "POCDIR_SMTP_HOST": "mail.example.org",
                "POCDIR_SMTP_USERNAME": "pocdir",
                "POCDIR_SMTP_PASSWORD_FILE": "/nonexistent",
                "POCDIR_SMTP_STARTTLS": "false",
            }
        )


def test_histories_and_the_review_report_show_reachability(
    delivering: Delivering, clock: SimulatedClock, mail: SmtpServer
) -> None:
    app, settings = delivering.app, delivering.settings
    register_states(app, "FRA", "DEU", "ITA")
    enable(app, settings)
    mail.set_rules(refuse={"cert@example.org"})  # every State's contact: all refused
    fra_notifies_deu(app)
    worker_for(app, settings).run_until_idle()
    mail.set_rules()
    clock.advance(timedelta(minutes=1))
    app.send_notification(
        state("ITA"),
        "FRA",
        "malware",
        Text.english_only("Scanning from your networks"),
        [{"kind": "ipv4", "value": "192.0.2.9"}],
        good_faith_attested=True,
    )
    worker_for(app, settings).run_until_idle()
    view = build_views(app, settings)
    ViewRunner(app, view).catch_up()
    history = ViewQueries(view).history("DEU", START.date(), START.date())
    alerts = [i for i in history if i["event"].startswith("alert")]
    assert [(i["event"], i["by"]) for i in alerts] == [
        ("alert notification received: refused", "cert")
    ]
    report = build_report(view, START.date(), START.date())
    table = report["responsiveness"]["tables"]["alerts_by_group"]
    rows = {row[0]: row[1:] for row in table["rows"]}
    # DEU and FRA are in WEOG: one refused (DEU), one sent (FRA).
    assert table["columns"][:4] == ["regional_group", "alerts", "sent", "refused"]
    assert rows["WEOG"][:3] == [2, 1, 1]


@pytest.mark.slow
def test_a_worker_killed_after_recording_an_escalation_escalates_once(
    backend: Backend, clock: SimulatedClock, mail: SmtpServer, tmp_path: Path
) -> None:
    """The notification was sent (on the test's clock) long before the worker runs (on the
    system clock): its deadline has passed. The worker dies right after recording the
    escalation; restarted, it does not escalate again, and each contact gets one alert."""
    settings = delivery_settings(backend, mail, tmp_path)
    app = build_application(settings, clock=clock)
    try:
        register_states(app, "FRA")
        register_states(app, "DEU")
        coordination = contact_data("coord", incident_types=[])
        app.add_contact(state("DEU"), "DEU", Contact.from_dict(coordination))
        app.set_coordination_contact(state("DEU"), "DEU", "coord")
        enable(app, settings)
        n = fra_notifies_deu(app)
    finally:
        app.close()
    kill_and_restart(backend, settings, mail, "escalated")
    app = build_application(settings, clock=clock)
    try:
        assert [c for _, _, c in app.get_notification(n.id).escalations] == ["coord"]
        received = sorted(m.recipients[0] for m in mail.messages())
        assert received == ["cert@example.org", "coord@example.org"]
        assert all(v == ["Sent"] for v in outcomes(app).values())
    finally:
        app.close()
