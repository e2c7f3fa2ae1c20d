"""The transparency service: signed checkpoints and Merkle proofs over the record.

Built by the composition root (``infra.wiring.build_transparency``) and used by the CLI and the
HTTP API alike. Every method returns plain dataclasses whose ``to_json`` gives the JSON shapes
that auditors' scripts rely on (hashes in standard base64):

* inclusion: ``{"index", "tree_size", "leaf_hash", "root_hash", "proof": [...]}``;
* consistency: ``{"first_size", "second_size", "first_root", "second_root", "proof": [...]}``;
* checkpoints: the C2SP signed note text (``CheckpointView.note``).

Bad requests (a leaf or size the tree does not have) raise ``ProofRequestInvalid``; a missing
checkpoint or event raises ``NotRecorded``; a record that does not verify from the tree's last
leaf on raises ``TreeError``. Nothing here decides who may ask: callers authorise first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from infra.merkle import (
    ConsistencyProof,
    InclusionProof,
    ProofRequestInvalid,
    b64,
    consistency_ranges,
    hashes_of_ranges,
    inclusion_ranges,
    root_from_store,
)
from infra.note import Checkpoint, SignerKey, VerifierKey, sign_note
from infra.tree_store import StoredCheckpoint, StoredCosignature, TreeDiverged, TreeStore
from infra.witness_policy import PolicyWitness


class NotRecorded(LookupError):
    """No such checkpoint, leaf or event."""


class SigningKeyMissing(ValueError):
    """No signing key is configured (``POCDIR_SIGNING_KEY_FILE``)."""


@dataclass(frozen=True)
class CheckpointView:
    """A stored checkpoint; ``note`` is the log's signed note followed by the cosignature
    lines the witnesses returned for it (C2SP tlog-cosignature), so it is the note a verifier
    checks against its witness policy."""

    tree_size: int
    root_hash: bytes
    note: str
    verifier_key: str
    recorded_at: str
    cosignatures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "tree_size": self.tree_size,
            "root_hash": b64(self.root_hash),
            "note": self.note,
            "verifier_key": self.verifier_key,
            "recorded_at": self.recorded_at,
            "cosignatures": list(self.cosignatures),
        }

    @property
    def log_note(self) -> str:
        """The note as the log signed it, without the witnesses' lines: what is submitted."""
        suffix = "".join(self.cosignatures)
        return self.note[: len(self.note) - len(suffix)]

    @classmethod
    def of(
        cls, stored: StoredCheckpoint, cosignatures: Sequence[StoredCosignature] = ()
    ) -> CheckpointView:
        lines = tuple(c.line for c in cosignatures)
        return cls(
            stored.tree_size,
            stored.root_hash,
            stored.note + "".join(lines),
            stored.verifier_key,
            stored.recorded_at,
            lines,
        )


