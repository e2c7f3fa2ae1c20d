"""A C2SP ``tlog-witness``: it cosigns a log's checkpoints only along one consistent history.

A State or a regional organisation runs a witness (issue 16) so that pocdir's operator cannot
show it one history and others another without leaving evidence. The protocol is the spec's
(https://c2sp.org/tlog-witness, ``add-checkpoint``); the answer is a C2SP ``tlog-cosignature``
(``infra.cosignature``), so pocdir's server can use witnesses built by others and this one
can witness other logs.

The witness keeps its own state in its own directory, never in the operator's database:

* ``witness.key``: its Ed25519 key, mode 0600, in Go's note private-key layout with the
  cosignature type byte: ``PRIVATE+KEY+<name>+<key id>+<base64(0x04 ‖ seed)>``, the key id
  being the cosigner's (``infra.cosignature.cosigner_key_id``), so the file names the vkey;
* ``witness.db`` (SQLite, ``sqlite3``): per log its origin, the log's verifier keys and the
  latest checkpoint it cosigned (size, root and the signed note), whether it is held forked,
  and the evidence it kept.

Checks, in the spec's order and with its statuses: a malformed body is 400; an origin it does
not witness is 404; a note no trusted key of that origin signed (or one a trusted key signed
badly) is 403; ``old`` above the checkpoint's size is 400; ``old`` other than the size held
is 409 with ``Content-Type: text/x.tlog.size`` and the size held; a consistency proof that
does not verify is 422; a checkpoint of the size held with another root is 409. Otherwise the
new checkpoint is stored (compare-and-set on the size held, inside one ``BEGIN IMMEDIATE``
transaction, so of two submissions at once only one can move the log) and cosigned.

Evidence (the spec lets a witness log a request whose proof fails "as it might be proof of log
misbehavior"): for a checkpoint signed by the log,

* ``split-view``: of the size held, with another root (two signed heads of one size);
* ``inconsistent``: a consistency proof from the held checkpoint to it that fails;
* ``rollback``: smaller than the held one.

The first two mark the log *forked*: every later ``add-checkpoint`` for it is refused (409,
``LogForked``) until the witness's operator clears it (``clear``). A rollback is kept as a
note and does not mark the log: a checkpoint smaller than the held one may be an honest
server's stale one (a lagging process), and with no proof between the two it proves nothing;
wedging the log on it would let any replay of an old public checkpoint stop the witness.

The submitter is not authenticated (the spec: only the checkpoint's signature is checked), so
``inconsistent`` is the log's signature plus a proof anyone may have sent: it is kept and
refuses cosigning (the safe side), and the operator judges it with the evidence in hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from infra.cosignature import (
    SIGNATURE_TYPE_COSIGNATURE_V1,
    WitnessKey,
    WitnessVerifierKey,
    cosign,
)
from infra.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ConsistencyProofFailed,
    b64,
    unb64,
    verify_consistency,
)
from infra.note import (
    PRIVATE_KEY_PREFIX,
    CheckpointError,
    KeyFormatError,
    MalformedCheckpoint,
    VerifierKey,
    check_key_name,
    key_parts,
    open_checkpoint,
    split_note,
)

KEY_FILE = "witness.key"
DATABASE_FILE = "witness.db"
#: The spec: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
#: The spec's old size line: ``old``, one space, decimal without leading zeroes.
OLD_SIZE_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")
#: The spec's Content-Type of a 409 answer whose body is the size held.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
#: How long a submission waits for another's transaction on the same witness database.
LOCK_TIMEOUT_SECONDS = 30.0
#: Tree sizes are u64 in the spec; SQLite integers are i64, which is the bound here.
MAX_TREE_SIZE = 2**63 - 1

#: Kinds of evidence; the first two mark the log forked.
SPLIT_VIEW = "split-view"
INCONSISTENT = "inconsistent"
ROLLBACK = "rollback"
FORK_KINDS = (SPLIT_VIEW, INCONSISTENT)

log = logging.getLogger("pocdir.witness")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    origin TEXT PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    note TEXT,                -- the latest cosigned signed checkpoint; NULL at size 0
    forked INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_key (
    origin TEXT NOT NULL REFERENCES log(origin),
    vkey TEXT NOT NULL,       -- a C2SP signed-note verifier key, type 0x01
    PRIMARY KEY (origin, vkey)
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL REFERENCES log(origin),
    kind TEXT NOT NULL,
    marks_fork INTEGER NOT NULL,
    held_note TEXT NOT NULL,
    submitted_note TEXT NOT NULL,
    old_size INTEGER NOT NULL,
    proof TEXT NOT NULL,      -- the proof's hashes, base64, one per line
    reason TEXT NOT NULL,
    expected TEXT NOT NULL,
    computed TEXT NOT NULL,
    digest BLOB NOT NULL,     -- SHA-256 of what was seen: one row per distinct sighting
    detected_at TEXT NOT NULL,
    cleared_at TEXT,
    UNIQUE (origin, kind, digest)
);
"""


