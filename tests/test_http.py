"""The HTTP API on both backends: authentication, R15 on entries, If-Match, confidentiality
of exchanges (R11-R14), and the JSON error shape."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from domain.clock import SimulatedClock
from domain.values import Role
from tests.support.builders import contact_data
from tests.support.db import Backend
from tests.support.http import Api, assert_error, register, send


def test_missing_wrong_or_revoked_token_gets_401(api: Api) -> None:
    assert_error(api.client.get("/directory"), 401)
    assert_error(api.call("GET", "/directory", {"Authorization": "Bearer pocdir_nope"}), 401)
    who = api.as_state("FRA")
    assert api.call("GET", "/directory", who).status_code == 200
    credential_id = api.application.authenticate(api.token(Role.STATE, "FRA")).id
    from uuid import UUID

    from api.cli.console import CONSOLE

    api.application.revoke_credential(CONSOLE, UUID(credential_id))
    body = assert_error(api.call("GET", "/directory", who), 401)
    assert "revoked" in body["detail"]


def test_a_role_not_admitted_gets_403(api: Api) -> None:
    assert_error(api.call("GET", "/directory", api.auth(Role.REVIEWER)), 403)
    assert_error(api.call("GET", "/audit/head", api.as_state("FRA")), 403)
    assert api.call("GET", "/audit/head", api.auth(Role.AUDITOR)).status_code == 200


def test_a_state_changes_only_its_own_entry(api: Api) -> None:
    register(api, "FRA")
    body = assert_error(
        api.call(
            "POST",
            "/entries/FRA/contacts",
            api.as_state("DEU"),
            json={"contact": contact_data("x")},
        ),
        403,
    )
    assert "R15" in body["detail"]
    entry = api.call("GET", "/directory/FRA", api.as_state("DEU")).json()
    assert [c["contact_id"] for c in entry["contacts"]] == ["cert"]


def test_a_stale_if_match_gets_412_and_changes_nothing(api: Api) -> None:
    register(api, "FRA")
    who = api.as_state("FRA")
    first = api.call("GET", "/entries/FRA", who)
    etag = first.headers["ETag"]
    ok = api.call(
        "POST",
        "/entries/FRA/contacts",
        who,
        headers={"If-Match": etag},
        json={"contact": contact_data("second")},
    )
    assert ok.status_code == 200 and ok.headers["ETag"] != etag
    stale = api.call(
        "PUT",
        "/entries/FRA/contacts/cert",
        who,
        headers={"If-Match": etag},
        json={"contact": contact_data("cert", hours="Mon-Fri 09:00-17:00")},
    )
    assert_error(stale, 412)
    now = api.call("GET", "/entries/FRA", who).json()
    assert {c["contact_id"]: c["hours"] for c in now["contacts"]} == {
        "cert": "24/7",
        "second": "24/7",
    }


@pytest.mark.parametrize("if_match", [None, "*", " * "])
def test_an_entry_change_without_a_concrete_if_match_gets_428_and_changes_nothing(
    api: Api, if_match: str | None
) -> None:
    """Lost updates are prevented for every client, not only those that opt in."""
    register(api, "FRA")
    who = api.as_state("FRA")
    before = api.application.get_entry("FRA").version
    headers = {} if if_match is None else {"If-Match": if_match}
    for method, path, body in [
        ("POST", "/entries/FRA/contacts", {"contact": contact_data("second")}),
        (
            "PUT",
            "/entries/FRA/contacts/cert",
            {"contact": contact_data("cert", hours="Mon-Fri 09:00-17:00")},
        ),
        ("DELETE", "/entries/FRA/contacts/cert", None),
        ("PUT", "/entries/FRA/coordination-contact", {"contact_id": "cert"}),
        ("PUT", "/entries/FRA/preferred-channel", {"contact_id": "cert", "channel": "email"}),
        ("POST", "/entries/FRA/confirmation", None),
        ("POST", "/entries/FRA/withdrawal", {}),
    ]:
        r = api.call(method, path, who, json=body, headers=headers)
        error = assert_error(r, 428)
        assert error["error"] == "precondition_required", (method, path)
        assert "GET /entries/" in error["detail"] and "ETag" in error["detail"], error
    assert api.application.get_entry("FRA").version == before


def test_if_match_is_documented_as_required_on_entry_changes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/entries/{state}"):
            continue
        for method, operation in operations.items():
            if_match = [p for p in operation.get("parameters", []) if p["name"] == "if-match"]
            if method == "get" or path == "/entries/{state}":  # reading, and registering
                assert not if_match, (method, path)
            else:
                assert if_match and if_match[0]["required"] is True, (method, path)
                assert "428" in operation["responses"], (method, path)


def test_an_error_that_cites_a_rule_links_its_section_of_docs_domain_md(api: Api) -> None:
    """Every error message that names R1-R17 carries ``see``, the rule's section."""
    register(api, "FRA")
    r = api.call(
        "POST",
        "/entries/FRA/contacts",
        api.as_state("DEU"),
        json={"contact": contact_data("x")},
        headers={"If-Match": '"2"'},
    )
    body = assert_error(r, 403)
    assert "R15" in body["detail"] and body["see"] == "docs/domain.md#r15"
    to_no_state = {
        "recipient": "XXX",
        "incident_type": "malware",
        "description": "Botnet C2 observed in your address space",
        "good_faith_attested": True,
    }
    not_member = api.call("POST", "/notifications", api.as_state("FRA"), json=to_no_state)
    assert assert_error(not_member, 422).get("see", "").endswith("#r1")
    plain = assert_error(api.call("GET", "/notifications/not-a-uuid", api.as_state("FRA")), 404)
    assert "see" not in plain


