"""Idempotency keys over HTTP, on both backends (issue 12, defect 2): a write answered 500 or
503 may have committed, so a client retries with the same ``Idempotency-Key`` and must never
write twice."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from domain.clock import SimulatedClock
from tests.support.builders import contact_data
from tests.support.db import Backend
from tests.support.http import Api


def events(api: Api) -> int:
    return api.application.recorder.max_notification_id() or 0


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def notification(recipient: str = "DEU") -> dict[str, Any]:
    return {
        "recipient": recipient,
        "incident_type": "malware",
        "description": "Botnet C2 observed in your address space",
        "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
        "good_faith_attested": True,
    }


#: ``If-Match`` for an entry as ``registered`` leaves it (version 2); entry changes need one.
AT_2 = {"If-Match": '"2"'}


def registered(api: Api, *codes: str, contact: bool = True) -> None:
    """Register each State, with one contact unless ``contact`` is false (entry version 2)."""
    for code in codes:
        who = api.as_state(code)
        r = api.call("POST", f"/entries/{code}", who, json={})
        assert r.status_code == 201, r.text
        if contact:
            body = {"contact": contact_data("cert")}
            headers = {"If-Match": '"1"'}  # as registering answered
            r = api.call("POST", f"/entries/{code}/contacts", who, json=body, headers=headers)
            assert r.status_code == 200, r.text


def test_a_retry_with_the_same_key_gets_the_first_answer_and_writes_nothing(api: Api) -> None:
    registered(api, "FRA", "DEU")
    fra = api.as_state("FRA")
    first = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("n-1"))
    assert first.status_code == 201, first.text
    after_first = events(api)
    for _ in range(3):
        retry = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("n-1"))
        assert retry.status_code == 201, retry.text
        assert retry.json() == first.json()
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert events(api) == after_first
    other = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("n-2"))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert events(api) == after_first + 1


def test_a_retried_entry_change_keeps_its_etag_and_writes_once(api: Api) -> None:
    registered(api, "FRA", contact=False)
    fra = api.as_state("FRA")
    body = {"contact": contact_data("cert")}
    headers = keyed("c-1", **{"If-Match": '"1"'})
    first = api.call("POST", "/entries/FRA/contacts", fra, json=body, headers=headers)
    assert first.status_code == 200, first.text
    retry = api.call("POST", "/entries/FRA/contacts", fra, json=body, headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers["ETag"] == first.headers["ETag"] == '"2"'
    assert api.application.get_entry("FRA").version == 2


def test_a_refusal_is_the_first_outcome_too(api: Api) -> None:
    """A retry of a refused request gets the same refusal, even if it would now succeed."""
    registered(api, "FRA")
    fra = api.as_state("FRA")
    first = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("k"))
    assert first.status_code == 422, first.text  # DEU is not registered yet
    registered(api, "DEU")
    before = events(api)
    retry = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("k"))
    assert retry.status_code == 422 and retry.json() == first.json()
    assert events(api) == before


def test_the_same_key_with_a_different_request_gets_422(api: Api) -> None:
    registered(api, "FRA", "DEU")
    fra = api.as_state("FRA")
    first = api.call("POST", "/notifications", fra, json=notification(), headers=keyed("k"))
    assert first.status_code == 201
    before = events(api)
    changed = {**notification(), "incident_type": "phishing"}
    r = api.call("POST", "/notifications", fra, json=changed, headers=keyed("k"))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "idempotency_key_reused"
    elsewhere = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("k", **AT_2))
    assert elsewhere.status_code == 422
    assert events(api) == before


def test_keys_are_scoped_to_the_credential_that_sent_them(api: Api) -> None:
    registered(api, "FRA", "DEU")
    fra_answer = api.call(
        "POST", "/notifications", api.as_state("FRA"), json=notification(), headers=keyed("k")
    )
    assert fra_answer.status_code == 201
    deu_answer = api.call(
        "POST",
        "/notifications",
        api.as_state("DEU"),
        json=notification("FRA"),
        headers=keyed("k"),
    )
    assert deu_answer.status_code == 201, deu_answer.text
    assert "Idempotent-Replayed" not in deu_answer.headers
    assert deu_answer.json()["sender"] == "DEU"
    assert deu_answer.json()["id"] != fra_answer.json()["id"]


def test_the_same_key_while_the_first_request_is_in_flight_gets_409(api: Api) -> None:
    registered(api, "FRA")
    services = api.client.app.state.services.get()  # type: ignore[attr-defined]
    application = services.application
    original = application.confirm_entry
    entered, release = threading.Event(), threading.Event()

    def slow_confirm(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        return original(*args, **kwargs)

    application.confirm_entry = slow_confirm
    fra = api.as_state("FRA")
    outcome: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: outcome.setdefault(
            "r", api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("slow", **AT_2))
        )
    )
    first.start()
    try:
        assert entered.wait(30)
        second = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("slow", **AT_2))
        assert second.status_code == 409, second.text
        assert second.json()["error"] == "request_in_flight"
        assert second.headers["Retry-After"]
    finally:
        release.set()
        first.join(30)
    application.confirm_entry = original
    assert outcome["r"].status_code == 200, outcome["r"].text
    third = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("slow", **AT_2))
    assert third.status_code == 200 and third.json() == outcome["r"].json()
    assert application.get_entry("FRA").version == 3


def test_a_write_that_committed_before_a_503_is_not_written_again(api: Api) -> None:
    """The full-disk case: the events commit, then the answer fails (here: waiting for the
    views to reach the write). The retry must not write again; it is told the request was
    applied."""
    registered(api, "FRA")
    services = api.client.app.state.services.get()  # type: ignore[attr-defined]
    original = services.wait_for_position
    calls = {"n": 0}

    def failing_wait(wanted: int, bound: float | None = None) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # the first is the gate's (Pocdir-Min-Position); then the write's
            raise OperationalError("disk full")
        return original(wanted, bound)

    services.wait_for_position = failing_wait
    fra = api.as_state("FRA")
    failed = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("disk", **AT_2))
    services.wait_for_position = original
    assert failed.status_code == 503, failed.text
    assert api.application.get_entry("FRA").version == 3  # it did commit
    retry = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("disk", **AT_2))
    assert retry.status_code == 409, retry.text
    assert retry.json()["error"] == "already_applied"
    assert api.application.get_entry("FRA").version == 3


def test_a_server_error_that_committed_nothing_lets_the_retry_run(api: Api) -> None:
    registered(api, "FRA")
    services = api.client.app.state.services.get()  # type: ignore[attr-defined]
    application = services.application
    original = application.confirm_entry

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    application.confirm_entry = unreachable
    fra = api.as_state("FRA")
    failed = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("down", **AT_2))
    application.confirm_entry = original
    assert failed.status_code == 503
    retry = api.call("POST", "/entries/FRA/confirmation", fra, headers=keyed("down", **AT_2))
    assert retry.status_code == 200, retry.text
    assert application.get_entry("FRA").version == 3


def test_an_invalid_key_gets_422_and_writes_nothing(api: Api) -> None:
    registered(api, "FRA")
    before = events(api)
    for bad in (b"", b"with space", "é".encode(), b"x" * 256):
        r = api.call(
            "POST",
            "/entries/FRA/confirmation",
            api.as_state("FRA"),
            headers={"Idempotency-Key": bad, **AT_2},
        )
        assert r.status_code == 422, (bad, r.text)
    assert events(api) == before


def test_the_key_is_written_in_the_events_transaction(api: Api, backend: Backend) -> None:
    """The key's row names the position of the events it wrote."""
    registered(api, "FRA")
    r = api.call(
        "POST", "/entries/FRA/confirmation", api.as_state("FRA"), headers=keyed("tx", **AT_2)
    )
    assert r.status_code == 200
    rows = backend.execute("SELECT key, position FROM idempotency_keys WHERE key = %s", ("tx",))
    assert rows == [("tx", events(api))]