# -- errors -----------------------------------------------------------------------------------


class WitnessSetupError(ValueError):
    """The witness's directory, key file or a log's configuration is wrong (bad input)."""


class WitnessRefusal(Exception):
    """A submission the witness does not cosign, with the HTTP status the spec gives it and a
    one-line message saying why (and, for verification failures, expected and computed)."""

    status: int = 400
    content_type = "text/plain; charset=utf-8"

    def __init__(self, message: str, *, expected: str = "", computed: str = "") -> None:
        self.message = message
        self.expected = expected
        self.computed = computed
        detail = f" (expected {expected}, computed {computed})" if expected or computed else ""
        super().__init__(message + detail)

    def body(self) -> str:
        """The response body: one line."""
        return f"{self}\n"


class MalformedRequest(WitnessRefusal):
    """The body is not ``old`` line, proof lines, blank line, signed checkpoint (400)."""

    status = 400


class OldSizeTooLarge(WitnessRefusal):
    """``old`` is larger than the checkpoint's size (the spec's 400)."""

    status = 400


class UnknownLog(WitnessRefusal):
    """The witness does not witness this origin (the spec's 404)."""

    status = 404


class NotSignedByLog(WitnessRefusal):
    """No trusted key of the origin signed the checkpoint, or one's signature fails (403)."""

    status = 403


class SizeMismatch(WitnessRefusal):
    """``old`` is not the size of the latest checkpoint cosigned (the spec's 409, whose body
    is that size in decimal and a newline, ``Content-Type: text/x.tlog.size``)."""

    status = 409
    content_type = SIZE_CONTENT_TYPE

    def __init__(self, held_size: int, old_size: int) -> None:
        self.held_size = held_size
        super().__init__(
            f"old size {old_size} is not the size this witness holds",
            expected=str(held_size),
            computed=str(old_size),
        )

    def body(self) -> str:
        return f"{self.held_size}\n"


class RootMismatch(WitnessRefusal):
    """A checkpoint of the size held with another root (the spec's 409): a split view."""

    status = 409


class ProofRejected(WitnessRefusal):
    """The consistency proof from the held checkpoint does not verify (the spec's 422)."""

    status = 422


class LogForked(WitnessRefusal):
    """The witness holds fork evidence for the log and cosigns nothing of it until its
    operator clears it (409: the request conflicts with the witness's state)."""

    status = 409


class WitnessUnavailableError(WitnessRefusal):
    """The witness's own database could not be used (locked too long, disk error): 503."""

    status = 503


# -- key file ---------------------------------------------------------------------------------


def serialise_key(key: WitnessKey) -> str:
    """The key file's one line (see the module docstring)."""
    vkey = key.verifier
    return (
        f"{PRIVATE_KEY_PREFIX}{key.name}+{vkey.key_id.hex()}+"
        f"{b64(SIGNATURE_TYPE_COSIGNATURE_V1 + key.seed)}\n"
    )


