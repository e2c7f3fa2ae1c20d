"""A record written before events carried versions (``tests/fixtures/record-v1``, written at
commit d917b88) still verifies, replays and answers as it did then, on SQLite and moved to
PostgreSQL, and takes new events.

What "as it did then" means is ``answers.json``, captured by the old code running
``capture.py``; here the current code runs the same ``capture.answers`` on a copy of the
record. The only differences allowed are the deliberate ones listed in ``expected_answers``
(each a stored shape that changed, with the ``class_version`` whose upcast explains it).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.utils import get_topic

from domain.credential import UNLABELLED, Credential
from domain.values import Principal, Role
from infra.audit import verify_against_checkpoint
from infra.verify import verify_record
from infra.wiring import OpenMode, build_application, build_transparency
from tests.support.cli import run
from tests.support.db import pg_schema

FIXTURE = Path(__file__).parent / "fixtures" / "record-v1"
SECRETARIAT = Principal("console", Role.SECRETARIAT)


def _load_capture() -> ModuleType:
    """``capture.py`` lives beside the record it reads (its folder is not a package name)."""
    spec = importlib.util.spec_from_file_location("record_v1_capture", FIXTURE / "capture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capture = _load_capture()


def expected_answers() -> dict[str, Any]:
    """``answers.json``, with the deliberate changes of the versions since applied:

    - ``Credential.Issued`` v2 (issue 14, item 10): a credential carries a ``label``; an old
      one upcasts to ``UNLABELLED``.
    - ``CapacityNeed`` keeps each offer's text (issue 14, item 10: the State in need reads
      them), from the ``AssistanceOffered`` events it always had; ``found_offer_texts``
      checks them and takes them out of the comparison.
    - ``Notification.Sent`` v2 and ``Responded`` v2 (issue 15, item 4): a notification may be
      sealed; an old one upcasts to ``envelope`` None. A consent may hold keys shared with
      its third State (``shared_keys``), None until a party shares (no old record did).
    - ``Notification.Sent`` v3 (issue 17, part 3): a notification has an urgency and an
      acknowledgement deadline; an old one upcasts to ``normal`` with no deadline and never
      escalates, and its metadata in the views says so.
    - ``CommunicationCheck.Launched`` v2 and ``Closed`` v2 (issue 17): an old check upcasts to
      no challenged contacts and a window of 0 h, and keeps its per-State answers; the
      directory says of each contact whether it is ``verified`` (every old one is).
    - ``StateEntry`` (issue 17): an entry may name its State's webhook; no old one does."""
    answers: dict[str, Any] = json.loads((FIXTURE / "answers.json").read_text())
    no_deadline = {"urgency": "normal", "acknowledge_by": None, "escalations": []}
    no_deadline["escalation_exhausted"] = False
    for aggregate in answers["aggregates"].values():
        if aggregate["class"] == "Credential":
            aggregate["label"] = UNLABELLED
        elif aggregate["class"] == "Notification":
            aggregate["envelope"] = None
            aggregate.update(no_deadline, deadline_seconds=None, escalation_step=None)
        elif aggregate["class"] == "SharingConsent":
            aggregate["shared_keys"] = None
        elif aggregate["class"] == "CommunicationCheck":
            aggregate.update(
                contacts=[],
                window_hours=0,
                challenges={},
                undeliverable={},
                confirmed={},
                closed_results=[],
            )
        elif aggregate["class"] == "StateEntry":
            aggregate["webhook"] = None
    directory = answers["directory"]
    for entry in [*directory["entries"], *directory["entry"].values()]:
        if "contacts" not in entry:
            continue  # refused (never registered)
        entry["unverified"] = []
        for contact in entry["contacts"].values():
            contact["verified"] = True
    for route in answers["routes"].values():
        for contact in route.get("contacts", ()):
            contact["verified"] = True
    for listing in (answers["exchanges"], *answers["inbox"].values(), *answers["outbox"].values()):
        for meta in listing:
            meta.update(no_deadline)
    return answers


