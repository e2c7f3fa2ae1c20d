"""The State client against a real ``pocdir serve`` over TLS with client certificates, on
SQLite and PostgreSQL (issue 15: "the whole exchange runs through the State client"; "the
operator substitutes a State's encryption key, and the client refuses to encrypt to it").

Each official is a ``pocdir-state`` process with its own key store; the Secretariat is the
``pocdir`` console on the server's host.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from state_client.keys import EncryptionPrivateKey
from tests.support.cli import recorded_events
from tests.support.cli import run as pocdir
from tests.support.db import Backend
from tests.support.served_tls import OfficialCli, free_port, make_tls, onboard, serving_tls

T = TypeVar("T")

#: Slow (each test starts a served process and runs the client in processes of its own).
pytestmark = pytest.mark.slow

DESCRIPTION = "MARKER-desc-4c1e Botnet C2 observed in your address space"
SUPPORT = "MARKER-supp-9b07 seen from 02:00 UTC"
RESPONSE = "MARKER-resp-2d5a sinkholed, thank you"


def _eventually(attempt: Callable[[], T | None], seconds: float = 15) -> T:
    """``attempt()`` once it is not None, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = attempt()
        if result is not None:
            return result
        assert time.monotonic() < deadline, "still not so after waiting"
        time.sleep(0.3)


def _read_as_third(official: OfficialCli, notification: str) -> dict[str, Any] | None:
    done = official.run("--json", "read", notification)
    if done.returncode != 0:
        return None
    read = json.loads(done.stdout)
    return dict(read) if read.get("content") is not None else None


def _no_longer_readable(official: OfficialCli, notification: str) -> bool | None:
    """True once ``official`` gets no content (refused, or metadata only)."""
    done = official.run("--json", "read", notification)
    assert "Traceback" not in done.stderr
    if done.returncode != 0:
        return True
    return True if DESCRIPTION not in done.stdout else None


