"""A verified copy of the record that survives the operator (issue 16, items 5 and 6).

``mirror`` fetches the record from a pocdir server (``/tlog/`` tiles, ``/audit/statements``) or
from a directory in the same layout, incrementally, and keeps it in ``DIR`` only once every
new byte is verified: the checkpoint against the verifier's own witness policy, every new entry
against its level-0 tile hash, every new full tile against its hash one level up, every grown
tile against the bytes the mirror already held (so the new tree extends the old one), and the
root computed from the tiles against the cosigned checkpoint's. ``DIR`` is itself a static
C2SP tlog-tiles copy (``infra.tiles`` paths), so it can be served or mirrored in turn.

``verify_mirror`` re-checks a whole mirror offline, with no server and no database: the
checkpoint against the policy, every tile and entry bundle, the root, the records decoded in
ascending positions, and every event's signature (``infra.signatures``) from the statements.

Which statements a mirror holds depends on whose token fetched them (``scope`` in
``mirror.json``): the auditor's gives ``all``, and every event's signature is checked; a
State's gives ``state:XXX``, the statements that State may read
(``domain.signing.may_read_statement``), and only the events that State can judge are
checked: those of its entry and key set, every key binding and re-onboarding, and every event
a held statement covers.

Layout (docs/audit-format.md §19)::

    DIR/tile/<L>/<N>[.p/<W>]        hash tiles, as the spec names them
    DIR/tile/entries/<N>[.p/<W>]    entry bundles: each entry a canonical record (§2)
    DIR/statements.jsonl            signed statements, as in the audit bundle, by position
    DIR/mirror.json                 the mirror's state: origin, size, root, note, cursors
    DIR/checkpoint                  the cosigned note, for whoever serves DIR

A run writes new files beside the old ones (a grown partial tile has a new path), then
``mirror.json`` and ``checkpoint`` by rename, last: a run stopped half way leaves the previous
verified mirror as it was.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from domain.members import member_states
from domain.signing import event_name, statement_scope
from domain.state_entry import state_entry_id
from domain.state_keys import state_keys_id
from infra.chain import MalformedRecord, ParsedRecord, leaf_hash, parse_record
from infra.merkle import EMPTY_ROOT, AuditError, b64, fold_right, root_of, unb64
from infra.note import Checkpoint
from infra.signatures import SignatureFault, SignatureSummary, SignatureVerifier
from infra.statement_store import StatementRow
from infra.tiles import (
    CHECKPOINT_PATH,
    HASH_SIZE,
    TILE_WIDTH,
    TileDataInvalid,
    TileId,
    bundles_for_size,
    decode_bundle,
    decode_tile,
    encode_bundle,
    tile_for,
    tiles_for_size,
)
from infra.witness_policy import Policy, WitnessedCheckpoint

MIRROR_FORMAT: Final = "pocdir-mirror/1"
MIRROR_FILE: Final = "mirror.json"
STATEMENTS_FILE: Final = "statements.jsonl"
#: Where a pocdir server serves its tiles and checkpoint, and its statements.
TLOG_PREFIX: Final = "/tlog/"
STATEMENTS_ROUTE: Final = "/audit/statements"
#: Statements asked for per request (the route's largest page).
STATEMENTS_PAGE: Final = 1000
#: Where a run stages what it fetched, inside DIR (same file system, so renames are atomic).
STAGING: Final = ".incoming"
#: Held (``flock``) by the run in progress.
LOCK: Final = ".lock"
_TIMEOUT: Final = 60.0
#: The scope of a mirror's statements: every one (an auditor's token).
ALL_STATEMENTS: Final = statement_scope(None)
#: Events a State's verifier checks whoever they are about: the Secretariat's bindings, whose
#: statements every State is given (the first is where every State is held to signing).
_BINDING_EVENTS: Final = frozenset({"StateKeys.KeysBound", "StateKeys.KeysReonboarded"})


# -- errors ------------------------------------------------------------------------------------


class MirrorError(AuditError):
    """The source's record does not verify: nothing of this run was kept."""


class MirrorRollback(MirrorError):
    """The source's checkpoint is of a smaller tree than the mirror already holds."""


class OriginMismatch(MirrorError):
    """The source's checkpoint is of another log than the mirror's."""


class EntryMismatch(MirrorError):
    """An entry does not hash to its level-0 tile hash, or is not a canonical record that
    continues the record's positions."""


