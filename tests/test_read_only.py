"""Read-only commands never create a record: on a mistyped SQLite path or a missing
PostgreSQL schema they say there is no record and exit 2, leaving no file, directory, schema
or table behind; an empty record is not "intact"."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from infra.wiring import build_application
from tests.support.cli import run
from tests.support.db import RUN_ID, Backend, pg_schema_url

CHECK_ID = "0b6e7c1a-3f1e-4c3a-9a55-0d6f2e8b9c01"

#: Every command that only reads the record (the view commands bring the views up to date,
#: which is allowed on an existing record only).
READ_ONLY_COMMANDS: list[tuple[str, ...]] = [
    ("verify",),
    ("verify", "--checkpoint", "{checkpoint}"),
    ("audit", "export", "{bundle}"),
    ("proof", "inclusion", "0"),
    ("proof", "consistency", "1", "1"),
    ("keys", "public", "--all"),
    ("check", "results", CHECK_ID),
    ("check", "list"),
    ("principals", "list"),
    ("review", "--from", "2025-01-01", "--to", "2025-12-31", "--format", "json"),
    ("directory",),
    ("route", "FRA", "malware"),
    ("pending",),
    ("history", "FRA"),
]


def _args(command: tuple[str, ...], tmp_path: Path) -> list[str]:
    checkpoint = tmp_path / "kept-checkpoint.txt"
    checkpoint.write_text(
        "pocdir.example/record\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    bundle = tmp_path / "bundle"
    return [a.format(checkpoint=checkpoint, bundle=bundle) for a in command]


def _names(command: tuple[str, ...]) -> str:
    return " ".join(command[:2])


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=_names)
def test_a_read_only_command_on_a_mistyped_sqlite_path_creates_nothing(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "pocdir.sqlite3"
    result = run(f"sqlite:///{missing}", *_args(command, tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"no record at sqlite:///{missing}: the file does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "typo").exists()
    assert not (tmp_path / "bundle").exists()


def _tables(base: str, schema: str) -> list[str]:
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return [r[0] for r in rows]


def _schema_exists(base: str, schema: str) -> bool:
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=_names)
def test_a_read_only_command_on_a_missing_postgres_schema_creates_nothing(
    command: tuple[str, ...], postgres_url: str, tmp_path: Path
) -> None:
    schema = f"pocdir_test_{RUN_ID}_never_created"
    result = run(pg_schema_url(postgres_url, schema), *_args(command, tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "no record at postgresql://" in result.stderr
    assert f"the schema {schema} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not _schema_exists(postgres_url, schema)


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=_names)
def test_a_read_only_command_on_a_schema_without_the_record_creates_no_table(
    command: tuple[str, ...], backend: Backend, tmp_path: Path
) -> None:
    if backend.pg_schema is None:  # SQLite: an empty database file made by someone else
        Path(backend.sqlite_path or "").touch()
    result = run(backend.url, *_args(command, tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "no record at" in result.stderr and "has no pocdir record" in result.stderr
    assert "Traceback" not in result.stderr
    if backend.pg_schema is not None:
        assert _tables(backend.pg_dsn or "", backend.pg_schema) == []
    else:
        assert backend.execute("SELECT name FROM sqlite_master") == []


@pytest.mark.slow
@pytest.mark.parametrize("command", [("verify",), ("verify", "--checkpoint", "{checkpoint}")])
def test_an_empty_record_is_not_reported_intact(
    command: tuple[str, ...], backend: Backend, tmp_path: Path
) -> None:
    build_application(backend.settings).close()  # a writer made the record, with no events
    result = run(backend.url, *_args(command, tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "the record is empty: no events" in result.stderr
    assert "intact" not in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_writer_still_creates_the_sqlite_record_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "pocdir.sqlite3"
    simulated = run(f"sqlite:///{path}", "simulate", "--states", "3", "--days", "3")
    assert simulated.returncode == 0, simulated.stderr
    assert path.is_file()
    assert run(f"sqlite:///{path}", "verify").returncode == 0


def test_reading_the_sqlite_path_setting_creates_no_directory(tmp_path: Path) -> None:
    from infra.settings import Settings

    settings = Settings.from_env({"POCDIR_DATABASE_URL": f"sqlite:///{tmp_path}/a/b/x.sqlite3"})
    assert settings.sqlite_path == f"{tmp_path}/a/b/x.sqlite3"
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_an_empty_record_is_not_exported_and_an_empty_bundle_is_not_intact(
    backend: Backend, tmp_path: Path
) -> None:
    build_application(backend.settings).close()
    exported = run(backend.url, "audit", "export", str(tmp_path / "bundle"))
    assert exported.returncode == 2, (exported.stdout, exported.stderr)
    assert "the record is empty: no events" in exported.stderr
    assert not (tmp_path / "bundle").exists()
    empty = tmp_path / "empty-bundle"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "records.jsonl").write_text("")
    (empty / "keys.txt").write_text("")
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # of no bytes
    manifest = {
        "format": "pocdir-audit-bundle/1",
        "origin": "pocdir.example/record",
        "records": {"file": "records.jsonl", "count": 0, "sha256": digest},
        "checkpoints": [],
        "keys": {"file": "keys.txt", "count": 0, "sha256": digest},
    }
    (empty / "manifest.json").write_text(json.dumps(manifest))
    checked = run(backend.url, "audit", "verify", str(empty))
    assert checked.returncode == 2, (checked.stdout, checked.stderr)
    assert "the bundle is empty: no records" in checked.stderr
    assert "intact" not in checked.stdout
