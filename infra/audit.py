"""What an auditor runs: the record against a checkpoint kept outside the database, and the
offline audit bundle (export, and verification with no database and no pocdir settings).

Checking a record or a bundle against a checkpoint closes the two gaps of the chain alone
(``docs/audit-format.md`` §6): a record whose newest events were deleted holds fewer events than
a checkpoint signed before (``TailTruncated``), and a record rewritten with a recomputed,
self-consistent chain no longer has the checkpoint's Merkle root over its first ``tree_size``
events (``HistoryRewritten``). A changed byte fails the chain walk itself (``RecordAltered`` and
the other ``VerificationError`` classes of ``infra.chain``).

Bundle layout (``docs/audit-format.md`` §12)::

    DIR/manifest.json           format, origin, counts and SHA-256 of every file
    DIR/records.jsonl           one stored event and its link per line, bytes in base64
    DIR/checkpoints/<size>-<key id>.txt   every signed checkpoint, the exact note text
    DIR/keys.txt                every verifier key that signed a checkpoint, one per line
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import Application

from infra.chain import (
    ChainVerifier,
    IdSpelling,
    MalformedValue,
    StoredRow,
    canonical_originator_id,
)
from infra.merkle import EMPTY_ROOT, AuditError, CompactRange, b64
from infra.note import (
    CheckpointError,
    KeyFormatError,
    SignedCheckpoint,
    VerifierKey,
    open_checkpoint,
)
from infra.signatures import SignatureSummary, SignatureVerifier
from infra.statement_store import StatementRow
from infra.transparency import Transparency
from infra.verify import chained_recorder, verify_record
from infra.witness_policy import Policy, QuorumNotMet, WitnessedCheckpoint

BUNDLE_FORMAT = "pocdir-audit-bundle/1"
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
#: The signed statements beside the events (``infra.statement_store``), one JSON object a
#: line, without the sealed salts.
STATEMENTS = "statements.jsonl"
KEYS = "keys.txt"
CHECKPOINTS = "checkpoints"


class TailTruncated(CheckpointError):
    """The record holds fewer events than a checkpoint signed earlier: the newest were cut."""


class HistoryRewritten(CheckpointError):
    """The Merkle root over the first ``tree_size`` events differs from the checkpoint's."""


class BundleError(AuditError):
    """The bundle is incomplete or malformed, or disagrees with its manifest."""


def _root_mismatch(size: int, signed: bytes, computed: bytes, where: str) -> HistoryRewritten:
    return HistoryRewritten(
        f"the Merkle root of the first {size} events {where} is not the signed checkpoint's: "
        "the history up to the checkpoint was rewritten",
        expected=f"root {b64(signed)}",
        computed=f"root {b64(computed)}",
    )


def _truncated(size: int, events: int, where: str) -> TailTruncated:
    return TailTruncated(
        f"{where} holds {events} events but the checkpoint covers {size}: "
        f"the newest {size - events} events were deleted (tail truncation)",
        expected=f"at least {size} events",
        computed=f"{events} events",
    )


# -- the record against a checkpoint -----------------------------------------------------------


@dataclass(frozen=True)
class CheckpointVerification:
    events: int
    head_position: int
    head_hash: str
    checkpoint: SignedCheckpoint
    #: The checkpoint as the witness policy accepted it (``None`` without a policy).
    witnessed: WitnessedCheckpoint | None = None