def test_the_client_refuses_a_key_the_operator_substituted(
    backend: Backend, tmp_path: Path
) -> None:
    """The operator re-onboards DEU with a key of its own (its only way to replace every key
    of a State, and an event nobody signs): FRA's client refuses to encrypt to it, names
    DEU and both fingerprints, and nothing is written."""
    url = backend.url
    tls = make_tls(url, tmp_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    fra = onboard(url, tls, tmp_path, "FRA", base)
    deu = onboard(url, tls, tmp_path, "DEU", base)
    deu_fingerprint = deu.public()["encryption_fingerprint"]
    fra.ok("trust", "add", "DEU", deu_fingerprint)
    with serving_tls(url, tls, port, tmp_path / "serve.log"):
        fra.ok("entry", "register")
        deu.ok("entry", "register")
        shown = fra.ok("keys", "show", "--server")
        assert shown["server"]["state"] == "FRA"
        assert fra.ok("trust", "check", "DEU")["fingerprint"] == deu_fingerprint
        # The operator swaps in its own key, by the console, while the server runs.
        operators = EncryptionPrivateKey.generate().public_key()
        (tmp_path / "operator.key").write_bytes(operators.to_bytes())
        (tmp_path / "operator.pem").write_bytes(
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        swapped = pocdir(
            url, "keys", "reonboard", "--state", "DEU",
            "--encryption-key", str(tmp_path / "operator.key"),
            "--signing-key", str(tmp_path / "operator.pem"),
        )  # fmt: skip
        assert swapped.returncode == 0, swapped.stderr
        checked = fra.run("trust", "check", "DEU")
        assert checked.returncode == 1 and "re-onboarded at version 2" in checked.stderr
        before = recorded_events(url)
        refused = fra.run(
            "notify", "--to", "DEU", "--type", "malware", "--description", DESCRIPTION,
            "--indicator", "ipv4:203.0.113.7", "--good-faith",
        )  # fmt: skip
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr
        assert "refusing to encrypt to DEU" in lines[0]
        assert deu_fingerprint in lines[0] and operators.fingerprint() in lines[0]
        assert DESCRIPTION not in refused.stdout + refused.stderr
        assert recorded_events(url) == before


def test_the_whole_exchange_through_the_client(backend: Backend, tmp_path: Path) -> None:
    """Notify, acknowledge, respond, ask for consent, grant, share with a third State, the
    third State reads and decrypts, revoke, the third State can no longer read.

    Needs the sealed exchange API (docs/e2e.md) and the signed-write gate on the server."""
    url = backend.url
    tls = make_tls(url, tmp_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    fra = onboard(url, tls, tmp_path, "FRA", base)
    deu = onboard(url, tls, tmp_path, "DEU", base)
    ita = onboard(url, tls, tmp_path, "ITA", base)
    fingerprints = {o.state: o.public()["encryption_fingerprint"] for o in (fra, deu, ita)}
    for official in (fra, deu, ita):
        for state, fingerprint in fingerprints.items():
            if state != official.state:
                official.ok("trust", "add", state, fingerprint)
    with serving_tls(url, tls, port, tmp_path / "serve.log"):
        for official in (fra, deu, ita):
            official.ok("entry", "register")
        sent = fra.ok(
            "notify", "--to", "DEU", "--type", "malware", "--description", DESCRIPTION,
            "--indicator", "ipv4:203.0.113.7", "--text", SUPPORT, "--good-faith",
        )  # fmt: skip
        notification = sent["body"]["id"]
        assert sent["body"]["description"] is None and sent["body"]["envelope"]
        # DEU's client has written nothing yet, so it cannot ask to read FRA's write: the
        # inbox (a view) may take a moment to show it.
        for _ in range(50):
            inbox = deu.ok("inbox")
            if inbox:
                break
            time.sleep(0.2)
        assert [n["id"] for n in inbox] == [notification]
        opened = deu.ok("read", notification)
        assert opened["content"]["description"]["text"] == DESCRIPTION
        assert opened["content"]["supporting_information"]["text"]["text"] == SUPPORT
        assert opened["content"]["supporting_information"]["indicators"] == [
            {"kind": "ipv4", "value": "203.0.113.7"}
        ]
        deu.ok("ack", notification)
        deu.ok("respond", notification, RESPONSE)
        assert RESPONSE in str(fra.ok("read", notification)["responses"])
        # ITA is no party: it sees no content before a consent.
        assert ita.run("read", notification).returncode != 0
        consent = fra.ok("consent", "ask", notification, "ITA")["body"]["id"]
        # Asking is the asker's grant; the other party grants, and the consent is effective.
        deu.ok("consent", "grant", consent)
        fra.ok("share", consent)
        # ITA's client wrote nothing the share came after, so the server's views (which say
        # whom a consent shares with) may take a moment to show it: wait, bounded.
        third = _eventually(lambda: _read_as_third(ita, notification))
        assert third["content"]["description"]["text"] == DESCRIPTION
        assert RESPONSE in str(third["responses"])
        fra.ok("consent", "revoke", consent)
        _eventually(lambda: _no_longer_readable(ita, notification))
    log = (tmp_path / "serve.log").read_text()
    for marker in (DESCRIPTION, SUPPORT, RESPONSE):
        assert marker not in log
    # Every write the officials' clients signed verifies in the record (pocdir verify checks
    # each signature against the keys valid at its position).
    assert recorded_events(url) > 0


def test_the_client_refuses_a_key_the_operator_wrote_into_the_database(
    backend: Backend, tmp_path: Path
) -> None:
    """The operator holds the database: it rewrites DEU's binding event so that the bound
    encryption key is its own, then serves. FRA's client, which pinned DEU's real
    fingerprint, refuses to encrypt to the key served, and nothing is written."""
    url = backend.url
    tls = make_tls(url, tmp_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    fra = onboard(url, tls, tmp_path, "FRA", base)
    deu = onboard(url, tls, tmp_path, "DEU", base)
    real = deu.public()
    fra.ok("trust", "add", "DEU", real["encryption_fingerprint"])
    operators = EncryptionPrivateKey.generate().public_key()
    operators_b64 = base64.b64encode(operators.to_bytes()).decode()
    table, position = backend.events_table, backend.position_column
    rows = backend.execute(
        f"SELECT {position}, state FROM {table} WHERE topic LIKE %s", ("%KeysBound%",)
    )
    (deu_row,) = [
        (p, bytes(s)) for p, s in rows if real["encryption_fingerprint"].encode() in bytes(s)
    ]
    forged = (
        deu_row[1]
        .replace(real["encryption_key"].encode(), operators_b64.encode())
        .replace(real["encryption_fingerprint"].encode(), operators.fingerprint().encode())
    )
    assert forged != deu_row[1]
    backend.execute(f"UPDATE {table} SET state = %s WHERE {position} = %s", (forged, deu_row[0]))
    with serving_tls(url, tls, port, tmp_path / "serve.log"):
        fra.ok("entry", "register")
        deu.ok("entry", "register")
        (count_before,) = backend.execute(f"SELECT COUNT(*) FROM {table}")[0]
        refused = fra.run(
            "notify", "--to", "DEU", "--type", "malware", "--description", DESCRIPTION,
            "--indicator", "ipv4:203.0.113.7", "--good-faith",
        )  # fmt: skip
        assert refused.returncode == 1, refused.stderr
        line = refused.stderr.strip()
        assert "refusing to encrypt to DEU" in line and "\n" not in line
        assert real["encryption_fingerprint"] in line and operators.fingerprint() in line
        assert backend.execute(f"SELECT COUNT(*) FROM {table}")[0][0] == count_before
