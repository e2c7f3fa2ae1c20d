"""The operator reads nothing of a sealed exchange (issue 15, "what must hold").

The operator runs the server: it holds the database, the cipher key (``POCDIR_CIPHER_KEY``)
and everything the server prints or logs. These tests act as that operator over a whole
sealed exchange run in-process (notify, acknowledge, respond, consent asked and granted,
shared with a third State, read by it, revoked) and search every row of every table, every
stored event decrypted and decoded with the cipher key, an audit bundle and all captured
output for marker strings in plain, base64 and JSON-escaped forms.

The search is shown to work: the same operator finds the marker of one plaintext
notification between States without keys.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from infra.audit import export_bundle
from infra.settings import Settings
from infra.wiring import build_transparency
from tests.support.db import Backend
from tests.support.http import Api, api_for, register
from tests.support.sealed import Operator, SealedStates, bind_keys, operator_finds


def markers() -> dict[str, str]:
    """Distinctive strings, fresh for each run, one per kind of content. The indicator's is
    lowercase and a domain name, since indicators are stored normalised."""
    tag = uuid4().hex[:12]
    return {
        "description": f"DESCRIPTION-MARK-{tag}",
        "indicator": f"ioc-mark-{tag}.example",
        "supporting": f"SUPPORTING-MARK-{tag}",
        "response": f"RESPONSE-MARK-{tag}",
    }


def cipher_settings(backend: Backend) -> Settings:
    """The backend's settings (the record's signing keys too), with a cipher key."""
    key = base64.b64encode(os.urandom(32)).decode()
    return dataclasses.replace(backend.settings, cipher_key=key)


def everything_the_operator_holds(
    api: Api, backend: Backend, settings: Settings, tmp_path: Path, output: str
) -> list[tuple[str, bytes]]:
    """The database (every table, and every event decrypted and decoded), an audit bundle,
    and the server's captured output."""
    operator = Operator(backend, api.application)
    bundle = tmp_path / "bundle"
    export_bundle(api.application, build_transparency(api.application, settings), bundle)
    places = list(operator.database())
    assert any(where.startswith("table") for where, _ in places)
    files = list(operator.files(bundle))
    assert any("records.jsonl" in name for name, _ in files), [n for n, _ in files]
    return places + files + [("server output", output.encode("utf-8"))]


def sealed_exchange(api: Api, marks: dict[str, str]) -> tuple[dict[str, Any], SealedStates]:
    """The whole exchange through the API, content sealed and opened with the State client,
    after a refused attempt to send it in plain text; returns what the third State
    decrypted (its description, indicator, text, responses)."""
    for code in ("FRA", "DEU", "ITA"):
        register(api, code)
    states = SealedStates(api, bind_keys(api.application, "FRA", "DEU", "ITA"))
    content = {
        "description": {"language": "en", "text": marks["description"], "english": None},
        "supporting_information": {
            "indicators": [{"kind": "domain", "value": marks["indicator"]}],
            "text": {"language": "en", "text": marks["supporting"], "english": None},
        },
    }
    # Sent in plain text by a State with keys, the content is refused and leaves no trace.
    plain = {
        "recipient": "DEU",
        "incident_type": "malware",
        "good_faith_attested": True,
        "description": marks["description"],
        "indicators": [{"kind": "domain", "value": marks["indicator"]}],
        "supporting_text": marks["supporting"],
    }
    assert states.write("FRA", "POST", "/notifications", plain).status_code == 422
    r = states.notify("FRA", "DEU", content)
    assert r.status_code == 201, r.text
    n = r.json()
    assert states.write("DEU", "POST", f"/notifications/{n['id']}/acknowledgement").is_success
    r = states.respond("DEU", states.read("DEU", n["id"]).json(), marks["response"])
    assert r.status_code == 200, r.text
    consent = states.write(
        "FRA", "POST", "/consents", {"notification_id": n["id"], "third_state": "ITA"}
    ).json()
    r = states.write("DEU", "POST", f"/consents/{consent['id']}/grant")
    assert r.json()["status"] == "effective", r.text
    r = states.share("DEU", consent, states.read("DEU", n["id"]).json())
    assert r.status_code == 200, r.text
    served = states.read("ITA", n["id"])
    assert served.status_code == 200, served.text
    opened, responses = states.open("ITA", served.json())
    info = opened.supporting_information
    read = {
        "description": opened.description.text,
        "indicator": info.indicators[0].value,
        "supporting": info.text.text if info.text else None,
        "response": responses[0].text,
    }
    assert states.write("FRA", "POST", f"/consents/{consent['id']}/revoke").is_success
    assert states.read("ITA", n["id"]).status_code == 404
    return read, states


def test_the_operator_finds_no_content_of_a_sealed_exchange(
    backend: Backend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    marks = markers()
    settings = cipher_settings(backend)
    with api_for(settings) as api:
        read, _ = sealed_exchange(api, marks)
        # The third State read every marker: the content was there to be found.
        assert read == marks
        out, err = capfd.readouterr()
        output = "\n".join([caplog.text, out, err])
        assert caplog.records, "the server logged nothing at DEBUG: the capture is not working"
        places = everything_the_operator_holds(api, backend, settings, tmp_path, output)
        assert operator_finds(marks.values(), places) == []


def test_the_operator_finds_plain_content_so_the_search_above_can_fail(
    backend: Backend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """One plaintext notification between States without keys: stored encrypted at rest
    only, so the operator, holding the cipher key, reads it."""
    caplog.set_level(logging.DEBUG)
    marks = markers()
    settings = cipher_settings(backend)
    with api_for(settings) as api:
        for code in ("FRA", "DEU"):
            register(api, code)
        r = api.call(
            "POST",
            "/notifications",
            api.as_state("FRA"),
            json={
                "recipient": "DEU",
                "incident_type": "malware",
                "description": marks["description"],
                "good_faith_attested": True,
                "indicators": [{"kind": "domain", "value": marks["indicator"]}],
            },
        )
        assert r.status_code == 201, r.text
        out, err = capfd.readouterr()
        places = everything_the_operator_holds(
            api, backend, settings, tmp_path, "\n".join([caplog.text, out, err])
        )
        found = operator_finds(marks.values(), places)
        found_markers = {marker for marker, _, _ in found}
        assert found_markers == {marks["description"], marks["indicator"]}
        # Not as stored (the record is encrypted at rest), but with the cipher key.
        assert found and not any(where.endswith("as stored") for _, _, where in found), found
        assert any("decrypted" in where and "table" in where for _, _, where in found), found
        assert any("bundle" in where for _, _, where in found), found