def found_offer_texts(found: dict[str, Any]) -> None:
    """Each need's ``offer_texts`` names exactly the States that offered, each with a text in
    a language; then they leave ``found``, which the old answers did not have."""
    for aggregate in found["aggregates"].values():
        if aggregate["class"] == "CapacityNeed":
            texts = aggregate.pop("offer_texts")
            assert texts.keys() == aggregate["offers"].keys()
            assert all(t["text"] and t["language"] for t in texts.values())


@pytest.fixture
def old_record(tmp_path: Path) -> Path:
    """A copy of the fixture (the fixture itself is never opened)."""
    path = tmp_path / "record.sqlite3"
    shutil.copyfile(FIXTURE / "record.sqlite3", path)
    return path


def test_the_old_record_answers_as_it_did_when_written(old_record: Path) -> None:
    """Verification, both signed checkpoints, every aggregate's state, the views rebuilt
    from scratch (directory, routes, pending, histories, exchanges, consents, checks, the
    review report) and which token authenticates as whom (FRA's was revoked)."""
    found = capture.answers(capture.fixture_settings(old_record))
    found_offer_texts(found)
    expected = expected_answers()
    assert found.keys() == expected.keys()
    for key in expected:
        assert found[key] == expected[key], key
    assert found["tokens"]["fra"] == {
        "refused": "NotAuthenticated",
        "message": "the bearer token was revoked",
    }


@pytest.mark.slow
def test_pocdir_verify_passes_on_the_old_record_and_against_its_checkpoints(
    old_record: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{old_record}"
    head = expected_answers()["head"]
    result = run(url, "verify")
    assert result.returncode == 0, result.stderr
    assert f"head position: {head['position']}" in result.stdout
    assert head["hash"] in result.stdout
    settings = capture.fixture_settings(old_record)
    app = build_application(settings, mode=OpenMode.READ_ONLY, needs_key=False)
    try:
        transparency = build_transparency(app, settings, read_only=True)
        checkpoints = transparency.checkpoints()
        keys = transparency.verifier_keys()
    finally:
        app.close()
    assert [c.tree_size for c in checkpoints] == [193, 194]
    for c in checkpoints:
        note = tmp_path / f"checkpoint-{c.tree_size}.txt"
        note.write_text(c.note)
        args = ["verify", "--checkpoint", str(note)]
        for key in keys:
            args += ["--key", key]
        checked = run(url, *args)
        assert checked.returncode == 0, checked.stderr


# -- PostgreSQL: the same stored rows, moved ---------------------------------------------------

#: SQLite table -> PostgreSQL table, and the columns copied as they are. The events' position
#: is SQLite's rowid and PostgreSQL's notification_id; their ids are spelled differently
#: (hex text, ``uuid``), but the chain hashes the canonical id, so the links hold.
COPIED_TABLES = {
    "event_chain": ("event_chain", "position, prev_position, leaf_hash, link"),
    "record_keys": ("record_keys", "key_check_value, algorithm, check_method, added_at, status"),
    "merkle_leaves": ("merkle_leaves", "leaf_index, position, leaf_hash"),
    "merkle_nodes": ("merkle_nodes", "level, node_index, hash"),
    "merkle_head": ("merkle_head", "id, tree_size, position, link"),
    "checkpoints": ("checkpoints", "tree_size, verifier_key, root_hash, note, recorded_at"),
    "checkpoint_keys": ("checkpoint_keys", "verifier_key, first_used_at"),
}


def copy_to_postgres(sqlite_path: Path, dsn: str, schema: str) -> None:
    """Copy the record's stored rows, byte for byte, into the (new, empty) tables that
    pocdir created in ``schema``. The views and idempotency keys are not copied: the views
    are rebuilt from the record, and the keys expire."""
    source = sqlite3.connect(sqlite_path)
    try:
        with psycopg.connect(dsn, autocommit=False) as pg:
            pg.execute(f'SET search_path TO "{schema}"')
            events = source.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                "FROM stored_events ORDER BY rowid"
            ).fetchall()
            with pg.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pocdir_events (notification_id, originator_id, "
                    "originator_version, topic, state) VALUES (%s, %s, %s, %s, %s)",
                    [(p, UUID(hex=i), v, t, s) for p, i, v, t, s in events],
                )
                for table, (target, columns) in COPIED_TABLES.items():
                    rows = source.execute(f"SELECT {columns} FROM {table}").fetchall()
                    marks = ", ".join(["%s"] * len(columns.split(",")))
                    cur.execute(f"DELETE FROM {target}")  # the empty tree's head row
                    cur.executemany(f"INSERT INTO {target} ({columns}) VALUES ({marks})", rows)
                cur.execute(
                    "SELECT setval(pg_get_serial_sequence('pocdir_events', 'notification_id'), %s)",
                    (events[-1][0],),
                )
            pg.commit()
    finally:
        source.close()


