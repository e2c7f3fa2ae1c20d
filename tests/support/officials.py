"""State officials with keys, for tests of signed writes: onboarding binds their keys as the
Secretariat does, and their writes are signed as the State client signs them
(``domain.signed_requests.sign_request``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.application import PocDirectory
from domain.signed_requests import SignedRequest, sign_request
from domain.signing import SignerKind, SigningContext, signing
from domain.state_keys import EncryptionKey, SigningKey
from state_client.keys import EncryptionPrivateKey
from tests.support.builders import SECRETARIAT
from tests.support.http import Api

_keys = itertools.count(1)


@dataclass
class Official:
    state: str
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    encryption_key: EncryptionPrivateKey = field(default_factory=EncryptionPrivateKey.generate)

    @property
    def public_signing_key(self) -> SigningKey:
        return SigningKey.from_bytes(self.signing_key.public_key().public_bytes_raw())


def onboard(app: PocDirectory, code: str) -> Official:
    """Bind ``code``'s first keys, as the Secretariat (signed with the operator key)."""
    official = Official(code)
    encryption = EncryptionKey.from_bytes(official.encryption_key.public_key().to_bytes())
    with signing(SigningContext(SignerKind.SECRETARIAT)):
        app.bind_state_keys(SECRETARIAT, code, encryption, (official.public_signing_key,))
    return official


def sign(  # noqa: PLR0913
    official: Official,
    method: str,
    path: str,
    body: Any = None,
    *,
    created_at: datetime,
    if_match: str | None = None,
    idempotency_key: str | None = None,
    query: dict[str, str] | None = None,
    new_aggregate: UUID | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> SignedRequest:
    return sign_request(
        method=method,
        path=path,
        body=body,
        state=official.state,
        private_key=signer or official.signing_key,
        idempotency_key=idempotency_key or f"signed-{next(_keys)}",
        created_at=created_at,
        query=query,
        if_match=if_match,
        new_aggregate=new_aggregate,
    )


def signed_call(
    api: Api, official: Official, method: str, path: str, body: Any = None, **options: Any
) -> Any:
    """Send a write signed by ``official``, now by the application's clock."""
    request = sign(
        official, method, path, body, created_at=api.application.clock.now(), **options
    )
    return api.call(
        method,
        path,
        {**api.as_state(official.state), **request.headers},
        **({} if body is None else {"json": body}),
        params=options.get("query"),
    )
