"""Walk the whole stored record from genesis and check every link (``pocdir verify``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

from eventsourcing.application import Application

from infra.chain import ChainVerifier, VerificationResult
from infra.store import ChainedRecorder


def chained_recorder(app: Application) -> ChainedRecorder:
    """The application's recorder, which must be one of the chained ones."""
    recorder = app.recorder
    if not hasattr(recorder, "chain_head") or not hasattr(recorder, "iter_stored_rows"):
        raise TypeError(f"{type(recorder).__name__} is not a hash-chained recorder")
    return recorder  # type: ignore[return-value]


def verify_record(
    app: Application, on_progress: Callable[[int], None] | None = None
) -> VerificationResult:
    """Verify every event and link. Raises the first ``VerificationError``; never returns a
    failure. ``on_progress`` is called with the last verified position every few thousand
    events (for progress bars)."""
    verifier = ChainVerifier()
    with closing(chained_recorder(app).iter_stored_rows()) as rows:
        for row in rows:
            verifier.check(row)
            if on_progress is not None and verifier.events % 5000 == 0:
                on_progress(row.position)
    if on_progress is not None:
        on_progress(verifier.head_position)
    return verifier.result
