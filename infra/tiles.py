"""C2SP ``tlog-tiles`` (https://c2sp.org/tlog-tiles): the names and byte layouts of the
static tiles, entry bundles and checkpoint that pocdir serves and mirrors write (issue 16).

This module is the format only, shared by the server that serves tiles, the command that
writes them to a directory and the mirror that fetches and checks them, so each rule of the
spec is written once:

* a hash tile ``tile/<L>/<N>[.p/<W>]`` is ``W`` (256 when full) concatenated 32-byte Merkle
  Tree Hashes; the ``i``-th hash of tile ``n`` at level ``l`` is
  ``MTH(D[(n·256 + i)·256**l : (n·256 + i + 1)·256**l])``: at level 0 the leaf hashes, at
  level ``l`` the RFC 9162 nodes over perfect subtrees of ``256**l`` leaves (tree level 8·l);
* ``N`` is written in zero-padded 3-digit path elements, every one but the last prefixed
  with ``x`` (1234067 is ``x001/x234/067``), so tiles can be files;
* an entry bundle ``tile/entries/<N>[.p/<W>]`` is ``W`` entries, each a big-endian uint16
  length then the entry; in pocdir an entry is an event's canonical record
  (docs/audit-format.md §2), whose RFC 9162 leaf hash is the stored ``leaf_hash``;
* the partial tile at level ``l`` of a tree of size ``s`` has ``floor(s / 256**l) mod 256``
  hashes; an empty tile does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

#: Tile height: a tile spans a subtree of height 8, so it holds 2**8 hashes.
TILE_HEIGHT: Final = 8
#: Hashes in a full tile, and entries in a full entry bundle.
TILE_WIDTH: Final = 1 << TILE_HEIGHT
HASH_SIZE: Final = 32
#: Bytes of a full hash tile (256 hashes).
FULL_TILE_BYTES: Final = TILE_WIDTH * HASH_SIZE
#: The largest level the spec allows.
MAX_LEVEL: Final = 63
#: An entry's length prefix is a big-endian uint16, so an entry holds at most this many bytes.
MAX_ENTRY_BYTES: Final = 0xFFFF
LENGTH_PREFIX_SIZE: Final = 2
#: The path element of entry bundles, in place of a level.
ENTRIES: Final = "entries"
CHECKPOINT_PATH: Final = "checkpoint"

_ELEMENT = re.compile(r"x\d{3}")
_LAST = re.compile(r"\d{3}")
_DECIMAL = re.compile(r"0|[1-9]\d*")


class TilePathInvalid(ValueError):
    """A path that is not a tile, entry bundle or checkpoint path of the spec."""


class TileDataInvalid(ValueError):
    """Bytes that are not a tile or an entry bundle of the expected width."""


@dataclass(frozen=True, order=True)
class TileId:
    """One tile: ``level`` (``None`` for an entry bundle), ``index`` and ``width`` (1-256)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def is_entries(self) -> bool:
        return self.level is None

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)

    @property
    def full(self) -> TileId:
        """The full tile this (partial) tile will become."""
        return TileId(self.level, self.index)

    @property
    def first_hash_index(self) -> int:
        """Index, at this tile's level, of its first hash (its first entry, for a bundle)."""
        return self.index * TILE_WIDTH