@pytest.fixture
def old_record_on_postgres(postgres_url: str, old_record: Path) -> Iterator[Any]:
    """The old record's stored rows in a fresh PostgreSQL schema: its settings."""
    with pg_schema(postgres_url) as (url, schema):
        settings = capture.fixture_settings(old_record, database_url=url)
        app = build_application(settings)  # creates pocdir's tables, empty
        try:
            build_transparency(app, settings)  # and the tree's
        finally:
            app.close()
        copy_to_postgres(old_record, postgres_url, schema)
        yield settings


@pytest.mark.slow
def test_the_old_record_moved_to_postgresql_verifies_replays_and_answers_alike(
    old_record_on_postgres: Any,
) -> None:
    found = capture.answers(old_record_on_postgres)
    found_offer_texts(found)
    assert found == expected_answers()
    result = run(old_record_on_postgres.database_url, "verify")
    assert result.returncode == 0, result.stderr


# -- new events on the old record --------------------------------------------------------------


def append_and_verify(settings: Any) -> None:
    """New events (a labelled credential issued, an old one revoked) follow the old ones in
    the same chain: the whole record still verifies, and extends both old checkpoints."""
    app = build_application(settings, mode=OpenMode.EXISTING)
    try:
        before = verify_record(app)
        credential, token = app.issue_credential(
            SECRETARIAT, Role.STATE, "DEU", label="CERT duty desk"
        )
        app.revoke_credential(SECRETARIAT, UUID(capture.tokens()["aud"]["credential_id"]))
        after = verify_record(app)
        assert after.events == before.events + 2
        assert after.head_position > before.head_position
        transparency = build_transparency(app, settings)
        for c in transparency.checkpoints():
            verify_against_checkpoint(app, transparency, c.note, transparency.trusted_keys())
        assert transparency.record_checkpoint().tree_size == after.events
        assert app.authenticate(token).state == "DEU"
        loaded = app.repository.get(credential.id)
        assert isinstance(loaded, Credential) and loaded.label == "CERT duty desk"
        old = app.repository.get(UUID(capture.tokens()["deu"]["credential_id"]))
        assert isinstance(old, Credential) and old.label == UNLABELLED
    finally:
        app.close()
    assert run(settings.database_url, "verify").returncode == 0


@pytest.mark.slow
def test_new_events_follow_the_old_ones_and_the_record_still_verifies(old_record: Path) -> None:
    append_and_verify(capture.fixture_settings(old_record))


@pytest.mark.slow
def test_new_events_follow_the_old_ones_on_postgresql(old_record_on_postgres: Any) -> None:
    append_and_verify(old_record_on_postgres)


