"""The record as a C2SP ``tlog-tiles`` log (https://c2sp.org/tlog-tiles), read from the stored
tree and events: what the HTTP routes under ``/tlog`` serve and what ``pocdir tiles write``
puts in a directory (issue 16). The format itself (paths, byte layouts) is ``infra.tiles``.

* A hash tile is one range query: level 0 reads ``merkle_leaves``, level ``L`` ≥ 1 reads
  ``merkle_nodes`` at tree level ``8·L``, which holds every perfect subtree the tree has
  completed, so no hash is recomputed.
* An entry bundle holds the canonical records (``docs/audit-format.md`` §2) of leaves
  ``[256·N, 256·N + W)``, read from the event store in position order. Each record is
  re-encoded from the stored row and must hash to the stored leaf hash, so a bundle never
  disagrees with its level-0 tile (``EntriesNotIntact`` otherwise).
* A tile the tree does not reach yet is looked for again once the tree is brought up to date
  (as ``Transparency._check_size`` does for proofs); still beyond it, ``TileNotFound``.
  A partial tile narrower than what the tree now holds is served too: its hashes never change,
  and the spec requires partial tiles of every checkpointed size to stay available until the
  full tile exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.chain import IdSpelling, StoredRow, VerificationError, leaf_hash, record_of
from infra.merkle import AuditError
from infra.tiles import (
    CHECKPOINT_PATH,
    HASH_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileId,
    bundles_for_size,
    encode_bundle,
    encode_tile,
    tile_for,
    tiles_for_size,
)
from infra.transparency import CheckpointView, NotRecorded, Transparency


class TileNotFound(NotRecorded):
    """A tile or entry bundle that the tree does not hold (yet) at that width."""


class EntriesNotIntact(AuditError):
    """A stored event does not re-encode to the leaf the tree holds for it: the record was
    changed after the tree grew over it. Nothing is served; ``pocdir verify`` names the fault."""


def served_checkpoint(transparency: Transparency) -> CheckpointView:
    """The checkpoint served at ``<prefix>/checkpoint`` and written by ``write_tiles``: the
    latest recorded one (``NotRecorded`` if none). The one place where cosignatures will be
    added to the note, so the server and the directory serve the same text."""
    return transparency.latest_checkpoint()


@dataclass(frozen=True)
class TileBytes:
    """A tile (or bundle) as served: its id and its bytes."""

    tile: TileId
    data: bytes


class TileReader:
    """Hash tiles and entry bundles of the record's tree.

    ``lock`` guards bringing the tree up to date (the server's ``tree_lock``, so one request
    of a process extends it at a time); reads of stored hashes need none."""

    def __init__(
        self,
        transparency: Transparency,
        recorder: Any,
        lock: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.transparency = transparency
        self.tree = transparency.tree
        self.recorder = recorder
        self.spelling: IdSpelling = recorder.id_spelling
        self._lock = lock

    def tree_size(self, *, catch_up: bool = False) -> int:
        """The tree's size, after bringing it up to date if asked."""
        if not catch_up:
            return self.tree.size()
        with self._lock():
            return self.tree.catch_up()

    def available(self, tile: TileId) -> TileId:
        """``tile`` if the tree holds it at that width (bringing the tree up to date first
        when it does not yet), else ``TileNotFound`` saying what it holds."""
        present = tile_for(tile, self.tree_size())
        if present is None or present.width < tile.width:
            present = tile_for(tile, self.tree_size(catch_up=True))
        if present is None or present.width < tile.width:
            held = "none of it" if present is None else f"{present.width} of its {TILE_WIDTH}"
            raise TileNotFound(
                f"{tile.path} is beyond the tree, which holds {held}; fetch the checkpoint "
                "first and only the tiles of its tree size"
            )
        return tile

    def read(self, tile: TileId) -> TileBytes:
        """The bytes of a hash tile or an entry bundle (``TileNotFound``, ``EntriesNotIntact``)."""
        tile = self.available(tile)
        if tile.level is None:
            return TileBytes(tile, encode_bundle(self.entries(tile)))
        return TileBytes(tile, encode_tile(self.hashes(tile)))

    def hashes(self, tile: TileId) -> list[bytes]:
        """The ``tile.width`` hashes of a hash tile the tree holds, from one query."""
        if tile.level is None:
            raise ValueError("an entry bundle has entries, not hashes")
        start = tile.first_hash_index
        if tile.level == 0:
            found = [h for _, h in self.tree.leaf_range(start, tile.width)]
        else:
            found = self.tree.node_range(TILE_HEIGHT * tile.level, start, tile.width)
        if len(found) != tile.width:
            raise EntriesNotIntact(
                f"the stored Merkle tree lacks hashes of {tile.path}",
                expected=f"{tile.width} hashes",
                computed=f"{len(found)} hashes",
            )
        return found

    def entries(self, tile: TileId) -> list[bytes]:
        """The canonical records of the bundle's leaves, each checked against its stored
        leaf hash."""
        leaves = self.tree.leaf_range(tile.first_hash_index, tile.width)
        if len(leaves) != tile.width:
            raise EntriesNotIntact(
                f"the stored Merkle tree lacks leaves of {tile.path}",
                expected=f"{tile.width} leaves",
                computed=f"{len(leaves)} leaves",
            )
        rows = self.recorder.linked_page(leaves[0][0], tile.width)
        records: list[bytes] = []
        padded: list[Any] = [*rows, *[None] * (tile.width - len(rows))]
        for (position, leaf), row in zip(leaves, padded, strict=True):
            if row is None or row[0] != position:
                raise EntriesNotIntact(
                    f"the event of leaf {tile.first_hash_index + len(records)} is no longer "
                    "where the tree recorded it: events were deleted or inserted",
                    expected=f"an event at position {position}",
                    computed="none" if row is None else f"the event at position {row[0]}",
                )
            stored = StoredRow(*row)
            try:
                record = record_of(stored, self.spelling)
            except VerificationError as e:
                raise EntriesNotIntact(e.reason, expected=e.expected, computed=e.computed) from e
            if stored.leaf_hash != leaf or leaf_hash(record) != leaf:
                raise EntriesNotIntact(
                    f"the event at position {position} changed since the tree grew over it",
                    expected=f"leaf {leaf.hex()}",
                    computed=f"leaf {leaf_hash(record).hex()}",
                )
            records.append(record)
        return records


