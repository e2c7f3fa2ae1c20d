"""Keeps views up to date with the stored sequence, exactly once.

Events are read in position order after the view's tracking position, projected in batches,
and each batch's document changes and history items are written with the batch's last
position in one transaction. A runner killed at any point leaves the view at the end of its
last committed batch and the next runner resumes there: nothing lost, nothing counted twice.

The runner reads the record through ``projections.records.RecordReader`` (the stored
events after a position, and their decoder for the views), not through the application.
Events are decoded with every exchange's content withheld (``facts_mapper``, e.g.
``PocDirectory``'s): no view holds content, so no projector receives it, and a rebuild does
not validate again the indicators it would throw away.

Why it is fast enough to rebuild a large record: a batch's events are decoded first, the
documents they will read are fetched in one query per kind, and documents the runner itself
committed earlier in the same ``catch_up`` are kept in memory (bounded), so most events need
no read from the view at all. A rebuild also pauses the garbage collector and, given
``open_writer_view``, writes from a process of its own while it projects the next batch.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from itertools import islice
from typing import Any

from eventsourcing.persistence import Tracking

from projections import directory, history, review
from projections.directory import directory_reads, project_directory
from projections.history import HistoryDocuments, HistoryRow, history_reads, project_history
from projections.records import RecordReader
from projections.review import project_review
from projections.store import (
    SHADOW_SUFFIX,
    SHADOW_TABLES,
    Changes,
    ViewRecorder,
    dumps,
    split_changes,
)
from projections.writer import BatchWriter, ProcessWriter, ThreadWriter

Projector = Callable[[Any, int, HistoryDocuments], None]
#: The (kind, key) of each document a projector will ``get`` for an event.
Reads = Callable[[Any], Iterable[tuple[str, str]]]
#: The tracking name of all the views (they are projected together). It still says
#: "directory", as it did when the directory was the only view: stored positions keep it.
VIEWS_NAME = "view:directory"


def project_views(event: Any, position: int, docs: HistoryDocuments) -> None:
    """Every read model, in one pass over the record: the directory (with freshness and late
    notices), the per-State histories and the review facts."""
    project_directory(event, position, docs)
    project_history(event, position, docs)
    project_review(event, position, docs)


#: The versions of the projectors ``project_views`` runs, as the views store them: views
#: that say otherwise were written by other code, and are rebuilt (``ViewRunner.outdated``).
VIEWS_VERSION = dumps(
    {"directory": directory.VERSION, "history": history.VERSION, "review": review.VERSION}
)


def views_read(event: Any) -> Iterator[tuple[str, str]]:
    """The documents ``project_views`` will ``get`` for ``event``."""
    yield from directory_reads(event)
    yield from history_reads(event)


BATCH = 1000
#: A rebuild's batch: ten times fewer commits, and a document changed by several events of
#: the batch (a notification sent, acknowledged, answered) is written once instead of each time.
REBUILD_BATCH = 10_000
#: Documents kept in memory between the batches of one ``catch_up``. A notification's or a
#: consent's events are usually a few thousand positions apart, so this holds nearly every
#: document a later event reads; one that was dropped is read from the view again.
KNOWN_LIMIT = 50_000
#: How many times a rebuild catches up before it gives up swapping its views in (each time,
#: events recorded meanwhile moved one copy past the other).
SWAP_ATTEMPTS = 20


class RebuildNotSwapped(RuntimeError):
    """The record kept growing faster than a rebuild could catch up; the views are as they
    were (the rebuilt copy is left aside and dropped by the next rebuild)."""


class KnownDocuments:
    """The committed state of documents this runner read or wrote during one ``catch_up``:
    ``None`` for a key known to be absent. Only kinds the projectors read are kept.

    Precondition: nothing else writes the view meanwhile (one runner per view; a second
    runner's commit fails on the tracking position). It lives for one ``catch_up`` call and
    is dropped with it, also when a batch fails, so it never outlives what it describes.
    """

    def __init__(self, limit: int = KNOWN_LIMIT) -> None:
        self.limit = limit
        self.docs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.kinds: set[str] = set()

    def committed(self, changes: Changes) -> None:
        """Record a batch's changes once its transaction has committed."""
        docs, kinds = self.docs, self.kinds
        for k, doc in changes.items():
            if k[0] in kinds:
                docs.pop(k, None)  # re-inserted last: the most recently written stay longest
                docs[k] = doc
        excess = len(docs) - self.limit
        if excess > 0:
            for k in list(islice(docs, excess)):
                del docs[k]


class BatchDocuments:
    """Documents read through from the view and changed in memory until the batch commits,
    and the batch's new history items.

    Only documents ``put`` are written; a projector puts back every document it changes
    (the ``Documents`` contract). ``writing`` holds the changes of the previous batch while
    its transaction may still be running: they are read from there, never from the view.

    Precondition: only one batch is open per view at a time (one runner per view);
    a second runner's commit fails on the tracking position and rolls back instead.
    """

    def __init__(
        self,
        view: ViewRecorder,
        known: KnownDocuments | None = None,
        writing: Changes | None = None,
    ) -> None:
        self.view = view
        self.known = known if known is not None else KnownDocuments()
        self.writing: Changes = writing if writing is not None else {}
        self.changes: Changes = {}
        self.items: list[HistoryRow] = []
        #: ``add_item`` without an attribute lookup per call: most events add two.
        self.add_item = self.items.append

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Fetch, in one query per kind, the documents not already in memory."""
        known, changes, writing = self.known.docs, self.changes, self.writing
        wanted: dict[str, dict[str, None]] = {}
        for k in keys:
            if k not in changes and k not in writing and k not in known:
                wanted.setdefault(k[0], {})[k[1]] = None
        for kind, keys_of_kind in wanted.items():
            self.known.kinds.add(kind)
            found = self.view.get_many(kind, keys_of_kind)
            for key in keys_of_kind:
                known[(kind, key)] = found.get(key)

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        k = (kind, key)
        if k in self.changes:
            return self.changes[k]
        if k in self.writing:
            return self.writing[k]
        known = self.known.docs
        if k not in known:
            self.known.kinds.add(kind)
            known[k] = self.view.get(kind, key)
        return known[k]

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.changes[(kind, key)] = doc


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a rebuild. A batch keeps thousands of decoded
    events and documents alive at once, so the collector ran again and again over objects
    that reference counting frees anyway (projection makes no cycles): about a fifth of a
    rebuild's time. Restores the collector's state on leaving and collects once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()


class ViewRunner:
    """Keeps ``view`` up to date with the record that ``app`` reads (a ``RecordReader``,
    such as the application).

    ``open_writer_view`` (optional) opens another recorder of the same view, in a process
    of its own: a rebuild then writes its batches from there (``projections.writer``). It
    takes the tables to open as ``tables=`` (a ``ViewTables``) and must be picklable, e.g. a
    ``functools.partial`` of a module-level function.

    ``version`` names the projectors' versions (``VIEWS_VERSION`` for ``project_views``):
    views built from scratch by this runner record it, and views that record another are
    ``outdated``."""

    def __init__(
        self,
        app: RecordReader,
        view: ViewRecorder,
        name: str = VIEWS_NAME,
        projector: Projector = project_views,
        reads: Reads = views_read,
        open_writer_view: Callable[..., ViewRecorder] | None = None,
        version: str = VIEWS_VERSION,
    ) -> None:
        self.app, self.view, self.name = app, view, name
        self.projector, self.reads = projector, reads
        self.open_writer_view = open_writer_view
        self.version = version
        #: The position this runner last brought the view to, in this process.
        self.last_position: int | None = None
        #: Whether ``rebuild`` is running (``/ready`` says so: the views served meanwhile
        #: are the old ones).
        self.rebuilding = False

    @property
    def position(self) -> int:
        return self.view.max_tracking_id(self.name) or 0

    def catch_up(
        self,
        batch: int = BATCH,
        on_progress: Callable[[int], None] | None = None,
        *,
        from_last: bool = False,
    ) -> int:
        """Project every event after the view's position; return how many were projected.

        Each batch is written in one transaction with its last position, by a second thread,
        while this one reads, decodes and projects the next batch (the database does its
        work without holding the interpreter lock). One batch is written at a time, in
        order; a batch whose write fails stops the runner before the next one is written,
        so the view still ends at the last committed batch. A short batch (the end of the
        record so far, as when following new events) is written by this thread: no thread
        is started when there is nothing to overlap.

        ``from_last`` starts from the position this runner last reached instead of reading
        it from the view: one query less for a process that follows the record on every
        request. If another process moved the view on meanwhile, the first write fails on
        its tracking position (``IntegrityError``) and nothing is written; call again
        without ``from_last``."""
        with self._forgetting_position_on_error():
            return self._project(batch, on_progress, from_last, partial(ThreadWriter, self.view))

    @contextmanager
    def _forgetting_position_on_error(self) -> Iterator[None]:
        """A failed run leaves the view wherever its last committed batch took it: the next
        run reads the position from the view, not from this runner's memory."""
        try:
            yield
        except BaseException:
            self.last_position = None
            raise

    def _project(
        self,
        batch: int,
        on_progress: Callable[[int], None] | None,
        from_last: bool,
        open_writer: Callable[[], BatchWriter],
    ) -> int:
        last = self.last_position
        start, projected = (last if from_last and last is not None else self.position), 0
        if not self.app.recorder.select_notifications(start, 1, inclusive_of_start=False):
            # Nothing new, the usual case for a server following the record: no writer
            # thread, no batch. (One row; the loop below reads the batch again.)
            self.last_position = start
            return 0
        if start == 0 and self.position == 0:
            self._record_versions_of_new_views()
        known = KnownDocuments()
        select = self.app.recorder.select_notifications
        decode = self.app.facts_mapper.to_domain_event  # content withheld: see its docstring
        writing: Changes = {}
        pending: Future[None] | None = None
        pending_events, position = 0, start

        def written() -> None:
            """Wait for the batch being written; account for it once it has committed."""
            nonlocal pending, projected
            if pending is None:
                return
            done, pending = pending, None
            done.result()  # raises the batch's error: nothing after it is written
            known.committed(writing)
            projected += pending_events
            if on_progress is not None:
                on_progress(position)

        with open_writer() as writer:
            while True:
                records = select(start, batch, inclusive_of_start=False)
                if not records:
                    written()
                    self.last_position = position
                    return projected
                events = [(r.id, decode(r)) for r in records]
                docs = BatchDocuments(self.view, known, writing)
                docs.prefetch(k for _, event in events for k in self.reads(event))
                for p, event in events:
                    self.projector(event, p, docs)
                # Serialised before the next batch runs.
                rows = split_changes(docs.changes, docs.items, after=start)
                start = records[-1].id
                written()
                writing, position, pending_events = docs.changes, start, len(records)
                if len(records) == batch:
                    pending = writer.submit(Tracking(self.name, start), rows)
                else:  # a short batch ends the record for now: nothing to overlap it with
                    self.view.write_batch(Tracking(self.name, start), rows)
                    pending = Future()
                    pending.set_result(None)

    def _record_versions_of_new_views(self) -> None:
        """Views at position 0 hold nothing: the ones this runner is about to build are this
        runner's projectors' output, whatever versions the empty views said before."""
        self.view.record_versions(self.version)

    def outdated(self) -> bool:
        """Whether the views hold output of projectors of other versions than this runner's
        (or of the code before views had versions): following them would mix two outputs,
        so they are rebuilt instead (``rebuild_if_outdated``). Views that hold nothing yet
        are not outdated: this runner builds them."""
        return self.view.stored_versions() != self.version and self.position > 0

    def rebuild_if_outdated(
        self, batch: int = REBUILD_BATCH, on_progress: Callable[[int], None] | None = None
    ) -> bool:
        """Rebuild the views if they are ``outdated``; return whether it did. Meanwhile the
        old views are still read, and ``rebuilding`` is True; a rebuild that fails leaves
        them as they were, still outdated, so the next call rebuilds again."""
        if not self.outdated():
            return False
        self.rebuild(batch, on_progress)
        return True

    def rebuild(
        self, batch: int = REBUILD_BATCH, on_progress: Callable[[int], None] | None = None
    ) -> int:
        """Project the whole record again into a copy of the views beside them, then swap it
        in, in one transaction: with the garbage collector paused, and from a writer process
        when the runner has ``open_writer_view``. Return how many events the copy holds.

        Why a copy: the views are never dropped before their rebuild has succeeded. A
        rebuild that fails (an event it cannot decode, a crash, a kill) leaves the views as
        they were, still followed by the server; the next rebuild drops the copy it left.
        The copy is swapped in only when it is at least as far as the views (it catches up
        with the record first), so that the views never go back; a process that followed
        the old views then finds its next batch refused (``Rows.after``) and reads the
        position again, so it projects no event twice."""
        self.rebuilding = True
        try:
            return self._rebuild(batch, on_progress)
        finally:
            self.rebuilding = False

    def _rebuild(self, batch: int, on_progress: Callable[[int], None] | None) -> int:
        shadow_name = self.name + SHADOW_SUFFIX
        shadow = self.view.open_shadow(shadow_name)
        shadow.record_versions(self.version)  # swapped in with the copy's tables
        copy = ViewRunner(
            self.app, shadow, shadow_name, self.projector, self.reads, version=self.version
        )
        open_writer: Callable[[], BatchWriter] = (
            partial(ProcessWriter, partial(self.open_writer_view, tables=SHADOW_TABLES))
            if self.open_writer_view is not None
            else partial(ThreadWriter, shadow)
        )
        with collection_paused(), self._forgetting_position_on_error():
            count = copy._project(batch, on_progress, False, open_writer)
            for _ in range(SWAP_ATTEMPTS):
                count += copy.catch_up(batch)
                if self.view.swap_in(shadow, shadow_name, self.name):
                    self.last_position = None
                    return count
        raise RebuildNotSwapped(
            f"the record grew during {SWAP_ATTEMPTS} attempts to swap in the rebuilt views"
        )