@pytest.mark.slow
def test_principals_list_shows_the_old_credentials_with_the_upcast_label(
    old_record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials issued before labels list with ``UNLABELLED``, FRA's as revoked; a new
    one lists its own label; the old record still verifies after both."""
    monkeypatch.setenv("POCDIR_CIPHER_KEY", capture.cipher_key())
    url = f"sqlite:///{old_record}"
    added = run(url, "principals", "add", "--role", "reviewer", "--label", "Review team")
    assert added.returncode == 0, added.stderr
    result = run(url, "principals", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    tokens = capture.tokens()
    old = {t["credential_id"]: t for t in tokens.values()}
    issued_in_order = ["deu", "sec", "aud", "rev", "fra", "gha"]  # the fixture's README
    assert [r["id"] for r in rows[:-1]] == [tokens[n]["credential_id"] for n in issued_in_order]
    for r in rows[:-1]:
        assert (r["role"], r["state"], r["label"], r["revoked"]) == (
            old[r["id"]]["role"],
            old[r["id"]]["state"],
            UNLABELLED,
            old[r["id"]]["revoked"],
        )
    assert (rows[-1]["role"], rows[-1]["label"], rows[-1]["revoked"]) == (
        "reviewer",
        "Review team",
        False,
    )
    assert run(url, "verify").returncode == 0


# -- the mechanism: upcast on read, never a rewrite --------------------------------------------


def stored_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid"
        ).fetchall()
    conn.close()
    return rows


def test_both_decoders_upcast_old_events_and_new_ones_are_stored_at_their_version(
    old_record: Path,
) -> None:
    """Loading (``mapper``) and the views (``facts_mapper``: content withheld) both read a v1
    ``Credential.Issued`` with the upcast label; a new one is stored with
    ``"class_version":2`` in its (encrypted) state, and reads back as written."""
    settings = capture.fixture_settings(old_record)
    app = build_application(settings, mode=OpenMode.EXISTING)
    try:
        topic = get_topic(Credential.Issued)
        old = app.recorder.select_notifications(1, 1000, topics=[topic])
        assert len(old) == len(capture.tokens())
        for record in old:
            for mapper in (app.mapper, app.facts_mapper):
                event: Any = mapper.to_domain_event(record)
                assert isinstance(event, Credential.Issued)
                assert event.label == UNLABELLED
                assert "class_version" not in vars(event)
        credential, _ = app.issue_credential(SECRETARIAT, Role.AUDITOR, label="Audit office")
        (new,) = app.recorder.select_notifications(old[-1].id, 1000, topics=[topic])[1:]
        assert app.mapper.cipher is not None
        state = json.loads(app.mapper.cipher.decrypt(new.state))
        assert state["class_version"] == 2 and state["label"] == "Audit office"
        for mapper in (app.mapper, app.facts_mapper):
            event = mapper.to_domain_event(new)
            assert event.label == "Audit office"
            assert event.originator_id == credential.id
    finally:
        app.close()


@pytest.mark.slow
def test_reading_and_replaying_the_old_record_never_rewrites_a_stored_event(
    old_record: Path, tmp_path: Path
) -> None:
    """The answers, a rebuild of the views and new events leave every old row's bytes as
    the old code stored them (upcasting happens on read only)."""
    pristine = tmp_path / "pristine.sqlite3"  # SQLite writes beside a file it reads (WAL)
    shutil.copyfile(FIXTURE / "record.sqlite3", pristine)
    before = stored_rows(pristine)
    capture.answers(capture.fixture_settings(old_record))
    append_and_verify(capture.fixture_settings(old_record))
    after = stored_rows(old_record)
    assert after[: len(before)] == before
    assert len(after) == len(before) + 2


def event_classes() -> list[type]:
    """Every event class of pocdir's aggregates."""
    import domain.application  # noqa: F401  (imports every aggregate module)
    from domain.base import PocdirAggregate

    found: list[type] = []
    todo: list[type] = [PocdirAggregate.Event]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__.startswith("domain.")]


def test_every_versioned_event_class_upcasts_from_version_one_and_is_documented() -> None:
    """A class at version N reads every older stored shape: it has ``upcast_v1_v2`` ..
    ``upcast_v(N-1)_vN``, as the library's mapper calls them; and the README's table of
    event versions names it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    versioned = [c for c in event_classes() if getattr(c, "class_version", 1) > 1]
    assert Credential.Issued in versioned
    for cls in versioned:
        for v in range(1, cls.class_version):  # type: ignore[attr-defined]
            upcast = getattr(cls, f"upcast_v{v}_v{v + 1}", None)
            assert callable(upcast), (cls, v)
        name = f"`{cls.__qualname__}` | {cls.class_version} |"  # type: ignore[attr-defined]
        assert name in readme, f"README, Event versions: add {cls.__qualname__}"