def test_a_reservation_whose_request_died_is_taken_over_and_only_one_commit_counts(
    backend: Backend, clock: SimulatedClock
) -> None:
    """A server killed mid-request leaves its key reserved; after the lease a retry takes it
    over. Should the first request still be running, its commit is refused (it names the old
    reservation), so one of the two commits, never both."""
    from domain.idempotency import IdempotencyKey, RequestInFlight
    from infra.idempotency import IdempotencyKeys, InFlight, Reserved
    from infra.wiring import build_application
    from tests.support.builders import state

    app = build_application(backend.settings, clock=clock)
    try:
        now = [1000.0]
        keys = IdempotencyKeys(app.recorder, None, lease=10, clock=lambda: now[0])  # type: ignore[arg-type]
        key = IdempotencyKey("state:FRA/x", "k", "digest")
        first = keys.take(key)
        assert isinstance(first, Reserved)
        now[0] += 5
        assert isinstance(keys.take(key), InFlight)
        now[0] += 6
        second = keys.take(key)
        assert isinstance(second, Reserved) and second.key.holder != first.key.holder
        with pytest.raises(RequestInFlight):
            app.register_state(state("FRA"), "FRA", idempotency=first.key)
        assert "FRA" not in {e.code for e in app.registered_states()}
        app.register_state(state("FRA"), "FRA", idempotency=second.key)
        assert app.get_entry("FRA").version == 1
    finally:
        app.close()
