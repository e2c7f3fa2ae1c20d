"""Settings, read from ``POCDIR_*`` environment variables in this one place.

======================================  ==========================================================
``POCDIR_DATABASE_URL``                 ``sqlite:///relative/path.sqlite3``,
                                        ``sqlite:////abs/path`` or
                                        ``postgresql://user[:password]@host[:port]/db[?schema=x]``.
                                        Default: ``sqlite:///var/pocdir.sqlite3``.
``POCDIR_CIPHER_KEY``                   Optional. Base64 AES key (16, 24 or 32 bytes) to encrypt
                                        event state and view documents at rest with AES-GCM (R13).
                                        ``openssl rand -base64 32`` makes one. Keep it out of the
                                        repository. It must be the record's own
                                        (``infra.keycheck``).
``POCDIR_ORIGIN``                       Origin line of signed checkpoints and default signing key
                                        name: a schema-less URL naming this log, without spaces or
                                        ``+``. Default: ``pocdir.example/record``.
``POCDIR_SIGNING_KEY_FILE``             Optional. Path of the Ed25519 key that signs checkpoints
                                        (``pocdir keys generate PATH`` makes one). Never in the
                                        repo.
``POCDIR_OPERATOR_KEY_FILE``            Optional. Path of the Secretariat's Ed25519 operator key
                                        (``pocdir keys generate PATH`` makes one): it signs the
                                        Secretariat's events (onboarding, checks, credentials, key
                                        binding). Without it those events are unsigned and no
                                        State's keys can be bound. The server's own events and
                                        receipts are signed with ``POCDIR_SIGNING_KEY_FILE``.
``POCDIR_MAX_BODY_BYTES``               Largest request body the HTTP API reads; a larger one is
                                        answered 413 without being read. Default: 1048576 (1 MiB).
``POCDIR_IDEMPOTENCY_RETENTION_HOURS``  How long idempotency keys (and the first answer to each
                                        keyed request) are kept; at least 24. Default: 24.
``POCDIR_DB_CONNECT_TIMEOUT``           Seconds to open a PostgreSQL connection (whole seconds, at
                                        least 2, as libpq counts them). Default: ``5``.
``POCDIR_DB_POOL_TIMEOUT``              Seconds a request waits for a pooled connection, or for
                                        the Merkle tree's lock, before it is answered 503.
                                        Default: ``2``.
``POCDIR_DB_STATEMENT_TIMEOUT``         Seconds a statement may run, lock waits included
                                        (PostgreSQL's ``statement_timeout`` and ``lock_timeout``,
                                        SQLite's busy timeout); a server that does not answer at
                                        all is given 1 s more. Default: ``5``.
``POCDIR_READY_MAX_LAG_EVENTS``         Events the views may lag behind the record before
                                        ``/ready`` answers 503. Default: ``1000``.
``POCDIR_RUNNER_LEASE_SECONDS``        How long the projection runner's lease lasts unless renewed
                                        (SQLite's lease row; renewed every third of it). If the
                                        holder dies, another server takes over within this plus
                                        one poll interval. Default: ``5``.
``POCDIR_RUNNER_POLL_SECONDS``          How often the runner looks for new events (and a server
                                        not holding the lease tries to take it). Default:
                                        ``0.5``.
``POCDIR_READ_WAIT_SECONDS``            How long a request sent with ``Pocdir-Min-Position`` (and
                                        an entry write) waits for the views to reach that
                                        position before it is answered 503. Default: ``5``.
``POCDIR_WITNESS_POLICY_FILE``          Optional. The witnesses this server submits every new
                                        checkpoint to, in the witness policy grammar
                                        (``infra.witness_policy``; their URLs are used). Without
                                        it no checkpoint is submitted. Read when services start.
``POCDIR_WITNESS_TIMEOUT``              Seconds a witness has to answer one submission.
                                        Default: 10.
``POCDIR_TLS_CERT_FILE``                Optional. PEM certificate (chain) ``pocdir serve`` presents
                                        over TLS. With ``POCDIR_TLS_KEY_FILE``; without them the
                                        server speaks plain HTTP on loopback only (R14).
``POCDIR_TLS_KEY_FILE``                 Optional. PEM private key of that certificate.
``POCDIR_TLS_CLIENT_CA_FILE``           Optional. PEM certificate of the CA whose client
                                        certificates the server requires (mTLS), beside the
                                        token; ``pocdir ca init`` makes one. Needs the two above.
``POCDIR_TLS_CRL_FILE``                 The CA's certificate revocation list (PEM), checked for
                                        every client certificate. Required with
                                        ``POCDIR_TLS_CLIENT_CA_FILE``; reread when it changes.
``POCDIR_TLS_TERMINATED_BY_PROXY``      ``true`` if a proxy in front terminates TLS: plain HTTP is
                                        then served on any interface. Default: ``false``.
``POCDIR_TLS_PROXY_ADDRESSES``          With the above, required: comma-separated addresses (or
                                        networks) of that proxy, the only peers whose
                                        ``X-Forwarded-For``/``-Proto`` are believed.
======================================  ==========================================================

Each wait is bounded, none is retried once its bound has run out, and a request stops at the
first that does, so a request waits on the database at most ``Settings.db_wait_bound``
seconds: 2 x pool timeout + 2 x (statement timeout + 1).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE_URL = "sqlite:///var/pocdir.sqlite3"
DEFAULT_ORIGIN = "pocdir.example/record"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Keys must outlive a client's retries for a day at least (the issue's floor).
MIN_IDEMPOTENCY_RETENTION_HOURS = 24
DEFAULT_DB_CONNECT_TIMEOUT = 5.0
DEFAULT_DB_POOL_TIMEOUT = 2.0
DEFAULT_DB_STATEMENT_TIMEOUT = 5.0
DEFAULT_READY_MAX_LAG_EVENTS = 1000
DEFAULT_RUNNER_LEASE_SECONDS = 5.0
DEFAULT_RUNNER_POLL_SECONDS = 0.5
DEFAULT_READ_WAIT_SECONDS = 5.0
DEFAULT_WITNESS_TIMEOUT = 10.0
#: Seconds a statement's client waits beyond the statement timeout: the server cancels the
#: statement itself first; the client gives up only on a server that does not answer at all.
UNANSWERED_GRACE_SECONDS = 1.0


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what to fix."""


