"""State officials for the client's tests: a key store each, keys bound by the Secretariat,
and a :class:`~state_client.client.StateClient` (in-process over a ``TestClient``, or over a
real server's URL)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from api.cli.console import CONSOLE
from domain.application import PocDirectory
from domain.signing import SignerKind, SigningContext, signing
from domain.state_keys import EncryptionKey, SigningKey
from state_client.client import StateClient
from state_client.keys import EncryptionPrivateKey
from state_client.store import ClientConfig, KeyStore
from state_client.trust import TrustStore

PASSPHRASE = b"correct horse battery staple"


@dataclass
class Official:
    """One official of ``state``: their key store and keys."""

    state: str
    store: KeyStore
    signing: Ed25519PrivateKey
    encryption: EncryptionPrivateKey

    @property
    def encryption_fingerprint(self) -> str:
        return self.encryption.public_key().fingerprint()

    def bind(self, application: PocDirectory) -> None:
        """The Secretariat onboards the State with this official's public key files."""
        public = self.store.public_keys()
        with signing(SigningContext(SignerKind.SECRETARIAT)):
            application.bind_state_keys(
                CONSOLE,
                self.state,
                EncryptionKey.parse(public["encryption_key"]),
                (SigningKey.parse(public["signing_key"]),),
            )

    def pin(self, other: Official | str, fingerprint: str | None = None) -> None:
        """Pin ``other``'s fingerprint as confirmed out of band."""
        if isinstance(other, Official):
            TrustStore(self.store).add(other.state, other.encryption_fingerprint)
        else:
            assert fingerprint is not None
            TrustStore(self.store).add(other, fingerprint)

    def client(
        self,
        token: str,
        *,
        http: httpx.Client | None = None,
        config: ClientConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        server_key: Ed25519PublicKey | None = None,
    ) -> StateClient:
        """In-process over ``http`` (a ``TestClient``), or over ``config``'s server."""
        if config is not None:
            return StateClient.from_config(
                config,
                token=token,
                signing_key=self.signing,
                encryption_key=self.encryption,
                trust=TrustStore(self.store),
            )
        return StateClient(
            server="http://testserver",
            state=self.state,
            token=token,
            signing_key=self.signing,
            encryption_key=self.encryption,
            trust=TrustStore(self.store),
            http=http,
            clock=clock,
            server_key=server_key,
        )


def official(tmp_path: Path, state: str) -> Official:
    """A fresh key store for an official of ``state`` under ``tmp_path``."""
    store = KeyStore(tmp_path / f"home-{state}")
    signing, encryption = store.generate(PASSPHRASE)
    return Official(state, store, signing, encryption)


def public_key_b64(key: EncryptionPrivateKey) -> str:
    return base64.b64encode(key.public_key().to_bytes()).decode("ascii")
