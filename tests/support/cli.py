"""The ``pocdir`` command, run as a user runs it: in a process of its own."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

#: The ``pocdir`` command, with the interpreter running the tests.
POCDIR = [sys.executable, "-c", "from api.cli.main import main; main()"]
#: The project's root: the served and the CLI processes run there.
ROOT = Path(__file__).resolve().parents[2]


def run(
    backend_url: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pocdir ARGS`` over ``backend_url``, in a terminal 200 columns wide unless ``env``
    (added to the tests' environment) says otherwise."""
    environ = {**os.environ, "POCDIR_DATABASE_URL": backend_url, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*POCDIR, *args],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def issued(output: str) -> tuple[str, str]:
    """The credential id and the token that ``pocdir principals add`` printed."""
    credential_id = re.search(r"issued credential ([0-9a-f-]{36})", output)
    token = re.search(r"^(pocdir_\S+)$", output, re.MULTILINE)
    assert credential_id and token, output
    return credential_id.group(1), token.group(1)


def issue(url: str, *args: str) -> tuple[str, str]:
    """``pocdir principals add ARGS``: (credential id, token)."""
    out = run(url, "principals", "add", *args, timeout=120)
    assert out.returncode == 0, out.stderr
    return issued(out.stdout)


def recorded_events(url: str) -> int:
    """How many events ``pocdir verify`` found intact."""
    out = run(url, "verify", timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"record intact: (\d+) events", out.stdout)
    assert found, out.stdout
    return int(found.group(1))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(backend_url: str, log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``pocdir serve`` over ``backend_url`` on a free port of 127.0.0.1, in a process of its
    own (``env`` added to the tests' environment); yields its base URL once ``/health``
    answers, stops it when the block ends, and fails if it logged a traceback."""
    port = free_port()
    environ = {**os.environ, "POCDIR_DATABASE_URL": backend_url, **(env or {})}
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*POCDIR, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environ,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(300):
                if process.poll() is not None:
                    raise AssertionError(log_path.read_text())
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise AssertionError(log_path.read_text())
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "Traceback" not in log_path.read_text()