@dataclass(frozen=True)
class PostgresParams:
    dbname: str
    host: str
    port: int
    user: str
    password: str
    schema: str


#: A check's challenges are spread over this many hours unless set (``POCDIR_CHECK_WINDOW_HOURS``).
DEFAULT_CHECK_WINDOW_HOURS = 4
#: A week: a longer spread would outlast most checks' deadlines.
MAX_CHECK_WINDOW_HOURS = 168


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    cipher_key: str | None = None
    origin: str = DEFAULT_ORIGIN
    signing_key_file: Path | None = None
    operator_key_file: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    idempotency_retention_hours: int = MIN_IDEMPOTENCY_RETENTION_HOURS
    db_connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT
    db_pool_timeout: float = DEFAULT_DB_POOL_TIMEOUT
    db_statement_timeout: float = DEFAULT_DB_STATEMENT_TIMEOUT
    ready_max_lag_events: int = DEFAULT_READY_MAX_LAG_EVENTS
    runner_lease_seconds: float = DEFAULT_RUNNER_LEASE_SECONDS
    runner_poll_seconds: float = DEFAULT_RUNNER_POLL_SECONDS
    read_wait_seconds: float = DEFAULT_READ_WAIT_SECONDS
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    tls_crl_file: Path | None = None
    tls_terminated_by_proxy: bool = False
    tls_proxy_addresses: tuple[str, ...] = ()
    witness_policy_file: Path | None = None
    witness_timeout: float = DEFAULT_WITNESS_TIMEOUT
    #: Hours over which a communication check's challenges are spread (issue 17).
    check_window_hours: int = DEFAULT_CHECK_WINDOW_HOURS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls(
            database_url=env.get("POCDIR_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            cipher_key=env.get("POCDIR_CIPHER_KEY", "").strip() or None,
            origin=env.get("POCDIR_ORIGIN", "").strip() or DEFAULT_ORIGIN,
            signing_key_file=_path(env.get("POCDIR_SIGNING_KEY_FILE", "")),
            operator_key_file=_path(env.get("POCDIR_OPERATOR_KEY_FILE", "")),
            max_body_bytes=_int(env, "POCDIR_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            idempotency_retention_hours=_int(
                env, "POCDIR_IDEMPOTENCY_RETENTION_HOURS", MIN_IDEMPOTENCY_RETENTION_HOURS
            ),
            db_connect_timeout=_seconds(
                env, "POCDIR_DB_CONNECT_TIMEOUT", DEFAULT_DB_CONNECT_TIMEOUT
            ),
            db_pool_timeout=_seconds(env, "POCDIR_DB_POOL_TIMEOUT", DEFAULT_DB_POOL_TIMEOUT),
            db_statement_timeout=_seconds(
                env, "POCDIR_DB_STATEMENT_TIMEOUT", DEFAULT_DB_STATEMENT_TIMEOUT
            ),
            ready_max_lag_events=_int(
                env, "POCDIR_READY_MAX_LAG_EVENTS", DEFAULT_READY_MAX_LAG_EVENTS
            ),
            runner_lease_seconds=_seconds(
                env, "POCDIR_RUNNER_LEASE_SECONDS", DEFAULT_RUNNER_LEASE_SECONDS
            ),
            runner_poll_seconds=_seconds(
                env, "POCDIR_RUNNER_POLL_SECONDS", DEFAULT_RUNNER_POLL_SECONDS
            ),
            read_wait_seconds=_seconds(env, "POCDIR_READ_WAIT_SECONDS", DEFAULT_READ_WAIT_SECONDS),
            tls_cert_file=_path(env.get("POCDIR_TLS_CERT_FILE", "")),
            tls_key_file=_path(env.get("POCDIR_TLS_KEY_FILE", "")),
            tls_client_ca_file=_path(env.get("POCDIR_TLS_CLIENT_CA_FILE", "")),
            tls_crl_file=_path(env.get("POCDIR_TLS_CRL_FILE", "")),
            tls_terminated_by_proxy=_bool(env, "POCDIR_TLS_TERMINATED_BY_PROXY"),
            witness_policy_file=_path(env.get("POCDIR_WITNESS_POLICY_FILE", "")),
            witness_timeout=_seconds(env, "POCDIR_WITNESS_TIMEOUT", DEFAULT_WITNESS_TIMEOUT),
            check_window_hours=_int(env, "POCDIR_CHECK_WINDOW_HOURS", DEFAULT_CHECK_WINDOW_HOURS),
            tls_proxy_addresses=tuple(
                a.strip() for a in env.get("POCDIR_TLS_PROXY_ADDRESSES", "").split(",") if a.strip()
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail early, naming the variable, rather than on first use."""
        if self.backend == "sqlite":
            self.sqlite_path  # noqa: B018 - parses
        else:
            self.postgres  # noqa: B018 - parses
        if self.cipher_key is not None:
            try:
                key = base64.b64decode(self.cipher_key, validate=True)
            except binascii.Error:
                raise SettingsError("POCDIR_CIPHER_KEY is not valid base64") from None
            if len(key) not in (16, 24, 32):
                raise SettingsError("POCDIR_CIPHER_KEY must decode to 16, 24 or 32 bytes")
        if any(c.isspace() or c == "+" or ord(c) < 0x20 for c in self.origin):
            raise SettingsError("POCDIR_ORIGIN must not contain spaces or '+'")
        if not 1024 <= self.max_body_bytes <= 2**31:
            raise SettingsError("POCDIR_MAX_BODY_BYTES must be between 1024 and 2147483648")
        if not MIN_IDEMPOTENCY_RETENTION_HOURS <= self.idempotency_retention_hours <= 24 * 366:
            raise SettingsError(
                "POCDIR_IDEMPOTENCY_RETENTION_HOURS must be between 24 and 8784 (a year)"
            )
        if not 0 <= self.check_window_hours <= MAX_CHECK_WINDOW_HOURS:
            raise SettingsError(
                f"POCDIR_CHECK_WINDOW_HOURS must be between 0 and {MAX_CHECK_WINDOW_HOURS} hours"
            )
        if self.ready_max_lag_events < 0:
            raise SettingsError("POCDIR_READY_MAX_LAG_EVENTS must be 0 or more events")
        for name, value in (
            ("POCDIR_DB_CONNECT_TIMEOUT", self.db_connect_timeout),
            ("POCDIR_DB_POOL_TIMEOUT", self.db_pool_timeout),
            ("POCDIR_DB_STATEMENT_TIMEOUT", self.db_statement_timeout),
            ("POCDIR_RUNNER_LEASE_SECONDS", self.runner_lease_seconds),
            ("POCDIR_RUNNER_POLL_SECONDS", self.runner_poll_seconds),
            ("POCDIR_READ_WAIT_SECONDS", self.read_wait_seconds),
            ("POCDIR_WITNESS_TIMEOUT", self.witness_timeout),
        ):
            if not (0 < value <= MAX_TIMEOUT_SECONDS):
                limit = f"{MAX_TIMEOUT_SECONDS:g}"
                raise SettingsError(f"{name} must be seconds in (0, {limit}], not {value:g}")
        if self.runner_lease_seconds < 1:
            raise SettingsError(
                "POCDIR_RUNNER_LEASE_SECONDS must be at least 1 s: a shorter lease expires "
                "while its holder waits on an ordinary statement"
            )
        self._validate_tls()

    def _validate_tls(self) -> None:
        """The TLS settings make sense together; the files are read when the server starts."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("set both POCDIR_TLS_CERT_FILE and POCDIR_TLS_KEY_FILE, or neither")
        if self.tls_client_ca_file is not None:
            if self.tls_cert_file is None:
                raise SettingsError(
                    "POCDIR_TLS_CLIENT_CA_FILE needs POCDIR_TLS_CERT_FILE and POCDIR_TLS_KEY_FILE: "
                    "client certificates are checked by this server's own TLS"
                )
            if self.tls_crl_file is None:
                raise SettingsError(
                    "POCDIR_TLS_CLIENT_CA_FILE needs POCDIR_TLS_CRL_FILE (the CA's crl.pem): "
                    "revoked client certificates must be refused"
                )
        elif self.tls_crl_file is not None:
            raise SettingsError("POCDIR_TLS_CRL_FILE is used only with POCDIR_TLS_CLIENT_CA_FILE")
        if self.tls_terminated_by_proxy and not self.tls_proxy_addresses:
            raise SettingsError(
                "POCDIR_TLS_TERMINATED_BY_PROXY=true needs POCDIR_TLS_PROXY_ADDRESSES: the "
                "addresses of the proxy whose X-Forwarded-* headers are believed"
            )
        for address in self.tls_proxy_addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise SettingsError(
                    f"POCDIR_TLS_PROXY_ADDRESSES: {address[:40]!r} is not an IP address or network"
                ) from None

    @property
    def tls(self) -> bool:
        """Whether ``pocdir serve`` speaks TLS itself."""
        return self.tls_cert_file is not None

    @property
    def db_wait_bound(self) -> float:
        """The longest a request waits on the database, in seconds: one wait for the Merkle
        tree's lock and one for a pooled connection (each the pool timeout), and at most two
        statements that each run out (the check of a pooled connection, then the statement),
        each given the statement timeout and the grace for a server that does not answer."""
        statement = self.db_statement_timeout + UNANSWERED_GRACE_SECONDS
        return 2 * self.db_pool_timeout + 2 * statement

    @property
    def backend(self) -> str:
        scheme = self.database_url.split(":", 1)[0].lower()
        if scheme == "sqlite":
            return "sqlite"
        if scheme in ("postgresql", "postgres"):
            return "postgresql"
        raise SettingsError(
            f"POCDIR_DATABASE_URL must start with sqlite:/// or postgresql://, not {scheme[:20]!r}"
        )

    @property
    def sqlite_path(self) -> str:
        """The SQLite database named by the URL. Reading it creates nothing: a writer makes
        the file's directory when it opens the record (``infra.wiring``), a reader never."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix) or self.database_url == prefix:
            raise SettingsError(
                "POCDIR_DATABASE_URL for SQLite is sqlite:///relative/path or sqlite:////abs/path"
            )
        return self.database_url[len(prefix) :]

    @property
    def postgres(self) -> PostgresParams:
        parts = urlsplit(self.database_url)
        dbname = parts.path.lstrip("/")
        if not parts.hostname or not dbname:
            raise SettingsError(
                "POCDIR_DATABASE_URL for PostgreSQL is postgresql://user@host:port/db"
            )
        try:
            port = parts.port or 5432
        except ValueError:
            raise SettingsError("POCDIR_DATABASE_URL has an invalid port") from None
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        return PostgresParams(
            dbname=unquote(dbname),
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            schema=schema,
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole-number setting, in ASCII digits only (``int`` would take ``"²"`` or ``"١"``)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise SettingsError(f"{name} must be a whole number, not {raw[:20]!r}")
    return int(raw)


#: A day: a longer timeout would be a typo for "no timeout", which is what is being fixed.
MAX_TIMEOUT_SECONDS = 86_400.0


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds; the range (which also refuses nan and inf) is checked by
    ``validate``."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {value[:20]!r}") from None
    return seconds


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise SettingsError(f"{name} must be true or false, not {raw[:20]!r}")


def _path(value: str) -> Path | None:
    value = value.strip()
    return Path(value).expanduser() if value else None