class TileMismatch(MirrorError):
    """A tile does not hash to its hash one level up, or rewrites what the mirror holds."""


class RootMismatch(MirrorError):
    """The root computed from the tiles is not the checkpoint's."""


class MirrorInvalid(MirrorError):
    """The source serves, or the directory holds, something that is not a tile, a bundle, a
    statement or a mirror's state, or lacks one its checkpoint needs."""


class ScopeMismatch(MirrorError):
    """The source gives the statements of another scope than the one the verifier expects
    (``--scope``): a server that answers an auditor as if it were a State withholds the
    statements of every other State."""


class SourceUnavailable(Exception):
    """The source cannot be read (network, TLS, HTTP status, missing directory): a usage or
    availability problem, not a verification failure."""


class MirrorDirectoryInvalid(ValueError):
    """``DIR`` is neither a mirror nor a new or empty directory."""


# -- sources -----------------------------------------------------------------------------------


class Source(Protocol):
    """Where the record is fetched from; ``fetched_bytes`` counts what was read."""

    fetched_bytes: int
    #: Whose statements :meth:`statements` gave: ``all`` or ``state:XXX`` (audit format §19.3).
    scope: str

    def checkpoint(self) -> str: ...

    def tile(self, path: str) -> bytes | None: ...

    def statements(self, after: int) -> Iterator[StatementRow]: ...

    def close(self) -> None: ...


def _statement_row(obj: Any, where: str) -> StatementRow:
    try:
        if not isinstance(obj, dict):
            raise TypeError("not an object")
        row = StatementRow(**obj)
        if not all(type(getattr(row, f)) is int for f in ("first_position", "last_position")):
            raise TypeError("positions are not integers")
        return row
    except TypeError as e:
        raise MirrorInvalid(
            f"{where} is not a statement row",
            expected="an object of the statement columns",
            computed=str(e)[:80],
        ) from None


@dataclass(frozen=True)
class ClientTls:
    """How a mirror speaks TLS to a server: the CA its certificate chains to (``None``: the
    system's), and the client certificate and key a server that requires one (mTLS, the
    Secretariat's CA) checks beside the token."""

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def context(self) -> ssl.SSLContext | bool:
        """``True`` (httpx's default verification) when nothing is given, else a context;
        ``SourceUnavailable`` naming the file that cannot be read."""
        if self.ca_file is None and self.client_cert is None:
            return True
        try:
            context = ssl.create_default_context(
                cafile=None if self.ca_file is None else str(self.ca_file)
            )
            if self.client_cert is not None:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as e:
            raise SourceUnavailable(
                f"cannot load the CA certificate or the client certificate and key: {e}"
            ) from None
        return context


def statement_lines(data: bytes) -> list[StatementRow]:
    """The rows of a ``statements.jsonl`` (one JSON object per line); ``MirrorInvalid``
    naming the first line that is not a statement row."""
    rows = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise MirrorInvalid(
                f"{STATEMENTS_FILE} line {number} is not JSON",
                expected="a statement row",
                computed=line[:60],
            ) from None
        rows.append(_statement_row(obj, f"{STATEMENTS_FILE} line {number}"))
    return rows


