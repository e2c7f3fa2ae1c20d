"""A view recorder slow to commit, for the writer-process tests (imported by the process they
start, so it lives here and not in a test module)."""

from __future__ import annotations

import os
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
