"""A State's public keys (issue 15, item 1): everyone authenticated reads a State's signed key
history, which a client checks a key against before encrypting to it; the Secretariat binds
and re-onboards; the State rotates and revokes with a statement it signed (R12, R14)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.deps import AnyPrincipal, Idempotency, SecretariatPrincipal, ServicesDep, StatePrincipal
from api.schemas import Strict, public_json
from domain.members import check_member_state
from domain.state_keys import (
    MAX_SIGNING_KEYS,
    EncryptionKey,
    StateKeys,
    check_changes_own_keys,
    parse_signing_keys,
)
from domain.statement import SignedStatement
from domain.values import Principal

router = APIRouter(prefix="/keys/states", tags=["State keys"])

StateCode = Annotated[str, Path(max_length=3, description="ISO 3166-1 alpha-3 code")]


class KeysBind(Strict):
    encryption_key: str = Field(
        max_length=2048,
        description="the State team's HPKE public key (ML-KEM-768 then X25519, 1216 bytes), base64",
    )
    signing_keys: list[str] = Field(
        min_length=1,
        max_length=MAX_SIGNING_KEYS,
        description="one Ed25519 public key per official, 32 raw bytes in hex",
    )


class SignedStatementIn(Strict):
    statement: str = Field(max_length=16_384, description="the statement's canonical JSON")
    signature: str = Field(max_length=128, description="Ed25519 signature, hex")
    key: str = Field(max_length=71, description="the signing key's fingerprint")


class KeyPublic(BaseModel):
    public_key: str
    fingerprint: str


class KeySetPublic(BaseModel):
    version: int
    at: str
    event: str
    actor: str
    encryption_key: KeyPublic
    signing_keys: list[KeyPublic]
    signed_by: str | None
    statement: str | None
    signature: str | None


class StateKeysPublic(BaseModel):
    state: str
    id: str
    version: int
    current: KeySetPublic
    history: list[KeySetPublic]


def _keys_json(keys: StateKeys) -> Any:
    return public_json(
        {
            "state": keys.state,
            "id": keys.id,
            "version": keys.version,
            "current": keys.current.to_json(),
            "history": [k.to_json() for k in keys.history],
        }
    )


def _signed(by: Principal, state: str, body: SignedStatementIn) -> SignedStatement:
    """The statement, read only once the caller is known to act for ``state`` (R15)."""
    check_changes_own_keys(by, check_member_state(state))
    return SignedStatement.from_dict(body.model_dump())


@router.get("/{state}", response_model=StateKeysPublic, summary="A State's key history")
def get_keys(state: StateCode, _: AnyPrincipal, services: ServicesDep) -> Any:
    return _keys_json(services.application.get_state_keys(state))


@router.post(
    "/{state}", response_model=StateKeysPublic, status_code=201, summary="Bind a State's keys"
)
def bind(
    state: StateCode,
    body: KeysBind,
    by: SecretariatPrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> Any:
    keys = services.application.bind_state_keys(
        by,
        state,
        EncryptionKey.parse(body.encryption_key),
        parse_signing_keys(body.signing_keys),
        idempotency=key,
    )
    return _keys_json(keys)


@router.post("/{state}/reonboarding", response_model=StateKeysPublic, summary="Replace every key")
def reonboard(
    state: StateCode,
    body: KeysBind,
    by: SecretariatPrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> Any:
    keys = services.application.reonboard_state_keys(
        by,
        state,
        EncryptionKey.parse(body.encryption_key),
        parse_signing_keys(body.signing_keys),
        idempotency=key,
    )
    return _keys_json(keys)


@router.post("/{state}/rotation", response_model=StateKeysPublic, summary="Rotate keys, signed")
def rotate(
    state: StateCode,
    body: SignedStatementIn,
    by: StatePrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> Any:
    keys = services.application.rotate_state_keys(
        by, state, _signed(by, state, body), idempotency=key
    )
    return _keys_json(keys)


@router.post("/{state}/revocation", response_model=StateKeysPublic, summary="Revoke a key, signed")
def revoke(
    state: StateCode,
    body: SignedStatementIn,
    by: StatePrincipal,
    services: ServicesDep,
    key: Idempotency,
) -> Any:
    keys = services.application.revoke_state_key(
        by, state, _signed(by, state, body), idempotency=key
    )
    return _keys_json(keys)
