"""One real ``pocdir serve`` process over HTTP, on SQLite and on PostgreSQL (issue 12): writes
retried with idempotency keys (some of whose first answers the client never reads), a
revocation recorded by another process, and the bad inputs outside testing found. No answer
is a 5xx, the revoked token is refused on the next request, and the record holds exactly the
events that the distinct acknowledged keys (and the consented reads) imply."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.builders import contact_data
from tests.support.cli import issue, recorded_events, run, serving
from tests.support.db import Backend
from tests.support.http import notify

#: Slow (a real `pocdir serve` process): `make check` leaves it out.
pytestmark = pytest.mark.slow

#: The served process's body limit, small so the test's big bodies stay small.
BODY_LIMIT = 65536


@dataclass
class Served:
    """The server under test, and what the client saw."""

    base: str
    port: int
    tokens: dict[str, str]
    statuses: list[tuple[str, str, int]] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    consented_reads: int = 0
    attempts: int = 0
    #: The last record position a write was answered with: sent on every request as
    #: ``Pocdir-Min-Position``, so that the client reads its own writes.
    position: int = 0

    def request(
        self, method: str, path: str, who: str | None, key: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        if key is not None:
            headers["Idempotency-Key"] = key
        headers.setdefault("Pocdir-Min-Position", str(self.position))
        r = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
        self.statuses.append((method, path, r.status_code))
        written = r.headers.get("Pocdir-Position")
        if written is not None:
            self.position = max(self.position, int(written))
        return r

    def write(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        """A write as a careful client makes it: with a key, retried until it is answered
        with something other than 409 in flight or 503; some first attempts are abandoned
        before their answer is read, as when a connection drops."""
        key = str(uuid.uuid4())
        self.attempts += 1
        if self.attempts % 3:
            self.abandon(
                method, path, who, key, kw.get("json"), self.attempts % 3 == 2, kw.get("headers")
            )
        for _ in range(100):
            r = self.request(method, path, who, key, **kw)
            if r.status_code == 503 or (
                r.status_code == 409 and r.json().get("error") == "request_in_flight"
            ):
                time.sleep(0.05)
                continue
            retry = self.request(method, path, who, key, **kw)
            assert retry.status_code == r.status_code and retry.content == r.content
            if r.is_success:
                self.acknowledged.add(key)
            return r
        raise AssertionError(f"{method} {path} was never answered")

    def abandon(
        self,
        method: str,
        path: str,
        who: str,
        key: str,
        body: Any,
        answered: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send the request whole (with ``headers``, e.g. ``If-Match``) and close the
        connection without reading the answer: at once, or (``answered``) once its first
        byte has arrived."""
        payload = json.dumps(body).encode() if body is not None else b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body is not None:  # as httpx sends it: no body, no Content-Type (it is digested)
            extra += "Content-Type: application/json\r\n"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
            f"Authorization: Bearer {self.tokens[who]}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(head.encode() + payload)
            if answered:
                s.recv(1)


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[tuple[Served, Backend]]:
    tokens: dict[str, str] = {}
    credentials: dict[str, str] = {}
    for code in ("FRA", "DEU", "ITA", "ESP"):
        credentials[code], tokens[code] = issue(backend.url, "--role", "state", "--state", code)
    _, tokens["reviewer"] = issue(backend.url, "--role", "reviewer")
    env = {"POCDIR_MAX_BODY_BYTES": str(BODY_LIMIT)}
    with serving(backend.url, tmp_path / "serve.log", env) as base:
        s = Served(base, int(base.rsplit(":", 1)[1]), tokens)
        s.credentials = credentials  # type: ignore[attr-defined]
        yield s, backend


def test_served_retries_revocation_and_bad_input(served: tuple[Served, Backend]) -> None:
    s, backend = served
    cli_events = 5  # the five credentials issued above
    for code in ("FRA", "DEU", "ITA", "ESP"):
        r = s.write("POST", f"/entries/{code}", code, json={})
        assert r.status_code == 201, r.text
        body = {"contact": contact_data("cert")}
        etag = {"If-Match": r.headers["ETag"]}
        r = s.write("POST", f"/entries/{code}/contacts", code, json=body, headers=etag)
        assert r.status_code == 200, r.text

    # Concurrent keyed writes from four clients, half of whose first answers are never read.
    pairs = [("FRA", "DEU"), ("DEU", "ITA"), ("ITA", "FRA"), ("ESP", "FRA")] * 3
    with ThreadPoolExecutor(4) as pool:
        sent = list(
            pool.map(lambda p: s.write("POST", "/notifications", p[0], json=notify(p[1])), pairs)
        )
    assert all(r.status_code == 201 for r in sent), [r.text for r in sent if r.status_code != 201]

    # A consent, and two reads by the third State, each recorded as an event.
    nid = sent[0].json()["id"]
    consent = s.write(
        "POST", "/consents", "FRA", json={"notification_id": nid, "third_state": "ITA"}
    )
    assert consent.status_code == 201, consent.text
    assert s.write("POST", f"/consents/{consent.json()['id']}/grant", "DEU").status_code == 200
    for _ in range(2):
        read = s.request("GET", f"/notifications/{nid}", "ITA")
        assert read.status_code == 200 and "description" in read.json()
        s.consented_reads += 1

    # A revocation recorded by another process, whose views that process then brings up to date.
    assert s.request("GET", "/directory", "ESP").status_code == 200
    assert run(backend.url, "principals", "revoke", s.credentials["ESP"]).returncode == 0  # type: ignore[attr-defined]
    cli_events += 1
    assert run(backend.url, "pending").returncode == 0
    assert s.request("GET", "/directory", "ESP").status_code == 401
    assert s.request("POST", "/entries/ESP/confirmation", "ESP", key="late").status_code == 401

    # The bad inputs: none may reach a 5xx, and none writes anything.
    surrogate = (
        b'{"recipient": "DEU", "incident_type": "malware", "description": "\\ud800", '
        b'"indicators": [], "good_faith_attested": true}'
    )
    r = s.request(
        "POST",
        "/notifications",
        "FRA",
        key="bad-1",
        content=surrogate,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"], r.text
    r = s.request(
        "POST",
        "/entries/FRA/confirmation",
        "FRA",
        key="bad-2",
        headers={"If-Match": '"²"'.encode()},
    )
    assert r.status_code in (412, 422), r.text
    r = s.request("GET", "/review/report?from=9999-12-01&to=9999-12-31&format=json", "reviewer")
    assert r.status_code == 422 and r.json()["error"], r.text
    big = b"{" + b" " * BODY_LIMIT + b"}"
    for who in (None, "FRA"):
        r = s.request(
            "POST", "/notifications", who, content=big, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
    # A body that is announced but never sent: without a token the answer comes at once.
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(
            b"POST /notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 60000\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:80]

    assert [x for x in s.statuses if x[2] >= 500] == []
    expected = cli_events + len(s.acknowledged) + s.consented_reads
    assert recorded_events(backend.url) == expected
