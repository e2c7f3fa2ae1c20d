"""An official's key store: the directory on their own machine that holds what never reaches
the server (issue 15, item 5).

Layout of the directory (``~/.config/pocdir-state`` by default, ``POCDIR_STATE_HOME`` or
``--home`` to choose another), every file mode 0600 and the directory 0700:

* ``signing-key.pem``: the official's Ed25519 signing key, passphrase-protected PKCS#8 PEM
  (``BestAvailableEncryption``; ``-----BEGIN ENCRYPTED PRIVATE KEY-----``);
* ``encryption-key.pem``: the State team's encryption key (``EncryptionPrivateKey.to_pem``,
  two encrypted PKCS#8 blocks under the same passphrase);
* ``signing-key.pub.pem`` and ``encryption-key.pub``: the public halves, in the forms
  ``pocdir keys bind`` takes (a PEM ``PUBLIC KEY``; base64 of the 1216 bytes), to hand to the
  Secretariat;
* ``config.json``: the server's URL, the State, the CA file and the optional client
  certificate and key for mTLS;
* ``token``: the bearer token the Secretariat issued (``pocdir-state login`` reads it from
  standard input, never from the command line where ``ps`` and shell history would see it);
* ``trust.json``: the key fingerprints the official confirmed out of band for other States,
  and the last key history version seen for each (:mod:`state_client.trust`).

The passphrase comes from ``POCDIR_STATE_PASSPHRASE`` or a prompt (the CLI's); this module
takes it as bytes and never stores it.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.errors import ValidationError
from domain.members import check_member_state
from domain.statement import key_fingerprint
from state_client.keys import EncryptionPrivateKey, EncryptionPublicKey, KeyFormatError

__all__ = [
    "DEFAULT_HOME",
    "HOME_ENV",
    "PASSPHRASE_ENV",
    "TOKEN_ENV",
    "ClientConfig",
    "KeyStore",
    "StoreError",
]

HOME_ENV: Final = "POCDIR_STATE_HOME"
PASSPHRASE_ENV: Final = "POCDIR_STATE_PASSPHRASE"
TOKEN_ENV: Final = "POCDIR_STATE_TOKEN"
DEFAULT_HOME: Final = Path("~/.config/pocdir-state")

_SIGNING: Final = "signing-key.pem"
_SIGNING_PUBLIC: Final = "signing-key.pub.pem"
_ENCRYPTION: Final = "encryption-key.pem"
_ENCRYPTION_PUBLIC: Final = "encryption-key.pub"
_CONFIG: Final = "config.json"
_TOKEN: Final = "token"
_TRUST: Final = "trust.json"
#: A key, config or token file is small; anything larger is not one of ours.
_MAX_FILE: Final = 1 << 20


class StoreError(ValidationError):
    """The key store is missing a file, holds a damaged one, or the passphrase is wrong."""


@dataclass(frozen=True)
class ClientConfig:
    """Where the client talks to, and as which State."""

    server: str
    state: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    #: The server's verifier key (``pocdir keys public``), to check receipts against.
    server_key: str | None = None

    def __post_init__(self) -> None:
        check_member_state(self.state)
        if (self.client_cert is None) != (self.client_key is None):
            raise StoreError("give both a client certificate and its key (mTLS), or neither")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientConfig:
        try:
            return cls(
                server=str(data["server"]),
                state=str(data["state"]),
                ca_file=data.get("ca_file"),
                client_cert=data.get("client_cert"),
                client_key=data.get("client_key"),
                server_key=data.get("server_key"),
            )
        except (KeyError, TypeError):
            raise StoreError(
                f"{_CONFIG} needs at least 'server' and 'state'; run `pocdir-state config`"
            ) from None


@dataclass(frozen=True)
class KeyStore:
    """One official's key store directory."""

    home: Path

    @classmethod
    def at(cls, home: str | Path | None = None, env: Mapping[str, str] | None = None) -> KeyStore:
        """``home``, else ``POCDIR_STATE_HOME``, else ``~/.config/pocdir-state``."""
        environ = os.environ if env is None else env
        chosen = home if home is not None else environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(chosen).expanduser())

    # -- files ------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.home / name

    def _ensure_home(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _write(self, name: str, data: bytes, *, new: bool = False) -> Path:
        """Write a file mode 0600 (created so; never world-readable for a moment), replacing
        it atomically unless ``new`` (then an existing file is refused)."""
        self._ensure_home()
        path = self._path(name)
        if new and path.exists():
            raise StoreError(f"{path} exists already; move it aside first, keys are not replaced")
        temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
        return path

    def _read(self, name: str, missing: str) -> bytes:
        path = self._path(name)
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_FILE + 1)
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist: {missing}") from None
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror}") from None
        if len(data) > _MAX_FILE:
            raise StoreError(f"{path} is larger than any file of a key store")
        return data

    # -- keys -------------------------------------------------------------------------------

    def has_keys(self) -> bool:
        return self._path(_SIGNING).exists() or self._path(_ENCRYPTION).exists()

    def generate(
        self, passphrase: bytes, encryption_key: EncryptionPrivateKey | None = None
    ) -> tuple[Ed25519PrivateKey, EncryptionPrivateKey]:
        """Make a new signing key and (unless the team's is given) a new encryption key,
        write them under ``passphrase``, and write their public halves. Existing keys are
        never overwritten."""
        if not passphrase:
            raise StoreError("a key store needs a passphrase; give a non-empty one")
        if self.has_keys():
            raise StoreError(f"{self.home} holds keys already; keys are never replaced here")
        signing = Ed25519PrivateKey.generate()
        encryption = encryption_key or EncryptionPrivateKey.generate()
        self._write(
            _SIGNING,
            signing.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(passphrase),
            ),
            new=True,
        )
        self._write(_ENCRYPTION, encryption.to_pem(passphrase), new=True)
        self._write(
            _SIGNING_PUBLIC,
            signing.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        self._write(
            _ENCRYPTION_PUBLIC,
            base64.b64encode(encryption.public_key().to_bytes()) + b"\n",
        )
        return signing, encryption

    def signing_key(self, passphrase: bytes) -> Ed25519PrivateKey:
        data = self._read(_SIGNING, "run `pocdir-state keys generate` first")
        try:
            key = serialization.load_pem_private_key(data, passphrase or None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise StoreError(
                f"{self._path(_SIGNING)} cannot be read: wrong passphrase or damaged file"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError(f"{self._path(_SIGNING)} holds no Ed25519 key")
        return key

    def encryption_key(self, passphrase: bytes) -> EncryptionPrivateKey:
        data = self._read(_ENCRYPTION, "run `pocdir-state keys generate` first")
        try:
            return EncryptionPrivateKey.from_pem(data, passphrase)
        except KeyFormatError as e:
            raise StoreError(f"{self._path(_ENCRYPTION)}: {e}") from None

    def public_files(self) -> tuple[Path, Path]:
        """The signing key's PEM and the encryption key's base64 file, for ``pocdir keys
        bind --signing-key FILE --encryption-key FILE``."""
        return self._path(_SIGNING_PUBLIC), self._path(_ENCRYPTION_PUBLIC)

    def public_keys(self) -> dict[str, str]:
        """The public keys and their fingerprints, read from the public files (no
        passphrase needed: this is what the official hands over and confirms)."""
        signing_pem = self._read(_SIGNING_PUBLIC, "run `pocdir-state keys generate` first")
        encryption_b64 = self._read(_ENCRYPTION_PUBLIC, "run `pocdir-state keys generate` first")
        try:
            signing = serialization.load_pem_public_key(signing_pem)
            encryption = EncryptionPublicKey.from_bytes(
                base64.b64decode(encryption_b64.strip(), validate=True)
            )
        except (ValueError, UnsupportedAlgorithm) as e:
            raise StoreError(f"a public key file in {self.home} is damaged: {e}") from None
        if not isinstance(signing, Ed25519PublicKey):
            raise StoreError(f"{self._path(_SIGNING_PUBLIC)} holds no Ed25519 key")
        return {
            "signing_key": signing.public_bytes_raw().hex(),
            "signing_fingerprint": key_fingerprint(signing),
            "signing_key_pem": signing_pem.decode("ascii"),
            "encryption_key": encryption_b64.decode("ascii").strip(),
            "encryption_fingerprint": encryption.fingerprint(),
        }

    # -- config, token, trust -----------------------------------------------------------------

    def save_config(self, config: ClientConfig) -> Path:
        return self._write(_CONFIG, json.dumps(asdict(config), indent=2).encode() + b"\n")

    def config(self) -> ClientConfig:
        raw = self._read(_CONFIG, "run `pocdir-state config --server URL --state CODE` first")
        return ClientConfig.from_dict(self._json(raw, _CONFIG))

    def save_token(self, token: str) -> Path:
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise StoreError("a token is one word, as `pocdir principals add` printed it")
        return self._write(_TOKEN, token.encode("utf-8") + b"\n")

    def token(self, env: Mapping[str, str] | None = None) -> str:
        """``POCDIR_STATE_TOKEN`` if set, else the stored token."""
        environ = os.environ if env is None else env
        if environ.get(TOKEN_ENV):
            return environ[TOKEN_ENV].strip()
        raw = self._read(_TOKEN, f"run `pocdir-state login` (or set {TOKEN_ENV})")
        return raw.decode("utf-8", "replace").strip()

    def trust_data(self) -> dict[str, Any]:
        if not self._path(_TRUST).exists():
            return {}
        data = self._json(self._read(_TRUST, ""), _TRUST)
        if not isinstance(data, dict):
            raise StoreError(f"{self._path(_TRUST)} is damaged: not a JSON object")
        return data

    def save_trust(self, data: Mapping[str, Any]) -> Path:
        return self._write(_TRUST, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    def _json(self, raw: bytes, name: str) -> Any:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StoreError(f"{self._path(name)} is damaged: not JSON") from None
