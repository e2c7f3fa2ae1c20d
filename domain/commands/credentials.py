"""The credentials area: the Secretariat issues, lists and revokes bearer credentials
(``domain.credential``), and every request is authenticated against the record."""

from __future__ import annotations

import hmac
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.commands.base import RecordService
from domain.credential import (
    NO_LABEL,
    TOKEN_PREFIX,
    Credential,
    credential_id,
    new_token,
    token_hash,
)
from domain.errors import NotAuthenticated, NotFound, NotPermitted
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
        label: str = NO_LABEL,
        idempotency: IdempotencyKey | None = None,
    ) -> tuple[Credential, str]:
        """Issue a credential; the token is returned once and only its hash is recorded.
        ``label`` names the office or function that holds it, never a person."""
        token = new_token()
        credential = Credential.issue(by, self.clock.now(), token, role, state, label)
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

    def credentials(self, by: Principal) -> list[Credential]:
        """Every credential ever issued, revoked or not, in the order issued: so that the
        Secretariat can find the one to revoke (``pocdir principals list``). Read from the
        record, as authentication is, through the library's topic filter over the stored
        events: no view holds credentials, and the Secretariat's console is their one reader."""
        if by.role is not Role.SECRETARIAT:
            raise NotPermitted("only the Secretariat lists credentials")
        topics = [get_topic(Credential.Issued)]
        found: list[Credential] = []
        start = 0
        while page := self.recorder.select_notifications(
            start, 1000, topics=topics, inclusive_of_start=False
        ):
            found += [
                self._get(Credential, UUID(str(record.originator_id)), "credential")
                for record in page
            ]
            start = page[-1].id
        return found

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
