"""A State's own monitor with its own token (issue 16, item 6): ``GET /audit/statements``
gives a State only the statements it may read (``domain.signing.may_read_statement``:
its own, those about its entry and key set, the Secretariat's key bindings), pages correctly
with that filter, and ``pocdir monitor --state FRA`` run with FRA's token over a real
``pocdir serve`` of an encrypted record lists FRA's events, checked against the served
checkpoint, and names the position of an event forged in FRA's name; FRA is never served
another State's statement, and DEU none of FRA's exchanges. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

import api.routers.audit as api_routers_audit
from domain.signing import (
    SignedWrite,
    SignerKind,
    SigningContext,
    may_read_statement,
    signing,
)
from domain.state_entry import state_entry_id
from domain.state_keys import state_keys_id
from domain.statement import Statement, key_fingerprint, sign_statement
from domain.values import Contact, Role
from infra.note import SignerKey
from infra.verify import chained_recorder
from tests.support.builders import contact_data, state
from tests.support.cli import issued, run, serving
from tests.support.db import Backend
from tests.support.http import Api, api_for, register
from tests.support.officials import onboard, signed_call
from tests.support.record_keys import record_key_files
from tests.support.sealed import SealedStates

CONTENT: dict[str, Any] = {
    "description": {"language": "en", "text": "Botnet C2", "english": None},
    "supporting_information": {
        "indicators": [{"kind": "domain", "value": "evil.example"}],
        "text": {"language": "en", "text": "Seen since Monday", "english": None},
    },
}
BINDINGS = {"secretariat.state_keys.keys_bound", "secretariat.state_keys.keys_reonboarded"}
ENTRY = "/entries/FRA"


# -- the rule, on statements as they are stored -----------------------------------------------


def stored(signer: str, **obj: Any) -> tuple[str, str]:
    return signer, json.dumps(obj, sort_keys=True, separators=(",", ":"))


def test_a_state_reads_its_own_its_entrys_and_the_key_bindings_and_nothing_else() -> None:
    fra_entry, fra_keys = str(state_entry_id("FRA")), str(state_keys_id("FRA"))
    deu_keys = str(state_keys_id("DEU"))
    exchange = str(uuid4())
    readable = [
        stored("state:FRA", command="notification.send", state="FRA", aggregate=exchange),
        stored("state:DEU", command="entry.add_contact", state="DEU", aggregate=fra_entry),
        stored("secretariat", command="secretariat.state_keys.keys_bound", aggregate=deu_keys),
        stored(
            "secretariat",
            command="secretariat.state_keys.keys_reonboarded",
            state=None,
            aggregate=fra_keys,
        ),
        stored(
            "secretariat",
            command="secretariat.credential.issued",
            state="FRA",
            aggregate=str(uuid4()),
        ),
        stored("server", command="entry.add_contact", state="FRA", aggregate=str(uuid4())),
    ]
    unreadable = [
        stored("state:DEU", command="notification.send", state="DEU", aggregate=exchange),
        stored("state:ITA", command="notification.acknowledge", state="ITA", aggregate=exchange),
        stored(
            "server",
            command="server.sharing_consent.content_read",
            state=None,
            aggregate=str(uuid4()),
        ),
        stored(
            "secretariat", command="secretariat.check.launched", state=None, aggregate=str(uuid4())
        ),
        stored(
            "secretariat",
            command="secretariat.credential.issued",
            state="DEU",
            aggregate=str(uuid4()),
        ),
        stored("state:DEU", command="secretariat.state_keys.keys_bound", aggregate=deu_keys),
        ("state:DEU", "not json"),
        ("state:DEU", '["a list"]'),
    ]
    assert [may_read_statement("FRA", s, text) for s, text in readable] == [True] * 6
    assert [may_read_statement("FRA", s, text) for s, text in unreadable] == [False] * 8
    assert may_read_statement("FRA", "state:FRA", "not json")


# -- the route --------------------------------------------------------------------------------


def pages(api: Api, who: dict[str, str], limit: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Every statement the route gives ``who``, following ``next_after``; and the scopes."""
    rows, scopes, after = [], set(), 0
    while True:
        r = api.call("GET", f"/audit/statements?after={after}&limit={limit}", who)
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body["statements"]
        scopes.add(body["scope"])
        if body["next_after"] is None:
            return rows, scopes
        after = body["next_after"]


