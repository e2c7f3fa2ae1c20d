"""Acknowledgement deadlines and escalation (issue 17, part 3): the urgency and deadline
written into a notification when it is sent, the escalation route, escalations recorded by
the server until acknowledgement or the end of the route, and their replay."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import InvalidTransition, NotFound
from domain.escalation import escalation_route, first_step, next_step
from domain.notification import Notification, NotificationStatus, Urgency
from domain.signing import SignerKind, expected_signer
from domain.statement import SignedStatement
from domain.values import Contact, Text
from infra.settings import Settings, SettingsError
from infra.wiring import build_application, build_views
from tests.support.builders import START, contact_data, register_states, state
from tests.support.cli import run
from tests.support.db import Backend
from tests.support.http import Api, assert_error, notify, register
from tests.support.state_officials import official

# -- the route (pure) ---------------------------------------------------------------------


def contacts(*given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Contacts in their recorded form, keyed by id."""
    return {c["contact_id"]: Contact.from_dict(c).to_dict() for c in given}


def ids(route: list[dict[str, Any]]) -> list[str]:
    return [c["contact_id"] for c in route]


DIRECTORY = contacts(
    contact_data("cert"),
    contact_data("soc"),
    contact_data("coord", incident_types=[]),
    contact_data("phish", incident_types=["fraud"]),
    contact_data("dip-b", level="diplomatic", incident_types=[]),
    contact_data("dip-a", level="diplomatic", incident_types=["malware"]),
)


def test_the_route_is_the_technical_route_then_coordination_then_diplomats_each_once() -> None:
    preferred = {"contact_id": "soc", "channel": "phone"}
    route = escalation_route(DIRECTORY, "malware", "coord", preferred)
    assert ids(route) == ["soc", "cert", "coord", "dip-a", "dip-b"]
    assert route[0]["channels"][0]["kind"] == "phone"  # R3: the preferred channel first
    # The coordination contact already on the technical route, or a diplomat: once.
    assert ids(escalation_route(DIRECTORY, "malware", "cert", None)) == [
        "cert",
        "soc",
        "dip-a",
        "dip-b",
    ]
    assert ids(escalation_route(DIRECTORY, "malware", "dip-b", None)) == [
        "cert",
        "soc",
        "dip-b",
        "dip-a",
    ]
    # No technical contact for the type: R4 falls back to the coordination contact.
    assert ids(escalation_route(DIRECTORY, "denial-of-service", "coord", None)) == [
        "coord",
        "dip-a",
        "dip-b",
    ]
    assert ids(escalation_route(DIRECTORY, "denial-of-service", None, None)) == ["dip-a", "dip-b"]


PARIS_HOURS = contact_data("a-paris", time_zone="Europe/Paris", hours="Mon-Fri 09:00-18:00")
TOKYO_HOURS = contact_data("b-tokyo", time_zone="Asia/Tokyo", hours="Mon-Fri 09:00-18:00")
HOURS_ROUTE = list(contacts(PARIS_HOURS, TOKYO_HOURS, contact_data("c-any")).values())
#: Monday 02:00 UTC: 03:00 in Paris (closed), 11:00 in Tokyo (open).
PARIS_NIGHT = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
#: Monday 10:00 UTC: 11:00 in Paris (open), 19:00 in Tokyo (closed).
TOKYO_NIGHT = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def test_an_urgent_alert_skips_contacts_whose_hours_do_not_cover_now() -> None:
    first = first_step(HOURS_ROUTE, True, PARIS_NIGHT)
    assert (first[0], first[1]["contact_id"]) == (1, "b-tokyo")
    assert first_step(HOURS_ROUTE, False, PARIS_NIGHT)[0] == 0  # not urgent: in order
    assert first_step(HOURS_ROUTE, True, TOKYO_NIGHT)[0] == 0
    after_paris = next_step(HOURS_ROUTE, 0, True, TOKYO_NIGHT)
    assert after_paris is not None and after_paris[1]["contact_id"] == "c-any"  # Tokyo skipped


def test_an_urgent_alert_nobody_covers_goes_to_the_next_contact_and_the_route_ends() -> None:
    sunday = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    office_only = HOURS_ROUTE[:2]
    assert first_step(office_only, True, sunday)[0] == 0
    assert next_step(office_only, 0, True, sunday) == (1, office_only[1])
    assert next_step(office_only, 1, True, sunday) is None
    with pytest.raises(NotFound):
        first_step([], True, sunday)


