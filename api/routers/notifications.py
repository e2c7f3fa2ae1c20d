"""Notifications between States (R7-R10). Content goes to the parties, and to a third State
through an effective consent (recorded as read, R11-R12). The Secretariat sees who, when and
status, never content. To any other State an exchange does not exist (404).

A sealed notification (docs/e2e.md) is served as its envelope, in base64, with its responses'
envelopes; the server cannot open them. A third State reading one through an effective
consent also gets the keys a party wrapped to it (``shared_keys``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    Idempotency,
    QueriesDep,
    SecretariatPrincipal,
    ServicesDep,
    StateOrSecretariat,
    StatePrincipal,
)
from api.routers.common import parse_id, text
from api.schemas import (
    NotificationCreate,
    NotificationMetaPublic,
    NotificationPublic,
    ResponseCreate,
)
from domain.consent import SharedKeys
from domain.envelope import decode_base64
from domain.errors import ValidationError
from domain.idempotency import IdempotencyKey
from domain.notification import Notification
from domain.values import Principal, Text, parse_uuid
from infra.wiring import Services

router = APIRouter(tags=["notifications"])


def meta(n: Notification) -> dict[str, Any]:
    return {
        "id": str(n.id),
        "sender": n.sender,
        "recipient": n.recipient,
        "incident_type": n.incident_type,
        "status": str(n.status),
        "sent_at": n.created_on,
        "acknowledged_at": n.acknowledged_at,
        "first_response_at": n.response_log[0][0] if n.response_log else None,
        "urgency": str(n.urgency),
        "acknowledge_by": n.acknowledge_by,
        "escalations": [
            {"at": at, "step": step, "contact_id": contact} for at, step, contact in n.escalations
        ],
        "escalation_exhausted": n.escalation_exhausted,
    }


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _response(at: Any, given: Text | bytes, assistance_requested: bool) -> dict[str, Any]:
    if isinstance(given, bytes):
        return {"at": at, "envelope": b64(given), "assistance_requested": assistance_requested}
    return {"at": at, "response": given.to_dict(), "assistance_requested": assistance_requested}


def content(n: Notification, shared: SharedKeys | None = None) -> NotificationPublic:
    """What a party (or a consented third State) reads: the content if plain, the envelope
    if sealed, with the keys ``shared`` with the third State if any."""
    info = n.supporting_information
    body: dict[str, Any] = {
        **meta(n),
        "description": n.description.to_dict() if n.description else None,
        "indicators": [i.to_dict() for i in info.indicators] if info else None,
        "supporting_text": info.text.to_dict() if info and info.text else None,
        "good_faith_attested": n.good_faith_attested,
        "statement": n.statement,
        "responses": [_response(*r) for r in n.response_log],
        "version": n.version,
        "envelope": b64(n.envelope) if n.envelope is not None else None,
        "shared_keys": None
        if shared is None
        else {"content": b64(shared.content), "responses": [b64(k) for k in shared.responses]},
    }
    return NotificationPublic.model_validate(body)


@router.post(
    "/notifications",
    response_model=NotificationPublic,
    status_code=201,
    summary="Notify another State of an incident (R7)",
)
def send(
    body: NotificationCreate, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NotificationPublic:
    if body.envelope is not None:
        return _send_sealed(body, body.envelope, by, services, key)
    if body.id is not None:
        raise ValidationError("id is given for a sealed notification only; leave it out")
    if body.description is None:
        raise ValidationError(
            "give description (and indicators or supporting_text), or envelope for a sealed "
            "notification"
        )
    notification = services.application.send_notification(
        by,
        body.recipient,
        body.incident_type,
        text(body.description, "description"),
        [i.model_dump() for i in body.indicators],
        text(body.supporting_text, "supporting_text") if body.supporting_text is not None else None,
        body.good_faith_attested,
        urgency=body.urgency,
        idempotency=key,
    )
    return content(notification)


def _send_sealed(
    body: NotificationCreate,
    envelope: str,
    by: Principal,
    services: Services,
    key: IdempotencyKey | None,
) -> NotificationPublic:
    """A sealed notification: its content is ``envelope`` only (base64, docs/e2e.md)."""
    if body.description is not None or body.indicators or body.supporting_text is not None:
        raise ValidationError(
            "a sealed notification has its content in envelope only: leave description, "
            "indicators and supporting_text out"
        )
    try:
        notification_id = None if body.id is None else parse_uuid(body.id)
    except ValueError:
        raise ValidationError("id must be the UUID the envelope was sealed for") from None
    notification = services.application.send_sealed_notification(
        by,
        body.recipient,
        body.incident_type,
        decode_base64(envelope, "envelope"),
        body.good_faith_attested,
        notification_id=notification_id,
        urgency=body.urgency,
        idempotency=key,
    )
    return content(notification)


@router.get(
    "/notifications/inbox",
    response_model=list[NotificationMetaPublic],
    summary="Notifications your State received",
)
async def inbox(by: StatePrincipal, queries: QueriesDep) -> list[dict[str, Any]]:
    return await run_in_threadpool(queries.inbox, by.state or "")


@router.get(
    "/notifications/outbox",
    response_model=list[NotificationMetaPublic],
    summary="Notifications your State sent",
)
async def outbox(by: StatePrincipal, queries: QueriesDep) -> list[dict[str, Any]]:
    return await run_in_threadpool(queries.outbox, by.state or "")


@router.get(
    "/exchanges",
    response_model=list[NotificationMetaPublic],
    summary="Metadata of every exchange (who, when, status), for the Secretariat",
)
def exchanges(_: SecretariatPrincipal, queries: QueriesDep) -> list[dict[str, Any]]:
    return queries.exchanges()


@router.get(
    "/notifications/{notification_id}",
    response_model=NotificationPublic | NotificationMetaPublic,
    summary="One notification: content for its parties and consented third States",
)
def get_one(
    notification_id: str, by: StateOrSecretariat, services: ServicesDep, queries: QueriesDep
) -> NotificationPublic | NotificationMetaPublic:
    nid = parse_id(notification_id)
    # A generator: the consents are looked up only if the caller is a State not party to it.
    consents = (UUID(c) for c in queries.consents_sharing(str(nid), by.state))
    notification, readable, shared = services.application.read_exchange(by, nid, consents)
    if readable:
        return content(notification, shared)
    return NotificationMetaPublic.model_validate(meta(notification))


def _command(
    command: Callable[..., Notification],
    by: Principal,
    raw_id: str,
    key: IdempotencyKey | None,
    *args: Any,
) -> NotificationPublic:
    return content(command(by, parse_id(raw_id), *args, idempotency=key))


@router.post(
    "/notifications/{notification_id}/acknowledgement",
    response_model=NotificationPublic,
    summary="Acknowledge receipt (R9: not concurrence)",
)
def acknowledge(
    notification_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NotificationPublic:
    return _command(services.application.acknowledge_notification, by, notification_id, key)


@router.post(
    "/notifications/{notification_id}/responses",
    response_model=NotificationPublic,
    summary="Respond (R10); may ask for assistance (R16)",
)
def respond(
    notification_id: str,
    body: ResponseCreate,
    by: StatePrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> NotificationPublic:
    if body.envelope is not None:
        if body.response is not None:
            raise ValidationError(
                "a sealed response is in envelope only: leave response out, or send it plain "
                "without envelope"
            )
        return _command(
            services.application.respond_sealed_to_notification,
            by,
            notification_id,
            key,
            decode_base64(body.envelope, "envelope"),
            body.assistance_requested,
        )
    if body.response is None:
        raise ValidationError("give response, or envelope for a sealed notification")
    return _command(
        services.application.respond_to_notification,
        by,
        notification_id,
        key,
        text(body.response, "response"),
        body.assistance_requested,
    )


@router.post(
    "/notifications/{notification_id}/closure",
    response_model=NotificationPublic,
    summary="Close (the sender)",
)
def close(
    notification_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NotificationPublic:
    return _command(services.application.close_notification, by, notification_id, key)


@router.post(
    "/notifications/{notification_id}/withdrawal",
    response_model=NotificationPublic,
    summary="Withdraw before acknowledgement (the sender)",
)
def withdraw(
    notification_id: str, by: StatePrincipal, services: ServicesDep, key: Idempotency
) -> NotificationPublic:
    return _command(services.application.withdraw_notification, by, notification_id, key)
