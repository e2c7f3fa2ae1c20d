"""The credentials area: the Secretariat issues and revokes bearer credentials
(``domain.credential``), and every request is authenticated against the record."""

from __future__ import annotations

import hmac
from uuid import UUID

from domain.commands.base import RecordService
from domain.credential import TOKEN_PREFIX, Credential, credential_id, new_token, token_hash
from domain.errors import NotAuthenticated, NotFound
from domain.idempotency import IdempotencyKey
from domain.values import Principal, Role


class CredentialCommands(RecordService):
    """Commands on ``Credential``, and authentication."""

    def issue_credential(
        self,
        by: Principal,
        role: Role,
        state: str | None = None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> tuple[Credential, str]:
        """Issue a credential; the token is returned once and only its hash is recorded."""
        token = new_token()
        credential = Credential.issue(by, self.clock.now(), token, role, state)
        self._save(credential, idempotency=idempotency)
        return credential, token

    def revoke_credential(
        self, by: Principal, credential_id: UUID, *, idempotency: IdempotencyKey | None = None
    ) -> Credential:
        return self._change(
            lambda: self._get(Credential, credential_id, "credential"),
            lambda c, at: c.revoke(by, at),
            idempotency=idempotency,
        )

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token stands for; ``NotAuthenticated`` for an unknown,
        malformed or revoked token. Reads the record, so a revocation counts at once."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise NotAuthenticated("the bearer token is malformed")
        try:
            credential = self._get(Credential, credential_id(token), "credential")
        except NotFound:
            raise NotAuthenticated("the bearer token is not known") from None
        if not hmac.compare_digest(credential.token_hash, token_hash(token)):
            raise NotAuthenticated("the bearer token is not known")
        if credential.revoked:
            raise NotAuthenticated("the bearer token was revoked")
        return credential.principal
