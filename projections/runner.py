"""Keeps views up to date with the stored sequence, exactly once.

Events are read in position order after the view's tracking position, projected in batches,
and each batch's document changes are written with the batch's last position in one
transaction. A runner killed at any point leaves the view at the end of its last committed
batch and the next runner resumes there: nothing lost, nothing counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from projections.directory import Documents, project_directory
from projections.history import project_history
from projections.review import project_review
from projections.store import Changes, ViewRecorder

Projector = Callable[[Any, int, Documents], None]
DIRECTORY_VIEW = "view:directory"


def project_views(event: Any, position: int, docs: Documents) -> None:
    """Every read model, in one pass over the record: the directory (with freshness and late
    notices), the per-State histories and the review facts."""
    project_directory(event, position, docs)
    project_history(event, position, docs)
    project_review(event, position, docs)


BATCH = 1000


class BatchDocuments:
    """Documents read through from the view and changed in memory until the batch commits.

    Precondition: only one batch is open per view at a time (one runner per view);
    a second runner's commit fails on the tracking position and rolls back instead.
    """

    def __init__(self, view: ViewRecorder) -> None:
        self.view = view
        self.changes: Changes = {}

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        if (kind, key) not in self.changes:
            self.changes[(kind, key)] = self.view.get(kind, key)
        return self.changes[(kind, key)]

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.changes[(kind, key)] = doc


class ViewRunner:
    def __init__(
        self,
        app: Application,
        view: ViewRecorder,
        name: str = DIRECTORY_VIEW,
        projector: Projector = project_views,
    ) -> None:
        self.app, self.view, self.name, self.projector = app, view, name, projector

    @property
    def position(self) -> int:
        return self.view.max_tracking_id(self.name) or 0

    def catch_up(self, batch: int = BATCH, on_progress: Callable[[int], None] | None = None) -> int:
        """Project every event after the view's position; return how many were projected."""
        start, projected = self.position, 0
        while True:
            notifications = self.app.recorder.select_notifications(
                start, batch, inclusive_of_start=False
            )
            if not notifications:
                return projected
            docs = BatchDocuments(self.view)
            for notification in notifications:
                event = self.app.mapper.to_domain_event(notification)
                self.projector(event, notification.id, docs)
            start = notifications[-1].id
            self.view.apply(Tracking(self.name, start), _unchanged_removed(docs.changes))
            projected += len(notifications)
            if on_progress is not None:
                on_progress(start)

    def rebuild(self, batch: int = BATCH, on_progress: Callable[[int], None] | None = None) -> int:
        """Drop the view and project the whole record again."""
        self.view.reset(self.name)
        return self.catch_up(batch, on_progress)


def _unchanged_removed(changes: Changes) -> Changes:
    """Documents only read, never created, need no write (None would mean delete)."""
    return {k: v for k, v in changes.items() if v is not None}