def encode_index(index: int) -> str:
    """``N`` as the spec writes it in a path: 1234067 -> ``x001/x234/067``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise TilePathInvalid(f"a tile index is a non-negative integer, not {index!r}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def tile_path(level: int | None, index: int, width: int = TILE_WIDTH) -> str:
    """The path, below the prefix, of a hash tile (``level`` 0-63) or, for ``level=None``,
    of an entry bundle; ``width`` below 256 names a partial one."""
    if level is not None and not (
        isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= MAX_LEVEL
    ):
        raise TilePathInvalid(f"a tile level is between 0 and {MAX_LEVEL}, not {level!r}")
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise TilePathInvalid(f"a tile width is between 1 and {TILE_WIDTH}, not {width!r}")
    head = f"tile/{ENTRIES if level is None else level}/{encode_index(index)}"
    return head if width == TILE_WIDTH else f"{head}.p/{width}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    return tile_path(None, index, width)


def parse_tile_path(path: str) -> TileId:
    """The tile a path names (``tile/...``, without the prefix); ``TilePathInvalid``, saying
    what is wrong, for anything the spec does not allow (leading zeros, a width of 256 or
    0, an element without its ``x``, a level above 63)."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TilePathInvalid(
            "a tile path is tile/<level>/<index>[.p/<width>] or tile/entries/<index>[.p/<width>]"
        )
    width = TILE_WIDTH
    if len(parts) >= 4 and parts[-2].endswith(".p"):
        if not _DECIMAL.fullmatch(parts[-1]) or not 1 <= int(parts[-1]) < TILE_WIDTH:
            raise TilePathInvalid(
                f"a partial tile's width is 1 to {TILE_WIDTH - 1} without leading zeros, "
                f"not {parts[-1]!r}"
            )
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][: -len(".p")]]
    level_text, elements = parts[1], parts[2:]
    level: int | None
    if level_text == ENTRIES:
        level = None
    elif _DECIMAL.fullmatch(level_text) and int(level_text) <= MAX_LEVEL:
        level = int(level_text)
    else:
        raise TilePathInvalid(
            f"a tile level is 0 to {MAX_LEVEL} without leading zeros, or 'entries', "
            f"not {level_text!r}"
        )
    if not _LAST.fullmatch(elements[-1]) or not all(_ELEMENT.fullmatch(e) for e in elements[:-1]):
        raise TilePathInvalid(
            "a tile index is written in 3-digit elements, all but the last starting with x "
            f"(1234067 is x001/x234/067), not {'/'.join(elements)!r}"
        )
    index = int("".join(e.lstrip("x") for e in elements))
    if encode_index(index) != "/".join(elements):  # e.g. x000/001: a leading zero element
        raise TilePathInvalid(
            f"tile index {index} is written {encode_index(index)!r}, not {'/'.join(elements)!r}"
        )
    return TileId(level, index, width)


def level_size(tree_size: int, level: int) -> int:
    """How many hashes the tree of ``tree_size`` leaves has at tile level ``level``: the
    number of perfect subtrees of ``256**level`` leaves."""
    return tree_size >> (TILE_HEIGHT * level)


def tiles_for_size(tree_size: int) -> Iterator[TileId]:
    """Every hash tile of a tree of ``tree_size`` leaves (full ones, then the partial one, at
    each level from 0 up), as the spec's example gives: 70,000 leaves -> 273 full and one of
    width 112 at level 0, one full and one of width 17 at level 1, one of width 1 at level 2.
    A tree of size 0 has none."""
    level = 0
    while (count := level_size(tree_size, level)) > 0:
        full, partial = divmod(count, TILE_WIDTH)
        for index in range(full):
            yield TileId(level, index)
        if partial:
            yield TileId(level, full, partial)
        level += 1


def bundles_for_size(tree_size: int) -> Iterator[TileId]:
    """Every entry bundle of a tree of ``tree_size`` entries."""
    full, partial = divmod(tree_size, TILE_WIDTH)
    for index in range(full):
        yield TileId(None, index)
    if partial:
        yield TileId(None, full, partial)


def tile_for(tile: TileId, tree_size: int) -> TileId | None:
    """The version of ``tile`` (same level and index) that a tree of ``tree_size`` holds:
    full, partial of the width it has now, or ``None`` if the tree does not reach it."""
    count = tree_size if tile.level is None else level_size(tree_size, tile.level)
    width = min(count - tile.index * TILE_WIDTH, TILE_WIDTH)
    return None if width <= 0 else TileId(tile.level, tile.index, width)


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise TileDataInvalid(f"a tile hash is {HASH_SIZE} bytes, not {len(h)}")
    return b"".join(hashes)


def decode_tile(data: bytes, tile: TileId) -> list[bytes]:
    """The hashes of a fetched hash tile, which must be exactly ``tile.width`` wide."""
    if len(data) != tile.width * HASH_SIZE:
        raise TileDataInvalid(
            f"{tile.path} is {tile.width} hashes ({tile.width * HASH_SIZE} bytes), "
            f"not {len(data)} bytes"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries, each prefixed with its length as a big-endian uint16."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise TileDataInvalid(
                f"a tlog-tiles entry holds at most {MAX_ENTRY_BYTES} bytes, not {len(entry)}"
            )
        out += len(entry).to_bytes(LENGTH_PREFIX_SIZE, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes, tile: TileId) -> list[bytes]:
    """The entries of a fetched bundle, which must hold exactly ``tile.width`` of them."""
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + LENGTH_PREFIX_SIZE > len(data):
            raise TileDataInvalid(f"{tile.path} ends inside an entry's length prefix")
        size = int.from_bytes(data[offset : offset + LENGTH_PREFIX_SIZE], "big")
        offset += LENGTH_PREFIX_SIZE
        if offset + size > len(data):
            raise TileDataInvalid(f"{tile.path} ends inside entry {len(entries)}")
        entries.append(data[offset : offset + size])
        offset += size
    if len(entries) != tile.width:
        raise TileDataInvalid(f"{tile.path} holds {tile.width} entries, not {len(entries)}")
    return entries
