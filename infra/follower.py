"""The server's projection runner: a thread that follows the record and projects new events
into the views, off the request path, while this process holds the runner lease
(``infra.lease``). Every server runs one; at most one of them projects at a time, and the
others take over when it stops (its lease released, expired, or its session gone).

When it takes the lease, it first looks at the versions the views were built with: views
written by projectors of other versions are rebuilt into a copy beside them and swapped in
(``ViewRunner.rebuild_if_outdated``), while the old ones are still served and ``/ready``
says "rebuilding". A rebuild that fails, or a process killed mid-rebuild, leaves the old
views; the next step (or the next start) rebuilds again.

It wakes every ``POCDIR_RUNNER_POLL_SECONDS`` (and at once when a request of this process is
waiting for a position, ``wake``), asks the record for its head, and catches up if the views
are behind. A request never projects: it reads the views as they are, or waits until they
have reached the position it asks for (``wait_for``, read-your-writes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError

from infra.lease import LEASE_ERRORS, Lease, LeaseHeld
from projections.runner import RebuildNotSwapped, ViewRunner

log = logging.getLogger("pocdir.runner")

#: How often a command waiting for a position looks at the views' position.
POSITION_POLL_SECONDS = 0.05

#: What a failed step of the runner may raise and the runner outlives: database outages and
#: a batch refused because another process moved the view on. The step is tried again at the
#: next poll. (psycopg's and sqlite3's own errors are subclasses of ``Exception`` that the
#: lease raises; they are listed in ``STEP_ERRORS`` below.)
_RETRIED: tuple[type[Exception], ...] = (OperationalError, PersistenceError, IntegrityError)
#: A rebuild that could not be swapped in (the record grew too fast) is tried again too.
_REBUILD_RETRIED: tuple[type[Exception], ...] = (RebuildNotSwapped,)


class LeaseLost(Exception):  # noqa: N818 - a state of the world
    """The lease could not be renewed during a catch-up: the runner stops writing."""


class ViewsBehind(Exception):  # noqa: N818 - a state of the world, named for the user
    """The views did not reach a requested position within the bound (answered 503)."""

    def __init__(self, wanted: int, reached: int, bound: float) -> None:
        super().__init__(
            f"the views have reached record position {reached}, not yet {wanted}, after "
            f"{bound:g} s (POCDIR_READ_WAIT_SECONDS); retry in a moment"
        )
        self.wanted, self.reached = wanted, reached


@dataclass(frozen=True)
class FollowerState:
    holds_lease: bool
    #: ``time.time()`` when the views were last seen at the record's head by this runner.
    caught_up_at: float | None
    #: Whether this runner is rebuilding outdated views (``ViewRunner.rebuild_if_outdated``).
    rebuilding: bool = False


class ViewFollower:
    """Follows the record for ``runner``'s view while ``lease`` is held (module docstring).

    ``head`` reads the record's last position; ``step_errors`` are the errors a step may
    fail with and the thread outlives (logged, retried at the next poll)."""

    def __init__(
        self,
        runner: ViewRunner,
        lease: Lease,
        head: Callable[[], int],
        poll: float,
        step_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.runner, self.lease, self.head, self.poll = runner, lease, head, poll
        self.step_errors: tuple[type[Exception], ...] = (
            *_RETRIED,
            *_REBUILD_RETRIED,
            LeaseLost,
            *step_errors,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self.caught_up_at: float | None = None
        #: Whether the views' versions were checked since this process last took the lease.
        self.versions_checked = False

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pocdir-runner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop following, and give the lease up so another server takes over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stop.clear()  # the thread is gone: ``step`` may be called directly again
        try:
            self.lease.release()
        except self.step_errors as e:
            log.warning("runner lease not released: %s", type(e).__name__)

    def wake(self) -> None:
        """Look for new events now rather than at the next poll."""
        self._wake.set()

    @property
    def state(self) -> FollowerState:
        return FollowerState(self.lease.held, self.caught_up_at, self.runner.rebuilding)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except self.step_errors as e:
                log.warning("projection runner: %s; trying again", type(e).__name__)
            self._wake.wait(self.poll)
            self._wake.clear()

    def step(self) -> int:
        """Take or renew the lease; if held, rebuild the views if they are outdated (once
        per taking of the lease), then project every new event. Return how many."""
        if not self.lease.keep():
            self.versions_checked = False
            return 0
        if not self.versions_checked:
            self._rebuild_if_outdated()
        projected = 0
        if self.head() > (self.runner.last_position or 0):
            try:
                projected = self.runner.catch_up(on_progress=self._renew, from_last=True)
            except IntegrityError:
                # The view moved on under us (a holder before us, or a rebuild swapped in):
                # go on from where it is.
                projected = self.runner.catch_up(on_progress=self._renew)
        self.caught_up_at = time.time()
        with self._progress:
            self._progress.notify_all()
        return projected

    def _rebuild_if_outdated(self) -> None:
        """Only the lease's holder writes the views, so only it rebuilds them; a rebuild
        that fails raises here and leaves ``versions_checked`` False: the next step tries
        again."""
        if self.runner.rebuild_if_outdated(on_progress=self._renew):
            log.info("views rebuilt for projector versions %s", self.runner.version)
        self.versions_checked = True

    def _renew(self, _: int) -> None:
        """Between batches: stop if the server is stopping (the lease is given up next) or
        the lease could not be kept."""
        if self._stop.is_set():
            raise LeaseLost("the server is stopping")
        if not self.lease.keep():
            raise LeaseLost("the runner lease was taken over during a catch-up")

    def wait(self, timeout: float) -> None:
        """Wait for this process's runner to finish a step, at most ``timeout`` seconds."""
        with self._progress:
            self._progress.wait(timeout)


