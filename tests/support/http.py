"""An API client per test: the app over the test's own database, and tokens per role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.cli.console import CONSOLE
from domain.application import PocDirectory
from domain.clock import Clock
from domain.values import Role
from infra.settings import Settings
from tests.support.builders import contact_data


@dataclass
class Api:
    client: TestClient
    application: PocDirectory
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: Role | str, state: str | None = None) -> str:
        """A token for ``role`` (and ``state``), issued once per test and reused."""
        key = f"{role}:{state}"
        if key not in self.tokens:
            _, self.tokens[key] = self.application.issue_credential(CONSOLE, Role(role), state)
        return self.tokens[key]

    def auth(self, role: Role | str, state: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, state)}"}

    def as_state(self, code: str) -> dict[str, str]:
        return self.auth(Role.STATE, code)

    def if_match(self, code: str) -> dict[str, str]:
        """``If-Match`` with ``code``'s entry's current ETag, read as a client reads it (GET
        /entries/{code}): every change of an existing entry must send it (428 without)."""
        r = self.client.get(f"/entries/{code}", headers=self.as_state(code))
        assert r.status_code == 200, r.text
        return {"If-Match": r.headers["ETag"]}

    def call(self, method: str, path: str, who: dict[str, str], **kwargs: Any) -> Any:
        return self.client.request(
            method, path, headers={**who, **kwargs.pop("headers", {})}, **kwargs
        )


class ReadingOwnWrites(TestClient):
    """A client that reads its own writes, as a well-behaved client does: every request
    carries ``Pocdir-Min-Position``, the record position of everything written so far (this
    test is the only writer, through the API or through ``Api.application``), unless the
    request sets that header itself. The server projects off the request path, so without
    it a read right after a write may see the views from before it."""

    application: PocDirectory | None = None

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        headers = dict(kwargs.pop("headers", None) or {})
        if self.application is not None and not any(
            k.lower() == "pocdir-min-position" for k in headers
        ):
            position = self.application.recorder.max_notification_id() or 0
            headers["Pocdir-Min-Position"] = str(position)
        return super().request(method, url, headers=headers, **kwargs)


@contextmanager
def api_for(settings: Settings, clock: Clock | None = None) -> Iterator[Api]:
    app = create_app(settings, clock=clock)
    with ReadingOwnWrites(app, raise_server_exceptions=False) as client:
        application = app.state.services.get().application
        client.application = application
        yield Api(client, application)


def register(api: Api, code: str, *contacts: dict[str, Any]) -> dict[str, Any]:
    who = api.as_state(code)
    r = api.call("POST", f"/entries/{code}", who, json={})
    assert r.status_code == 201, r.text
    for c in contacts or (contact_data("cert"),):
        r = api.call(
            "POST",
            f"/entries/{code}/contacts",
            who,
            json={"contact": c},
            headers=api.if_match(code),
        )
        assert r.status_code == 200, r.text
    return dict(r.json())


def send(api: Api, sender: str, recipient: str) -> dict[str, Any]:
    r = api.call(
        "POST",
        "/notifications",
        api.as_state(sender),
        json={
            "recipient": recipient,
            "incident_type": "malware",
            "description": "Botnet C2 observed in your address space",
            "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
            "good_faith_attested": True,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def assert_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert {"error", "detail"} <= set(body) <= {"error", "detail", "see"}, body
    assert body["detail"], body
    return dict(body)


def notify(recipient: str, description: Any = "Botnet C2 seen in your space") -> dict[str, Any]:
    """The body of a notification to ``recipient`` (``description`` may be any JSON)."""
    return {
        "recipient": recipient,
        "incident_type": "malware",
        "description": description,
        "indicators": [{"kind": "ipv4", "value": "203.0.113.7"}],
        "good_faith_attested": True,
    }
