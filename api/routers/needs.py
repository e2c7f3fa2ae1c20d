"""Capacity-building needs (R16): a State records a need, other States offer assistance, the
State accepts one offer, and the need is fulfilled or withdrawn. Needs are posted for other
States to answer, so every State and the Secretariat read them; reviewers see only figures.
An offer's text is read by the State in need and the offering State only
(``CapacityNeed.offer_texts_for``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import Idempotency, QueriesDep, ServicesDep, StateOrSecretariat, StatePrincipal
from api.routers.common import parse_id, text
from api.schemas import Strict, TextIn, TextPublic
from domain.capacity import CapacityNeed
from domain.values import Principal
from projections.review import NEED

router = APIRouter(prefix="/needs", tags=["capacity building"])


class NeedCreate(Strict):
    category: str = Field(max_length=40, description="one of docs/taxonomy.md's categories")
    text: TextIn | str
    notification_id: str | None = Field(
        default=None, max_length=64, description="a notification of yours it arises from"
    )


class OfferCreate(Strict):
    text: TextIn | str


class AcceptCreate(Strict):
    offering_state: str = Field(max_length=3)


class OfferSummaryPublic(BaseModel):
    state: str = Field(description="the offering State")
    at: datetime


class OfferPublic(OfferSummaryPublic):
    text: TextPublic | None = Field(
        description="the offer's text: for the State in need and the offering State only "
        "(null for anyone else)"
    )


class NeedPublic(BaseModel):
    id: str
    state: str
    category: str
    status: str
    text: TextPublic
    offers: list[OfferPublic] = Field(description="in the order they were made")
    matched_with: str | None
    version: int


class NeedSummaryPublic(BaseModel):
    id: str
    state: str
    category: str
    recorded_at: datetime
    offers: list[OfferSummaryPublic]
    matched_with: str | None
    fulfilled_at: datetime | None
    withdrawn_at: datetime | None


def need_public(n: CapacityNeed, by: Principal) -> NeedPublic:
    """The need as ``by`` may read it: the offers' texts only as the domain allows."""
    texts = n.offer_texts_for(by)
    offers = sorted(n.offers.items(), key=lambda item: (item[1], item[0]))
    return NeedPublic(
        id=str(n.id),
        state=n.state,
        category=n.category,
        status=str(n.status),
        text=TextPublic.model_validate(n.text.to_dict()),
        offers=[
            OfferPublic(
                state=state,
                at=at,
                text=TextPublic.model_validate(texts[state].to_dict()) if state in texts else None,
            )
            for state, at in offers
        ],
        matched_with=n.matched_with,
        version=n.version,
    )


@router.post("", response_model=NeedPublic, status_code=201, summary="Record a need (R16)")
def record(
    body: NeedCreate, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NeedPublic:
    cited = parse_id(body.notification_id) if body.notification_id is not None else None
    return need_public(
        services.application.record_need(
            by, body.category, text(body.text, "text"), cited, idempotency=key
        ),
        by,
    )


@router.get("", response_model=list[NeedSummaryPublic], summary="Every need, oldest first")
async def list_needs(_: StateOrSecretariat, queries: QueriesDep) -> list[dict[str, Any]]:
    docs = await run_in_threadpool(queries.view.all, NEED)
    return sorted(docs, key=lambda d: (d["recorded_at"], d["id"]))


@router.get("/{need_id}", response_model=NeedPublic, summary="One need, with its text")
def get_one(need_id: str, by: StateOrSecretariat, services: ServicesDep) -> NeedPublic:
    return need_public(services.application.get_need(parse_id(need_id, "need")), by)


@router.post("/{need_id}/offers", response_model=NeedPublic, summary="Offer assistance")
def offer(
    need_id: str, body: OfferCreate, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NeedPublic:
    need_uuid = parse_id(need_id, "need")
    return need_public(
        services.application.offer_assistance(
            by, need_uuid, text(body.text, "text"), idempotency=key
        ),
        by,
    )


@router.post("/{need_id}/acceptance", response_model=NeedPublic, summary="Accept an offer")
def accept(
    need_id: str, body: AcceptCreate, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NeedPublic:
    need_uuid = parse_id(need_id, "need")
    return need_public(
        services.application.accept_offer(by, need_uuid, body.offering_state, idempotency=key),
        by,
    )


@router.post("/{need_id}/fulfilment", response_model=NeedPublic, summary="Mark fulfilled")
def fulfil(need_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency) -> NeedPublic:
    need_uuid = parse_id(need_id, "need")
    return need_public(services.application.fulfil_need(by, need_uuid, idempotency=key), by)


@router.post("/{need_id}/withdrawal", response_model=NeedPublic, summary="Withdraw the need")
def withdraw(
    need_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NeedPublic:
    need_uuid = parse_id(need_id, "need")
    return need_public(services.application.withdraw_need(by, need_uuid, idempotency=key), by)
