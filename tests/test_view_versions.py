"""Versioned views (issue 14, item 3): views written by projectors of another version are
rebuilt from the record when a server starts, into a copy swapped in when done; meanwhile
the old views are served and ``/ready`` says "rebuilding"; a rebuild that crashes leaves the
old views serving, and the next start rebuilds again."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import OperationalError

import infra.wiring
from api.cli.console import CONSOLE
from domain.application import PocDirectory
from domain.values import Contact, Role
from infra.follower import bring_views_up
from infra.lease import build_lease
from infra.settings import Settings
from infra.wiring import build_views
from projections.queries import ViewQueries
from projections.runner import VIEWS_VERSION, ViewRunner, project_views
from projections.store import ViewRecorder, dumps
from tests.support.builders import contact_data, state
from tests.support.db import Backend
from tests.support.http import Api, api_for

#: Slow (each test rebuilds views while servers run, seconds each): `make check` leaves it out.
pytestmark = pytest.mark.slow

#: The versions an earlier pocdir's projectors wrote (the directory's was 0).
OLDER = dumps({"directory": 0, "history": 1, "review": 1})
#: A liveness bound only, so that a broken rebuild fails the test instead of hanging it.
DEADLINE = 60.0


class Gate:
    """A projector that stops at its first event until the test opens it, then projects as
    ``project_views`` does, or (``fail``) raises there: a rebuild that crashes mid-way."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.reached, self.opened, self.failed = (threading.Event() for _ in range(3))

    def __call__(self, event: Any, position: int, docs: Any) -> None:
        self.reached.set()
        if not self.opened.wait(DEADLINE):
            raise TimeoutError("the test never opened the gate")
        if self.fail:
            self.failed.set()
            raise OperationalError("the rebuilding process died")
        project_views(event, position, docs)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Gate]]:
    """Servers started in the test run their views through the first gate of the list."""
    gates: list[Gate] = []

    def runner(app: PocDirectory, view: ViewRecorder, settings: Settings) -> ViewRunner:
        return ViewRunner(app, view, projector=gates[0])

    monkeypatch.setattr(infra.wiring, "build_view_runner", runner)
    yield gates


def quick(backend: Backend) -> Settings:
    """The backend's settings with a short poll, so that a retried rebuild comes soon."""
    return dataclasses.replace(backend.settings, runner_poll_seconds=0.1)


def older_views(app: PocDirectory, backend: Backend) -> tuple[list[tuple[str, str, str]], str]:
    """A record, and views that an earlier pocdir's projectors wrote from it: they say so,
    and differ from this code's (no history items). Returns this code's views of the record
    (what a replay writes) and a State's token."""
    fra = state("FRA")
    app.register_state(fra, "FRA")
    app.add_contact(fra, "FRA", Contact.from_dict(contact_data("cert")))
    app.register_state(state("DEU"), "DEU")
    _, token = app.issue_credential(CONSOLE, Role.STATE, "FRA")
    view = build_views(app, backend.settings)
    ViewRunner(app, view).rebuild()
    replayed = view.dump()
    backend.execute("DELETE FROM view_history")
    view.record_versions(OLDER)
    return replayed, token


def history(api: Api, token: str) -> httpx.Response:
    """FRA's history as the views hold it now (no waiting for a position)."""
    headers = {"Authorization": f"Bearer {token}", "Pocdir-Min-Position": "0"}
    return api.client.get("/history/FRA", headers=headers)


def served_views(api: Api) -> ViewRecorder:
    services = api.client.app.state.services.get()  # type: ignore[attr-defined]
    view: ViewRecorder = services.view
    return view


