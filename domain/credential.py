"""Credential: a bearer token the Secretariat issues to one principal (docs/domain.md roles).

Only a SHA-256 hash of the token is recorded, never the token: it is printed once when
issued. The credential's id is derived from that hash, so authenticating a token is one read
of one aggregate, and a revocation recorded by any process takes effect on the next request.
Tokens carry 256 random bits, so an unsalted hash is enough to make them unrecoverable.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from uuid import UUID, uuid5

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.members import check_member_state
from domain.values import Principal, Role

#: Namespace of credential ids, derived from the token's hash.
CREDENTIAL_NAMESPACE = UUID("2b0c7f55-8f4e-4c1f-9b7e-1d0b7f0c2a31")
#: Every token starts with this, so a leaked one is easy to recognise in a scan.
TOKEN_PREFIX = "pocdir_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def credential_id(token: str) -> UUID:
    """The id of the credential a token belongs to, if it was ever issued."""
    return uuid5(CREDENTIAL_NAMESPACE, token_hash(token))


class Credential(PocdirAggregate):
    class Issued(PocdirAggregate.Created):
        role: str
        state: str | None
        token_hash: str

    class Revoked(PocdirAggregate.Event):
        def apply(self, c: Credential) -> None:
            c.revoked = True

    def __init__(self, role: str, state: str | None, token_hash: str) -> None:
        self.role = Role(role)
        self.state = state
        self.token_hash = token_hash
        self.revoked = False

    @property
    def principal(self) -> Principal:
        """Who acts with this credential; its id is recorded on every event it causes."""
        return Principal(str(self.id), self.role, self.state)

    @classmethod
    def issue(
        cls, by: Principal, at: datetime, token: str, role: Role, state: str | None
    ) -> Credential:
        """Only the Secretariat onboards principals. A State credential names a member State."""
        check_is_secretariat(by)
        role = Role(role)
        if role is Role.STATE:
            if not state:
                raise ValidationError("a State credential names its State (ISO 3166-1 alpha-3)")
            state = check_member_state(state)
        elif state is not None:
            raise NotPermitted("only a State credential names a State")
        Principal("new", role, state)  # validates the role/state pairing
        return cls._create(
            cls.Issued,
            id=credential_id(token),
            role=str(role),
            state=state,
            token_hash=token_hash(token),
            actor=by.ref,
            timestamp=at,
        )

    def revoke(self, by: Principal, at: datetime) -> None:
        check_is_secretariat(by)
        if self.revoked:
            raise InvalidTransition("this credential is already revoked")
        self.trigger_event(self.Revoked, actor=by.ref, timestamp=at)


def check_is_secretariat(by: Principal) -> None:
    if by.role is not Role.SECRETARIAT:
        raise NotPermitted("only the Secretariat issues and revokes credentials")
