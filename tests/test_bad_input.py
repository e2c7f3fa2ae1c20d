"""Bad input that once reached a 500: texts that are not Unicode, unicode digits where ASCII
ones are meant, and dates whose arithmetic leaves the calendar. Each is refused with the JSON
error shape (HTTP) or one line and exit 2 (CLI), saying what to fix, and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain.errors import ValidationError
from domain.values import Contact, Text
from tests.support.builders import contact_data
from tests.support.db import Backend
from tests.support.http import Api, register

#: A lone UTF-16 surrogate as JSON spells it: valid JSON, but not a Unicode scalar value, so
#: no UTF-8 text holds it.
SURROGATE = "\\ud800"


def raw_json(api: Api, method: str, path: str, who: dict[str, str], body: str) -> Any:
    """Send ``body`` as it is: the JSON escape of a surrogate must reach the server intact."""
    headers = {**who, "Content-Type": "application/json"}
    if path.startswith("/entries/") and path.count("/") > 2:  # a change: If-Match required
        headers.update(api.if_match(path.split("/")[2]))
    return api.client.request(method, path, headers=headers, content=body.encode("ascii"))


def with_surrogate(document: dict[str, Any], *path: str) -> str:
    """``document`` as JSON, with the string at ``path`` holding a lone surrogate."""
    marker = "@@surrogate@@"
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(document).replace(marker, f"abc{SURROGATE}def")


def assert_refused_naming(r: Any, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) - {"see"} == {"error", "detail"}, body  # "see": a rule's section
    assert field in body["detail"] and "Unicode" in body["detail"], body


def events(api: Api) -> int:
    return len(api.application.recorder.select_notifications(0, 10_000))


NOTIFICATION: dict[str, Any] = {
    "recipient": "DEU",
    "incident_type": "malware",
    "description": "Botnet C2 observed",
    "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
    "good_faith_attested": True,
}


def test_a_surrogate_in_a_notification_description_is_refused(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    before = events(api)
    body = with_surrogate(dict(NOTIFICATION), "description")
    r = raw_json(api, "POST", "/notifications", api.as_state("FRA"), body)
    assert_refused_naming(r, "description")
    assert events(api) == before


def test_a_surrogate_in_supporting_text_is_refused(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    body = with_surrogate(dict(NOTIFICATION), "supporting_text")
    r = raw_json(api, "POST", "/notifications", api.as_state("FRA"), body)
    assert_refused_naming(r, "supporting_text")


def test_a_surrogate_in_a_response_is_refused(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    sent = api.call("POST", "/notifications", api.as_state("FRA"), json=NOTIFICATION).json()
    deu = api.as_state("DEU")
    api.call("POST", f"/notifications/{sent['id']}/acknowledgement", deu)
    body = with_surrogate({"response": ""}, "response")
    r = raw_json(api, "POST", f"/notifications/{sent['id']}/responses", deu, body)
    assert_refused_naming(r, "response")


def test_a_surrogate_in_a_need_is_refused(api: Api) -> None:
    register(api, "FRA")
    body = with_surrogate({"category": "forensics", "text": ""}, "text")
    r = raw_json(api, "POST", "/needs", api.as_state("FRA"), body)
    assert_refused_naming(r, "text")


def test_a_surrogate_in_an_offer_is_refused(api: Api) -> None:
    register(api, "FRA")
    register(api, "DEU")
    need = api.call(
        "POST", "/needs", api.as_state("FRA"), json={"category": "forensics", "text": "Help"}
    ).json()
    body = with_surrogate({"text": ""}, "text")
    r = raw_json(api, "POST", f"/needs/{need['id']}/offers", api.as_state("DEU"), body)
    assert_refused_naming(r, "text")


def test_a_surrogate_in_a_contacts_agency_is_refused(api: Api) -> None:
    register(api, "FRA")
    before = events(api)
    body = with_surrogate({"contact": contact_data("x")}, "contact", "agency")
    r = raw_json(api, "POST", "/entries/FRA/contacts", api.as_state("FRA"), body)
    assert_refused_naming(r, "agency")
    assert events(api) == before


@pytest.mark.parametrize(
    "field",
    ["agency", "function", "english", "secure", "email"],
)
def test_the_domain_refuses_every_free_text_of_a_contact_that_is_not_unicode(field: str) -> None:
    """Every caller (HTTP, CLI, simulator) builds contacts here, so the check is here."""
    bad = "abc\ud800def"
    data = contact_data("x")
    if field == "english":
        data["agency"] = {"language": "fr", "text": "Agence", "english": bad}
    elif field == "secure":
        data["channels"] = [{"kind": "secure", "address": bad, "fingerprint": "a" * 40}]
    elif field == "email":
        data["channels"] = [{"kind": "email", "address": f"{bad}@example.org"}]
    else:
        data[field] = bad
    with pytest.raises(ValidationError, match="Unicode"):
        Contact.from_dict(data)


def test_the_domain_refuses_a_text_that_is_not_unicode_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="^description: .*Unicode"):
        Text.from_dict("abc\udfffdef", field="description")
    with pytest.raises(ValidationError, match="english.*Unicode"):
        Text.parse("fr", "texte", "abc\ud800")


def test_an_error_whose_message_holds_a_surrogate_is_still_a_json_error() -> None:
    """Messages quote names of fields and, at most, short escaped values; should one ever
    carry text that is not Unicode, the refusal must still be sent, not become a 500."""
    from api.errors import error_response

    r = error_response(422, "invalid", "unknown key 'a\ud800b'")
    body = json.loads(bytes(r.body))
    assert body["error"] == "invalid" and body["detail"].startswith("unknown key 'a")


def raw_headers_request(api: Api, method: str, path: str, headers: dict[str, bytes]) -> Any:
    """A request whose header values are sent as these exact bytes. The test client
    re-encodes headers as UTF-8; a real client may send any byte, which servers decode as
    Latin-1 (byte 0xB2 becomes '²')."""
    import asyncio

    import httpx

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.request(method, path, headers=headers, json={})

    return asyncio.run(send())


@pytest.mark.parametrize(
    "value", [b'"\xb2"', b"\xb2", b'W/"1\xb9"', b'"\xd9\xa3"', b'"\xef\xbc\x93"']
)
def test_an_if_match_with_a_digit_other_than_0_to_9_gets_422(api: Api, value: bytes) -> None:
    register(api, "FRA")
    token = api.token("state", "FRA").encode("ascii")
    before = events(api)
    r = raw_headers_request(
        api,
        "POST",
        "/entries/FRA/confirmation",
        {"Authorization": b"Bearer " + token, "If-Match": value},
    )
    assert r.status_code == 422, r.text
    assert "If-Match" in r.json()["detail"]
    assert events(api) == before


def test_a_review_period_the_calendar_cannot_end_gets_422_naming_the_valid_range(
    api: Api,
) -> None:
    reviewer = api.auth("reviewer")
    r = api.call("GET", "/review/report?from=9999-12-01&to=9999-12-31", reviewer)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "0001-01-01" in detail and "9998-12-31" in detail, detail
    last = api.call("GET", "/review/report?from=9998-12-01&to=9998-12-31", reviewer)
    assert last.status_code == 200, last.text


@pytest.mark.slow
def test_pocdir_review_refuses_a_period_the_calendar_cannot_end_with_one_line(
    sqlite_backend: Backend,
) -> None:
    from tests.support.cli import run

    result = run(
        sqlite_backend.url,
        "review",
        "--from",
        "9999-12-01",
        "--to",
        "9999-12-31",
        "--format",
        "json",
    )
    assert result.returncode == 2, result.stderr
    assert "9998-12-31" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- other inputs of the same kinds ----------------------------------------------------------

#: Digits of another script, which Python's \d, str.isdigit, int() and UUID() all accept.
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize(
    "override",
    [
        {"hours": "Mon-Fri 0٨:00-18:00"},
        {
            "channels": [
                {"kind": "phone", "address": "+33 " + "1 23 45 67 89".translate(ARABIC_INDIC)}
            ]
        },
    ],
)
def test_contact_hours_and_phone_numbers_take_only_ascii_digits(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Contact.from_dict(contact_data("x", **override))


def test_an_id_spelt_with_other_digits_names_nothing(api: Api) -> None:
    """One resource, one spelling: UUID() reads '١' as 1, so a re-spelt id used to reach the
    notification (and would reach any need, consent or check)."""
    register(api, "FRA")
    register(api, "DEU")
    sent = api.call("POST", "/notifications", api.as_state("FRA"), json=NOTIFICATION).json()
    respelt = sent["id"].translate(ARABIC_INDIC)
    assert respelt != sent["id"]
    r = api.call("GET", f"/notifications/{respelt}", api.as_state("FRA"))
    assert r.status_code == 404, r.text


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("directory", "--at-position", "99999999999999999999"),
        ("proof", "inclusion", "0", "--size", "99999999999999999999"),
        ("proof", "consistency", "1", "99999999999999999999"),
    ],
)
def test_cli_positions_and_sizes_beyond_what_the_record_stores_get_one_line(
    sqlite_backend: Backend, args: tuple[str, ...]
) -> None:
    from tests.support.cli import run

    assert run(sqlite_backend.url, "simulate", "--states", "2", "--days", "2").returncode == 0
    result = run(sqlite_backend.url, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(2**62) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("check", "launch", "--by", "sec\udcffretariat"),
        ("keys", "generate", "{tmp}/key", "--name", "origin\udcff"),
    ],
)
def test_cli_arguments_that_are_not_utf8_get_one_line(
    sqlite_backend: Backend, tmp_path: Any, args: tuple[str, ...]
) -> None:
    """Python gives undecodable argument bytes (here 0xFF) as lone surrogates: an acting
    official's id is recorded on events, a key name is signed, and neither can hold them."""
    from tests.support.cli import run

    assert run(sqlite_backend.url, "simulate", "--states", "2", "--days", "2").returncode == 0
    result = run(sqlite_backend.url, *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "UTF-8" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "key").exists()


