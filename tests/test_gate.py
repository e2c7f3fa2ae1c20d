"""The request gate (issue 12, defect 3): a body over the limit is refused with 413 before it
is read, and nothing of a body is read or parsed before the token is known good."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.settings import Settings
from tests.support.db import Backend
from tests.support.http import Api, api_for

LIMIT = 4096


@pytest.fixture
def api(sqlite_backend: Backend) -> Iterator[Api]:
    settings = Settings(database_url=sqlite_backend.url, max_body_bytes=LIMIT)
    with api_for(settings) as a:
        yield a


def test_a_body_over_the_limit_gets_413_with_or_without_a_token(api: Api) -> None:
    big = b"{" + b" " * LIMIT + b"}"
    for who in ({}, api.as_state("FRA")):
        r = api.call(
            "POST", "/entries/FRA", who, content=big, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_large" and str(LIMIT) in r.json()["detail"]


def test_a_streamed_body_over_the_limit_gets_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    r = api.call("POST", "/entries/FRA", api.as_state("FRA"), content=chunks())
    assert r.status_code == 413, r.text


def test_an_anonymous_body_is_not_parsed_before_the_401(api: Api) -> None:
    """Before the gate, an invalid body without a token was parsed and answered 422."""
    for who in ({}, {"Authorization": "Bearer pocdir_unknown"}):
        r = api.call(
            "POST",
            "/notifications",
            who,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_body_within_the_limit_is_served(api: Api) -> None:
    r = api.call("POST", "/entries/FRA", api.as_state("FRA"), json={})
    assert r.status_code == 201, r.text


def test_the_limit_is_a_setting_with_a_clear_error() -> None:
    from infra.settings import SettingsError

    with pytest.raises(SettingsError, match="POCDIR_MAX_BODY_BYTES"):
        Settings.from_env({"POCDIR_MAX_BODY_BYTES": "lots"})
    assert Settings.from_env({"POCDIR_MAX_BODY_BYTES": "65536"}).max_body_bytes == 65536
