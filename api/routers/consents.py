"""Consents to share an exchange with a third State (R11). Parties see their consents; the
third State sees one only while it is effective; the Secretariat sees metadata. Once it is
effective, a party shares a sealed exchange's keys, wrapped to the third State (``/share``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from api.deps import Idempotency, QueriesDep, ServicesDep, StateOrSecretariat, StatePrincipal
from api.routers.common import parse_id
from api.schemas import ConsentCreate, ConsentPublic, ConsentShare
from domain.consent import SharingConsent
from domain.envelope import parse_wrapped_key
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


@router.post(
    "/{consent_id}/share",
    response_model=ConsentPublic,
    summary="Share a sealed exchange's keys, wrapped to the third State (a party)",
)
def share(
    consent_id: str, body: ConsentShare, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> ConsentPublic:
    """409 unless the consent is effective; 422 unless there is one wrapped key per response
    so far. The server cannot unwrap them; it serves them to the third State while the
    consent is effective."""
    wrapped = body.wrapped_keys
    content_key = parse_wrapped_key(wrapped.content, "wrapped_keys.content")
    response_keys = [
        parse_wrapped_key(k, f"wrapped_keys.responses[{i}]")
        for i, k in enumerate(wrapped.responses)
    ]
    consent = services.application.share_consented(
        by, parse_id(consent_id, "consent"), content_key, response_keys, idempotency=key
    )
    return consent_public(consent)
