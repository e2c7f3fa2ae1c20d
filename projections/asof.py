"""Views *as of* a past date or position, computed from the record itself.

The same projector that maintains the persistent views folds the record's events, up to the
given position or up to the end of the given day, into documents held in memory. A date
before some States registered gives a directory without them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import date
from typing import Any

from projections.directory import project_directory
from projections.history import HistoryItem, HistoryRow
from projections.records import RecordReader

READ_BATCH = 1000


class MemoryView:
    """Documents in memory, with the read methods the queries use."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.items: list[HistoryRow] = []

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        doc = self.docs.get((kind, key))
        return copy.deepcopy(doc) if doc is not None else None

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.docs[(kind, key)] = doc

    def add_item(self, item: HistoryRow) -> None:
        self.items.append(item)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {k: d for k in keys if (d := self.get(kind, k)) is not None}

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for (k, _), d in sorted(self.docs.items()) if k == kind]

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(d)
            for (k, key), d in sorted(self.docs.items())
            if k == kind and start <= key < stop
        ]

    def history(
        self, state: str, start: str | None = None, end: str | None = None
    ) -> list[dict[str, Any]]:
        """As ``ViewRecorder.history``, over the items folded in (none for the directory
        as of a past date, which projects the directory alone)."""
        return [
            i.to_dict()
            for i in sorted(HistoryItem(**row) for row in self.items)
            if i.state == state
            and (start is None or i.at[:10] >= start)
            and (end is None or i.at[:10] <= end)
        ]


def directory_as_of(
    app: RecordReader, *, position: int | None = None, day: date | None = None
) -> MemoryView:
    """The directory documents as they stood at ``position`` (inclusive), or at the end of
    ``day``. Events are in time order (one clock stamps them as they are stored)."""
    view = MemoryView()
    start = 0
    while True:
        records = app.recorder.select_notifications(
            start, READ_BATCH, stop=position, inclusive_of_start=False
        )
        for record in records:
            event: Any = app.facts_mapper.to_domain_event(record)
            if day is not None and event.timestamp.date() > day:
                return view
            project_directory(event, record.id, view)
        if len(records) < READ_BATCH:
            return view
        start = records[-1].id