def parse_key(text: str) -> WitnessKey:
    """Read a key file's text; ``KeyFormatError`` unless it is a type-0x04 key whose id
    matches its name and seed."""
    text = text.strip()
    if not text.startswith(PRIVATE_KEY_PREFIX):
        raise KeyFormatError("a witness key file starts with PRIVATE+KEY+")
    name, hex_id, seed = key_parts(
        text[len(PRIVATE_KEY_PREFIX) :],
        "witness key file",
        "PRIVATE+KEY+name+keyid+base64key",
        SIGNATURE_TYPE_COSIGNATURE_V1,
    )
    key = WitnessKey(name, seed)
    if hex_id.lower() != key.verifier.key_id.hex():
        raise KeyFormatError("the witness key's id does not match its name and key")
    return key


def write_key_file(path: Path, key: WitnessKey) -> None:
    """Create ``path`` readable by its owner only; never overwrite an existing key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WitnessSetupError(f"{path} exists; refusing to overwrite a witness key") from None
    except OSError as e:
        raise WitnessSetupError(f"cannot create {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(serialise_key(key))


def load_key_file(path: Path) -> WitnessKey:
    """The witness key, refused if others than its owner may read it (as ssh refuses)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeError) as e:
        raise WitnessSetupError(f"cannot read the witness key {path}: {e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WitnessSetupError(
            f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    try:
        return parse_key(text)
    except KeyFormatError as e:
        raise WitnessSetupError(f"{path}: {e}") from None


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A parsed ``add-checkpoint`` body: the old size, the proof and the signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    @property
    def origin(self) -> str:
        return self.note.split("\n", 1)[0]


def parse_request(body: bytes) -> Submission:
    """The spec's request body, or ``MalformedRequest`` saying which part is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the request body is not UTF-8 text") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise MalformedRequest(
            "the request body is an old size line, proof lines, an empty line, then the "
            "checkpoint; no empty line found"
        )
    lines = head.split("\n")
    old = OLD_SIZE_LINE.fullmatch(lines[0])
    if old is None:
        raise MalformedRequest(
            "the first line is 'old <size>', the size in decimal without leading zeroes",
            expected="old <size>",
            computed=repr(lines[0][:40]),
        )
    old_size = int(old.group(1))
    if old_size > MAX_TREE_SIZE:
        raise MalformedRequest(f"old size {old_size} is larger than a tree size can be")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedRequest(
            "too many consistency proof lines",
            expected=f"at most {MAX_PROOF_LINES}",
            computed=str(len(lines) - 1),
        )
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:], start=1):
        try:
            digest = unb64(line)
        except ValueError:
            digest = b""
        if len(digest) != HASH_SIZE:
            raise MalformedRequest(
                f"proof line {i} is not a base64 SHA-256 hash",
                expected="44 base64 characters",
                computed=repr(line[:60]),
            )
        proof.append(digest)
    return Submission(old_size, tuple(proof), note)


def _note_text(note: str) -> str:
    """The checkpoint text of a signed note, refused (400) if it is not one."""
    try:
        text, _ = split_note(note)
    except MalformedCheckpoint as e:
        raise MalformedRequest(f"the checkpoint is not a signed note: {e.reason}") from None
    if "\n\n" in text:
        raise MalformedRequest("the checkpoint text holds an empty line")
    return text


# -- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogState:
    """What the witness holds for one log."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str | None
    forked: bool
    keys: tuple[VerifierKey, ...]
    updated_at: str

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": b64(self.root_hash),
            "checkpoint": self.note,
            "forked": self.forked,
            "keys": [str(k) for k in self.keys],
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Evidence:
    """What the witness saw that it would not cosign, kept for its operator and the public."""

    id: int
    origin: str
    kind: str
    marks_fork: bool
    held_note: str
    submitted_note: str
    old_size: int
    proof: tuple[str, ...]
    reason: str
    expected: str
    computed: str
    detected_at: str
    cleared_at: str | None

    @property
    def cleared(self) -> bool:
        return self.cleared_at is not None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "origin": self.origin,
            "kind": self.kind,
            "marks_fork": self.marks_fork,
            "notes": {"held": self.held_note, "submitted": self.submitted_note},
            "old_size": self.old_size,
            "proof": list(self.proof),
            "reason": self.reason,
            "expected": self.expected,
            "computed": self.computed,
            "detected_at": self.detected_at,
            "cleared": self.cleared,
            "cleared_at": self.cleared_at,
        }


