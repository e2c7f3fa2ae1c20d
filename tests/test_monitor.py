"""``pocdir monitor --state FRA`` (issue 16, item 6): over a verified mirror, every event of
FRA's entry and key set with who signed it; the operator writing in FRA's name is an ALARM
naming the position (exit 1); the Secretariat's onboarding and re-onboarding are shown as
such; ``--key`` pins FRA's own keys. The record is real (signed State writes), published as
tlog-tiles by the tests' independent writer. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from domain.signing import SignedWrite, SignerKind, SigningContext, signing
from domain.state_entry import state_entry_id
from domain.state_keys import EncryptionKey
from domain.statement import Statement, key_fingerprint, sign_statement
from domain.values import Contact
from infra.note import SignerKey
from tests.support.builders import SECRETARIAT, contact_data, state
from tests.support.cli import run
from tests.support.db import Backend
from tests.support.http import Api
from tests.support.officials import Official, onboard, signed_call
from tests.support.record_keys import record_key_files
from tests.support.tlog_tiles import Log, publish, served_tiles

#: Slow: CLI processes (and a served one).
pytestmark = pytest.mark.slow

ENTRY = "/entries/FRA"


@dataclass
class Monitored:
    api: Api
    backend: Backend
    log: Log
    source: Path
    mirror: Path
    policy: Path
    fra: Official

    def monitor(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Publish the record as it is now, mirror it, and run the monitor over the mirror."""
        publish(self.api.application, self.source, self.log)
        mirrored = run(
            self.backend.url,
            "mirror",
            str(self.source),
            str(self.mirror),
            "--policy",
            str(self.policy),
        )
        assert mirrored.returncode == 0, mirrored.stderr
        return run(
            self.backend.url,
            "monitor",
            "--state",
            "FRA",
            "--policy",
            str(self.policy),
            "--mirror",
            str(self.mirror),
            *args,
        )

    def head(self) -> int:
        return self.api.application.recorder.max_notification_id() or 0


@pytest.fixture
def monitored(api: Api, backend: Backend, tmp_path: Path) -> Monitored:
    """FRA onboarded, its entry registered and a contact added; DEU too, which FRA's
    monitor must not list."""
    fra = onboard(api.application, "FRA")
    assert signed_call(api, fra, "POST", ENTRY, {}).status_code == 201
    r = signed_call(
        api, fra, "POST", f"{ENTRY}/contacts", {"contact": contact_data("cert")}, if_match='"1"'
    )
    assert r.status_code == 200, r.text
    deu = onboard(api.application, "DEU")
    assert signed_call(api, deu, "POST", "/entries/DEU", {}).status_code == 201
    log, source = Log(), tmp_path / "served"
    source.mkdir()
    policy = tmp_path / "policy.txt"
    policy.write_text(log.policy(), encoding="utf-8")
    return Monitored(api, backend, log, source, tmp_path / "mirror", policy, fra)


def lines(stdout: str) -> list[list[str]]:
    """The event lines: position, aggregate, event, signer, key, status."""
    return [line.split("\t") for line in stdout.splitlines() if "\t" in line]


