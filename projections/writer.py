"""A rebuild's view writes, from a process of their own.

Why: while a rebuild's runner reads, decodes and projects one batch, the previous batch is
written. In a thread of the same process, that writing (binding rows, copying them, waiting
for commits) takes the interpreter lock from the runner thousands of times a batch, and the
two threads end up hardly faster than one. In a process of its own, the writer has its own
interpreter and the runner keeps a core.

What does not change: batches are written one at a time, in order, each with its tracking
position in one transaction, by a view recorder of the same database; a batch that fails to
write raises its error in the runner (``Future.result``) before the next one is submitted.
The runner still decides what each batch holds; the writer only writes.

Precondition: ``open_view`` is picklable (a module-level function, or a ``functools.partial``
of one) and builds a view recorder of the runner's own view, with its own connections.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Protocol

from eventsourcing.persistence import PersistenceError, Tracking

from projections.store import Rows, ViewRecorder

#: Linux's ``prctl`` option that has the kernel signal a process when its parent dies.
_PR_SET_PDEATHSIG = 1

#: The writer process's view recorder (set by ``_open``, in the writer process only), or
#: why it could not be opened.
_view: ViewRecorder | None = None
_not_opened: PersistenceError | None = None


def _die_with_parent() -> None:
    """Have the kernel kill this process as soon as the runner's does (Linux only; the
    signal follows the thread that started the process, which is the one rebuilding).
    Otherwise a writer whose runner was killed lingers, and could commit one more batch
    after a new runner has started from the view's position; that runner's batch would then
    fail on its tracking position. (Elsewhere: no such guarantee.)"""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _open(open_view: Callable[[], ViewRecorder]) -> None:
    global _view, _not_opened
    _die_with_parent()
    try:
        _view = open_view()
    except PersistenceError as e:  # e.g. the database is down: raised in the runner by the
        _not_opened = e  # first write (an initializer's error would only be logged)


def _write(tracking: Tracking, rows: Rows) -> None:
    if _view is None:
        raise _not_opened or RuntimeError("the writer process has no view")
    _view.write_batch(tracking, rows)


class BatchWriter(Protocol):
    """Writes a runner's batches in order, one at a time, beside the runner. Used as a
    context manager: leaving it waits for the batch being written."""

    def submit(self, tracking: Tracking, rows: Rows) -> Future[None]: ...

    def __enter__(self) -> BatchWriter: ...

    def __exit__(self, *exc: object) -> None: ...


class ThreadWriter:
    """The runner's own view, written from a second thread (a ``catch_up``: no process to
    start for the few batches of new events a server follows)."""

    def __init__(self, view: ViewRecorder) -> None:
        self.view = view
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="view-writer")

    def submit(self, tracking: Tracking, rows: Rows) -> Future[None]:
        return self.pool.submit(self.view.write_batch, tracking, rows)

    def __enter__(self) -> ThreadWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)


class ProcessWriter:
    """A view of the same database, written from a process of its own (a rebuild).

    The process is started with ``spawn``, so it holds none of the runner's connections or
    locks, and is stopped on leaving the context."""

    def __init__(self, open_view: Callable[[], ViewRecorder]) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_open,
            initargs=(open_view,),
        )

    def submit(self, tracking: Tracking, rows: Rows) -> Future[None]:
        return self.pool.submit(_write, tracking, rows)

    def __enter__(self) -> ProcessWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
