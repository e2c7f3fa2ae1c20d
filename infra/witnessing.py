"""The server's side of witnessing (issue 16, item 3): submit each new checkpoint to the
witnesses of ``POCDIR_WITNESS_POLICY_FILE`` over C2SP ``tlog-witness`` and keep the
cosignatures they return beside the checkpoint.

Each submission proves consistency from the tree size the witness last cosigned for this
record (its view of the log, as far as the record knows); a witness that holds another size
answers 409 with it and the client retries once from there (``infra.witness_client``). A
witness that is down, refuses, or returns a line that does not verify costs only its own
cosignature: the checkpoint stays recorded, the outcome says why, and the next checkpoint
tries again. Nothing returned is stored before it verifies with the witness's key from the
policy, so the stored cosignatures are exactly those a verifier will accept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from infra.cosignature import verify_cosignature
from infra.note import CheckpointError
from infra.settings import DEFAULT_WITNESS_TIMEOUT
from infra.transparency import CheckpointView, Transparency
from infra.witness_client import SizeConflict, WitnessRefused, WitnessUnavailable
from infra.witness_client import witness_checkpoint as submit
from infra.witness_policy import PolicyWitness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WitnessOutcome:
    """What one witness did with a checkpoint: ``cosigned``, and a one-line ``detail``."""

    witness: str
    cosigned: bool
    detail: str


def witness_checkpoint(
    transparency: Transparency,
    view: CheckpointView,
    *,
    timeout: float = DEFAULT_WITNESS_TIMEOUT,
) -> list[WitnessOutcome]:
    """Submit ``view`` to every witness the server knows a URL for, store the cosignatures
    that verify, and say what each witness did. Never raises for a witness's failure."""
    have = set(_cosigners(view, transparency.witnesses))
    outcomes = []
    for witness in transparency.witnesses:
        if witness.name in have:
            outcomes.append(WitnessOutcome(witness.name, True, "already cosigned"))
        elif witness.url is None:
            outcomes.append(WitnessOutcome(witness.name, False, "no URL in the witness policy"))
        else:
            outcomes.append(_submit(transparency, view, witness, witness.url, timeout))
    for outcome in outcomes:
        if not outcome.cosigned:
            log.warning(
                "witness %s did not cosign tree size %d: %s",
                outcome.witness,
                view.tree_size,
                outcome.detail,
            )
    return outcomes


def _cosigners(view: CheckpointView, witnesses: Sequence[PolicyWitness]) -> list[str]:
    found = []
    for witness in witnesses:
        try:
            verify_cosignature(view.note, witness.key)
        except CheckpointError:
            continue
        found.append(witness.name)
    return found


def _submit(
    transparency: Transparency,
    view: CheckpointView,
    witness: PolicyWitness,
    url: str,
    timeout: float,
) -> WitnessOutcome:
    key = str(witness.key)
    old = transparency.tree.last_cosigned_size(key)
    if old > view.tree_size:  # the witness already holds a larger tree of ours
        return WitnessOutcome(
            witness.name, False, f"it already cosigned a larger tree ({old} events)"
        )

    def consistency(first: int, second: int) -> Sequence[bytes]:
        if first == 0 or first == second:
            return ()
        return transparency.consistency_proof(first, second).proof

    note = view.log_note
    try:
        lines = submit(url, note, old, consistency, timeout=timeout)
    except SizeConflict as e:
        return WitnessOutcome(
            witness.name, False, f"it holds a tree of {e.witness_size} events, not {old}"
        )
    except WitnessRefused as e:
        return WitnessOutcome(witness.name, False, f"refused ({e.status}): {e.message}")
    except WitnessUnavailable as e:
        return WitnessOutcome(witness.name, False, f"unavailable: {e}")
    for line in lines:
        try:
            at = verify_cosignature(note + line, witness.key)
        except CheckpointError:  # a CosignatureError, or a line that breaks the note
            continue
        transparency.record_cosignature(view, key, line, at)
        return WitnessOutcome(witness.name, True, "cosigned")
    return WitnessOutcome(
        witness.name, False, "it answered without a cosignature that verifies with its key"
    )