# -- writing a directory ------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteSummary:
    tree_size: int
    written: int
    skipped: int
    removed: int
    bytes_written: int

    def line(self) -> str:
        return (
            f"tree size {self.tree_size}: {self.written} files written "
            f"({self.bytes_written:,} bytes), {self.skipped} already present, "
            f"{self.removed} superseded partial tiles removed"
        )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` so that a reader sees the old file or the whole new one, never a part:
    a temporary file in the same directory, flushed, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _present(path: Path, tile: TileId) -> bool:
    """A tile file already written. Every path names immutable bytes (a partial tile's width
    is in its path), so a file there need not be written again; a hash tile of the wrong
    length (not written by this function) is rewritten."""
    if not path.is_file():
        return False
    return tile.level is None or path.stat().st_size == tile.width * HASH_SIZE


def write_tiles(directory: Path, reader: TileReader, checkpoint: CheckpointView) -> WriteSummary:
    """Write the log of ``checkpoint``'s tree size (pass ``served_checkpoint``'s, so the
    directory's checkpoint is the one the server serves) to ``directory``: every hash tile and entry
    bundle, then the checkpoint, each file atomically. Incremental: files already present
    are kept (a path's bytes never change); a partial tile's ``.p`` directory is removed once
    its full tile is written (the spec lets logs delete those, and clients fall back to the
    full tile). The checkpoint is written last, so a reader never meets a checkpoint whose
    tiles are missing."""
    size = checkpoint.tree_size
    written = skipped = removed = nbytes = 0
    for tile in [*tiles_for_size(size), *bundles_for_size(size)]:
        path = directory / tile.path
        if _present(path, tile):
            skipped += 1
        else:
            data = reader.read(tile).data
            _write_atomically(path, data)
            written += 1
            nbytes += len(data)
        partials = directory / f"{tile.full.path}.p"
        if not tile.is_partial and partials.is_dir():
            removed += sum(1 for p in partials.rglob("*") if p.is_file())
            shutil.rmtree(partials)
    note = checkpoint.note.encode("utf-8")
    _write_atomically(directory / CHECKPOINT_PATH, note)
    return WriteSummary(size, written + 1, skipped, removed, nbytes + len(note))