class HttpSource:
    """A pocdir server: ``GET /tlog/checkpoint``, ``/tlog/tile/...`` and
    ``/audit/statements``, with the auditor's (or State's) bearer token."""

    def __init__(self, base: str, token: str | None, tls: ClientTls) -> None:
        self.base = base.rstrip("/")
        verify = tls.context()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.base, headers=headers, verify=verify, timeout=_TIMEOUT
        )
        self.fetched_bytes = 0
        self.scope = ALL_STATEMENTS
        self._scopes: set[str] = set()

    def _get(self, path: str, params: dict[str, int] | None = None) -> bytes | None:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as e:
            raise SourceUnavailable(f"GET {self.base}{path}: {e}") from None
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if response.status_code != httpx.codes.OK:
            raise SourceUnavailable(
                f"GET {self.base}{path}: HTTP {response.status_code}: {response.text[:120]}"
            )
        self.fetched_bytes += response.num_bytes_downloaded  # on the wire (gzip bundles)
        return response.content

    def checkpoint(self) -> str:
        data = self._get(TLOG_PREFIX + CHECKPOINT_PATH)
        if data is None:
            raise SourceUnavailable(f"{self.base}{TLOG_PREFIX}{CHECKPOINT_PATH} is not found")
        return _note_text(data, f"{self.base}{TLOG_PREFIX}{CHECKPOINT_PATH}")

    def tile(self, path: str) -> bytes | None:
        return self._get(TLOG_PREFIX + path)

    def statements(self, after: int) -> Iterator[StatementRow]:
        cursor: int | None = after
        while cursor is not None:
            data = self._get(STATEMENTS_ROUTE, {"after": cursor, "limit": STATEMENTS_PAGE})
            if data is None:
                raise SourceUnavailable(f"{self.base}{STATEMENTS_ROUTE} is not found")
            try:
                page = json.loads(data)
                rows, cursor = page["statements"], page["next_after"]
                # A server from before States read statements names no scope: it served all.
                scope = str(page.get("scope", ALL_STATEMENTS))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise MirrorInvalid(
                    f"{STATEMENTS_ROUTE} did not answer a page of statements",
                    expected='{"statements": [...], "next_after": ...}',
                    computed=data[:60].decode("utf-8", "replace"),
                ) from None
            self._scopes.add(check_scope(scope, f"the scope of {STATEMENTS_ROUTE}"))
            if len(self._scopes) > 1:
                raise MirrorInvalid(
                    f"the pages of {STATEMENTS_ROUTE} are of different scopes",
                    expected="one scope",
                    computed=", ".join(sorted(self._scopes)),
                )
            self.scope = scope
            for obj in rows:
                yield _statement_row(obj, f"a statement of {STATEMENTS_ROUTE}")

    def close(self) -> None:
        self.http.close()


class DirectorySource:
    """A directory in the tlog-tiles layout (``pocdir tiles write``, or another mirror),
    with its ``statements.jsonl`` if it has one."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise SourceUnavailable(f"{directory} is not a directory")
        self.directory = directory
        self.fetched_bytes = 0
        # Another mirror gives the statements it holds, of its scope; a directory that is not
        # a mirror (``pocdir tiles write``) holds the auditor's, or none.
        held = read_state(directory) if is_mirror(directory) else None
        self.scope = held.statements_scope if held else ALL_STATEMENTS

    def _read(self, path: str) -> bytes | None:
        try:
            data = (self.directory / path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SourceUnavailable(f"cannot read {self.directory / path}: {e}") from None
        self.fetched_bytes += len(data)
        return data

    def checkpoint(self) -> str:
        data = self._read(CHECKPOINT_PATH)
        if data is None:
            raise SourceUnavailable(f"{self.directory / CHECKPOINT_PATH} is not found")
        return _note_text(data, str(self.directory / CHECKPOINT_PATH))

    def tile(self, path: str) -> bytes | None:
        return self._read(path)

    def statements(self, after: int) -> Iterator[StatementRow]:
        data = self._read(STATEMENTS_FILE)
        if data is None:
            return
        for row in statement_lines(data):
            if row.first_position > after:
                yield row

    def close(self) -> None:
        pass


def _note_text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MirrorInvalid(
            f"{where} is not a signed note", expected="UTF-8 text", computed="other bytes"
        ) from None


def open_source(source: str, token: str | None = None, tls: ClientTls | None = None) -> Source:
    """An ``http(s)://`` URL is a server, anything else a directory."""
    if source.startswith(("https://", "http://")):
        return HttpSource(source, token, tls or ClientTls())
    return DirectorySource(Path(source))


# -- the mirror's state ------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorState:
    """What ``mirror.json`` says: the verified tree the directory holds."""

    origin: str
    tree_size: int
    root_hash: bytes
    #: The position of the last entry (0 for an empty tree).
    last_position: int
    checkpoint: str
    statements_count: int
    #: Bytes of ``statements.jsonl`` that belong to the mirror (a stopped run may have
    #: appended more; the next run cuts them).
    statements_bytes: int
    #: ``first_position`` of the last statement held (0 for none): the next fetch's cursor.
    statements_cursor: int
    #: Whose statements the mirror holds: ``all`` or ``state:XXX``.
    statements_scope: str = ALL_STATEMENTS
    data: dict[str, Any] = field(default_factory=dict)


def _bad_state(reason: str, computed: str) -> MirrorInvalid:
    return MirrorInvalid(
        f"{MIRROR_FILE}: {reason}", expected=f"a {MIRROR_FORMAT} state", computed=computed
    )


