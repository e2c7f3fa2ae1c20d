"""An independent C2SP tlog-tiles writer and a static server for it, for the mirror's tests.

Written from the text of https://c2sp.org/tlog-tiles ("Merkle Tree", "Tiles", "Entry
bundles") with hashlib only; it never calls ``infra.tiles`` or ``infra.merkle``, so a mistake
there is not repeated here. ``python -m tests.support.tlog_tiles DIR PORT TOKEN LOG`` serves
``DIR`` as a pocdir server does (``/tlog/checkpoint``, ``/tlog/tile/...``,
``/audit/statements?after=&limit=``, bearer token), in a process of its own, and appends every
path it answers to ``LOG``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from domain.application import PocDirectory
from infra.chain import encode_record
from infra.cosignature import WitnessKey, cosign
from infra.note import Checkpoint, SignerKey, sign_note
from infra.verify import chained_recorder
from tests.support.cli import ROOT, free_port

WIDTH = 256


def spec_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def spec_mth(hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over already-hashed leaves: split at the largest power of two below n."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + spec_mth(hashes[:k]) + spec_mth(hashes[k:])).digest()


def spec_index(n: int) -> str:
    """``N`` in 3-digit elements, all but the last prefixed with ``x``."""
    text = f"{n:d}"
    text = "0" * (-len(text) % 3) + text
    groups = [text[i : i + 3] for i in range(0, len(text), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def spec_path(level: str, n: int, width: int) -> str:
    return f"tile/{level}/{spec_index(n)}" + ("" if width == WIDTH else f".p/{width}")


def spec_tiles(entries: Sequence[bytes]) -> dict[str, bytes]:
    """Every entry bundle and hash tile of the tree of ``entries``, by path."""
    files: dict[str, bytes] = {}
    for n in range(0, len(entries), WIDTH):
        group = entries[n : n + WIDTH]
        files[spec_path("entries", n // WIDTH, len(group))] = b"".join(
            len(e).to_bytes(2, "big") + e for e in group
        )
    level, hashes = 0, [spec_leaf(e) for e in entries]
    while hashes:
        for n in range(0, len(hashes), WIDTH):
            group = hashes[n : n + WIDTH]
            files[spec_path(str(level), n // WIDTH, len(group))] = b"".join(group)
        hashes = [spec_mth(hashes[n : n + WIDTH]) for n in range(0, len(hashes) - WIDTH + 1, WIDTH)]
        level += 1
    return files


def write_tiles(directory: Path, entries: Sequence[bytes], note: str, statements: str) -> None:
    """The layout a server serves: tiles, ``checkpoint`` and ``statements.jsonl``."""
    for path, data in spec_tiles(entries).items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    (directory / "checkpoint").write_text(note, encoding="utf-8")
    (directory / "statements.jsonl").write_text(statements, encoding="utf-8")


# -- a record published as a server publishes it ----------------------------------------------


@dataclass
class Log:
    """The log's checkpoint key and three witnesses; the verifier's policy wants two."""

    origin: str = "test.example/pocdir"
    key: SignerKey = field(init=False)
    witnesses: list[WitnessKey] = field(init=False)

    def __post_init__(self) -> None:
        self.key = SignerKey.generate(self.origin)
        self.witnesses = [WitnessKey.generate(f"witness.example/w{i}") for i in range(3)]

    def policy(self) -> str:
        lines = [f"log {self.key.verifier}"]
        lines += [f"witness w{i} {w.verifier}" for i, w in enumerate(self.witnesses)]
        return "\n".join([*lines, "group regions 2 w0 w1 w2", "quorum regions", ""])

    def note(
        self, entries: Sequence[bytes], cosigners: Sequence[int] = (0, 1), origin: str = ""
    ) -> str:
        """The checkpoint of ``entries``, signed, then cosigned by ``cosigners``."""
        root = spec_mth([spec_leaf(e) for e in entries])
        body = Checkpoint(origin or self.origin, len(entries), root).body()
        lines = [cosign(body, 1_760_000_000 + i, self.witnesses[i]) for i in cosigners]
        return sign_note(body, self.key) + "".join(lines)


def stored_entries(app: PocDirectory) -> list[bytes]:
    """The record's canonical records (docs/audit-format.md §2), checked against the leaf
    hashes the store keeps: these are the tlog-tiles entries."""
    recorder = chained_recorder(app)
    entries = []
    for row in recorder.iter_stored_rows():
        entry = encode_record(
            row.position,
            row.originator_id,  # type: ignore[arg-type]
            row.originator_version,  # type: ignore[arg-type]
            row.topic,  # type: ignore[arg-type]
            row.state,  # type: ignore[arg-type]
            recorder.id_spelling,
        )
        assert spec_leaf(entry) == row.leaf_hash
        entries.append(entry)
    return entries


def statements_text(app: PocDirectory) -> str:
    """``statements.jsonl`` as the audit bundle writes it."""
    rows = chained_recorder(app).statement_rows()
    return "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in rows)


def publish(
    app: PocDirectory, directory: Path, log: Log, cosigners: Sequence[int] = (0, 1)
) -> list[bytes]:
    """Write the record's tiles, a cosigned checkpoint and the statements to ``directory``."""
    entries = stored_entries(app)
    write_tiles(directory, entries, log.note(entries, cosigners), statements_text(app))
    return entries


@contextmanager
def served_tiles(directory: Path, token: str, log: Path) -> Iterator[str]:
    """This module's static server over ``directory``, in its own process: its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.tlog_tiles",
            str(directory),
            str(port),
            token,
            str(log),
        ],
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(base + "/tlog/checkpoint", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        log.write_text("", encoding="utf-8")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _handler(root: Path, token: str, log: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            if self.headers.get("Authorization") != f"Bearer {token}":
                self._send(401, b'{"error": "unauthenticated"}', "application/json")
                return
            url = urlsplit(self.path)
            with log.open("a", encoding="utf-8") as f:
                f.write(url.path + "\n")
            if url.path == "/audit/statements":
                query = parse_qs(url.query)
                after, limit = int(query["after"][0]), int(query["limit"][0])
                lines = (root / "statements.jsonl").read_text(encoding="utf-8").splitlines()
                rows = [r for r in map(json.loads, lines) if r["first_position"] > after]
                page = rows[:limit]
                body = {
                    "statements": page,
                    "next_after": page[-1]["first_position"] if len(page) == limit else None,
                }
                self._send(200, json.dumps(body).encode(), "application/json")
                return
            target = (root / url.path.removeprefix("/tlog/")).resolve()
            if (
                not url.path.startswith("/tlog/")
                or root not in target.parents
                or not target.is_file()
            ):
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, target.read_bytes(), "application/octet-stream")

    return Handler


def main() -> None:
    directory, port, token, log = sys.argv[1:5]
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(port)), _handler(Path(directory).resolve(), token, Path(log))
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