class Transparency:
    """Checkpoints and proofs for one record.

    ``signer`` is called only when a checkpoint is signed, so reading proofs needs no key.
    """

    def __init__(
        self,
        tree: TreeStore,
        origin: str,
        signer: Callable[[], SignerKey],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        witnesses: Sequence[PolicyWitness] = (),
    ) -> None:
        self.tree = tree
        self.origin = origin
        self._signer = signer
        self._now = now
        #: The witnesses this server submits its checkpoints to (``POCDIR_WITNESS_POLICY_FILE``).
        self.witnesses = tuple(witnesses)

    # -- the tree -----------------------------------------------------------------------------

    def tree_size(self, *, catch_up: bool = True) -> int:
        """The number of leaves, after extending the tree over new events if asked."""
        return self.tree.catch_up() if catch_up else self.tree.size()

    def root_hash(self, size: int) -> bytes:
        self._check_size(size)
        return root_from_store(size, self.tree.fetch_nodes)

    def _check_size(self, size: int) -> int:
        if size < 0:
            raise ProofRequestInvalid(f"a tree size is not negative, not {size}")
        current = self.tree.size()
        if size > current:
            current = self.tree.catch_up()
        if size > current:
            raise ProofRequestInvalid(f"the tree has {current} leaves, not {size}")
        return current

    # -- checkpoints --------------------------------------------------------------------------

    def record_checkpoint(self) -> CheckpointView:
        """Bring the tree up to date, sign its head and store the checkpoint (and the key)."""
        key = self._signer()
        size = self.tree.catch_up()
        root = root_from_store(size, self.tree.fetch_nodes)
        note = sign_note(Checkpoint(self.origin, size, root).body(), key)
        stored = self.tree.record_checkpoint(
            StoredCheckpoint(size, str(key.verifier), root, note, self._now().isoformat())
        )
        return self._view(stored)

    def _view(self, stored: StoredCheckpoint) -> CheckpointView:
        return CheckpointView.of(
            stored, self.tree.cosignatures(stored.tree_size, stored.verifier_key)
        )

    def with_cosignatures(self, view: CheckpointView) -> CheckpointView:
        """``view`` with every cosignature stored for it now."""
        stored = StoredCheckpoint(
            view.tree_size, view.verifier_key, view.root_hash, view.log_note, view.recorded_at
        )
        return self._view(stored)

    def latest_checkpoint(self) -> CheckpointView:
        """The newest checkpoint, with the cosignatures received for it so far."""
        stored = self.tree.latest_checkpoint()
        if stored is None:
            raise NotRecorded("no checkpoint has been recorded yet")
        return self._view(stored)

    def checkpoint_by_size(self, size: int) -> CheckpointView:
        """The checkpoint of that tree size (the most recently signed, after key rotation)."""
        found = self.tree.checkpoints(size)
        if not found:
            raise NotRecorded(f"no checkpoint of tree size {size}")
        return self._view(found[-1])

    def checkpoints(self) -> list[CheckpointView]:
        return [self._view(c) for c in self.tree.checkpoints()]

    def record_cosignature(self, view: CheckpointView, witness: str, line: str, at: int) -> None:
        """Keep a witness's cosignature of ``view`` (already verified by the caller)."""
        self.tree.record_cosignature(
            StoredCosignature(
                view.tree_size, view.verifier_key, witness, line, at, self._now().isoformat()
            )
        )

    def verifier_keys(self) -> list[str]:
        """Every key that ever signed a checkpoint, in the signed-note verifier format."""
        return self.tree.verifier_keys()

    def trusted_keys(self) -> list[VerifierKey]:
        return [VerifierKey.parse(k) for k in self.verifier_keys()]

    # -- proofs -------------------------------------------------------------------------------

    def _hashes(self, size: int, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Node hashes of ``ranges`` in the tree of ``size`` leaves, from one read of the
        O(log n) stored subtrees they need. Only if some are missing is the tree's size read,
        and the tree extended when it is smaller than ``size``."""
        try:
            with self.tree.read(snapshot=False) as c:
                return hashes_of_ranges(ranges, lambda ids: self.tree.fetch_nodes(ids, c))
        except TreeDiverged:
            if size <= self.tree.size():
                raise
        self._check_size(size)
        with self.tree.read(snapshot=False) as c:
            return hashes_of_ranges(ranges, lambda ids: self.tree.fetch_nodes(ids, c))

    def inclusion_proof(
        self, index: int, size: int | None = None, *, position: int | None = None
    ) -> InclusionProof:
        """Proof that leaf ``index`` (0-based, position order) is in the tree of ``size``
        leaves (default: the whole record, brought up to date first)."""
        if size is None:
            size = self.tree.catch_up()
        ranges = inclusion_ranges(index, size)  # raises ProofRequestInvalid
        hashes = self._hashes(size, [*ranges, (index, index + 1), (0, size)])
        return InclusionProof(index, size, hashes[-2], hashes[-1], tuple(hashes[:-2]), position)

    def leaf_position(self, index: int) -> int:
        """The record position of leaf ``index`` (to find the event, e.g. to authorise). The
        tree is brought up to date first if it does not reach that leaf yet, as for a proof:
        the answer must not depend on whether someone else grew it."""
        leaf = self.tree.leaf(index)
        if leaf is None and index >= 0:
            self.tree.catch_up()
            leaf = self.tree.leaf(index)
        if leaf is None:
            raise NotRecorded(f"no leaf {index} in the Merkle tree")
        return leaf[0]

    def inclusion_proof_for(
        self, aggregate_id: UUID, version: int, size: int | None = None
    ) -> InclusionProof:
        """Proof for the event that gave aggregate ``aggregate_id`` its ``version``."""
        position = self.tree.position_of(aggregate_id, version)
        if position is None:
            raise NotRecorded(f"no event of aggregate {aggregate_id} at version {version}")
        index = self.tree.index_of(position)
        if index is None:
            self.tree.catch_up()
            index = self.tree.index_of(position)
        if index is None:
            raise NotRecorded(f"the event at position {position} is not in the Merkle tree")
        return self.inclusion_proof(index, size, position=position)

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """Proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""
        ranges = consistency_ranges(first, second)  # validates 0 < first <= second
        hashes = self._hashes(second, [*ranges, (0, first), (0, second)])
        return ConsistencyProof(first, second, hashes[-2], hashes[-1], tuple(hashes[:-2]))


def load_signer(path: Path | None) -> Callable[[], SignerKey]:
    """A loader for the key file named by ``POCDIR_SIGNING_KEY_FILE``, read when needed."""

    def signer() -> SignerKey:
        if path is None:
            raise SigningKeyMissing(
                "POCDIR_SIGNING_KEY_FILE is not set; create a key with `pocdir keys generate "
                "PATH` and set it to that path"
            )
        return SignerKey.load(path)

    return signer
