"""Walk the whole stored record from genesis and check every link and every signature
(``pocdir verify``; ``infra.signatures``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from typing import cast

from eventsourcing.application import Application

from infra.chain import ChainVerifier, FastChainWalk, NeedsDetailedWalk, VerificationResult
from infra.signatures import SignatureVerifier
from infra.store import ChainedRecorder, LinkedRow


def chained_recorder(app: Application) -> ChainedRecorder:
    """The application's recorder, which must be one of the chained ones."""
    recorder = app.recorder
    if not all(hasattr(recorder, m) for m in ("chain_head", "iter_stored_rows", "walk_linked")):
        raise TypeError(f"{type(recorder).__name__} is not a hash-chained recorder")
    return recorder  # type: ignore[return-value]


def record_is_empty(recorder: ChainedRecorder) -> bool:
    """No event and no link is stored (a row at any position, even a forged one, counts)."""
    return not recorder.has_rows()


def verify_record(
    app: Application,
    on_progress: Callable[[int], None] | None = None,
    operator_key: str | None = None,
) -> VerificationResult:
    """Verify every event and link. Raises the first ``VerificationError``; never returns a
    failure. ``on_progress`` is called with the last verified position every few thousand
    events (for progress bars).

    A fast walk over events joined with their links checks the common, intact case; at the
    first anomaly the detailed walk over both tables finds the first fault and names it.
    """
    recorder = chained_recorder(app)
    fast = FastChainWalk(recorder.id_spelling)
    statements = recorder.statement_rows()
    signatures = SignatureVerifier(statements, operator_key)

    def visit(rows: Sequence[LinkedRow]) -> None:
        fast.check_page(rows)
        for r in rows:
            signatures.check(r[0], r[1], r[2], r[3])
        if on_progress is not None and rows:
            on_progress(fast.head_position)

    try:
        links = recorder.walk_linked(visit)
        if links != fast.events:
            raise NeedsDetailedWalk
        return replace(fast.result, signatures=signatures.finish())
    except NeedsDetailedWalk:
        signatures = SignatureVerifier(statements, operator_key)
        result = _detailed_walk(recorder, on_progress, signatures)
        return replace(result, signatures=signatures.finish())


def _detailed_walk(
    recorder: ChainedRecorder,
    on_progress: Callable[[int], None] | None,
    signatures: SignatureVerifier,
) -> VerificationResult:
    verifier = ChainVerifier(recorder.id_spelling)
    with closing(recorder.iter_stored_rows()) as rows:
        for row in rows:
            verifier.check(row)  # a row that passes has every event column
            signatures.check(
                row.position,
                row.originator_id,
                cast(int, row.originator_version),
                cast(str, row.topic),
            )
            if on_progress is not None and verifier.events % 5000 == 0:
                on_progress(row.position)
    if on_progress is not None:
        on_progress(verifier.head_position)
    return verifier.result