# -- the setting --------------------------------------------------------------------------


def test_the_deadlines_setting_overrides_the_defaults_and_refuses_what_is_not_one() -> None:
    default = Settings.from_env({})
    assert default.ack_deadlines == {
        Urgency.URGENT: timedelta(hours=2),
        Urgency.HIGH: timedelta(hours=12),
        Urgency.NORMAL: timedelta(hours=72),
    }
    given = Settings.from_env({"POCDIR_ACK_DEADLINES": " urgent=30m, normal=5d "})
    assert given.ack_deadlines[Urgency.URGENT] == timedelta(minutes=30)
    assert given.ack_deadlines[Urgency.HIGH] == timedelta(hours=12)
    assert given.ack_deadlines[Urgency.NORMAL] == timedelta(days=5)
    for bad, says in (
        ("urgent=2x", "like 90m, 2h or 3d"),
        ("asap=2h", "'asap' is not an urgency"),
        ("urgent", "urgency=duration"),
        ("urgent=0m", "between 1 minute and a year"),
        ("normal=400d", "between 1 minute and a year"),
    ):
        with pytest.raises(SettingsError, match="POCDIR_ACK_DEADLINES") as refused:
            Settings.from_env({"POCDIR_ACK_DEADLINES": bad})
        assert says in str(refused.value)


# -- the record ---------------------------------------------------------------------------


def deu_with_route(app: PocDirectory) -> None:
    """FRA, and DEU with the route cert (technical), coord (its coordination contact), dip
    (diplomatic)."""
    register_states(app, "FRA")
    deu = state("DEU")
    app.register_state(deu, "DEU")
    for data in (
        contact_data("cert"),
        contact_data("coord", incident_types=[]),
        contact_data("dip", level="diplomatic", incident_types=[]),
    ):
        app.add_contact(deu, "DEU", Contact.from_dict(data))
    app.set_coordination_contact(deu, "DEU", "coord")


def send(app: PocDirectory, urgency: str | None = None) -> Notification:
    return app.send_notification(
        state("FRA"),
        "DEU",
        "malware",
        Text.english_only("Botnet command server"),
        [{"kind": "ipv4", "value": "192.0.2.1"}],
        good_faith_attested=True,
        urgency=urgency,
    )


def test_the_deadline_is_written_into_the_event_and_outlives_a_change_of_settings(
    app: PocDirectory, backend: Backend, clock: SimulatedClock
) -> None:
    deu_with_route(app)
    sent = send(app, "urgent")
    stored = app.repository.event_store.get(sent.id)
    first = next(iter(stored))
    assert isinstance(first, Notification.Sent)
    assert (first.urgency, first.deadline_seconds) == ("urgent", 7200)
    assert first.acknowledge_by == START + timedelta(hours=2)
    assert send(app).acknowledge_by == START + timedelta(hours=72)  # normal by default

    shorter = {u: timedelta(minutes=10) for u in Urgency}
    other = build_application(
        dataclasses.replace(backend.settings, ack_deadlines=shorter), clock=clock
    )
    try:
        again = other.get_notification(sent.id)
        assert again.urgency is Urgency.URGENT
        assert again.acknowledge_by == START + timedelta(hours=2)
        clock.advance(timedelta(hours=1))  # past the new settings' 10 minutes, not the record's
        assert other.escalate_notification(sent.id) is None
        clock.advance(timedelta(hours=1, minutes=1))
        escalated = other.escalate_notification(sent.id)
        assert escalated is not None
        assert escalated.acknowledge_by == clock.now() + timedelta(hours=2)  # as recorded
    finally:
        other.close()


