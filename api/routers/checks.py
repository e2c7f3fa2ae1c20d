"""Communication checks: the Secretariat launches one and reads its results. A challenged check
(the default) sends each contact at its level a code; the State answers with a code its
contact received (``POST /checks/{id}/answers``). A check launched with ``challenge: false``
is answered per State through a contact id (``POST /checks/{id}/answer``), as before."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import (
    Idempotency,
    QueriesDep,
    SecretariatPrincipal,
    ServicesDep,
    StateOrSecretariat,
    StatePrincipal,
)
from api.routers.common import parse_id
from api.schemas import Strict, check_json, public_json
from domain.check import MAX_DEADLINE_DAYS, confirmed_row
from projections.review import check_summaries

router = APIRouter(prefix="/checks", tags=["communication checks"])


class CheckCreate(Strict):
    level: Literal["diplomatic", "technical"]
    deadline: AwareDatetime = Field(
        description=f"answers after this are late (at most {MAX_DEADLINE_DAYS} days)"
    )
    states: list[str] | None = Field(
        default=None, max_length=193, description="a subset of States; default: every registered"
    )
    challenge: bool = Field(
        default=True,
        description="send each contact at the level a challenge code (false: answered per "
        "State by contact id)",
    )


class CheckAnswerCreate(Strict):
    contact_id: str = Field(max_length=63, description="the contact at the check's level")


class CheckCodeCreate(Strict):
    code: str = Field(
        min_length=1, max_length=64, description="the challenge code a contact received"
    )


class CheckContactResult(BaseModel):
    state: str
    contact_id: str
    level: str
    result: str
    sent_at: datetime | None
    confirmed_at: datetime | None
    hours_to_answer: float | None


class CheckCodeAnswered(BaseModel):
    check_id: str
    state: str
    contact_id: str
    result: str
    confirmed_at: datetime | None


class CheckStateResult(BaseModel):
    state: str
    result: str
    answered_at: datetime | None
    contact_id: str | None
    hours_to_answer: float | None


class CheckResultsPublic(BaseModel):
    id: str
    level: str
    launched_at: datetime
    deadline: datetime
    closed_at: datetime | None
    judged_at: datetime
    counts: dict[str, int]
    states: list[CheckStateResult]
    challenged: bool = False
    window_hours: int | None = None
    contact_counts: dict[str, int] | None = None
    contacts: list[CheckContactResult] | None = None


@router.post("", response_model=CheckResultsPublic, status_code=201, summary="Launch a check")
def launch(
    body: CheckCreate, by: SecretariatPrincipal, services: ServicesDep, key: Idempotency
) -> Any:
    app = services.application
    check = app.launch_check(
        by, body.level, body.deadline, body.states, challenge=body.challenge, idempotency=key
    )
    return check_json(check.results(app.clock.now()))


@router.get("", response_model=list[dict[str, Any]], summary="Checks: all, or your State's")
def list_checks(by: StateOrSecretariat, queries: QueriesDep) -> list[dict[str, Any]]:
    return [check_json(c) for c in check_summaries(queries.view, by.state)]  # type: ignore[arg-type]


@router.get("/{check_id}", response_model=CheckResultsPublic, summary="A check's results")
def results(check_id: str, by: SecretariatPrincipal, services: ServicesDep) -> Any:
    return check_json(services.application.check_results(by, parse_id(check_id, "check")))


@router.post("/{check_id}/answer", response_model=dict[str, Any], summary="Confirm receipt")
def answer(
    check_id: str,
    body: CheckAnswerCreate,
    by: StatePrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> dict[str, Any]:
    app = services.application
    check = app.answer_check(by, parse_id(check_id, "check"), body.contact_id, idempotency=key)
    own = next(r for r in check.results(app.clock.now())["states"] if r["state"] == by.state)
    return public_json({"check_id": str(check.id), **own})  # type: ignore[no-any-return]


@router.post(
    "/{check_id}/answers",
    response_model=CheckCodeAnswered,
    status_code=201,
    summary="Answer a challenged check with a code",
    responses={
        422: {"description": "not a code sent to your contacts for this check"},
        409: {"description": "the code was already used, or the check is closed"},
    },
)
def answer_code(
    check_id: str,
    body: CheckCodeCreate,
    by: StatePrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> dict[str, Any]:
    """The State quotes the code one of its contacts received over its channel: that contact
    is confirmed. Nothing is recorded for a wrong or reused code."""
    app = services.application
    check = app.answer_check_code(by, parse_id(check_id, "check"), body.code, idempotency=key)
    row = confirmed_row(check, str(by.state), body.code, app.clock.now())
    return public_json({"check_id": str(check.id), **row})  # type: ignore[no-any-return]


@router.post("/{check_id}/close", response_model=CheckResultsPublic, summary="Close a check")
def close(check_id: str, by: SecretariatPrincipal, services: ServicesDep, key: Idempotency) -> Any:
    app = services.application
    closed = app.close_check(by, parse_id(check_id, "check"), idempotency=key)
    return check_json(closed.results(app.clock.now()))
