"""A rebuild's writer process: it lives and dies with its runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from projections.store import Rows


class SlowView:
    """Stands in for a view recorder whose write is still running when the runner dies:
    it says which process is writing, then takes ``seconds`` before it would commit."""

    def __init__(self, directory: str, seconds: float) -> None:
        self.directory, self.seconds = Path(directory), seconds

    def write_batch(self, tracking: Tracking, rows: Rows) -> None:
        (self.directory / "writer.pid").write_text(str(os.getpid()))
        time.sleep(self.seconds)
        (self.directory / "committed").write_text(str(tracking.notification_id))


def open_slow_view(directory: str, seconds: float) -> Any:
    return SlowView(directory, seconds)


RUNNER = """
import sys, time
from functools import partial
from eventsourcing.persistence import Tracking
from projections.store import Rows
from projections.writer import ProcessWriter
from tests.test_writer import open_slow_view
with ProcessWriter(partial(open_slow_view, sys.argv[1], 5.0)) as writer:
    writer.submit(Tracking("view", 1), Rows([], [], []))
    time.sleep(60)
"""


def _is_dead(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # killed, not yet reaped by its new parent


def test_a_writer_process_dies_with_its_runner_and_commits_nothing_more(
    tmp_path: Path,
) -> None:
    """Otherwise a writer whose runner was killed could commit a batch after a new runner
    had started from the view's position, and that runner would then fail."""
    root = Path(__file__).resolve().parent.parent
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path)], cwd=root)
    pid_file = tmp_path / "writer.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    writer = int(pid_file.read_text())
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 3
    while not _is_dead(writer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _is_dead(writer)
    time.sleep(5.5)  # past the moment the write would have committed
    assert not (tmp_path / "committed").exists()
