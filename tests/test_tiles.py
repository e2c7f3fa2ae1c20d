"""The record as a C2SP tlog-tiles log (issue 16), checked by a client written here from the
spec's text (https://c2sp.org/tlog-tiles) and RFC 9162 alone, calling none of pocdir's tile,
Merkle or record code: its paths, the tiles and entry bundles the server serves for a record
of some 700 events on SQLite and PostgreSQL, their root against the signed checkpoint, a
level-1 tile of a 70,000-leaf tree, the refusals, ``pocdir tiles write`` and the cap that
keeps every stored event within one entry (65,535 bytes)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.state_entry import state_entry_id
from domain.values import Role
from infra.note import VerifierKey, open_checkpoint
from tests.support.builders import state
from tests.support.cli import issue, run, serving
from tests.support.db import Backend
from tests.support.http import Api, api_for, assert_error, notify, register
from tests.support.tlog_tiles import spec_leaf, spec_mth

# -- the client, from the spec's text ---------------------------------------------------------

#: "Full tiles MUST be exactly 256 hashes wide, or 8,192 bytes."
WIDTH = 256
HASH = 32


def spec_index(n: int) -> str:
    """ "<N> ... encoded into zero-padded 3-digit path elements. All but the last path element
    MUST begin with an x. For example, index 1234067 will be encoded as x001/x234/067.\""""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def spec_path(level: int | None, n: int, width: int = WIDTH) -> str:
    """tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]: the suffix only for partial tiles."""
    head = f"tile/{'entries' if level is None else level}/{spec_index(n)}"
    return head if width == WIDTH else f"{head}.p/{width}"


def spec_tiles(size: int) -> list[tuple[int | None, int, int]]:
    """Every (level, index, width) of a tree of ``size`` leaves: "The partial tile at level l
    for a tree of size s has floor(s / 256**l) mod 256 entries. Empty tiles MUST NOT be
    served." Entry bundles are as level 0."""
    out: list[tuple[int | None, int, int]] = []
    level = 0
    while size // WIDTH**level:
        count = size // WIDTH**level
        out += [(level, n, WIDTH) for n in range(count // WIDTH)]
        if count % WIDTH:
            out.append((level, count // WIDTH, count % WIDTH))
        level += 1
    out += [(None, n, WIDTH) for n in range(size // WIDTH)]
    if size % WIDTH:
        out.append((None, size // WIDTH, size % WIDTH))
    return out


def rfc9162_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_tile(data: bytes) -> list[bytes]:
    assert len(data) % HASH == 0, len(data)
    return [data[i : i + HASH] for i in range(0, len(data), HASH)]


def split_bundle(data: bytes) -> list[bytes]:
    """ "Entry bundles are sequences of big-endian uint16 length-prefixed log entries.\""""
    entries, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i : i + 2], "big")
        entries.append(data[i + 2 : i + 2 + size])
        i += 2 + size
    assert i == len(data), "a bundle ends inside an entry"
    return entries


def parse_record(entry: bytes) -> tuple[int, str, int, str, bytes]:
    """docs/audit-format.md §2: u64 position, u32 len + id, u64 version, u32 len + topic,
    u32 len + state."""
    position = int.from_bytes(entry[:8], "big")
    i = 8
    fields: list[bytes] = []
    for width in (None, 8, None, None):
        if width is None:
            n = int.from_bytes(entry[i : i + 4], "big")
            fields.append(entry[i + 4 : i + 4 + n])
            i += 4 + n
        else:
            fields.append(entry[i : i + width])
            i += width
    assert i == len(entry)
    oid, version, topic, stored = fields
    return position, oid.decode(), int.from_bytes(version, "big"), topic.decode(), stored


def checkpoint_body(note: str) -> tuple[str, int, bytes]:
    """C2SP tlog-checkpoint: origin, decimal size, base64 root, then a blank line."""
    origin, size, root = note.split("\n\n", 1)[0].split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


# -- the server under test --------------------------------------------------------------------


def grow(api: Api, events: int, code: str = "FRA") -> None:
    """``events`` more events, in one transaction (one save of many confirmations)."""
    app = api.application
    entry = app.repository.get(state_entry_id(code))
    for _ in range(events):
        entry.confirm(state(code), app.clock.now())
    app.save(entry)


def services(api: Api) -> Any:
    return api.client.app.state.services.get()  # type: ignore[attr-defined]


def fetch(api: Api, path: str, who: dict[str, str]) -> bytes:
    r = api.call("GET", f"/tlog/{path}", who)
    assert r.status_code == 200, (path, r.text)
    return bytes(r.content)


def stored_rows(backend: Backend) -> list[tuple[int, str, bytes]]:
    table, column = backend.events_table, backend.position_column
    rows = backend.execute(f"SELECT {column}, topic, state FROM {table} ORDER BY {column}")
    return [(int(p), str(t), bytes(s)) for p, t, s in rows]


def test_the_spec_paths() -> None:
    assert spec_index(1234067) == "x001/x234/067"
    assert spec_path(0, 1234067) == "tile/0/x001/x234/067"
    assert spec_path(None, 1234067, 17) == "tile/entries/x001/x234/067.p/17"
    assert spec_path(2, 0, 1) == "tile/2/000.p/1"
    assert spec_path(1, 1000) == "tile/1/x001/000"
    # The spec's own examples of a tree's tiles.
    hashes_70000 = [t for t in spec_tiles(70000) if t[0] is not None]
    assert len([t for t in hashes_70000 if t[0] == 0 and t[2] == WIDTH]) == 273
    assert [t for t in hashes_70000 if t[2] < WIDTH] == [(0, 273, 112), (1, 1, 17), (2, 0, 1)]
    assert [t for t in spec_tiles(256) if t[0] is not None] == [(0, 0, 256), (1, 0, 1)]


def test_the_path_functions_speak_the_spec() -> None:
    """infra.tiles, which the server, the writer and the mirror share, against the text."""
    from infra.tiles import TileId, bundles_for_size, parse_tile_path, tile_path, tiles_for_size

    for level, n, width in [(0, 1234067, 256), (None, 1234067, 17), (5, 999, 1), (63, 1000, 255)]:
        assert tile_path(level, n, width) == spec_path(level, n, width)
        assert parse_tile_path(spec_path(level, n, width)) == TileId(level, n, width)
    for size in (0, 1, 255, 256, 257, 65535, 65536, 70000, 16777216 + 5):
        listed = [*tiles_for_size(size), *bundles_for_size(size)]
        assert [(t.level, t.index, t.width) for t in listed] == spec_tiles(size)


def test_tiles_and_bundles_over_http_rebuild_the_signed_root(api: Api, backend: Backend) -> None:
    for code in ("FRA", "DEU"):
        register(api, code)
    grow(api, 700)
    auditor = api.auth(Role.AUDITOR)  # issued first: the record then stays as checkpointed
    size = services(api).transparency.record_checkpoint().tree_size
    assert 700 < size < 65536
    checkpoint = api.call("GET", "/tlog/checkpoint", auditor)
    assert checkpoint.status_code == 200
    assert checkpoint.headers["content-type"] == "text/plain; charset=utf-8"
    assert "no-cache" in checkpoint.headers["cache-control"]
    keys = [VerifierKey.parse(k) for k in api.call("GET", "/audit/keys", auditor).json()]
    open_checkpoint(checkpoint.text, keys)  # signed by the log's key
    _, signed_size, signed_root = checkpoint_body(checkpoint.text)
    assert signed_size == size

    tiles: dict[tuple[int | None, int], list[bytes]] = {}
    for level, n, width in spec_tiles(size):
        r = api.call("GET", f"/tlog/{spec_path(level, n, width)}", auditor)
        assert r.status_code == 200, (level, n, width, r.text)
        assert r.headers["content-type"] == "application/octet-stream"
        cache = r.headers["cache-control"]
        assert ("immutable" in cache) == (width == WIDTH), cache
        items = split_bundle(r.content) if level is None else split_tile(r.content)
        assert len(items) == width
        tiles[(level, n)] = items
    leaves = [h for n in range(size // WIDTH + 1) for h in tiles[(0, n)]]
    entries = [e for n in range(size // WIDTH + 1) for e in tiles[(None, n)]]
    assert len(leaves) == len(entries) == size
    # Each entry hashes to its level-0 hash; each is the stored event's record.
    assert [spec_leaf(e) for e in entries] == leaves
    records = [parse_record(e) for e in entries]
    assert [(p, t, s) for p, _, _, t, s in records] == stored_rows(backend)
    # A level-1 hash is the Merkle Tree Hash of a full level-0 tile (this one is partial).
    assert tiles[(1, 0)] == [spec_mth(tiles[(0, n)]) for n in range(size // WIDTH)]
    assert spec_mth(leaves) == signed_root

    # A narrower partial tile (the tree of an older checkpoint) is a prefix; a wider one, or
    # the full tile, does not exist yet.
    last, width = size // WIDTH, size % WIDTH
    assert split_tile(fetch(api, spec_path(0, last, 3), auditor)) == tiles[(0, last)][:3]
    for path in (spec_path(0, last, width + 1), spec_path(0, last), spec_path(2, 0, 1)):
        assert_error(api.call("GET", f"/tlog/{path}", auditor), 404)
    # New events: a tile beyond the tree brings it up to date first, without a checkpoint.
    grow(api, WIDTH - width + 5)
    full = split_tile(fetch(api, spec_path(0, last), auditor))
    assert full[:width] == tiles[(0, last)]
    assert [
        spec_leaf(e) for e in split_bundle(fetch(api, spec_path(None, last), auditor))
    ] == full


def test_a_level_1_tile_of_a_70000_leaf_tree(sqlite_backend: Backend) -> None:
    """70,000 synthetic leaves written straight into the tree's tables on SQLite (no events:
    hash tiles are read from the tree alone, the same tables on both backends), so that the
    level-1 and level-2 tiles exist within seconds."""
    with api_for(sqlite_backend.settings) as api:
        level_1_tiles(api, sqlite_backend)


def level_1_tiles(api: Api, backend: Backend) -> None:
    size = 70000
    leaves = [spec_leaf(i.to_bytes(8, "big")) for i in range(size)]
    nodes, level, row = [], 0, leaves
    while len(row) > 1:
        row = [rfc9162_node(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        nodes += [(level, i, h) for i, h in enumerate(row)]
    assert backend.sqlite_path is not None
    with sqlite3.connect(backend.sqlite_path) as db:
        db.executemany(
            "INSERT INTO merkle_leaves VALUES (?, ?, ?)",
            [(i, i + 1, h) for i, h in enumerate(leaves)],
        )
        db.executemany("INSERT INTO merkle_nodes VALUES (?, ?, ?)", nodes)
        db.execute("UPDATE merkle_head SET tree_size = ?, position = ?", (size, size))
    db.close()
    auditor = api.auth(Role.AUDITOR)
    started = time.monotonic()
    got: dict[tuple[int, int], list[bytes]] = {}
    for lv, n, width in spec_tiles(size):
        if lv is not None:
            got[(lv, n)] = split_tile(fetch(api, spec_path(lv, n, width), auditor))
            assert len(got[(lv, n)]) == width
    assert time.monotonic() - started < 10
    served_leaves = [h for n in range(274) for h in got[(0, n)]]
    assert served_leaves == leaves
    level_1 = got[(1, 0)] + got[(1, 1)]
    assert level_1 == [spec_mth(leaves[i * WIDTH : (i + 1) * WIDTH]) for i in range(273)]
    assert got[(2, 0)] == [spec_mth(level_1[:WIDTH])] == [spec_mth(leaves[:65536])]
    # The root over the tiles: the right edge from the partial tiles.
    root = rfc9162_node(got[(2, 0)][0], spec_mth(served_leaves[65536:]))
    assert root == spec_mth(leaves) == services(api).transparency.root_hash(size)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/0000",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/007",
        "tile/00/000",
        "tile/64/000",
        "tile/entries/x1/000",
        "tile/entries",
        "tile/-1/000",
        "tile/0/000.p/1/2",
    ],
)
def test_a_path_the_spec_does_not_allow_is_400(api: Api, path: str) -> None:
    body = assert_error(api.call("GET", f"/tlog/{path}", api.auth(Role.AUDITOR)), 400)
    assert "\n" not in body["detail"]


def test_who_may_read_the_tiles(api: Api) -> None:
    register(api, "FRA")
    services(api).transparency.record_checkpoint()
    for path in ("/tlog/checkpoint", "/tlog/tile/0/000.p/2", "/tlog/tile/entries/000.p/2"):
        assert_error(api.client.get(path), 401)
        for role in (Role.SECRETARIAT, Role.REVIEWER):
            assert_error(api.call("GET", path, api.auth(role)), 403)
        assert api.call("GET", path, api.auth(Role.AUDITOR)).status_code == 200
        state_read = api.call("GET", path, api.as_state("DEU"))
        if "entries" in path:
            # A record stored in clear: its bundles would show FRA's contacts to DEU.
            assert_error(state_read, 403)
            assert "auditor only" in state_read.json()["detail"]
        else:
            assert state_read.status_code == 200
    assert_error(api.call("GET", "/tlog/tile/entries/x999/999", api.auth(Role.AUDITOR)), 404)
    huge = "/".join(["x999"] * 30 + ["999"])
    assert_error(api.call("GET", f"/tlog/tile/0/{huge}", api.auth(Role.AUDITOR)), 404)


def test_a_state_reads_the_entry_bundles_of_an_encrypted_record_as_ciphertext(
    backend: Backend, clock: Any
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with api_for(dataclasses.replace(backend.settings, cipher_key=key), clock) as encrypted:
        register(encrypted, "FRA")
        size = services(encrypted).transparency.tree_size()
        bundle = fetch(encrypted, spec_path(None, 0, size), encrypted.as_state("DEU"))
    entries = split_bundle(bundle)
    assert len(entries) == size
    assert b"cert@example.org" not in bundle and b"Agence nationale" not in bundle


def test_entry_bundles_are_gzipped_for_clients_that_ask(api: Api) -> None:
    register(api, "FRA")
    size = services(api).transparency.tree_size()
    path = f"/tlog/{spec_path(None, 0, size)}"
    who = api.auth(Role.AUDITOR)
    plain = api.call("GET", path, who, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped = api.call("GET", path, who, headers={"Accept-Encoding": "gzip, identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # decoded by the client


def test_a_bundle_of_a_changed_record_is_refused_not_served(api: Api, backend: Backend) -> None:
    """An event changed after the tree grew over it: its bundle would no longer hash to the
    level-0 tile, so it is refused (409, positions and hashes only); the tile still serves."""
    register(api, "FRA")
    auditor = api.auth(Role.AUDITOR)
    size = services(api).transparency.record_checkpoint().tree_size
    position = stored_rows(backend)[1][0]
    backend.execute(
        f"UPDATE {backend.events_table} SET state = %s WHERE {backend.position_column} = %s",
        (b'{"forged": true}', position),
    )
    refused = assert_error(api.call("GET", f"/tlog/{spec_path(None, 0, size)}", auditor), 409)
    assert refused["error"] == "record_not_intact" and "forged" not in refused["detail"]
    assert len(split_tile(fetch(api, spec_path(0, 0, size), auditor))) == size


# -- pocdir tiles write ------------------------------------------------------------------------


def written(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_tiles_write_is_what_http_serves_and_rewrites_only_what_changed(
    api: Api, backend: Backend, tmp_path: Path
) -> None:
    register(api, "FRA")
    grow(api, 600)
    auditor = api.auth(Role.AUDITOR)  # issued first: it is an event too
    out = tmp_path / "log"
    first = run(backend.url, "tiles", "write", str(out))
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip().splitlines()) == 1, first.stdout
    files = written(out)
    _, size, root = checkpoint_body(files["checkpoint"].decode())
    expected = {spec_path(*t) for t in spec_tiles(size)} | {"checkpoint"}
    assert set(files) == expected
    for path, data in files.items():
        assert fetch(api, path, auditor) == data, path
    leaves = [
        h
        for n in range(size // WIDTH + 1)
        for h in split_tile(files[spec_path(0, n, WIDTH if n < size // WIDTH else size % WIDTH)])
    ]
    assert spec_mth(leaves) == root
    full_before = {p: os.stat(out / p).st_ino for p in files if ".p/" not in p}
    old_partials = [
        p for p in files if p.startswith((f"tile/0/{spec_index(2)}.p/", "tile/entries/002.p/"))
    ]
    assert len(old_partials) == 2, files.keys()

    grow(api, 300)
    second = run(backend.url, "tiles", "write", str(out))
    assert second.returncode == 0, second.stderr
    files = written(out)
    _, new_size, _ = checkpoint_body(files["checkpoint"].decode())
    assert new_size == size + 300
    for path, data in files.items():
        assert fetch(api, path, auditor) == data, path
    # Full tiles already written were kept as they were; the partial ones that their full
    # tile now supersedes are gone; the rest are the new tree's.
    assert all(
        os.stat(out / p).st_ino == ino for p, ino in full_before.items() if p != "checkpoint"
    )
    assert not any((out / p).exists() for p in old_partials)
    assert {spec_path(*t) for t in spec_tiles(new_size)} <= set(files)
    m = re.search(r"(\d+) files written .*?(\d+) already present", second.stdout)
    assert m, second.stdout
    new_files = {spec_path(*t) for t in spec_tiles(new_size)} - {
        spec_path(*t) for t in spec_tiles(size)
    }
    assert int(m.group(1)) == len(new_files) + 1  # and the checkpoint
    assert int(m.group(2)) == len(spec_tiles(new_size)) - len(new_files)


def test_tiles_write_to_a_file_is_one_line_and_exit_2(backend: Backend, tmp_path: Path) -> None:
    target = tmp_path / "not-a-directory"
    target.write_text("x")
    out = run(backend.url, "tiles", "write", str(target))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


# -- entry size ---------------------------------------------------------------------------------

LIMIT = 65535


def urls(count: int, length: int, last: int | None = None) -> list[dict[str, str]]:
    lengths = [length] * count + ([] if last is None else [last])
    return [
        {"kind": "url", "value": f"https://example.org/{i}/" + "a" * n}
        for i, n in enumerate(lengths)
    ]


def test_an_event_over_one_entry_is_refused_413_and_nothing_is_recorded(
    api: Api, backend: Backend
) -> None:
    register(api, "FRA")
    register(api, "DEU")
    fra = api.as_state("FRA")
    events = len(stored_rows(backend))
    sent = api.call("GET", "/notifications", fra).json()
    body = notify("DEU")
    body["indicators"] = urls(61, 1000, last=2000)
    refused = assert_error(api.call("POST", "/notifications", fra, json=body), 413)
    assert refused["error"] == "event_too_large"
    assert "65,535" in refused["detail"] and "aaaa" not in refused["detail"]
    assert "example.org" not in refused["detail"]
    size = int(re.search(r"event of ([\d,]+) bytes", refused["detail"]).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert size > LIMIT
    assert len(stored_rows(backend)) == events
    assert api.call("GET", "/notifications", fra).json() == sent
    # Exactly at the limit it is recorded: the stored record is 65,535 bytes.
    body["indicators"] = urls(61, 1000, last=2000 - (size - LIMIT))
    assert api.call("POST", "/notifications", fra, json=body).status_code == 201
    rows = stored_rows(backend)
    assert len(rows) == events + 1
    position, topic, stored = rows[-1]
    record = 8 + 4 + 36 + 8 + 4 + len(topic.encode()) + 4 + len(stored)
    assert record == LIMIT
    # ...and it is served as one entry of its bundle.
    size_now = services(api).transparency.tree_size()
    bundle = split_bundle(
        fetch(
            api,
            spec_path(None, (size_now - 1) // WIDTH, size_now % WIDTH or WIDTH),
            api.auth(Role.AUDITOR),
        )
    )
    assert len(bundle[-1]) == LIMIT and parse_record(bundle[-1])[0] == position


# -- one real server ----------------------------------------------------------------------------


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[str]:
    with serving(backend.url, tmp_path / "serve.log") as base:
        yield base


@pytest.mark.slow
def test_a_served_log_is_fetched_as_a_tlog_tiles_client_fetches_it(
    backend: Backend, server: str, tmp_path: Path
) -> None:
    simulated = run(backend.url, "simulate", "--states", "12", "--days", "365")
    assert simulated.returncode == 0, simulated.stderr
    _, token = issue(backend.url, "--role", "auditor")
    assert run(backend.url, "checkpoint").returncode == 0
    who = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip, identity"}
    with httpx.Client(base_url=server + "/tlog/", headers=who, timeout=30) as client:
        note = client.get("checkpoint").text
        _, size, root = checkpoint_body(note)
        got = {t: client.get(spec_path(*t)) for t in spec_tiles(size)}
    assert all(r.status_code == 200 for r in got.values())
    ordered = sorted(got.items(), key=lambda kv: kv[0][1])
    leaves = [h for (lv, _, _), r in ordered if lv == 0 for h in split_tile(r.content)]
    entries = [e for (lv, _, _), r in ordered if lv is None for e in split_bundle(r.content)]
    assert size > WIDTH and len(entries) == size
    assert [spec_leaf(e) for e in entries] == leaves
    assert spec_mth(leaves) == root