def eventually_ready(api: Api) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE
    while (r := api.client.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    return r


def test_views_of_an_older_version_are_rebuilt_on_start_while_the_old_ones_serve(
    backend: Backend, app: PocDirectory, gated: list[Gate]
) -> None:
    replayed, token = older_views(app, backend)
    gate = Gate()
    gated.append(gate)
    with api_for(quick(backend)) as api:
        assert gate.reached.wait(DEADLINE)  # the server's runner is rebuilding
        ready = api.client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "rebuilding"
        assert "being rebuilt" in ready.json()["detail"]
        assert ready.headers["Retry-After"]
        old = history(api, token)  # the old views are still served meanwhile
        assert old.status_code == 200 and old.json() == [], old.text
        gate.opened.set()
        assert eventually_ready(api).json()["status"] == "ready"
        view = served_views(api)
        assert view.stored_versions() == VIEWS_VERSION
        assert view.dump() == replayed
        rebuilt = history(api, token)
        assert rebuilt.status_code == 200, rebuilt.text
        events = [item["event"] for item in ViewQueries(view).history("FRA")]
        assert [item["event"] for item in rebuilt.json()] == events
        assert "entry ContactAdded" in events


def test_a_rebuild_that_crashes_leaves_the_old_views_serving_and_the_next_start_rebuilds(
    backend: Backend, app: PocDirectory, gated: list[Gate]
) -> None:
    replayed, token = older_views(app, backend)
    older = build_views(app, backend.settings).dump()
    crashing = Gate(fail=True)
    crashing.opened.set()
    gated.append(crashing)
    with api_for(quick(backend)) as api:
        assert crashing.failed.wait(DEADLINE)
        ready = api.client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "rebuilding", ready.text
        old = history(api, token)
        assert old.status_code == 200 and old.json() == [], old.text
        view = served_views(api)
        assert view.stored_versions() == OLDER
        assert view.dump() == older
    gated[0] = Gate()
    gated[0].opened.set()
    with api_for(quick(backend)) as api:
        eventually_ready(api)
        view = served_views(api)
        assert view.stored_versions() == VIEWS_VERSION
        assert view.dump() == replayed
        assert "entry ContactAdded" in [item["event"] for item in history(api, token).json()]


def test_views_built_from_scratch_record_their_versions_and_are_not_rebuilt(
    backend: Backend, app: PocDirectory
) -> None:
    """A runner that builds empty views says which projectors built them; only views that
    say otherwise (or nothing, from before views had versions) and hold events are outdated."""
    app.register_state(state("FRA"), "FRA")
    view = build_views(app, backend.settings)
    runner = ViewRunner(app, view)
    assert view.stored_versions() is None and not runner.outdated()  # empty: nothing to redo
    runner.catch_up()
    assert view.stored_versions() == VIEWS_VERSION and not runner.outdated()
    assert not runner.rebuild_if_outdated()
    view.record_versions(OLDER)
    assert runner.outdated()
    backend.execute("DELETE FROM view_versions")  # views from before versions
    assert runner.outdated()
    assert runner.rebuild_if_outdated()
    assert view.stored_versions() == VIEWS_VERSION and not runner.outdated()


def test_only_the_runner_leases_holder_rebuilds_and_the_others_say_they_wait_for_it(
    backend: Backend, app: PocDirectory, gated: list[Gate]
) -> None:
    """A server that does not hold the runner lease leaves outdated views to its holder
    (here another process, which does not rebuild them) and is not ready meanwhile; once the
    lease is free it takes it and rebuilds them itself."""
    replayed, _ = older_views(app, backend)
    gate = Gate()
    gate.opened.set()
    gated.append(gate)
    settings = dataclasses.replace(quick(backend), runner_lease_seconds=1.0, read_wait_seconds=0.5)
    holder = build_lease(app.recorder, settings)
    assert holder.keep()
    try:
        with api_for(settings) as api:
            ready = api.client.get("/ready")
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "rebuilding" and body["holds_runner_lease"] is False
            assert "holding the runner lease rebuilds" in body["detail"]
            assert not gate.reached.is_set()
            assert served_views(api).stored_versions() == OLDER
            holder.release()
            eventually_ready(api)
            assert gate.reached.is_set()
            assert served_views(api).stored_versions() == VIEWS_VERSION
            assert served_views(api).dump() == replayed
    finally:
        holder.release()


def test_a_cli_read_rebuilds_outdated_views_before_it_reads_them(
    backend: Backend, app: PocDirectory
) -> None:
    """With no server holding the lease, a CLI read brings the views up itself: views of
    other projectors are rebuilt first, never followed with this code's output mixed in."""
    replayed, _ = older_views(app, backend)
    view = build_views(app, backend.settings)
    head = app.recorder.max_notification_id() or 0
    settings = backend.settings
    lease = build_lease(app.recorder, settings)
    bring_views_up(
        ViewRunner(app, view), lease, head, seconds=settings.runner_lease_seconds, bound=1.0
    )
    assert view.stored_versions() == VIEWS_VERSION
    assert view.dump() == replayed