def _iso(now: int) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def check_origin(origin: str) -> str:
    """A checkpoint origin: non-empty, one line, no control characters."""
    if not origin or any(ord(c) < 0x20 or c == "\x7f" for c in origin) or origin != origin.strip():
        raise WitnessSetupError(f"an origin is one non-empty line of text, not {origin[:60]!r}")
    return origin


class Witness:
    """One witness: its key and its database in ``directory``. Each call opens its own
    SQLite connection, so the ASGI app may call it from several threads (and several
    processes may share the directory): SQLite's write lock serialises submissions."""

    def __init__(self, directory: Path, key: WitnessKey) -> None:
        self.directory = directory
        self.key = key
        self.database = directory / DATABASE_FILE

    # -- set-up --

    @classmethod
    def init(cls, directory: Path, name: str) -> Witness:
        """Make a new witness in ``directory`` (created if missing, mode 0700): key and state."""
        try:
            check_key_name(name)
        except KeyFormatError as e:
            raise WitnessSetupError(str(e)) from None
        if (directory / KEY_FILE).exists() or (directory / DATABASE_FILE).exists():
            raise WitnessSetupError(f"{directory} already holds a witness")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise WitnessSetupError(f"cannot create {directory}: {e.strerror}") from None
        key = WitnessKey.generate(name)
        write_key_file(directory / KEY_FILE, key)
        witness = cls(directory, key)
        witness._create_schema()
        return witness

    @classmethod
    def open(cls, directory: Path) -> Witness:
        """The witness in ``directory``; ``WitnessSetupError`` if there is none."""
        if not (directory / KEY_FILE).is_file() or not (directory / DATABASE_FILE).is_file():
            raise WitnessSetupError(
                f"{directory} holds no witness: run `pocdir witness init {directory} --name NAME`"
            )
        return cls(directory, load_key_file(directory / KEY_FILE))

    @property
    def verifier(self) -> WitnessVerifierKey:
        return self.key.verifier

    def _create_schema(self) -> None:
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(
                sqlite3.connect(self.database, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
            ) as db:
                db.execute("PRAGMA foreign_keys=ON")
                yield db
        except sqlite3.Error as e:
            raise WitnessUnavailableError(f"the witness's database failed: {e}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at its start (``BEGIN IMMEDIATE``): the check of the
        size held and the update are atomic, as the spec requires (its rollback race).
        Evidence written before a refusal is committed with it."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except WitnessRefusal:
                db.execute("COMMIT")
                raise
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_log(self, origin: str, keys: Sequence[VerifierKey], now: int) -> LogState:
        """Witness ``origin``, signed by any of ``keys`` (added to those it has). A new log
        starts at size 0: its first checkpoint comes with ``old 0`` and no proof."""
        check_origin(origin)
        if not keys:
            raise WitnessSetupError("a log needs at least one verifier key")
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO log (origin, tree_size, root_hash, note, updated_at) "
                "VALUES (?, 0, ?, NULL, ?)",
                (origin, EMPTY_ROOT, _iso(now)),
            )
            for key in keys:
                db.execute(
                    "INSERT OR IGNORE INTO log_key (origin, vkey) VALUES (?, ?)", (origin, str(key))
                )
        state = self.log(origin)
        if state is None:  # pragma: no cover - just inserted
            raise WitnessSetupError(f"log {origin} was not stored")
        return state

    # -- reading --

    def log(self, origin: str) -> LogState | None:
        with self._connection() as db:
            return _read_log(db, origin)

    def logs(self) -> list[LogState]:
        with self._connection() as db:
            origins = [row[0] for row in db.execute("SELECT origin FROM log ORDER BY origin")]
            return [s for o in origins if (s := _read_log(db, o)) is not None]

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        query = (
            "SELECT id, origin, kind, marks_fork, held_note, submitted_note, old_size, proof, "
            "reason, expected, computed, detected_at, cleared_at FROM evidence"
        )
        args: tuple[str, ...] = ()
        if origin is not None:
            query += " WHERE origin = ?"
            args = (origin,)
        with self._connection() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return [
            Evidence(
                id=r[0],
                origin=r[1],
                kind=r[2],
                marks_fork=bool(r[3]),
                held_note=r[4],
                submitted_note=r[5],
                old_size=r[6],
                proof=tuple(line for line in r[7].split("\n") if line),
                reason=r[8],
                expected=r[9],
                computed=r[10],
                detected_at=r[11],
                cleared_at=r[12],
            )
            for r in rows
        ]

    # -- the operator's clearing --

    def clear(self, origin: str, now: int, *, reset: bool = False) -> LogState:
        """Lift the refusal on a forked log; its evidence is kept, marked cleared. The held
        checkpoint stays, so the log goes on from it (its next checkpoint needs a proof from
        it); with ``reset`` it is forgotten too and the log starts over at size 0."""
        with self._transaction() as db:
            if _read_log(db, origin) is None:
                raise WitnessSetupError(f"this witness does not witness {origin!r}")
            stamp = _iso(now)
            db.execute(
                "UPDATE evidence SET cleared_at = ? WHERE origin = ? AND cleared_at IS NULL",
                (stamp, origin),
            )
            if reset:
                db.execute(
                    "UPDATE log SET forked = 0, tree_size = 0, root_hash = ?, note = NULL, "
                    "updated_at = ? WHERE origin = ?",
                    (EMPTY_ROOT, stamp, origin),
                )
            else:
                db.execute(
                    "UPDATE log SET forked = 0, updated_at = ? WHERE origin = ?", (stamp, origin)
                )
        state = self.log(origin)
        if state is None:  # pragma: no cover - checked in the transaction
            raise WitnessSetupError(f"this witness does not witness {origin!r}")
        return state

    # -- the protocol --

    def add_checkpoint(self, request_body: bytes, now: int) -> str:
        """The spec's ``add-checkpoint``: the cosignature line (ending in a newline) of the
        submitted checkpoint, or a ``WitnessRefusal`` carrying the spec's status. ``now``
        (POSIX seconds) is the cosignature's time."""
        submission = parse_request(request_body)
        text = _note_text(submission.note)
        with self._transaction() as db:
            state = _read_log(db, submission.origin)
            if state is None:
                raise UnknownLog(f"this witness does not witness the log {submission.origin!r}")
            try:
                signed = open_checkpoint(submission.note, list(state.keys))
            except MalformedCheckpoint as e:
                raise MalformedRequest(f"the checkpoint is malformed: {e.reason}") from None
            except CheckpointError as e:
                raise NotSignedByLog(e.reason, expected=e.expected, computed=e.computed) from None
            checkpoint = signed.checkpoint
            if state.forked:
                raise LogForked(
                    f"this witness holds fork evidence for {state.origin} and cosigns none of "
                    "its checkpoints until its operator clears it (GET /forks)"
                )
            size, root = checkpoint.tree_size, checkpoint.root_hash
            if size > MAX_TREE_SIZE:
                raise MalformedRequest(f"tree size {size} is larger than this witness stores")
            sighting = _Sighting(db, state, submission, now)
            if state.note is not None and size < state.tree_size:
                sighting.keep(
                    ROLLBACK,
                    f"a checkpoint of size {size}, smaller than the one of size "
                    f"{state.tree_size} this witness cosigned",
                    expected=f"size >= {state.tree_size}",
                    computed=f"size {size}",
                )
            if state.note is not None and size == state.tree_size and root != state.root_hash:
                sighting.keep(
                    SPLIT_VIEW,
                    f"two checkpoints of size {size} signed by the log with different roots",
                    expected=f"root {b64(state.root_hash)}",
                    computed=f"root {b64(root)}",
                )
            if submission.old_size > size:
                raise OldSizeTooLarge(
                    f"old size {submission.old_size} is larger than the checkpoint's size {size}"
                )
            if submission.old_size != state.tree_size:
                raise SizeMismatch(state.tree_size, submission.old_size)
            if size == state.tree_size:
                if root != state.root_hash:
                    raise RootMismatch(
                        f"this witness holds another checkpoint of size {size}",
                        expected=f"root {b64(state.root_hash)}",
                        computed=f"root {b64(root)}",
                    )
                if submission.proof:
                    raise ProofRejected(
                        "a proof between a tree and itself is empty",
                        expected="0 hashes",
                        computed=f"{len(submission.proof)} hashes",
                    )
                return cosign(text, now, self.key)  # the same checkpoint: cosigned again
            try:
                verify_consistency(state.tree_size, size, state.root_hash, root, submission.proof)
            except ConsistencyProofFailed as e:
                if state.note is not None:
                    sighting.keep(INCONSISTENT, e.reason, expected=e.expected, computed=e.computed)
                raise ProofRejected(
                    f"the consistency proof from size {state.tree_size} to {size} does not "
                    f"verify: {e.reason}",
                    expected=e.expected,
                    computed=e.computed,
                ) from None
            updated = db.execute(
                "UPDATE log SET tree_size = ?, root_hash = ?, note = ?, updated_at = ? "
                "WHERE origin = ? AND tree_size = ? AND root_hash = ? AND forked = 0",
                (
                    size,
                    root,
                    submission.note,
                    _iso(now),
                    state.origin,
                    state.tree_size,
                    state.root_hash,
                ),
            )
            if updated.rowcount != 1:  # pragma: no cover - the transaction holds the lock
                raise SizeMismatch(state.tree_size, submission.old_size)
        return cosign(text, now, self.key)


class _Sighting:
    """Keeps evidence about one submission inside its transaction."""

    def __init__(
        self, db: sqlite3.Connection, state: LogState, submission: Submission, now: int
    ) -> None:
        self.db = db
        self.state = state
        self.submission = submission
        self.now = now

    def keep(self, kind: str, reason: str, *, expected: str, computed: str) -> None:
        """Store the evidence (once per distinct sighting) and, for a fork, mark the log."""
        held = self.state.note or ""
        proof = "\n".join(b64(h) for h in self.submission.proof)
        digest = hashlib.sha256(
            "\x00".join((held, self.submission.note, str(self.submission.old_size), proof)).encode()
        ).digest()
        marks_fork = kind in FORK_KINDS
        stored = self.db.execute(
            "INSERT OR IGNORE INTO evidence (origin, kind, marks_fork, held_note, submitted_note, "
            "old_size, proof, reason, expected, computed, digest, detected_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.state.origin,
                kind,
                int(marks_fork),
                held,
                self.submission.note,
                self.submission.old_size,
                proof,
                reason,
                expected,
                computed,
                digest,
                _iso(self.now),
            ),
        )
        if stored.rowcount:
            log.warning(
                "%s %s: %s; kept as evidence%s (GET /forks)",
                self.state.origin,
                kind,
                reason,
                ", the log is refused until cleared" if marks_fork else "",
            )
        if marks_fork:
            self.db.execute(
                "UPDATE log SET forked = 1, updated_at = ? WHERE origin = ?",
                (_iso(self.now), self.state.origin),
            )


def _read_log(db: sqlite3.Connection, origin: str) -> LogState | None:
    row = db.execute(
        "SELECT tree_size, root_hash, note, forked, updated_at FROM log WHERE origin = ?",
        (origin,),
    ).fetchone()
    if row is None:
        return None
    keys = tuple(
        VerifierKey.parse(r[0])
        for r in db.execute("SELECT vkey FROM log_key WHERE origin = ? ORDER BY vkey", (origin,))
    )
    return LogState(origin, row[0], bytes(row[1]), row[2], bool(row[3]), keys, row[4])
