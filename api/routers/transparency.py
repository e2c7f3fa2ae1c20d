"""Signed checkpoints and Merkle proofs (RFC 9162, C2SP signed notes), for auditors; a State
may also have inclusion proofs for the events of its own exchanges."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from api.deps import AuditorOrState, AuditorPrincipal, ServicesDep
from api.routers.common import parse_id
from domain.errors import NotFound, ValidationError
from domain.values import Role

router = APIRouter(prefix="/audit", tags=["audit"])


class CheckpointPublic(BaseModel):
    tree_size: int
    root_hash: str
    note: str
    verifier_key: str
    #: Stored as ``isoformat`` writes it; served in the one JSON convention (UTC with ``Z``).
    recorded_at: datetime
    #: The witnesses' cosignature lines (C2SP tlog-cosignature), also at the end of ``note``.
    cosignatures: list[str]


class InclusionProofPublic(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str]


class ConsistencyProofPublic(BaseModel):
    first_size: int
    second_size: int
    first_root: str
    second_root: str
    proof: list[str]


def _checkpoint(found: Any, fmt: str) -> Any:
    if fmt == "note":
        return PlainTextResponse(found.note)
    return found.to_json()


CHECKPOINT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}
FormatQuery = Annotated[str, Query(pattern="^(json|note)$", description="json, or the signed note")]


@router.get(
    "/checkpoints/latest",
    response_model=CheckpointPublic,
    responses=CHECKPOINT_RESPONSES,
    summary="The latest signed checkpoint",
)
def latest_checkpoint(
    _: AuditorPrincipal, services: ServicesDep, format: FormatQuery = "json"
) -> Any:  # noqa: A002
    return _checkpoint(services.transparency.latest_checkpoint(), format)


@router.get(
    "/checkpoints/{size}",
    response_model=CheckpointPublic,
    responses=CHECKPOINT_RESPONSES,
    summary="The signed checkpoint of a tree size",
)
def checkpoint_by_size(
    size: Annotated[int, Path(ge=0, le=2**62)],
    _: AuditorPrincipal,
    services: ServicesDep,
    format: FormatQuery = "json",  # noqa: A002
) -> Any:
    return _checkpoint(services.transparency.checkpoint_by_size(size), format)


@router.get("/keys", response_model=list[str], summary="Every key that signed a checkpoint")
def keys(_: AuditorPrincipal, services: ServicesDep) -> list[str]:
    return services.transparency.verifier_keys()


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProofPublic,
    summary="Inclusion proof for an event, by leaf index or by aggregate id and version",
)
def inclusion(
    by: AuditorOrState,
    services: ServicesDep,
    index: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    aggregate_id: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    size: Annotated[
        int | None, Query(ge=1, le=2**62, description="default: the whole record")
    ] = None,
) -> Any:
    transparency = services.transparency
    by_event = aggregate_id is not None and version is not None
    if by_event == (index is not None) or (aggregate_id is None) != (version is None):
        raise ValidationError("give either index, or aggregate_id and version")
    with services.tree_lock:
        if aggregate_id is not None and version is not None:
            aid = parse_id(aggregate_id, "event")
            if by.role is Role.STATE:
                services.application.check_party_to_exchange(by, aid)
            return transparency.inclusion_proof_for(aid, version, size).to_json()
        if index is None:
            raise ValidationError("give either index, or aggregate_id and version")
        if by.role is Role.STATE:
            position = transparency.leaf_position(index)
            rows = services.application.recorder.select_notifications(position, 1)
            if not rows:
                raise NotFound("no such event")
            services.application.check_party_to_exchange(by, UUID(str(rows[0].originator_id)))
        return transparency.inclusion_proof(index, size).to_json()


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProofPublic,
    summary="Consistency proof between two tree sizes",
)
def consistency(
    _: AuditorPrincipal,
    services: ServicesDep,
    first: Annotated[int, Query(ge=1, le=2**62)],
    second: Annotated[int, Query(ge=1, le=2**62)],
) -> Any:
    with services.tree_lock:
        return services.transparency.consistency_proof(first, second).to_json()