@pytest.mark.slow
def test_a_simulation_longer_than_the_calendar_allows_gets_one_line(
    sqlite_backend: Backend,
) -> None:
    from tests.support.cli import run

    result = run(sqlite_backend.url, "simulate", "--states", "2", "--days", "99999999")
    assert result.returncode == 2, result.stderr
    assert "--days" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_surrogate_sent_as_raw_bytes_is_refused_too(api: Api) -> None:
    """Python's JSON decoder reads the UTF-8-like bytes of a surrogate (ED A0 80) as one."""
    register(api, "FRA")
    body = b'{"category": "forensics", "text": "abc\xed\xa0\x80def"}'
    headers = {**api.as_state("FRA"), "Content-Type": "application/json"}
    assert_refused_naming(api.client.post("/needs", headers=headers, content=body), "text")


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/directory/%ED%A0%80"),
        ("GET", "/directory/FRA/route?incident_type=%ED%A0%80"),
        ("DELETE", "/entries/FRA/contacts/%ED%A0%80"),
        ("GET", "/notifications/%ED%A0%80"),
    ],
)
def test_path_and_query_parameters_that_are_not_utf8_get_a_json_4xx(
    api: Api, method: str, path: str
) -> None:
    """Paths and queries are decoded with replacement characters, so no surrogate reaches a
    route from them; this holds the answer to the JSON error shape."""
    register(api, "FRA")
    r = api.call(method, path, api.as_state("FRA"))
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()) - {"see"} == {"error", "detail"}, r.text  # "see": a rule's section