def test_every_rule_link_names_a_section_of_docs_domain_md() -> None:
    import re
    from pathlib import Path

    from api.errors import rule_link
    from domain.rules import RULE_NUMBERS, rule_anchor

    text = (Path(__file__).parent.parent / "docs" / "domain.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'^#+ <a id="(r\d+)"></a>', text, re.M))
    assert {rule_anchor(n) for n in RULE_NUMBERS} == anchors
    assert rule_link("stale (R5: within 30 days)") == "docs/domain.md#r5"
    assert rule_link("R11 says no") == "docs/domain.md#r11"
    assert rule_link("version 3, not R2D2") is None


def test_route_lookup_puts_the_coordination_contact_first(api: Api) -> None:
    register(api, "FRA", contact_data("cert"), contact_data("anssi"))
    who = api.as_state("FRA")
    r = api.call(
        "PUT",
        "/entries/FRA/coordination-contact",
        who,
        json={"contact_id": "cert"},
        headers=api.if_match("FRA"),
    )
    assert r.status_code == 200, r.text
    route = api.call("GET", "/directory/FRA/route?incident_type=malware", api.as_state("DEU"))
    assert route.status_code == 200, route.text
    assert [c["contact_id"] for c in route.json()["contacts"]] == ["cert", "anssi"]
    unknown = api.call("GET", "/directory/FRA/route?incident_type=nope", api.as_state("DEU"))
    assert_error(unknown, 422)


def test_an_exchange_does_not_exist_for_a_state_not_party_to_it(api: Api) -> None:
    for code in ("FRA", "DEU", "ITA"):
        register(api, code)
    n = send(api, "FRA", "DEU")
    outsider = api.as_state("ITA")
    for method, path, body in [
        ("GET", f"/notifications/{n['id']}", None),
        ("POST", f"/notifications/{n['id']}/acknowledgement", None),
        ("POST", f"/notifications/{n['id']}/responses", {"response": "x"}),
        ("POST", "/consents", {"notification_id": n["id"], "third_state": "ESP"}),
    ]:
        assert_error(api.call(method, path, outsider, json=body), 404)
    assert api.call("GET", "/notifications/inbox", outsider).json() == []
    assert api.call("GET", "/consents", outsider).json() == []
    inbox = api.call("GET", "/notifications/inbox", api.as_state("DEU")).json()
    assert [i["id"] for i in inbox] == [n["id"]] and "description" not in inbox[0]


def test_a_consented_third_state_reads_the_exchange_until_consent_is_revoked(api: Api) -> None:
    for code in ("FRA", "DEU", "ITA"):
        register(api, code)
    n = send(api, "FRA", "DEU")
    third = api.as_state("ITA")
    c = api.call(
        "POST",
        "/consents",
        api.as_state("FRA"),
        json={"notification_id": n["id"], "third_state": "ITA"},
    ).json()
    assert c["status"] == "pending"
    assert_error(api.call("GET", f"/notifications/{n['id']}", third), 404)
    assert_error(api.call("GET", f"/consents/{c['id']}", third), 404)
    granted = api.call("POST", f"/consents/{c['id']}/grant", api.as_state("DEU"))
    assert granted.json()["status"] == "effective"
    read = api.call("GET", f"/notifications/{n['id']}", third)
    assert read.status_code == 200 and read.json()["indicators"][0]["value"] == "203.0.113.7"
    consent = api.application.get_consent(__import__("uuid").UUID(c["id"]))
    assert [type(e).__name__ for e in api.application.repository.event_store.get(consent.id)][
        -1
    ] == "ContentRead"
    history = api.call("GET", "/history/FRA", api.as_state("FRA")).json()
    assert any(i["event"] == "shared exchange read" and i["by"] == "ITA" for i in history)
    api.call("POST", f"/consents/{c['id']}/revoke", api.as_state("DEU"))
    assert_error(api.call("GET", f"/notifications/{n['id']}", third), 404)


def test_the_secretariat_sees_who_when_and_status_but_never_content(api: Api) -> None:
    for code in ("FRA", "DEU"):
        register(api, code)
    n = send(api, "FRA", "DEU")
    secretariat = api.auth(Role.SECRETARIAT)
    one = api.call("GET", f"/notifications/{n['id']}", secretariat)
    assert one.status_code == 200
    assert one.json()["sender"] == "FRA" and "203.0.113.7" not in one.text
    assert "Botnet" not in one.text
    listing = api.call("GET", "/exchanges", secretariat)
    assert [e["id"] for e in listing.json()] == [n["id"]] and "Botnet" not in listing.text
    for role in (Role.AUDITOR, Role.REVIEWER):
        assert_error(api.call("GET", f"/notifications/{n['id']}", api.auth(role)), 403)


def test_every_event_records_the_credential_that_caused_it(api: Api) -> None:
    register(api, "FRA")
    credential = api.application.authenticate(api.token(Role.STATE, "FRA"))
    entry = api.application.get_entry("FRA")
    events = list(api.application.repository.event_store.get(entry.id))
    assert {e.actor for e in events} == {credential.ref}


def test_pending_shows_every_state_to_the_secretariat_and_its_own_to_a_state(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    everyone = api.call("GET", "/pending?today=2025-03-10", api.auth(Role.SECRETARIAT)).json()
    assert {s["state"] for s in everyone["states"]} == {"FRA", "DEU"}
    own = api.call("GET", "/pending?today=2025-03-10", api.as_state("FRA")).json()
    assert [s["state"] for s in own["states"]] == ["FRA"]


def test_a_state_exports_its_own_history_as_csv_or_json(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    send(api, "FRA", "DEU")
    who = api.as_state("FRA")
    as_json = api.call("GET", "/history/FRA?from=2025-01-01&to=2025-12-31", who)
    assert "notification sent" in [i["event"] for i in as_json.json()]
    as_csv = api.call("GET", "/history/FRA?format=csv", who)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0].startswith("position,at,state,event")
    assert "Botnet" not in as_csv.text + as_json.text
    assert_error(api.call("GET", "/history/DEU", who), 403)


def test_reading_another_states_history_is_refused_as_a_read_not_as_a_change(api: Api) -> None:
    """The 403 names what was refused: reading a history, not changing an entry (R15)."""
    register(api, "FRA")
    body = assert_error(api.call("GET", "/history/FRA", api.as_state("DEU")), 403)
    assert "history" in body["detail"] and "FRA" in body["detail"]
    assert "change" not in body["detail"] and "R15" not in body["detail"]


def test_auditors_page_through_the_stored_bytes(api: Api, backend: Backend) -> None:
    register(api, "FRA")
    auditor = api.auth(Role.AUDITOR)
    head = api.call("GET", "/audit/head", auditor).json()
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.call("GET", f"/audit/records?after={after}&limit=2", auditor).json()
        records += page["records"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(records) == head["size"] and records[-1]["link"] == head["link"]
    stored = backend.execute(
        f"SELECT state FROM {backend.events_table} ORDER BY {backend.position_column}"
    )
    assert [base64.b64decode(r["state"]) for r in records] == [bytes(s[0]) for s in stored]
    verification = api.call("GET", "/audit/verification", auditor).json()
    assert verification["valid"] and verification["head"] == head["link"]


def test_bad_input_gets_a_json_error_saying_what_to_fix(api: Api) -> None:
    register(api, "FRA")
    who = api.as_state("FRA")
    bad_contact = api.call(
        "POST",
        "/entries/FRA/contacts",
        who,
        json={"contact": contact_data("x", time_zone="Mars/Olympus")},
        headers=api.if_match("FRA"),
    )
    assert "time_zone" in assert_error(bad_contact, 422)["detail"]
    missing = api.call("POST", "/notifications", who, json={"recipient": "DEU"})
    assert "incident_type" in assert_error(missing, 422)["detail"]
    assert_error(api.call("POST", "/entries/FRA", who, json={}), 409)
    assert_error(api.call("GET", "/notifications/not-a-uuid", who), 404)
    assert_error(
        api.call(
            "POST",
            "/entries/FRA/contacts",
            who,
            headers={"If-Match": "x"},
            json={"contact": contact_data("y")},
        ),
        422,
    )


def test_concurrent_changes_get_200_or_409_and_nothing_is_lost(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    register(api, "FRA")
    who = api.as_state("FRA")

    def add(n: int) -> tuple[str, int]:
        """Add a contact as a careful client does: with the ETag just read, reading it
        again while another change got in first (412)."""
        cid = f"c{n}"
        for _ in range(100):
            r = api.call(
                "POST",
                "/entries/FRA/contacts",
                who,
                json={"contact": contact_data(cid)},
                headers=api.if_match("FRA"),
            )
            if r.status_code != 412:
                break
        return cid, r.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(add, range(24)))
    assert {status for _, status in results} <= {200, 409}, results
    kept = {c["contact_id"] for c in api.call("GET", "/entries/FRA", who).json()["contacts"]}
    assert kept == {"cert"} | {cid for cid, status in results if status == 200}


def test_the_secretariat_runs_a_check_that_states_answer(api: Api, clock: SimulatedClock) -> None:
    from datetime import timedelta

    register(api, "FRA")
    register(api, "DEU")
    deadline = (clock.now() + timedelta(days=2)).isoformat()
    secretariat = api.auth(Role.SECRETARIAT)
    launched = api.call(
        "POST",
        "/checks",
        secretariat,
        json={"level": "technical", "deadline": deadline, "challenge": False},
    )
    assert launched.status_code == 201, launched.text
    check_id = launched.json()["id"]
    assert_error(
        api.call(
            "POST",
            "/checks",
            api.as_state("FRA"),
            json={"level": "technical", "deadline": deadline, "challenge": False},
        ),
        403,
    )
    answered = api.call(
        "POST", f"/checks/{check_id}/answer", api.as_state("FRA"), json={"contact_id": "cert"}
    )
    assert answered.status_code == 200 and answered.json()["result"] == "answered in time"
    assert_error(api.call("GET", f"/checks/{check_id}", api.as_state("FRA")), 403)
    results = api.call("GET", f"/checks/{check_id}", secretariat).json()
    assert {s["state"]: s["result"] for s in results["states"]}["FRA"] == "answered in time"
    mine = api.call("GET", "/checks", api.as_state("DEU")).json()
    assert [(c["id"], c["answered_at"]) for c in mine] == [(check_id, None)]


def test_reviewers_read_the_report_and_never_contact_details(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    send(api, "FRA", "DEU")
    reviewer = api.auth(Role.REVIEWER)
    period = "from=2025-01-01&to=2025-12-31"
    as_json = api.call("GET", f"/review/report?{period}", reviewer)
    assert as_json.status_code == 200, as_json.text
    html = api.call("GET", f"/review/report?{period}&format=html", reviewer)
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    for text in (as_json.text, html.text):
        assert "cert@example.org" not in text and "203.0.113.7" not in text
        assert "Botnet" not in text
    assert_error(api.call("GET", f"/review/report?{period}", api.auth(Role.SECRETARIAT)), 403)
    for table in ("&table=nope", ""):  # an unknown table, or none: invalid input
        refused = api.call("GET", f"/review/report?{period}&format=csv{table}", reviewer)
        detail = assert_error(refused, 422)["detail"]
        assert "participation-" in detail and "summary" in detail, detail


def test_reviewers_read_the_summary_csv_the_cli_writes(api: Api) -> None:
    from datetime import date

    from projections.review_report import build_report, report_csv

    register(api, "FRA")
    reviewer = api.auth(Role.REVIEWER)
    period = "from=2025-01-01&to=2025-12-31"
    r = api.call("GET", f"/review/report?{period}&format=csv&table=summary", reviewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    view = api.client.app.state.services.get().view  # type: ignore[attr-defined]
    written = report_csv(build_report(view, date(2025, 1, 1), date(2025, 12, 31)))
    assert r.text == written["summary.csv"] and r.text.startswith("section,figure,value")


def test_offer_texts_are_read_by_the_needing_state_and_the_offering_state_only(
    api: Api,
) -> None:
    for code in ("FRA", "DEU", "ITA", "ESP"):
        register(api, code)
    nid = api.call(
        "POST", "/needs", api.as_state("FRA"), json={"category": "forensics", "text": "Disk help"}
    ).json()["id"]
    for code, offer in (("DEU", "Our CERT can help"), ("ITA", "Two analysts for a week")):
        r = api.call("POST", f"/needs/{nid}/offers", api.as_state(code), json={"text": offer})
        assert r.status_code == 200, r.text
    as_read = {
        who: api.call("GET", f"/needs/{nid}", headers).json()["offers"]
        for who, headers in (
            ("FRA", api.as_state("FRA")),
            ("DEU", api.as_state("DEU")),
            ("ESP", api.as_state("ESP")),
            ("secretariat", api.auth(Role.SECRETARIAT)),
        )
    }
    texts = {
        who: {o["state"]: (o["text"] or {}).get("text") for o in offers}
        for who, offers in as_read.items()
    }
    assert texts["FRA"] == {"DEU": "Our CERT can help", "ITA": "Two analysts for a week"}
    assert texts["DEU"] == {"DEU": "Our CERT can help", "ITA": None}
    assert texts["ESP"] == texts["secretariat"] == {"DEU": None, "ITA": None}
    assert all(o["at"].endswith("Z") for o in as_read["FRA"])
    listed = api.call("GET", "/needs", api.as_state("FRA")).json()
    assert [o["state"] for o in listed[0]["offers"]] == ["DEU", "ITA"]
    assert "Our CERT" not in str(listed)


def test_a_need_is_matched_with_an_offer_and_fulfilled(api: Api) -> None:
    for code in ("FRA", "DEU"):
        register(api, code)
    need = api.call(
        "POST",
        "/needs",
        api.as_state("FRA"),
        json={"category": "forensics", "text": "Help analysing a disk image"},
    )
    assert need.status_code == 201, need.text
    nid = need.json()["id"]
    assert_error(
        api.call("POST", f"/needs/{nid}/offers", api.as_state("FRA"), json={"text": "self"}), 422
    )
    offered = api.call(
        "POST", f"/needs/{nid}/offers", api.as_state("DEU"), json={"text": "Our CERT can help"}
    )
    assert offered.status_code == 200, offered.text
    assert_error(
        api.call(
            "POST", f"/needs/{nid}/acceptance", api.as_state("DEU"), json={"offering_state": "DEU"}
        ),
        403,
    )
    matched = api.call(
        "POST", f"/needs/{nid}/acceptance", api.as_state("FRA"), json={"offering_state": "DEU"}
    )
    assert matched.json()["status"] == "matched" and matched.json()["matched_with"] == "DEU"
    done = api.call("POST", f"/needs/{nid}/fulfilment", api.as_state("FRA"))
    assert done.json()["status"] == "fulfilled"
    listed = api.call("GET", "/needs", api.auth(Role.SECRETARIAT)).json()
    assert [(n["id"], n["matched_with"]) for n in listed] == [(nid, "DEU")]
    assert "disk image" not in str(listed)
    assert_error(api.call("GET", "/needs", api.auth(Role.REVIEWER)), 403)


def _json_shapes(value: Any, where: str = "") -> list[str]:
    """Where ``value`` breaks the JSON convention: a time not in UTC with ``Z``, or an
    object keyed by ids (contacts, offers) instead of a list."""
    import re

    problems = []
    if isinstance(value, str) and re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T[0-9:.]+([+-]\d{2}:\d{2})", value
    ):
        problems.append(f"{where}: {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in ("contacts", "offers", "checks", "states") and isinstance(v, dict):
                problems.append(f"{where}.{k}: an object, not a list")
            problems += _json_shapes(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            problems += _json_shapes(v, f"{where}[{i}]")
    return problems


def test_every_json_answer_follows_one_convention(
    api: Api, clock: SimulatedClock, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Own ids are ``id``, references ``<thing>_id``, collections lists, times UTC with ``Z``;
    and the CLI's ``--format json`` gives the HTTP API's shapes."""
    import json
    from datetime import timedelta

    from typer.testing import CliRunner

    from api.cli.main import app as cli

    register(api, "FRA")
    register(api, "DEU")
    note = send(api, "FRA", "DEU")
    deu, fra = api.as_state("DEU"), api.as_state("FRA")
    api.call("POST", f"/notifications/{note['id']}/acknowledgement", deu)
    secretariat = api.auth(Role.SECRETARIAT)
    deadline = (clock.now() + timedelta(days=2)).isoformat()
    check = api.call(
        "POST",
        "/checks",
        secretariat,
        json={"level": "technical", "deadline": deadline, "challenge": False},
    )
    assert check.status_code == 201 and "check_id" not in check.json(), check.text
    answer = api.call(
        "POST", f"/checks/{check.json()['id']}/answer", fra, json={"contact_id": "cert"}
    )
    assert answer.json()["check_id"] == check.json()["id"]  # a reference: <thing>_id
    need = api.call("POST", "/needs", fra, json={"category": "forensics", "text": "Disk help"})
    api.call("POST", f"/needs/{need.json()['id']}/offers", deu, json={"text": "We can help"})
    answers = {
        path: api.call("GET", path, who).json()
        for path, who in [
            ("/directory", fra),
            ("/directory/FRA", deu),
            ("/entries/FRA", fra),
            ("/notifications/outbox", fra),
            (f"/notifications/{note['id']}", fra),
            ("/exchanges", secretariat),
            ("/checks", secretariat),
            ("/checks", fra),
            (f"/checks/{check.json()['id']}", secretariat),
            ("/needs", fra),
            (f"/needs/{need.json()['id']}", fra),
            ("/history/FRA", fra),
            ("/pending", secretariat),
        ]
    }
    answers["answer"] = answer.json()
    problems = [p for path, body in answers.items() for p in _json_shapes(body, path)]
    assert not problems, problems
    for path in ("/checks", "/needs", "/exchanges", "/notifications/outbox"):
        assert all("id" in item for item in answers[path]), path

    monkeypatch.setenv("POCDIR_DATABASE_URL", backend.url)
    runner = CliRunner()
    for args, path in [
        (["directory", "FRA", "--format", "json"], "/directory/FRA"),
        (["directory", "--format", "json"], "/directory"),
    ]:
        result = runner.invoke(cli, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == answers[path], args
    listed = runner.invoke(cli, ["check", "list", "--format", "json"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.output)
    assert [c["id"] for c in shown] == [check.json()["id"]] and not _json_shapes(shown)


def test_a_states_own_text_that_looks_like_a_time_is_answered_as_written() -> None:
    """The JSON convention rewrites times to ``Z`` in time fields only: a contact's or an
    offer's text is the State's own words, never reformatted."""
    from api.schemas import public_json

    written = "2025-03-01T09:00:00+01:00"
    shaped = public_json({"name": written, "offers": [{"at": written, "text": written}]})
    assert shaped == {
        "name": written,
        "offers": [{"at": "2025-03-01T08:00:00Z", "text": written}],
    }