class LeaseKeeper:
    """Holds ``lease`` for a command that writes the views outside a server (a CLI read
    catching them up, ``pocdir replay``): renewed from a thread of its own every third of the
    lease, so that a long rebuild keeps it, and released on leaving.

    Raises ``LeaseHeld`` on entering if another process (a server's runner) holds it."""

    def __init__(self, lease: Lease, seconds: float) -> None:
        self.lease, self.seconds = lease, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        if not self.lease.keep():
            self.lease.release()  # closes what it opened to ask
            raise LeaseHeld("another process (a server's projection runner) holds the lease")
        self._thread = threading.Thread(target=self._renew, name="pocdir-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.lease.release()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.lease.keep():
                    log.warning("the runner lease was taken over; the views' positions guard")
                    return
            except (*_RETRIED, *LEASE_ERRORS) as e:
                log.warning("runner lease not renewed: %s", type(e).__name__)


def wait_for_views(position: Callable[[], int], wanted: int, bound: float) -> int:
    """Wait until ``position()`` (the views') is at least ``wanted``, at most ``bound``
    seconds, looking every ``POSITION_POLL_SECONDS``; raise ``ViewsBehind`` past it."""
    deadline = time.monotonic() + bound
    reached = position()
    while reached < wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ViewsBehind(wanted, reached, bound)
        time.sleep(min(remaining, POSITION_POLL_SECONDS))
        reached = position()
    return reached


def bring_views_up(
    runner: ViewRunner,
    lease: Lease,
    head: int,
    *,
    seconds: float,
    bound: float,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """What a command that reads the views does first: if the lease is free, take it, catch
    the views up and give it back; if a server's runner holds it, leave the views to it and
    wait (``bound``) until they have reached ``head``, the record's position when the command
    started. Never two writers: the command never projects while a server does. Views built
    by projectors of other versions are rebuilt first, as a server does on start."""
    try:
        with LeaseKeeper(lease, seconds):
            runner.rebuild_if_outdated(on_progress=on_progress)
            runner.catch_up(on_progress=on_progress)
            return runner.position
    except LeaseHeld:
        return wait_for_views(lambda: runner.position, head, bound)