def verify_against_checkpoint(
    app: Application,
    transparency: Transparency,
    note: str,
    keys: Sequence[VerifierKey],
    on_progress: Callable[[int], None] | None = None,
    policy: Policy | None = None,
) -> CheckpointVerification:
    """Verify the whole record (``infra.verify``), then that it extends the checkpoint.

    ``keys`` are the verifier keys trusted to have signed it (an auditor should pass the
    published ones; the keys stored in the database are the fallback). With a witness
    ``policy``, its log keys are the trusted ones and the checkpoint must first meet its
    quorum (``QuorumNotMet``, naming the missing witnesses). Raises the first
    ``CheckpointError`` or ``VerificationError``."""
    witnessed = None if policy is None else policy.check(note)
    signed = open_checkpoint(note, list(keys) if policy is None else list(policy.log_keys))
    if signed.checkpoint.origin != transparency.origin:
        raise CheckpointError(
            "the checkpoint is of another log",
            expected=f"origin {transparency.origin}",
            computed=f"origin {signed.checkpoint.origin}",
        )
    size, root = signed.checkpoint.tree_size, signed.checkpoint.root_hash
    result = verify_record(app, on_progress)
    if result.events < size:
        raise _truncated(size, result.events, "the record")
    tree = CompactRange()
    for leaf in transparency.tree.chain_leaf_hashes(size):
        tree.append(leaf)
    if tree.size < size:  # events deleted since the walk
        raise _truncated(size, tree.size, "the record")
    if tree.root() != root:
        raise _root_mismatch(size, root, tree.root(), "in the record")
    return CheckpointVerification(
        result.events, result.head_position, result.head_hash, signed, witnessed
    )


# -- export ------------------------------------------------------------------------------------


def _as_stored(value: Any) -> Any:
    """A stored value that does not have its column's type as pocdir writes it, in JSON
    (``docs/audit-format.md`` §13): ``{"stored_type": ..., "base64" | "text": ...}`` for bytes
    and text, the value itself for a number or NULL. The bundle's verifier reports it."""
    if isinstance(value, MalformedValue):
        return {"stored_type": value.stored_type, "base64": b64(value.data)}
    if isinstance(value, bytes):
        return {"stored_type": "blob", "base64": b64(value)}
    if isinstance(value, str):
        return {"stored_type": "text", "text": value}
    return value


def _bytes_field(value: Any) -> Any:
    return b64(value) if isinstance(value, bytes) else _as_stored(value)


def _id_field(value: Any, spelling: IdSpelling) -> Any:
    """The canonical form of an id stored in ``spelling`` (the one pocdir writes there);
    any other value as stored, so that no re-spelling passes for a canonical id."""
    if isinstance(value, UUID | str):
        try:
            return canonical_originator_id(value, spelling).decode("ascii")
        except ValueError:
            pass
    return _as_stored(value)


def _plain_field(value: Any, kind: type) -> Any:
    return value if type(value) is kind else _as_stored(value)