def test_fras_own_writes_are_listed_with_their_signer_and_key(monitored: Monitored) -> None:
    m = monitored
    r = m.monitor()
    assert r.returncode == 0, r.stderr
    fra_key = key_fingerprint(m.fra.signing_key.public_key())
    operator = SignerKey.load(record_key_files()[0]).private_key()
    events = lines(r.stdout)
    assert [(e[1], e[2], e[3], e[5]) for e in events] == [
        ("keys", "StateKeys.KeysBound", "secretariat", "onboarding by the Secretariat"),
        ("entry", "StateEntry.Registered", "state:FRA", "signed by FRA"),
        ("entry", "StateEntry.ContactAdded", "state:FRA", "signed by FRA"),
    ]
    assert events[0][4] == key_fingerprint(operator.public_key())
    assert {e[4] for e in events[1:]} == {fra_key}
    assert r.stdout.startswith("monitor FRA: test.example/pocdir at tree size ")
    assert r.stdout.endswith("FRA: 3 events, 0 alarms\n")
    as_json = m.monitor("--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["state"] == "FRA" and report["alarms"] == []
    assert [e["position"] for e in report["events"]] == [int(e[0]) for e in events]


def test_an_event_the_operator_wrote_in_fras_name_is_an_alarm(monitored: Monitored) -> None:
    m = monitored
    m.api.application.remove_contact(state("FRA"), "FRA", "cert")  # no statement of FRA's
    unsigned = m.head()
    operator = SignerKey.load(record_key_files()[0]).private_key()
    entry = m.api.application.get_entry("FRA")
    statement = Statement.create(
        command="entry.add_contact",
        state="FRA",
        aggregate=state_entry_id("FRA"),
        expected_version=entry.version,
        fields={"body": {"contact": contact_data("cert")}, "query": {}},
        idempotency_key="forged-1",
        created_at=m.api.application.clock.now(),
    )
    forged = SignedWrite(
        sign_statement(statement, operator), "state:FRA", operator.public_key().public_bytes_raw()
    )
    with signing(SigningContext(SignerKind.STATE, state_write=forged)):
        m.api.application.add_contact(state("FRA"), "FRA", Contact.from_dict(contact_data("cert")))
    operator_signed = m.head()
    r = m.monitor()
    assert r.returncode == 1, r.stdout
    error = r.stderr.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in r.stderr
    assert error.startswith("error: ALARM: 2 event(s) of FRA not signed by FRA")
    assert f"position {unsigned}:" in error and f"position {operator_signed}:" in error
    assert key_fingerprint(operator.public_key()) in error
    alarms = {int(e[0]): e for e in lines(r.stdout) if e[5].startswith("ALARM")}
    assert set(alarms) == {unsigned, operator_signed}
    assert alarms[unsigned][3] == "no signed statement"
    assert alarms[operator_signed][3:5] == ["state:FRA", key_fingerprint(operator.public_key())]
    assert r.stdout.endswith("FRA: 5 events, 2 alarms\n")


def test_a_reonboarding_is_shown_as_such_and_key_pinning_catches_its_keys(
    monitored: Monitored,
) -> None:
    """The Secretariat's re-onboarding is its to sign; a write signed with the keys it
    installed is FRA's as far as the record goes, but not with FRA's own keys: --key says so."""
    m = monitored
    original = key_fingerprint(m.fra.signing_key.public_key())
    new = Official("FRA")
    with signing(SigningContext(SignerKind.SECRETARIAT)):
        m.api.application.reonboard_state_keys(
            SECRETARIAT,
            "FRA",
            EncryptionKey.from_bytes(new.encryption_key.public_key().to_bytes()),
            (new.public_signing_key,),
        )
    reonboarded = m.head()
    r = signed_call(
        m.api,
        new,
        "POST",
        f"{ENTRY}/contacts",
        {"contact": contact_data("csirt")},
        if_match='"2"',
    )
    assert r.status_code == 200, r.text
    written = m.head()
    # The verifier learns the keys a re-onboarding installs (its statement names no State).
    verified = run(m.backend.url, "verify")
    assert verified.returncode == 0, verified.stderr
    plain = m.monitor()
    assert plain.returncode == 0, plain.stderr
    by_position = {int(e[0]): e for e in lines(plain.stdout)}
    assert by_position[reonboarded][2:4] == ["StateKeys.KeysReonboarded", "secretariat"]
    assert by_position[reonboarded][5] == "re-onboarding by the Secretariat"
    assert by_position[written][3:6] == [
        "state:FRA",
        key_fingerprint(new.signing_key.public_key()),
        "signed by FRA",
    ]
    pinned = m.monitor("--key", original)
    assert pinned.returncode == 1, pinned.stdout
    assert f"position {written}:" in pinned.stderr
    assert "not one of the keys given" in pinned.stderr
    assert f"position {reonboarded}:" not in pinned.stderr
    both = m.monitor("--key", original, "--key", key_fingerprint(new.signing_key.public_key()))
    assert both.returncode == 0, both.stderr


def test_the_monitor_mirrors_from_a_server_first(monitored: Monitored, tmp_path: Path) -> None:
    m = monitored
    publish(m.api.application, m.source, m.log)
    secret = secrets.token_urlsafe(24)
    token = tmp_path / "token"
    token.write_text(secret, encoding="utf-8")
    with served_tiles(m.source, secret, tmp_path / "requests.log") as base:
        r = run(
            m.backend.url,
            "monitor",
            "--state",
            "FRA",
            "--policy",
            str(m.policy),
            "--url",
            base,
            "--token-file",
            str(token),
            "--mirror",
            str(m.mirror),
        )
        assert r.returncode == 0, r.stderr
        assert "(new mirror)" in r.stderr
        assert r.stdout.endswith("FRA: 3 events, 0 alarms\n")
        missing = run(
            m.backend.url, "monitor", "--state", "FRA", "--policy", str(m.policy), "--url", base
        )
        assert missing.returncode == 2 and "give --mirror DIR" in missing.stderr
        no_state = run(
            m.backend.url,
            "monitor",
            "--state",
            "XXX",
            "--policy",
            str(m.policy),
            "--mirror",
            str(m.mirror),
        )
        assert no_state.returncode == 2 and "--state" in no_state.stderr
