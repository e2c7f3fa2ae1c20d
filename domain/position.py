"""Where a write landed in the record: the position of its last event.

Commands return aggregates, not positions, and a request may run several of them (a read
that records a consent). ``PocDirectory._save`` reports each write's last position to the
``PositionSink`` open in the caller's context, if any; the HTTP gate opens one per request
and puts what it holds on the response (``Pocdir-Position``), so that the client can ask a
later read to wait until the views have reached it (read-your-writes).

Why a context variable: the position is known only deep inside a command, and the gate sees
only the request. A sink is a mutable object, so a command run in a worker thread (which
runs in a copy of the gate's context) reports into the very sink the gate opened. Outside a
sink (the CLI, tests) reporting does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class PositionSink:
    """The highest record position written in one context (one request)."""

    def __init__(self) -> None:
        self.last: int | None = None

    def saw(self, position: int) -> None:
        if self.last is None or position > self.last:
            self.last = position


_sink: ContextVar[PositionSink | None] = ContextVar("pocdir_position_sink", default=None)


@contextmanager
def collecting_positions() -> Iterator[PositionSink]:
    """Collect the positions of every write made in this context until the block ends."""
    sink = PositionSink()
    token = _sink.set(sink)
    try:
        yield sink
    finally:
        _sink.reset(token)


def report_position(position: int) -> None:
    """Tell the open sink, if any, that a write ended at ``position``."""
    sink = _sink.get()
    if sink is not None:
        sink.saw(position)


def written_position() -> int | None:
    """The last position written in this context so far, if a sink is open and saw one."""
    sink = _sink.get()
    return None if sink is None else sink.last
