"""A database per test: SQLite in the test's own directory, or PostgreSQL in a schema of its
own (``POCDIR_TEST_DATABASE_URL``, default the local server), dropped afterwards."""

from __future__ import annotations

import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from infra.settings import Settings
from tests.support.record_keys import record_key_files

PG_URL = os.environ.get("POCDIR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUN_ID = uuid.uuid4().hex[:8]
_schema_numbers = itertools.count()


def pg_available() -> str | None:
    """None if PostgreSQL answers, else the reason."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


@dataclass
class Backend:
    """One database for one test, with raw access for tamper tests."""

    name: str
    url: str
    events_table: str
    position_column: str
    sqlite_path: str | None = None
    pg_dsn: str | None = None
    pg_schema: str | None = None

    @property
    def settings(self) -> Settings:
        operator, server = record_key_files()
        return Settings(database_url=self.url, operator_key_file=operator, signing_key_file=server)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run raw SQL against the store, outside the application (for tampering)."""
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as conn:
                rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.close()
            return rows
        assert self.pg_dsn is not None
        with psycopg.connect(self.pg_dsn, autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{self.pg_schema}"')
            cur = pg.execute(sql, params)  # type: ignore[call-overload]
            return cur.fetchall() if cur.description else []


def pg_schema_url(base: str, schema: str) -> str:
    """``base`` with its tables in ``schema``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(query=f"schema={schema}"))


def sqlite_backend_at(tmp_path: Path) -> Backend:
    path = tmp_path / "pocdir.sqlite3"
    return Backend("sqlite", f"sqlite:///{path}", "stored_events", "rowid", sqlite_path=str(path))


@contextmanager
def pg_schema(base: str) -> Iterator[tuple[str, str]]:
    """A fresh schema for this test run, dropped afterwards: (database URL, schema name)."""
    schema = f"pocdir_test_{RUN_ID}_{next(_schema_numbers)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_schema_url(base, schema), schema
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