def test_escalation_follows_the_route_until_it_is_exhausted(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    deu_with_route(app)
    sent = send(app, "high")
    step, first = app.first_alert_contact(sent)
    assert (step, first["contact_id"]) == (0, "cert")
    version = sent.version
    clock.advance(timedelta(hours=12))  # at the deadline, not past it
    assert app.escalate_notification(sent.id) is None
    assert app.get_notification(sent.id).version == version  # nothing recorded
    reached = []
    for _ in range(2):
        clock.advance(timedelta(hours=12, seconds=1))
        n = app.escalate_notification(sent.id)
        assert n is not None
        reached.append((n.escalation_step, n.escalations[-1][2]))
        assert n.acknowledge_by == clock.now() + timedelta(hours=12)
        assert app.escalate_notification(sent.id) is None  # the new deadline runs
    assert reached == [(1, "coord"), (2, "dip")]
    clock.advance(timedelta(hours=12, seconds=1))
    exhausted = app.escalate_notification(sent.id)
    assert exhausted is not None and exhausted.escalation_exhausted
    assert exhausted.acknowledge_by is None
    clock.advance(timedelta(days=30))
    assert app.escalate_notification(sent.id) is None
    loaded = app.get_notification(sent.id)
    assert [(s, c) for _, s, c in loaded.escalations] == [(1, "coord"), (2, "dip")]
    assert loaded.status is NotificationStatus.SENT  # escalation is no change of status
    assert expected_signer("Notification.Escalated") is SignerKind.SERVER
    assert expected_signer("Notification.EscalationExhausted") is SignerKind.SERVER


def test_acknowledgement_stops_the_escalation(app: PocDirectory, clock: SimulatedClock) -> None:
    deu_with_route(app)
    sent = send(app, "urgent")
    clock.advance(timedelta(hours=2, minutes=1))
    assert app.escalate_notification(sent.id) is not None
    app.acknowledge_notification(state("DEU"), sent.id)
    version = app.get_notification(sent.id).version
    clock.advance(timedelta(days=3))
    assert app.escalate_notification(sent.id) is None
    n = app.get_notification(sent.id)
    assert n.version == version and len(n.escalations) == 1
    with pytest.raises(InvalidTransition, match="acknowledged"):
        n.escalate(clock.now(), 2, "dip")


def test_a_withdrawn_notification_does_not_escalate(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    deu_with_route(app)
    sent = send(app, "urgent")
    app.withdraw_notification(state("FRA"), sent.id)
    clock.advance(timedelta(hours=3))
    assert app.escalate_notification(sent.id) is None


def test_an_urgent_notification_escalates_to_the_next_contact_in_its_hours(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    """START is Monday 09:00 UTC: 10:00 in Paris, 18:00 (closed) in Tokyo."""
    register_states(app, "FRA")
    deu = state("DEU")
    app.register_state(deu, "DEU")
    for data in (PARIS_HOURS, TOKYO_HOURS, contact_data("c-any")):
        app.add_contact(deu, "DEU", Contact.from_dict(data))
    sent = send(app, "urgent")
    assert app.first_alert_contact(sent)[1]["contact_id"] == "a-paris"
    clock.advance(timedelta(hours=2, minutes=1))
    n = app.escalate_notification(sent.id)
    assert n is not None and n.escalations[-1][1:] == (2, "c-any")  # Tokyo is asleep


def recoded(app: PocDirectory, stored: StoredEvent, change: Any) -> StoredEvent:
    """``stored`` with its state decoded, changed by ``change`` and encoded again, as the
    mapper stores it."""
    mapper = app.mapper
    data = stored.state
    if mapper.cipher is not None:
        data = mapper.cipher.decrypt(data)
    if mapper.compressor is not None:
        data = mapper.compressor.decompress(data)
    state_dict = mapper.transcoder.decode(data)
    change(state_dict)
    data = mapper.transcoder.encode(state_dict)
    if mapper.compressor is not None:
        data = mapper.compressor.compress(data)
    if mapper.cipher is not None:
        data = mapper.cipher.encrypt(data)
    return StoredEvent(stored.originator_id, stored.originator_version, stored.topic, data)


def test_a_version_two_notification_reads_as_normal_with_no_deadline(
    app: PocDirectory, clock: SimulatedClock
) -> None:
    deu_with_route(app)
    sent = send(app, "urgent")
    event = next(iter(app.repository.event_store.get(sent.id)))
    as_v3 = app.mapper.to_stored_event(event)

    def to_v2(state_dict: dict[str, Any]) -> None:
        assert state_dict.pop("class_version") == 3
        for name in ("urgency", "acknowledge_by", "deadline_seconds"):
            del state_dict[name]
        state_dict["class_version"] = 2

    old = app.mapper.to_domain_event(recoded(app, as_v3, to_v2))
    n = old.mutate(None)
    assert isinstance(n, Notification)
    assert (n.urgency, n.acknowledge_by, n.deadline_seconds) == (Urgency.NORMAL, None, None)
    later = clock.now() + timedelta(days=365)
    assert not n.is_overdue(later)
    with pytest.raises(InvalidTransition, match="no acknowledgement deadline"):
        n.escalate(later, 1, "coord")


# -- HTTP and the State client ------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_http_send_takes_an_urgency_and_refuses_a_bad_one(api: Api, clock: SimulatedClock) -> None:
    register(api, "FRA")
    register(api, "DEU", contact_data("cert"), contact_data("dip", level="diplomatic"))
    fra = api.as_state("FRA")
    r = api.call("POST", "/notifications", fra, json={**notify("DEU"), "urgency": "urgent"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["urgency"] == "urgent"
    assert at(body["acknowledge_by"]) - at(body["sent_at"]) == timedelta(hours=2)
    plain = api.call("POST", "/notifications", fra, json=notify("DEU")).json()
    assert plain["urgency"] == "normal"
    refused = api.call("POST", "/notifications", fra, json={**notify("DEU"), "urgency": "asap"})
    assert "urgency" in assert_error(refused, 422)["detail"]

    clock.advance(timedelta(hours=2, minutes=1))
    assert api.application.escalate_notification(UUID(body["id"])) is not None
    seen = api.call("GET", f"/notifications/{body['id']}", fra).json()
    assert [(e["step"], e["contact_id"]) for e in seen["escalations"]] == [(1, "dip")]
    assert at(seen["acknowledge_by"]) == clock.now() + timedelta(hours=2)
    inbox = api.call("GET", "/notifications/inbox", api.as_state("DEU")).json()
    listed = next(n for n in inbox if n["id"] == body["id"])
    assert listed["urgency"] == "urgent" and len(listed["escalations"]) == 1
    history = api.call("GET", "/history/DEU", api.as_state("DEU")).json()
    assert [i["event"] for i in history if i.get("notification_id") == body["id"]] == [
        "notification received",
        "escalated",
    ]


def test_the_state_client_sends_a_sealed_urgent_notification_under_its_signature(
    api: Api, tmp_path: Path, clock: SimulatedClock
) -> None:
    officials = {code: official(tmp_path, code) for code in ("FRA", "DEU")}
    clients = {}
    for code, one in officials.items():
        one.bind(api.application)
        for other in officials.values():
            if other is not one:
                one.pin(other)
        clients[code] = one.client(api.token("state", code), http=api.client, clock=clock.now)
        clients[code].register_entry()
    content = {
        "description": "Botnet C2",
        "supporting_information": {"indicators": [{"kind": "ipv4", "value": "203.0.113.7"}]},
    }
    sent = clients["FRA"].notify("DEU", "malware", content, urgency="high")
    assert sent.status == 201, sent.body
    assert sent.body["urgency"] == "high" and sent.body["envelope"]
    assert at(sent.body["acknowledge_by"]) - at(sent.body["sent_at"]) == timedelta(hours=12)
    signed = SignedStatement.from_dict(sent.statement or {}).statement
    assert "high" in repr(signed.fields["body"])
    with pytest.raises(ValueError, match="urgency"):
        clients["FRA"].notify("DEU", "malware", content, urgency="asap")


# -- replay -------------------------------------------------------------------------------


@pytest.mark.slow
def test_escalations_are_identical_after_pocdir_replay(
    app: PocDirectory, backend: Backend, clock: SimulatedClock
) -> None:
    deu_with_route(app)
    escalated = send(app, "urgent")
    acknowledged = send(app, "high")
    for _ in range(3):
        clock.advance(timedelta(hours=12, minutes=1))
        for n in (escalated, acknowledged):
            app.escalate_notification(n.id)
        if _ == 0:
            app.acknowledge_notification(state("DEU"), acknowledged.id)
    assert run(backend.url, "pending").returncode == 0
    view = build_views(app, backend.settings)
    before = view.dump()
    doc = view.get("notification", str(escalated.id))
    assert doc is not None
    assert [(e["step"], e["contact_id"]) for e in doc["escalations"]] == [
        (1, "coord"),
        (2, "dip"),
    ]
    assert doc["escalation_exhausted"] is True
    other = view.get("notification", str(acknowledged.id))
    assert other is not None and len(other["escalations"]) == 1
    replay = run(backend.url, "replay")
    assert replay.returncode == 0, replay.stderr
    assert view.dump() == before
    verified = run(backend.url, "verify")
    assert verified.returncode == 0, verified.stderr