def fras_by_hand(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of an honest record's statements, those FRA may read: its own, and the Secretariat's
    key bindings and those about FRA (its credentials)."""
    return [
        r
        for r in rows
        if r["signer"] == "state:FRA"
        or (
            r["signer"] == "secretariat"
            and (
                json.loads(r["statement"])["command"] in BINDINGS
                or json.loads(r["statement"])["state"] == "FRA"
            )
        )
    ]


def test_the_route_gives_a_state_its_statements_page_by_page(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    fra, deu = onboard(api.application, "FRA"), onboard(api.application, "DEU")
    for official in (fra, deu):
        r = signed_call(api, official, "POST", f"/entries/{official.state}", {})
        assert r.status_code == 201, r.text
    for n in range(3):
        contact = {"contact": contact_data(f"c{n}")}
        for official in (deu, fra):
            path = f"/entries/{official.state}/contacts"
            r = signed_call(api, official, "POST", path, contact, if_match=f'"{n + 1}"')
            assert r.status_code == 200, r.text
    everything, scopes = pages(api, api.auth(Role.AUDITOR), 1000)
    assert scopes == {"all"}
    assert len(everything) == len(chained_recorder(api.application).statement_rows())
    expected = fras_by_hand(everything)
    signers = [r["signer"] for r in expected]
    assert signers.count("state:FRA") == 4  # its entry and three contacts
    assert len(expected) < len(everything)
    for limit in (1, 2, 1000):
        got, scopes = pages(api, api.as_state("FRA"), limit)
        assert scopes == {"state:FRA"}
        assert got == expected, limit
    # A page that looked through as many stored statements as it may ends short, maybe
    # empty, with next_after set: following it still gives every one, once.
    monkeypatch.setattr(api_routers_audit, "MAX_SCANNED", 2)
    short = api.call("GET", "/audit/statements?limit=1000", api.as_state("FRA")).json()
    assert len(short["statements"]) <= 2 and short["next_after"] is not None
    assert pages(api, api.as_state("FRA"), 1000)[0] == expected
    monkeypatch.undo()
    deus, _ = pages(api, api.as_state("DEU"), 1)
    assert {r["signer"] for r in deus} == {"state:DEU", "secretariat"}
    assert all(r["signer"] != "state:FRA" for r in deus)
    for role in (Role.SECRETARIAT, Role.REVIEWER):
        assert api.call("GET", "/audit/statements", api.auth(role)).status_code == 403


# -- over a real server -----------------------------------------------------------------------

#: Slow: a served process and CLI processes.
served_mark = pytest.mark.slow


@dataclass
class Served:
    api: Api
    backend: Backend
    base: str
    key: str
    policy: Path
    tmp: Path
    states: SealedStates
    fras_exchange: str
    deus_exchange: str

    @property
    def env(self) -> dict[str, str]:
        return {"POCDIR_CIPHER_KEY": self.key}

    def token(self, *args: str) -> Path:
        """A credential issued with ``pocdir principals add ARGS``, in a file."""
        added = run(self.backend.url, "principals", "add", *args, env=self.env)
        assert added.returncode == 0, added.stderr
        path = self.tmp / f"token-{uuid4().hex}"
        path.write_text(issued(added.stdout)[1], encoding="utf-8")
        return path

    def checkpoint(self) -> None:
        made = run(self.backend.url, "checkpoint", env=self.env)
        assert made.returncode == 0, made.stderr

    def monitor(self, code: str, token: Path, mirror: Path) -> subprocess.CompletedProcess[str]:
        """Checkpoint the record as it is now, then the monitor from the server."""
        self.checkpoint()
        return run(
            self.backend.url,
            "monitor",
            "--state",
            code,
            "--policy",
            str(self.policy),
            "--url",
            self.base,
            "--token-file",
            str(token),
            "--mirror",
            str(mirror),
        )

    def served_statements(self, token: Path) -> list[dict[str, Any]]:
        """What ``/audit/statements`` of the served process gives the token's holder."""
        secret = token.read_text(encoding="utf-8")
        rows, after = [], 0
        while True:
            r = httpx.get(
                f"{self.base}/audit/statements",
                params={"after": after, "limit": 1000},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            rows += r.json()["statements"]
            if r.json()["next_after"] is None:
                return rows
            after = r.json()["next_after"]


def lines(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in stdout.splitlines() if "\t" in line]


@pytest.fixture
def served(backend: Backend, clock: Any, tmp_path: Path) -> Iterator[Served]:
    """An encrypted record: FRA, DEU and ITA registered, then onboarded; FRA adds a contact,
    notifies ITA (which acknowledges), and DEU notifies FRA; ``pocdir serve`` over it."""
    key = base64.b64encode(os.urandom(32)).decode()
    settings = dataclasses.replace(backend.settings, cipher_key=key)
    with api_for(settings, clock) as api:
        for code in ("FRA", "DEU", "ITA"):
            register(api, code)
        states = SealedStates(api, {c: onboard(api.application, c) for c in ("FRA", "DEU", "ITA")})
        version = api.application.get_entry("FRA").version
        r = states.write(
            "FRA",
            "POST",
            f"{ENTRY}/contacts",
            {"contact": contact_data("csirt")},
            if_match=f'"{version}"',
        )
        assert r.status_code == 200, r.text
        to_ita = states.notify("FRA", "ITA", CONTENT)
        assert to_ita.status_code == 201, to_ita.text
        fras = to_ita.json()["id"]
        ack = states.write("ITA", "POST", f"/notifications/{fras}/acknowledgement")
        assert ack.is_success, ack.text
        to_fra = states.notify("DEU", "FRA", CONTENT)
        assert to_fra.status_code == 201, to_fra.text
        policy = tmp_path / "policy.txt"
        log_key = SignerKey.load(record_key_files()[1]).verifier
        policy.write_text(f"log {log_key}\nquorum none\n", encoding="utf-8")
        with serving(backend.url, tmp_path / "serve.log", {"POCDIR_CIPHER_KEY": key}) as base:
            yield Served(
                api, backend, base, key, policy, tmp_path, states, fras, to_fra.json()["id"]
            )


@served_mark
def test_fra_monitors_itself_with_its_own_token_and_sees_a_forgery(served: Served) -> None:
    s = served
    fra_token, mirror = s.token("--role", "state", "--state", "FRA"), s.tmp / "fra-mirror"
    r = s.monitor("FRA", fra_token, mirror)
    assert r.returncode == 0, r.stderr
    assert "(scope state:FRA)" in r.stderr
    events = lines(r.stdout)
    assert [(e[1], e[2], e[5]) for e in events] == [
        ("entry", "StateEntry.Registered", "unsigned by design"),
        ("entry", "StateEntry.ContactAdded", "unsigned by design"),
        ("keys", "StateKeys.KeysBound", "onboarding by the Secretariat"),
        ("entry", "StateEntry.ContactAdded", "signed by FRA"),
    ]
    assert r.stdout.endswith("FRA: 4 events, 0 alarms\n")
    mirrored = json.loads((mirror / "mirror.json").read_text(encoding="utf-8"))
    assert mirrored["statements"]["scope"] == "state:FRA"

    # What FRA was served is what FRA may read, and no other State's statement.
    served_to_fra = s.served_statements(fra_token)
    everything = s.served_statements(s.token("--role", "auditor"))
    assert served_to_fra == fras_by_hand(everything)
    assert {row["signer"] for row in everything} >= {"state:DEU", "state:ITA", "state:FRA"}
    assert {row["signer"] for row in served_to_fra} == {"state:FRA", "secretariat"}
    aggregates = {json.loads(row["statement"])["aggregate"] for row in served_to_fra}
    assert s.deus_exchange not in aggregates  # DEU notified FRA: DEU's statement, not FRA's
    held = (mirror / "statements.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in held] == served_to_fra

    # The operator writes in FRA's name: unsigned, then signed with the operator's key.
    app = s.api.application
    app.remove_contact(state("FRA"), "FRA", "csirt")
    unsigned = app.recorder.max_notification_id()
    operator = SignerKey.load(record_key_files()[0]).private_key()
    statement = Statement.create(
        command="entry.add_contact",
        state="FRA",
        aggregate=state_entry_id("FRA"),
        expected_version=app.get_entry("FRA").version,
        fields={"body": {"contact": contact_data("csirt")}, "query": {}},
        idempotency_key="forged-1",
        created_at=app.clock.now(),
    )
    forged = SignedWrite(
        sign_statement(statement, operator), "state:FRA", operator.public_key().public_bytes_raw()
    )
    with signing(SigningContext(SignerKind.STATE, state_write=forged)):
        app.add_contact(state("FRA"), "FRA", Contact.from_dict(contact_data("csirt")))
    operator_signed = app.recorder.max_notification_id()
    alarmed = s.monitor("FRA", fra_token, mirror)
    assert alarmed.returncode == 1, alarmed.stdout
    # stderr: the mirror's summary line (--url), then the one line of the alarm.
    summary, error = alarmed.stderr.strip().splitlines()
    assert summary.startswith(f"mirror {mirror}:") and "Traceback" not in alarmed.stderr
    assert error.startswith("error: ALARM: 2 event(s) of FRA not signed by FRA")
    assert f"position {unsigned}:" in error and f"position {operator_signed}:" in error
    assert key_fingerprint(operator.public_key()) in error
    assert alarmed.stdout.endswith("FRA: 6 events, 2 alarms\n")

    # Another State's monitor over FRA's mirror is bad usage, and so is mixing scopes.
    other = run(
        s.backend.url,
        "monitor",
        "--state",
        "DEU",
        "--policy",
        str(s.policy),
        "--mirror",
        str(mirror),
    )
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "holds the statements FRA may read" in other.stderr
    mixed = run(
        s.backend.url,
        "mirror",
        s.base,
        str(mirror),
        "--policy",
        str(s.policy),
        "--token-file",
        str(s.token("--role", "auditor")),
    )
    assert mixed.returncode == 2 and "holds the statements of scope state:FRA" in mixed.stderr

    # The verifier pins the scope it expects: a State's statements are not an auditor's.
    def pinned(token: Path, scope: str) -> subprocess.CompletedProcess[str]:
        return run(
            s.backend.url, "mirror", s.base, str(s.tmp / f"pinned-{uuid4().hex}"),
            "--policy", str(s.policy), "--token-file", str(token), "--scope", scope,
        )  # fmt: skip

    downgraded = pinned(fra_token, "all")
    assert downgraded.returncode == 1, downgraded.stdout
    assert "the source gives the statements of scope state:FRA, not all" in downgraded.stderr
    assert pinned(fra_token, "state:FRA").returncode == 0
    bad = pinned(fra_token, "state:XXX")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--scope" in bad.stderr and "Traceback" not in bad.stderr


@served_mark
def test_deu_gets_what_it_needs_and_none_of_fras_exchanges(served: Served) -> None:
    s = served
    deu_token = s.token("--role", "state", "--state", "DEU")
    served_to_deu = s.served_statements(deu_token)
    assert {row["signer"] for row in served_to_deu} == {"state:DEU", "secretariat"}
    aggregates = {json.loads(row["statement"])["aggregate"] for row in served_to_deu}
    assert s.fras_exchange not in aggregates  # FRA notified ITA; DEU is not party
    assert s.deus_exchange in aggregates  # its own notification to FRA
    # A forgery in FRA's name is not DEU's to judge: its statement is not DEU's to read,
    # so DEU's monitor, which gets no 403 on anything it needs, passes; the auditor's fails.
    s.api.application.remove_contact(state("FRA"), "FRA", "csirt")
    mirror = s.tmp / "deu-mirror"
    r = s.monitor("DEU", deu_token, mirror)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("DEU: 3 events, 0 alarms\n")
    verified = run(s.backend.url, "audit", "verify", str(mirror), "--policy", str(s.policy))
    assert verified.returncode == 0, verified.stderr
    assert "statements of scope state:DEU:" in verified.stdout
    full = s.tmp / "auditor-mirror"
    mirrored = run(
        s.backend.url,
        "mirror",
        s.base,
        str(full),
        "--policy",
        str(s.policy),
        "--token-file",
        str(s.token("--role", "auditor")),
    )
    assert mirrored.returncode == 0, mirrored.stderr
    audited = run(s.backend.url, "audit", "verify", str(full), "--policy", str(s.policy))
    assert audited.returncode == 1 and "no signed statement" in audited.stderr
