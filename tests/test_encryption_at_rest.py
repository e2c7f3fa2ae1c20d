"""With a cipher key, nothing confidential is in clear in any database file (issue 12,
defect 6): contact details and exchange content are encrypted in the record *and* in the
views, so no file, WAL, journal, free page or dead tuple holds them.

The test drives writes, a view catch-up and a ``pocdir replay``, then searches every file of
the database (SQLite: the file, its -wal, -shm and -journal; PostgreSQL: every data file of
a throwaway cluster of its own, after a CHECKPOINT) for marker strings, in plain UTF-8, in
base64 (at each of the three alignments) and JSON-escaped."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.values import Contact, Text
from infra.settings import Settings
from infra.wiring import build_application, build_view_runner, build_views
from tests.conftest import START, Backend, contact_data, state
from tests.test_cli import POCDIR
from tests.test_outage import Cluster, cluster  # noqa: F401 - the throwaway cluster fixture

KEY = base64.b64encode(b"k" * 32).decode()

#: Every kind of confidential value, each unique enough not to occur by chance.
MARKERS = {
    "contact name": "Agence Ñandú Qzx-Seven",
    "e-mail": "qzx7-desk@marker.example",
    "phone": "+41795550177",  # as stored: normalised
    "agency": "Qzx Seven Cyber Agency",
    "description": "Botnet Qzx7 beaconing",
    "indicator": "qzx7-c2.marker.example",
    "response": "Sinkholed Qzx7 today",
    "need": "Forensics Qzx7 training",
    "offer": "Qzx7 trainers available",
}


def forms(marker: str) -> list[bytes]:
    """``marker`` as it could appear in a file: UTF-8, JSON with \\u escapes, base64."""
    raw = marker.encode()
    found = [raw, json.dumps(marker).encode()[1:-1]]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        start = 4 if pad else 0  # the first group holds the padding bytes
        end = (len(raw) + pad) // 3 * 4  # whole groups only
        found.append(encoded[start:end])
    return [f for f in found if len(f) >= 8]


def write_confidential(app: PocDirectory) -> None:
    for code in ("FRA", "DEU"):
        app.register_state(state(code), code)
    contact = contact_data(
        "desk",
        agency={"language": "fr", "text": MARKERS["contact name"], "english": MARKERS["agency"]},
        channels=[
            {"kind": "email", "address": MARKERS["e-mail"]},
            {"kind": "phone", "address": MARKERS["phone"]},
        ],
    )
    app.add_contact(state("FRA"), "FRA", Contact.from_dict(contact))
    app.add_contact(state("DEU"), "DEU", Contact.from_dict(contact_data("cert")))
    sent = app.send_notification(
        state("FRA"),
        "DEU",
        "malware",
        Text.english_only(MARKERS["description"]),
        [{"kind": "domain", "value": MARKERS["indicator"]}],
        good_faith_attested=True,
    )
    app.acknowledge_notification(state("DEU"), sent.id)
    app.respond_to_notification(state("DEU"), sent.id, Text.english_only(MARKERS["response"]))
    need = app.record_need(state("FRA"), "forensics", Text.english_only(MARKERS["need"]))
    app.offer_assistance(state("DEU"), need.id, Text.english_only(MARKERS["offer"]))


def drive(url: str) -> None:
    """Writes, a view catch-up in this process, then ``pocdir replay`` in another."""
    settings = Settings(database_url=url, cipher_key=KEY)
    app = build_application(settings, clock=SimulatedClock(START))
    try:
        write_confidential(app)
        view = build_views(app, settings)
        build_view_runner(app, view, settings).catch_up()
        entry = view.get("entry", "FRA")
        assert entry is not None and MARKERS["e-mail"] in json.dumps(entry)  # readable
    finally:
        app.close()
    env = {**os.environ, "POCDIR_DATABASE_URL": url, "POCDIR_CIPHER_KEY": KEY}
    replay = subprocess.run(
        [*POCDIR, "replay"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert replay.returncode == 0, replay.stderr
    shown = subprocess.run(
        [*POCDIR, "directory", "FRA", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert MARKERS["e-mail"] in shown.stdout  # the views still read, with the key


def files_under(*paths: Path) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())


def assert_no_marker_in(files: list[Path]) -> None:
    assert files
    leaks = []
    for path in files:
        data = path.read_bytes()
        for what, marker in MARKERS.items():
            if any(form in data for form in forms(marker)):
                leaks.append(f"{what} in {path.name}")
    assert not leaks, leaks


def test_no_confidential_value_is_in_clear_in_any_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "pocdir.sqlite3"
    drive(f"sqlite:///{db}")
    database_files = [db, *(Path(f"{db}{s}") for s in ("-wal", "-shm", "-journal"))]
    assert_no_marker_in(list(files_under(*database_files)))


def test_no_confidential_value_is_in_clear_in_any_postgres_file(
    cluster: Cluster,  # noqa: F811 - the fixture imported above
) -> None:
    if not cluster.running():
        cluster.start()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS atrest")
        conn.execute("CREATE DATABASE atrest")
    url = cluster.url.rsplit("/", 1)[0] + "/atrest"
    drive(url)
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    assert_no_marker_in(list(files_under(cluster.datadir)))


@pytest.mark.parametrize("marker", sorted(MARKERS))
def test_the_search_finds_each_marker_in_every_form(marker: str) -> None:
    """The search itself: each form of a marker is found inside other bytes."""
    value = MARKERS[marker]
    for blob in (
        b"x" + value.encode() + b"y",
        json.dumps({"a": value}).encode(),
        *(base64.b64encode(b"p" * pad + value.encode() + b"s") for pad in range(3)),
    ):
        assert any(form in blob for form in forms(value)), (marker, blob)


# -- `make run` runs encrypted: `pocdir keys cipher-init FILE` is its logic ---------------------


def cli(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POCDIR_DATABASE_URL": url, "COLUMNS": "200"}
    env.pop("POCDIR_CIPHER_KEY", None)
    if key is not None:
        env["POCDIR_CIPHER_KEY"] = key
    return subprocess.run(
        [*POCDIR, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_cipher_init_creates_the_demo_key_once_with_mode_0600(tmp_path: Path) -> None:
    url, key_file = f"sqlite:///{tmp_path / 'pocdir.sqlite3'}", tmp_path / "demo-cipher.key"
    created = cli(url, "keys", "cipher-init", str(key_file))
    assert created.returncode == 0, created.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert str(key_file) in created.stdout and key not in created.stdout + created.stderr
    again = cli(url, "keys", "cipher-init", str(key_file))
    assert again.returncode == 0, again.stderr
    assert key_file.read_text().strip() == key  # created once
    assert not (tmp_path / "pocdir.sqlite3").exists()  # it creates no database


def test_cipher_init_moves_a_plaintext_demo_record_aside(tmp_path: Path) -> None:
    db = tmp_path / "pocdir.sqlite3"
    url, key_file = f"sqlite:///{db}", tmp_path / "demo-cipher.key"
    assert cli(url, "simulate", "--states", "3", "--days", "5").returncode == 0  # no key
    moved = cli(url, "keys", "cipher-init", str(key_file))
    assert moved.returncode == 0, moved.stderr
    aside = [
        p
        for p in tmp_path.iterdir()
        if p.name.startswith("pocdir.sqlite3.plaintext-")
        and "-wal" not in p.name[-4:]
        and not p.name.endswith(("-shm", "-journal"))
    ]
    assert aside and not db.exists()
    assert "moved" in moved.stdout and aside[0].name in moved.stdout
    key = key_file.read_text().strip()
    # The demo then starts an encrypted record of its own, which a later run keeps.
    assert cli(url, "simulate", "--states", "3", "--days", "5", key=key).returncode == 0
    kept = cli(url, "keys", "cipher-init", str(key_file))
    assert kept.returncode == 0, kept.stderr
    assert db.exists() and "moved" not in kept.stdout
    assert cli(url, "verify", key=key).returncode == 0


def test_make_run_gives_every_command_the_demo_key() -> None:
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    keyed = re.search(r"^KEYED\s*:=\s*(.+)$", makefile, re.MULTILINE)
    assert keyed and "POCDIR_CIPHER_KEY" in keyed.group(1)
    makefile = makefile.replace("$(KEYED)", keyed.group(1))
    recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = [line for line in recipe if "pocdir " in line]
    assert any("keys cipher-init" in line for line in commands)
    assert all("POCDIR_CIPHER_KEY" in line for line in commands if "cipher-init" not in line)


def test_views_written_in_clear_before_they_were_encrypted_are_rebuilt_encrypted(
    backend: Backend,
) -> None:
    """An encrypted record whose views were written before views were encrypted: opening
    the views empties them, and the runner writes them again, encrypted."""
    settings = Settings(database_url=backend.url, cipher_key=KEY)
    app = build_application(settings, clock=SimulatedClock(START))
    try:
        write_confidential(app)
        build_view_runner(app, build_views(app, settings), settings).catch_up()
        earlier = build_views(app, settings)
        entry = earlier.get("entry", "FRA")
        for kind, key, doc in earlier.dump():  # as an earlier version left them: in clear
            backend.execute(
                "UPDATE view_documents SET doc = %s WHERE kind = %s AND key = %s",
                (doc, kind, key),
            )
        assert MARKERS["e-mail"] in str(backend.execute("SELECT doc FROM view_documents"))
        view = build_views(app, settings)
        build_view_runner(app, view, settings).catch_up()
        assert view.get("entry", "FRA") == entry
        stored = " ".join(str(r[0]) for r in backend.execute("SELECT doc FROM view_documents"))
        assert MARKERS["e-mail"] not in stored and stored
    finally:
        app.close()
