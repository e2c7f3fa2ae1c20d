"""A log operator for witness tests, honest or not: trees of made-up leaves built with
``infra.merkle``, checkpoints signed with a ``SignerKey``, and the spec's request bodies.
And ``ServedWitness``: ``pocdir witness serve`` in a process of its own."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra.merkle import b64, consistency_ranges, root_of
from infra.note import Checkpoint, SignerKey, sign_note
from tests.support.cli import POCDIR, ROOT, free_port

ORIGIN = "pocdir.example.org/log"


@dataclass
class Log:
    """One history of a log: its signing key and its leaf hashes. ``fork`` makes another
    history of the same log (same key), sharing a prefix."""

    key: SignerKey
    leaves: list[bytes] = field(default_factory=list)
    origin: str = ORIGIN

    @classmethod
    def new(cls, origin: str = ORIGIN) -> Log:
        return cls(SignerKey.generate(origin), [], origin)

    def grow(self, count: int, tag: str = "honest") -> Log:
        start = len(self.leaves)
        for i in range(start, start + count):
            self.leaves.append(hashlib.sha256(f"\x00{tag} {i}".encode()).digest())
        return self

    def fork(self, at: int, count: int, tag: str) -> Log:
        """Another history: the first ``at`` leaves of this one, then ``count`` others."""
        return Log(self.key, list(self.leaves[:at]), self.origin).grow(count, tag)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        return root_of(self.leaves[: self.size if size is None else size])

    def checkpoint(self, size: int | None = None, key: SignerKey | None = None) -> str:
        size = self.size if size is None else size
        body = Checkpoint(self.origin, size, self.root(size)).body()
        return sign_note(body, key or self.key)

    def proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(first, D[second]); empty from 0 or to itself."""
        second = self.size if second is None else second
        if first == 0 or first == second:
            return []
        return [root_of(self.leaves[a:b]) for a, b in consistency_ranges(first, second)]


def body(note: str, old: int, proof: list[bytes]) -> bytes:
    """The spec's add-checkpoint body, written out here independently of the client."""
    return (f"old {old}\n" + "".join(b64(h) + "\n" for h in proof) + "\n" + note).encode()


def pocdir(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pocdir ARGS`` in a process of its own."""
    return subprocess.run(
        [*POCDIR, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServedWitness:
    directory: Path
    url: str
    vkey: str
    log_file: Path


@contextmanager
def served_witness(
    directory: Path, name: str, origin: str, log_vkey: str
) -> Iterator[ServedWitness]:
    """A witness made with ``pocdir witness init`` and ``add-log`` for the log ``origin``
    signed by ``log_vkey``, served by ``pocdir witness serve`` on a free port until the block
    ends; it must log no traceback."""
    made = pocdir("witness", "init", str(directory), "--name", name)
    assert made.returncode == 0, made.stderr
    added = pocdir("witness", "add-log", str(directory), "--origin", origin, "--key", log_vkey)
    assert added.returncode == 0, added.stderr
    port = free_port()
    log_file = directory.parent / f"{directory.name}.log"
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [*POCDIR, "witness", "serve", str(directory), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise AssertionError(log_file.read_text())
            yield ServedWitness(directory, url, made.stdout.strip(), log_file)
        finally:
            proc.terminate()
            proc.wait(30)
    assert "Traceback" not in log_file.read_text()
