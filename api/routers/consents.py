"""Consents to share an exchange with a third State (R11). Parties see their consents; the
third State sees one only while it is effective; the Secretariat sees metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from api.deps import Idempotency, QueriesDep, ServicesDep, StateOrSecretariat, StatePrincipal
from api.routers.common import parse_id
from api.schemas import ConsentCreate, ConsentPublic
from domain.consent import SharingConsent
from domain.idempotency import IdempotencyKey
from domain.values import Principal

router = APIRouter(prefix="/consents", tags=["consents"])


def consent_public(c: SharingConsent) -> ConsentPublic:
    return ConsentPublic(
        id=str(c.id),
        notification_id=str(c.notification_id),
        parties=list(c.parties),
        third_state=c.third_state,
        status=str(c.status),
        granted_by=sorted(c.granted_by),
        requested_at=c.created_on,
    )


@router.post("", response_model=ConsentPublic, status_code=201, summary="Ask to share (R11)")
def request(
    body: ConsentCreate, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> ConsentPublic:
    consent = services.application.request_consent(
        by, parse_id(body.notification_id), body.third_state, idempotency=key
    )
    return consent_public(consent)


@router.get("", response_model=list[ConsentPublic], summary="Consents you may see")
def list_consents(by: StateOrSecretariat, queries: QueriesDep) -> list[dict[str, Any]]:
    return queries.consents(by.state)


@router.get("/{consent_id}", response_model=ConsentPublic, summary="One consent")
def get_one(consent_id: str, by: StateOrSecretariat, services: ServicesDep) -> ConsentPublic:
    return consent_public(services.application.get_consent_for(by, parse_id(consent_id, "consent")))


def _decide(
    command: Callable[..., SharingConsent],
    by: Principal,
    consent_id: str,
    key: IdempotencyKey | None,
) -> ConsentPublic:
    return consent_public(command(by, parse_id(consent_id, "consent"), idempotency=key))


@router.post("/{consent_id}/grant", response_model=ConsentPublic, summary="Grant (a party)")
def grant(
    consent_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> ConsentPublic:
    return _decide(services.application.grant_consent, by, consent_id, key)


@router.post("/{consent_id}/deny", response_model=ConsentPublic, summary="Deny (final)")
def deny(
    consent_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> ConsentPublic:
    return _decide(services.application.deny_consent, by, consent_id, key)


@router.post(
    "/{consent_id}/revoke", response_model=ConsentPublic, summary="Revoke; sharing stops at once"
)
def revoke(
    consent_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> ConsentPublic:
    return _decide(services.application.revoke_consent, by, consent_id, key)