def check_scope(scope: str, where: str) -> str:
    """``scope`` if it is ``all`` or ``state:XXX`` for a member State; ``MirrorInvalid``."""
    if scope == ALL_STATEMENTS or scope_state(scope) is not None:
        return scope
    raise MirrorInvalid(
        f"{where} is not a scope of statements",
        expected='"all" or "state:XXX"',
        computed=scope[:40],
    )


def scope_state(scope: str) -> str | None:
    """The State whose statements a scope holds (``state:FRA``: ``FRA``); ``None`` for
    ``all`` or anything else."""
    kind, _, code = scope.partition(":")
    return code if kind == "state" and code in member_states() else None


def is_mirror(directory: Path) -> bool:
    """Whether ``directory`` holds a mirror (its ``mirror.json``)."""
    return (directory / MIRROR_FILE).is_file()


def read_state(directory: Path) -> MirrorState | None:
    """The mirror's state, ``None`` for a new or empty directory; ``MirrorDirectoryInvalid``
    for a directory that holds something else."""
    path = directory / MIRROR_FILE
    if not path.exists():
        if directory.exists() and (
            not directory.is_dir()
            or any(p.name not in (STAGING, LOCK) for p in directory.iterdir())
        ):
            raise MirrorDirectoryInvalid(
                f"{directory} is not a mirror (no {MIRROR_FILE}) and not an empty directory"
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError) as e:
        raise _bad_state("not readable JSON", str(e)[:80]) from None
    if not isinstance(data, dict) or data.get("format") != MIRROR_FORMAT:
        raise _bad_state("not a mirror's state", str(data)[:60])
    try:
        statements = data["statements"]
        state = MirrorState(
            origin=str(data["origin"]),
            tree_size=int(data["tree_size"]),
            root_hash=unb64(str(data["root_hash"])),
            last_position=int(data["last_position"]),
            checkpoint=str(data["checkpoint"]),
            statements_count=int(statements["count"]),
            statements_bytes=int(statements["bytes"]),
            statements_cursor=int(statements["last_first_position"]),
            # A mirror from before scopes holds the auditor's statements.
            statements_scope=check_scope(
                str(statements.get("scope", ALL_STATEMENTS)), f"{MIRROR_FILE}: statements.scope"
            ),
            data=data,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad_state("a field is missing or of the wrong type", str(e)[:80]) from None
    return state


# -- verification of tiles ---------------------------------------------------------------------


TileReader = Callable[[TileId], bytes]


def _hashes(read: TileReader, tile: TileId) -> list[bytes]:
    try:
        return decode_tile(read(tile), tile)
    except TileDataInvalid as e:
        raise MirrorInvalid(
            str(e), expected="a tile of its width", computed="other bytes"
        ) from None


def _check_full_tile(read: TileReader, tile: TileId, tree_size: int) -> None:
    """A full tile's subtree hash is the hash one level up (C2SP tlog-tiles)."""
    level = tile.level or 0
    computed = root_of(_hashes(read, tile))
    parent = tile_for(TileId(level + 1, tile.index // TILE_WIDTH), tree_size)
    if parent is None:  # pragma: no cover - a full tile always has a parent hash
        raise MirrorInvalid("a full tile has no parent", expected="a parent", computed="none")
    expected = _hashes(read, parent)[tile.index % TILE_WIDTH]
    if computed != expected:
        raise TileMismatch(
            f"{tile.path} does not hash to its hash in {parent.path}",
            expected=f"hash {b64(expected)}",
            computed=f"hash {b64(computed)}",
        )


def root_from_tiles(read: TileReader, tree_size: int) -> bytes:
    """RFC 9162 root of the tree from its partial tiles: the perfect subtrees of the size's
    binary decomposition are, from the left, chunks of the partial tile at each level, top
    level first."""
    if tree_size == 0:
        return EMPTY_ROOT
    subtrees: list[bytes] = []
    partials = sorted(
        (t for t in tiles_for_size(tree_size) if t.is_partial),
        key=lambda t: -(t.level or 0),
    )
    for tile in partials:
        hashes, start = _hashes(read, tile), 0
        for bit in reversed(range(tile.width.bit_length())):
            if tile.width >> bit & 1:
                subtrees.append(root_of(hashes[start : start + (1 << bit)]))
                start += 1 << bit
    return fold_right(subtrees)


def _check_root(read: TileReader, checkpoint: Checkpoint) -> None:
    computed = root_from_tiles(read, checkpoint.tree_size)
    if computed != checkpoint.root_hash:
        raise RootMismatch(
            f"the root computed from the tiles of {checkpoint.tree_size} entries is not the "
            "cosigned checkpoint's",
            expected=f"root {b64(checkpoint.root_hash)}",
            computed=f"root {b64(computed)}",
        )


class _Entries:
    """Decodes entries in order and checks each against its level-0 hash and the positions
    before it."""

    def __init__(self, last_position: int) -> None:
        self.last_position = last_position

    def check_bundle(
        self, read: TileReader, bundle: TileId, start: int = 0
    ) -> Iterator[ParsedRecord]:
        try:
            entries = decode_bundle(read(bundle), bundle)
        except TileDataInvalid as e:
            raise MirrorInvalid(
                str(e), expected="an entry bundle of its width", computed="other bytes"
            ) from None
        hashes = _hashes(read, TileId(0, bundle.index, bundle.width))
        for i in range(start, bundle.width):
            index = bundle.first_hash_index + i
            computed = leaf_hash(entries[i])
            if computed != hashes[i]:
                raise EntryMismatch(
                    f"entry {index} ({bundle.path}) does not hash to its level-0 tile hash",
                    expected=f"leaf {b64(hashes[i])}",
                    computed=f"leaf {b64(computed)}",
                )
            try:
                record = parse_record(entries[i])
            except MalformedRecord as e:
                raise EntryMismatch(
                    f"entry {index} ({bundle.path}) is not a record: {e.reason}",
                    expected=e.expected,
                    computed=e.computed,
                ) from None
            if record.position <= self.last_position:
                raise EntryMismatch(
                    f"entry {index} ({bundle.path}) does not follow the record's positions",
                    expected=f"position > {self.last_position}",
                    computed=f"position {record.position}",
                )
            self.last_position = record.position
            yield record


# -- mirroring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorResult:
    directory: Path
    origin: str
    tree_size: int
    previous_size: int
    #: Paths (below the prefix) of every tile and bundle fetched, in fetch order.
    fetched: tuple[str, ...]
    bytes_fetched: int
    statements_fetched: int
    last_position: int
    checkpoint: WitnessedCheckpoint
    #: Whose statements the mirror holds (``all`` or ``state:XXX``).
    scope: str = ALL_STATEMENTS


def _needed(old_size: int, new_size: int) -> list[TileId]:
    """The tiles and bundles of the new tree the mirror does not hold: new ones, and
    partial ones that grew or became full. Hash tiles level by level, then bundles."""
    held = set(tiles_for_size(old_size)) | set(bundles_for_size(old_size))
    wanted = [*tiles_for_size(new_size), *bundles_for_size(new_size)]
    return [t for t in wanted if t not in held]


def _atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` by a rename, so a reader never sees half a file.
    ``durable=False`` (staged tiles) leaves syncing to one ``os.sync`` before the commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fetch(source: Source, tile: TileId) -> tuple[str, bytes]:
    """The tile's bytes and the path they came from: a partial tile the source no longer
    has is cut from the full one (C2SP tlog-tiles: a partial may be deleted once full)."""
    data = source.tile(tile.path)
    if data is not None:
        return tile.path, data
    if tile.is_partial:
        full = source.tile(tile.full.path)
        if full is not None:
            try:
                if tile.is_entries:
                    return tile.full.path, encode_bundle(
                        decode_bundle(full, tile.full)[: tile.width]
                    )
                decode_tile(full, tile.full)
            except TileDataInvalid as e:
                raise MirrorInvalid(
                    str(e), expected="a full tile", computed="other bytes"
                ) from None
            return tile.full.path, full[: tile.width * HASH_SIZE]
    raise MirrorInvalid(
        f"the source does not serve {tile.path}, which its checkpoint needs",
        expected=f"{tile.path} (or its full tile)",
        computed="not found",
    )


def mirror(
    source: str,
    directory: Path,
    policy: Policy,
    *,
    token: str | None = None,
    tls: ClientTls | None = None,
    scope: str | None = None,
) -> MirrorResult:
    """Bring the mirror in ``directory`` up to the source's cosigned checkpoint; with
    ``scope``, only if the source's statements are of that scope (``ScopeMismatch``).

    Raises ``QuorumNotMet`` and the other ``CheckpointError``s of the policy, a
    ``MirrorError`` for a record that does not verify (nothing of this run is kept), and
    ``SourceUnavailable`` / ``MirrorDirectoryInvalid`` for a source or directory that cannot
    be used."""
    with _locked(directory):
        held = read_state(directory)
        opened = open_source(source, token, tls)
        try:
            return _mirror(opened, source, directory, policy, held, scope)
        finally:
            opened.close()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One run at a time in ``directory`` (they would share the staging directory)."""
    if directory.exists() and not directory.is_dir():
        raise MirrorDirectoryInvalid(f"{directory} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MirrorDirectoryInvalid(
                f"another pocdir mirror is running in {directory}; wait for it to finish"
            ) from None
        yield


def _mirror(  # noqa: PLR0913
    source: Source,
    name: str,
    directory: Path,
    policy: Policy,
    held: MirrorState | None,
    expected_scope: str | None,
) -> MirrorResult:
    note = source.checkpoint()
    witnessed = policy.check(note)
    checkpoint = witnessed.signed.checkpoint
    old_size = held.tree_size if held else 0
    if held is not None and checkpoint.origin != held.origin:
        raise OriginMismatch(
            "the source's checkpoint is of another log than the mirror's",
            expected=f"origin {held.origin}",
            computed=f"origin {checkpoint.origin}",
        )
    if checkpoint.tree_size < old_size:
        raise MirrorRollback(
            f"the source's cosigned checkpoint is of {checkpoint.tree_size} entries but the "
            f"mirror holds {old_size}: the log rolled back",
            expected=f"a tree of at least {old_size} entries",
            computed=f"a tree of {checkpoint.tree_size} entries",
        )
    staging = directory / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fetched: list[str] = []
        staged: set[TileId] = set()
        needed = _needed(old_size, checkpoint.tree_size)
        for tile in needed:
            path, data = _fetch(source, tile)
            fetched.append(path)
            _atomic_write(staging / tile.path, data, durable=False)
            staged.add(tile)

        @lru_cache(maxsize=16)
        def read(tile: TileId) -> bytes:
            where = staging if tile in staged else directory
            try:
                return (where / tile.path).read_bytes()
            except OSError as e:
                raise MirrorInvalid(
                    f"the mirror lacks {tile.path}", expected="the file", computed=str(e)[:60]
                ) from None

        last_position = _verify_new(read, needed, old_size, checkpoint, held)
        statements = [
            row
            for row in source.statements(held.statements_cursor if held else 0)
            if row.first_position <= last_position
        ]
        scope = source.scope
        if expected_scope is not None and scope != expected_scope:
            raise ScopeMismatch(
                f"the source gives the statements of scope {scope}, not {expected_scope}",
                expected=f"scope {expected_scope}",
                computed=f"scope {scope}",
            )
        if held is not None and held.statements_scope != scope:
            raise MirrorDirectoryInvalid(
                f"{directory} holds the statements of scope {held.statements_scope} but the "
                f"source gives those of scope {scope}: mirror with the token that made it, or "
                "into another directory"
            )
        _commit(
            directory,
            staging,
            needed,
            held,
            checkpoint,
            witnessed,
            name,
            note,
            last_position,
            statements,
            scope,
            fetched,
            source.fetched_bytes,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MirrorResult(
        directory,
        checkpoint.origin,
        checkpoint.tree_size,
        old_size,
        tuple(fetched),
        source.fetched_bytes,
        len(statements),
        last_position,
        witnessed,
        scope,
    )


def _verify_new(
    read: TileReader,
    needed: list[TileId],
    old_size: int,
    checkpoint: Checkpoint,
    held: MirrorState | None,
) -> int:
    """Check what was fetched; return the last entry's position."""
    for tile in needed:
        before = tile_for(tile, old_size)
        if before is not None:  # a tile that grew: what the mirror held must not change
            old, new = read(before), read(tile)
            if new[: len(old)] != old:
                cls = TileMismatch if not tile.is_entries else EntryMismatch
                raise cls(
                    f"{tile.path} does not extend {before.path} the mirror holds: the log "
                    "rewrote entries it had already published",
                    expected=f"sha256 {hashlib.sha256(old).hexdigest()} of the first "
                    f"{len(old)} bytes",
                    computed=f"sha256 {hashlib.sha256(new[: len(old)]).hexdigest()}",
                )
    for tile in needed:
        if not tile.is_entries and not tile.is_partial:
            _check_full_tile(read, tile, checkpoint.tree_size)
    _check_root(read, checkpoint)
    entries = _Entries(held.last_position if held else 0)
    for tile in needed:
        if tile.is_entries:
            before = tile_for(tile, old_size)
            for _ in entries.check_bundle(read, tile, before.width if before else 0):
                pass
    return entries.last_position


def _statement_line(row: StatementRow) -> str:
    """One line of ``statements.jsonl``, as the audit bundle writes it."""
    return json.dumps(row.to_json(), sort_keys=True) + "\n"


def _commit(  # noqa: PLR0913
    directory: Path,
    staging: Path,
    needed: list[TileId],
    held: MirrorState | None,
    checkpoint: Checkpoint,
    witnessed: WitnessedCheckpoint,
    source: str,
    note: str,
    last_position: int,
    statements: list[StatementRow],
    scope: str,
    fetched: list[str],
    bytes_fetched: int,
) -> None:
    """Move the verified files into place; then the statements; then ``mirror.json`` and
    the checkpoint, each by rename; then drop partial tiles the tree no longer has."""
    for tile in needed:
        target = directory / tile.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / tile.path, target)
    statements_path = directory / STATEMENTS_FILE
    kept = held.statements_bytes if held else 0
    with statements_path.open("ab") as f:
        f.truncate(kept)  # what a stopped run appended is not the mirror's
        f.seek(kept)
        for row in statements:
            f.write(_statement_line(row).encode("utf-8"))
        size = f.tell()
    os.sync()  # every tile and statement is on disk before the state that names them
    cursor = (
        statements[-1].first_position if statements else (held.statements_cursor if held else 0)
    )
    state = {
        "format": MIRROR_FORMAT,
        "origin": checkpoint.origin,
        "tree_size": checkpoint.tree_size,
        "root_hash": b64(checkpoint.root_hash),
        "last_position": last_position,
        "checkpoint": note,
        "cosigned_by": sorted(witnessed.cosigned_by),
        "statements": {
            "file": STATEMENTS_FILE,
            "count": (held.statements_count if held else 0) + len(statements),
            "bytes": size,
            "last_first_position": cursor,
            "scope": scope,
        },
        "source": source,
        "updated_at": datetime.now(UTC).isoformat(),
        "last_run": {
            "previous_tree_size": held.tree_size if held else 0,
            "fetched": fetched,
            "bytes_fetched": bytes_fetched,
            "statements_fetched": len(statements),
        },
    }
    _atomic_write(directory / MIRROR_FILE, (json.dumps(state, indent=2) + "\n").encode("utf-8"))
    _atomic_write(directory / CHECKPOINT_PATH, note.encode("utf-8"))
    if held is not None:
        new = set(tiles_for_size(checkpoint.tree_size)) | set(
            bundles_for_size(checkpoint.tree_size)
        )
        for tile in [*tiles_for_size(held.tree_size), *bundles_for_size(held.tree_size)]:
            if tile.is_partial and tile not in new:
                (directory / tile.path).unlink(missing_ok=True)


# -- offline verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorVerification:
    tree_size: int
    root_hash: bytes
    origin: str
    events: int
    last_position: int
    statements: int
    signatures: SignatureSummary
    checkpoint: WitnessedCheckpoint
    #: Whose statements the mirror holds (``all`` or ``state:XXX``).
    scope: str = ALL_STATEMENTS
    #: Events whose signature was not checked: not the scope's State's to judge.
    not_judged: int = 0


#: Called for every event: the record, the statement that covers it (None: unsigned by
#: design) and, for an event the observer concerns itself with, the signature fault found.
Observer = Callable[[ParsedRecord, StatementRow | None, SignatureFault | None], None]


def read_statements(directory: Path, state: MirrorState) -> list[StatementRow]:
    path = directory / STATEMENTS_FILE
    try:
        with path.open("rb") as f:
            data = f.read(state.statements_bytes)
    except FileNotFoundError:
        data = b""
    except OSError as e:
        raise MirrorInvalid(
            f"{STATEMENTS_FILE} is not readable", expected="statements", computed=str(e)[:60]
        ) from None
    if len(data) != state.statements_bytes:
        raise MirrorInvalid(
            f"{STATEMENTS_FILE} is shorter than {MIRROR_FILE} says",
            expected=f"{state.statements_bytes} bytes",
            computed=f"{len(data)} bytes",
        )
    rows = statement_lines(data)
    if len(rows) != state.statements_count:
        raise MirrorInvalid(
            f"{STATEMENTS_FILE} holds another number of statements than {MIRROR_FILE} says",
            expected=f"{state.statements_count} statements",
            computed=f"{len(rows)} statements",
        )
    return rows


def verify_mirror(
    directory: Path,
    policy: Policy,
    *,
    operator_key: str | None = None,
    concerns: Callable[[ParsedRecord], bool] | None = None,
    observe: Observer | None = None,
) -> MirrorVerification:
    """Check a whole mirror offline (see the module docstring). A signature fault on an
    event ``concerns`` accepts is passed to ``observe`` instead of raised (the State's
    monitor lists them all); any other fault is raised."""
    state = read_state(directory)
    if state is None:
        raise MirrorDirectoryInvalid(f"{directory} is not a mirror (no {MIRROR_FILE})")
    witnessed = policy.check(state.checkpoint)
    checkpoint = witnessed.signed.checkpoint
    if (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) != (
        state.origin,
        state.tree_size,
        state.root_hash,
    ):
        raise MirrorInvalid(
            f"the checkpoint in {MIRROR_FILE} is not of the tree it records",
            expected=f"{state.origin} {state.tree_size} {b64(state.root_hash)}",
            computed=f"{checkpoint.origin} {checkpoint.tree_size} {b64(checkpoint.root_hash)}",
        )

    @lru_cache(maxsize=16)
    def read(tile: TileId) -> bytes:
        try:
            return (directory / tile.path).read_bytes()
        except OSError as e:
            raise MirrorInvalid(
                f"the mirror lacks {tile.path}", expected="the file", computed=str(e)[:60]
            ) from None

    size = checkpoint.tree_size
    for tile in tiles_for_size(size):
        if not tile.is_partial:
            _check_full_tile(read, tile, size)
    _check_root(read, checkpoint)
    statements = read_statements(directory, state)
    signatures = SignatureVerifier(statements, operator_key)
    scoped = scope_state(state.statements_scope)
    judged = _Judged(scoped, statements) if scoped is not None else None
    entries, events, not_judged = _Entries(0), 0, 0
    for bundle in bundles_for_size(size):
        for record in entries.check_bundle(read, bundle):
            events += 1
            if judged is not None and not judged(record):
                not_judged += 1
                continue
            _check_signature(signatures, record, concerns, observe)
    if entries.last_position != state.last_position:
        raise MirrorInvalid(
            f"the last entry's position is not the one {MIRROR_FILE} records",
            expected=f"position {state.last_position}",
            computed=f"position {entries.last_position}",
        )
    return MirrorVerification(
        size,
        checkpoint.root_hash,
        checkpoint.origin,
        events,
        entries.last_position,
        len(statements),
        signatures.finish(),
        witnessed,
        state.statements_scope,
        not_judged,
    )


class _Judged:
    """Which events a State's mirror checks the signature of: those of the State's entry
    and key set, the Secretariat's bindings and re-onboardings (every State is given their
    statements), and every event a held statement covers (a statement must meet its events).
    Any other event's statement the State was not given, so its signature is not the State's
    to judge."""

    def __init__(self, state: str, statements: list[StatementRow]) -> None:
        self.ids = frozenset({state_entry_id(state), state_keys_id(state)})
        self.rows = statements
        self.firsts = [row.first_position for row in statements]

    def __call__(self, record: ParsedRecord) -> bool:
        if record.originator_id in self.ids or event_name(record.topic) in _BINDING_EVENTS:
            return True
        i = bisect.bisect_right(self.firsts, record.position) - 1
        return i >= 0 and self.rows[i].last_position >= record.position


def _check_signature(
    signatures: SignatureVerifier,
    record: ParsedRecord,
    concerns: Callable[[ParsedRecord], bool] | None,
    observe: Observer | None,
) -> None:
    try:
        statement = signatures.check(
            record.position, record.originator_id, record.version, record.topic
        )
    except SignatureFault as fault:
        if concerns is None or observe is None or not concerns(record):
            raise
        observe(record, None, fault)
        return
    if observe is not None and (concerns is None or concerns(record)):
        observe(record, statement, None)