def record_line(row: StoredRow, spelling: IdSpelling = IdSpelling.CANONICAL) -> str:
    """One line of ``records.jsonl``: the stored event and its link, as stored; ``spelling``
    is the one its source holds for originator ids."""
    return json.dumps(
        {
            "position": row.position,
            "prev_position": _plain_field(row.prev_position, int),
            "originator_id": _id_field(row.originator_id, spelling),
            "originator_version": _plain_field(row.originator_version, int),
            "topic": _plain_field(row.topic, str),
            "state": _bytes_field(row.state),
            "leaf_hash": _bytes_field(row.leaf_hash),
            "link": _bytes_field(row.link),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class ExportSummary:
    records: int
    checkpoints: int
    keys: int
    directory: Path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_file_name(size: int, verifier_key: str) -> str:
    key_id = verifier_key.split("+")[1] if verifier_key.count("+") >= 2 else "key"
    return f"{size:012d}-{key_id}.txt"


def export_bundle(app: Application, transparency: Transparency, directory: Path) -> ExportSummary:
    """Write the bundle into ``directory`` (new or empty). Checkpoints are read before the
    records, so every checkpoint is covered by the records exported (a later one would not be).
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} exists and is not an empty directory")
    checkpoints = transparency.checkpoints()
    keys = transparency.verifier_keys()
    (directory / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    listed = []
    for cp in checkpoints:
        name = checkpoint_file_name(cp.tree_size, cp.verifier_key)
        path = directory / CHECKPOINTS / name
        path.write_text(cp.note, encoding="utf-8")
        listed.append(
            {
                "file": f"{CHECKPOINTS}/{name}",
                "tree_size": cp.tree_size,
                "sha256": _sha256_file(path),
            }
        )
    (directory / KEYS).write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    count, first, last = 0, None, None
    recorder = chained_recorder(app)
    with (
        (directory / RECORDS).open("w", encoding="utf-8") as out,
        closing(recorder.iter_stored_rows()) as rows,
    ):
        for row in rows:
            out.write(record_line(row, recorder.id_spelling) + "\n")
            count += 1
            first = row.position if first is None else first
            last = row.position
    statements = recorder.statement_rows()
    with (directory / STATEMENTS).open("w", encoding="utf-8") as out:
        for statement in statements:
            out.write(json.dumps(statement.to_json(), sort_keys=True) + "\n")
    manifest = {
        "format": BUNDLE_FORMAT,
        "origin": transparency.origin,
        "exported_at": datetime.now(UTC).isoformat(),
        "records": {
            "file": RECORDS,
            "count": count,
            "first_position": first,
            "last_position": last,
            "sha256": _sha256_file(directory / RECORDS),
        },
        "checkpoints": listed,
        "keys": {"file": KEYS, "count": len(keys), "sha256": _sha256_file(directory / KEYS)},
        "statements": {
            "file": STATEMENTS,
            "count": len(statements),
            "sha256": _sha256_file(directory / STATEMENTS),
        },
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportSummary(count, len(checkpoints), len(keys), directory)


# -- offline verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class BundleVerification:
    signatures: SignatureSummary
    records: int
    head_position: int
    head_hash: str
    tree_size: int
    root_hash: bytes
    checkpoints: int
    keys_from_bundle: bool
    #: The newest checkpoint as the witness policy accepted it (``None`` without a policy).
    witnessed: WitnessedCheckpoint | None = None


def _malformed(reason: str, expected: str, computed: str) -> BundleError:
    return BundleError(reason, expected=expected, computed=computed)


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _malformed(f"{MANIFEST} is missing", f"{directory}/{MANIFEST}", "none") from None
    except (OSError, UnicodeError, ValueError) as e:
        raise _malformed(f"{MANIFEST} is not readable JSON", "JSON", str(e)[:80]) from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _malformed(
            "not a pocdir audit bundle",
            f"format {BUNDLE_FORMAT}",
            str(manifest.get("format") if isinstance(manifest, dict) else type(manifest))[:40],
        )
    return manifest


def _read_keys(directory: Path) -> list[VerifierKey]:
    try:
        lines = (directory / KEYS).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as e:
        raise _malformed(f"{KEYS} is not readable", "verifier keys", str(e)[:80]) from None
    keys = []
    for number, line in enumerate(lines, start=1):
        try:
            keys.append(VerifierKey.parse(line))
        except KeyFormatError as e:
            raise _malformed(
                f"{KEYS} line {number} is not a verifier key", "name+id+key", str(e)
            ) from None
    return keys


def _read_checkpoints(
    directory: Path, keys: list[VerifierKey], origin: str, extra: Sequence[str]
) -> list[SignedCheckpoint]:
    folder = directory / CHECKPOINTS
    notes = (
        [
            (str(p.relative_to(directory)), p.read_text(encoding="utf-8"))
            for p in sorted(folder.glob("*.txt"))
        ]
        if folder.is_dir()
        else []
    )
    notes += [(f"given checkpoint {i + 1}", note) for i, note in enumerate(extra)]
    signed = []
    for name, note in notes:
        try:
            cp = open_checkpoint(note, keys)
        except CheckpointError as e:
            raise type(e)(f"{name}: {e.reason}", expected=e.expected, computed=e.computed) from None
        if cp.checkpoint.origin != origin:
            raise BundleError(
                f"{name} is a checkpoint of another log",
                expected=f"origin {origin}",
                computed=f"origin {cp.checkpoint.origin}",
            )
        signed.append(cp)
    return sorted(signed, key=lambda s: s.checkpoint.tree_size)


def _records(path: Path) -> Iterator[StoredRow]:
    try:
        f = path.open("r", encoding="utf-8")
    except OSError as e:
        raise _malformed(f"{RECORDS} is not readable", "records", str(e)[:80]) from None
    with f:
        for number, line in enumerate(f, start=1):
            try:
                data = json.loads(line)
                position = data["position"]
                if type(position) is not int:
                    raise TypeError("position is not an integer")
                yield StoredRow(
                    position=position,
                    originator_id=_stored(data["originator_id"]),
                    originator_version=_stored(data["originator_version"]),
                    topic=_stored(data["topic"]),
                    state=_unb64(data["state"]),
                    prev_position=_stored(data["prev_position"]),
                    leaf_hash=_unb64(data["leaf_hash"]),
                    link=_unb64(data["link"]),
                )
            except (ValueError, KeyError, TypeError, binascii.Error) as e:
                raise _malformed(
                    f"{RECORDS} line {number} is not a record",
                    "a JSON object with the record fields",
                    f"{type(e).__name__}: {str(e)[:60]}",
                ) from None


def _stored(value: Any) -> Any:
    """A field as exported: a value of another type than its column's, written by
    ``_as_stored``, comes back as a ``MalformedValue``, which the chain walk reports."""
    if not isinstance(value, dict):
        return value
    kind = value.get("stored_type")
    if not isinstance(kind, str) or not (
        set(value) == {"stored_type", "base64"} or set(value) == {"stored_type", "text"}
    ):
        raise TypeError("a value as stored has a stored_type and its base64 or text")
    if "text" in value:
        if not isinstance(value["text"], str):
            raise TypeError("text as stored must be a string")
        return MalformedValue(kind, value["text"].encode("utf-8", "surrogatepass"))
    if not isinstance(value["base64"], str):
        raise TypeError("bytes must be base64 strings")
    return MalformedValue(kind, base64.b64decode(value["base64"], validate=True))


def _unb64(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return _stored(value)
    if not isinstance(value, str):
        raise TypeError("bytes must be base64 strings")
    return base64.b64decode(value, validate=True)


def verify_bundle(
    directory: Path,
    trusted_keys: Sequence[VerifierKey] = (),
    extra_checkpoints: Sequence[str] = (),
    operator_key: str | None = None,
    policy: Policy | None = None,
) -> BundleVerification:
    """Check a bundle with no database: every checkpoint's signature, every link of the
    chain, the Merkle root at every checkpoint's size, then the manifest. Raises the first
    fault (``AuditError`` or the chain's ``VerificationError``).

    ``trusted_keys`` are the published verifier keys; without them the bundle's own
    ``keys.txt`` is used, which proves internal consistency only. With a witness ``policy``
    its log keys are the trusted ones, and the bundle's newest checkpoint and every one given
    must meet its quorum (``QuorumNotMet`` names the missing witnesses); older checkpoints
    of the bundle need only the log's signature, as their roots are checked against the same
    records the newest one covers."""
    manifest = _read_manifest(directory)
    origin = str(manifest.get("origin", ""))
    bundle_keys = _read_keys(directory)
    keys = list(policy.log_keys) if policy is not None else list(trusted_keys) or bundle_keys
    checkpoints = _read_checkpoints(directory, keys, origin, extra_checkpoints)
    witnessed = _witnessed(checkpoints, extra_checkpoints, policy)
    pending = iter(checkpoints)
    target = next(pending, None)
    while target is not None and target.checkpoint.tree_size == 0:
        if target.checkpoint.root_hash != EMPTY_ROOT:
            raise _root_mismatch(0, target.checkpoint.root_hash, EMPTY_ROOT, "in the bundle")
        target = next(pending, None)
    verifier, tree = ChainVerifier(), CompactRange()
    signatures = SignatureVerifier(_statements(directory, manifest), operator_key)
    for row in _records(directory / RECORDS):
        verifier.check(row)  # the leaf hash is then bytes and equals the recomputed one
        signatures.check(
            row.position, row.originator_id, cast(int, row.originator_version), cast(str, row.topic)
        )
        tree.append(cast(bytes, row.leaf_hash))
        while target is not None and target.checkpoint.tree_size == tree.size:
            if tree.root() != target.checkpoint.root_hash:
                raise _root_mismatch(
                    tree.size, target.checkpoint.root_hash, tree.root(), "in the bundle"
                )
            target = next(pending, None)
    if target is not None:
        raise _truncated(target.checkpoint.tree_size, tree.size, "the bundle")
    _check_manifest(directory, manifest, verifier.events, len(checkpoints) - len(extra_checkpoints))
    result = verifier.result
    return BundleVerification(
        signatures=signatures.finish(),
        records=result.events,
        head_position=result.head_position,
        head_hash=result.head_hash,
        tree_size=tree.size,
        root_hash=tree.root(),
        checkpoints=len(checkpoints),
        keys_from_bundle=not trusted_keys and policy is None,
        witnessed=witnessed,
    )


def _witnessed(
    checkpoints: Sequence[SignedCheckpoint], given: Sequence[str], policy: Policy | None
) -> WitnessedCheckpoint | None:
    """The policy's verdict on the newest checkpoint and on each given one (the newest's,
    returned), or ``None`` without a policy. A bundle with no checkpoint fails a policy
    that asks for witnesses: nothing it holds was witnessed."""
    if policy is None:
        return None
    for i, note in enumerate(given):
        where = f"given checkpoint {i + 1}"
        try:
            policy.check(note)
        except QuorumNotMet as e:
            raise QuorumNotMet(
                f"{where}: {e.reason}", missing=e.missing, expected=e.expected, computed=e.computed
            ) from None
        except CheckpointError as e:
            raise type(e)(
                f"{where}: {e.reason}", expected=e.expected, computed=e.computed
            ) from None
    if not checkpoints:
        if policy.quorum is None:
            return None
        raise QuorumNotMet(
            "the bundle holds no checkpoint, so nothing in it was witnessed",
            missing=policy.quorum_witnesses(),
            expected=policy.describe(),
            computed="no checkpoint",
        )
    newest = checkpoints[-1]
    return policy.check(newest.note)


def _statements(directory: Path, manifest: dict[str, Any]) -> list[StatementRow]:
    """The bundle's statements (none in a bundle from before them: its events are then all
    unsigned by design, unless one is a key binding, which the verifier refuses unsigned)."""
    if "statements" not in manifest:
        return []
    rows = []
    with (directory / STATEMENTS).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
                rows.append(StatementRow(**obj))
            except (ValueError, TypeError):
                raise _malformed(
                    f"{STATEMENTS} line {number} is not a statement row",
                    "a JSON object of the statement columns",
                    line[:60],
                ) from None
    return rows


def _check_manifest(
    directory: Path, manifest: dict[str, Any], records: int, checkpoints: int
) -> None:
    entries = [
        manifest.get("records"),
        manifest.get("keys"),
        *([manifest["statements"]] if "statements" in manifest else []),
        *manifest.get("checkpoints", []),
    ]
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise _malformed(
                f"{MANIFEST} lists a file without a name", "file entries", str(entry)[:60]
            )
        path = directory / entry["file"]
        if not path.is_file():
            raise BundleError(
                f"{entry['file']} is listed in the manifest but missing",
                expected="the file",
                computed="none",
            )
        digest = _sha256_file(path)
        if digest != entry.get("sha256"):
            raise BundleError(
                f"{entry['file']} differs from the manifest",
                expected=f"sha256 {entry.get('sha256')}",
                computed=f"sha256 {digest}",
            )
    listed = manifest.get("records", {}).get("count")
    if listed != records:
        raise BundleError(
            f"{RECORDS} holds a different number of records than the manifest",
            expected=f"{listed} records",
            computed=f"{records} records",
        )
    if len(manifest.get("checkpoints", [])) != checkpoints:
        raise BundleError(
            "the bundle holds a different number of checkpoints than the manifest",
            expected=f"{len(manifest.get('checkpoints', []))} checkpoints",
            computed=f"{checkpoints} checkpoints",
        )
