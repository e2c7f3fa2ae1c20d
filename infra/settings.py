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
``POCDIR_DELIVERY_KEY_FILE``            Optional. The server's Ed25519 delivery key (``pocdir keys
                                        generate PATH`` makes one): ``pocdir delivery enable``
                                        publishes its public key in the record; it signs webhook
                                        requests (RFC 9421) and a check's challenge codes derive
                                        from it. Without it no alert is sent. Never in the repo.
``POCDIR_SMTP_HOST``                    Optional. The mail server alerts are handed to. Without it
                                        alerts are written to ``POCDIR_OUTBOX_DIR`` as files.
``POCDIR_SMTP_PORT``                    Its port. Default: ``587`` (submission).
``POCDIR_SMTP_SENDER``                  The alerts' From address; its domain names every
                                        Message-ID. Default: ``pocdir@`` and the host of
                                        ``POCDIR_ORIGIN``.
``POCDIR_SMTP_USERNAME``                Optional. SMTP AUTH user; only over STARTTLS.
``POCDIR_SMTP_PASSWORD_FILE``           Optional. A file holding that user's password (kept out of
                                        the environment and the logs).
``POCDIR_SMTP_STARTTLS``                ``true`` to require STARTTLS (the certificate checked
                                        against the system CAs or ``POCDIR_SMTP_CA_FILE``).
                                        ``false`` only for a mail server on loopback.
                                        Default: ``true``.
``POCDIR_SMTP_CA_FILE``                 Optional. PEM CA certificate(s) the mail server's
                                        certificate must chain to, instead of the system CAs.
``POCDIR_OUTBOX_DIR``                   Where alerts are written, one ``.eml`` per message, when no
                                        ``POCDIR_SMTP_HOST`` is set. Default: ``var/outbox``.
``POCDIR_DELIVERY_POLL_SECONDS``        How often the delivery worker looks for due alerts.
                                        Default: ``1``.
``POCDIR_DELIVERY_RETRY_SECONDS``       The first retry's delay after a deferral; each next one
                                        doubles, up to an hour. Default: ``60``.
``POCDIR_DELIVERY_MAX_ATTEMPTS``        Attempts before an alert is given up. Default: ``8``.
``POCDIR_DELIVERY_FAULT``               Tests only: ``sent``, ``recorded`` or ``escalated`` makes
                                        the worker exit at that point (``infra.delivery``).
``POCDIR_WEBHOOK_ALLOW_PRIVATE``        Tests only: ``true`` lets webhooks reach loopback and
                                        private addresses (a State's URL and each delivery).
                                        Default: ``false``: public addresses only.
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
``POCDIR_ACK_DEADLINES``                How long a recipient has to acknowledge a notification,
                                        per urgency, before it escalates: ``urgency=duration``
                                        pairs, comma-separated, each duration a whole number of
                                        ``m``, ``h`` or ``d`` (1 minute to a year). Urgencies not
                                        given keep their default. Written into each notification
                                        when sent. Default: ``urgent=2h,high=12h,normal=72h``.
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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from domain.notification import DEFAULT_ACKNOWLEDGEMENT_DEADLINES, Urgency

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
DEFAULT_SMTP_PORT = 587
DEFAULT_OUTBOX_DIR = "var/outbox"
DEFAULT_DELIVERY_POLL_SECONDS = 1.0
DEFAULT_DELIVERY_RETRY_SECONDS = 60.0
DEFAULT_DELIVERY_MAX_ATTEMPTS = 8
#: ``infra.delivery.FAULT_POINTS``, repeated here so settings import nothing of the worker.
_FAULT_POINTS = ("sent", "recorded", "escalated")
_SENDER_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
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
    delivery_key_file: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = DEFAULT_SMTP_PORT
    smtp_sender: str | None = None
    smtp_username: str | None = None
    smtp_password_file: Path | None = None
    smtp_starttls: bool = True
    smtp_ca_file: Path | None = None
    outbox_dir: Path = Path(DEFAULT_OUTBOX_DIR)
    delivery_poll_seconds: float = DEFAULT_DELIVERY_POLL_SECONDS
    delivery_retry_seconds: float = DEFAULT_DELIVERY_RETRY_SECONDS
    delivery_max_attempts: int = DEFAULT_DELIVERY_MAX_ATTEMPTS
    delivery_fault: str | None = None
    ack_deadlines: Mapping[Urgency, timedelta] = field(
        default_factory=lambda: dict(DEFAULT_ACKNOWLEDGEMENT_DEADLINES)
    )
    #: Tests only: webhooks may reach loopback and private addresses.
    webhook_allow_private: bool = False
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
            delivery_key_file=_path(env.get("POCDIR_DELIVERY_KEY_FILE", "")),
            smtp_host=env.get("POCDIR_SMTP_HOST", "").strip() or None,
            smtp_port=_int(env, "POCDIR_SMTP_PORT", DEFAULT_SMTP_PORT),
            smtp_sender=env.get("POCDIR_SMTP_SENDER", "").strip() or None,
            smtp_username=env.get("POCDIR_SMTP_USERNAME", "").strip() or None,
            smtp_password_file=_path(env.get("POCDIR_SMTP_PASSWORD_FILE", "")),
            smtp_starttls=_bool(env, "POCDIR_SMTP_STARTTLS", default=True),
            smtp_ca_file=_path(env.get("POCDIR_SMTP_CA_FILE", "")),
            outbox_dir=_path(env.get("POCDIR_OUTBOX_DIR", "")) or Path(DEFAULT_OUTBOX_DIR),
            delivery_poll_seconds=_seconds(
                env, "POCDIR_DELIVERY_POLL_SECONDS", DEFAULT_DELIVERY_POLL_SECONDS
            ),
            delivery_retry_seconds=_seconds(
                env, "POCDIR_DELIVERY_RETRY_SECONDS", DEFAULT_DELIVERY_RETRY_SECONDS
            ),
            delivery_max_attempts=_int(
                env, "POCDIR_DELIVERY_MAX_ATTEMPTS", DEFAULT_DELIVERY_MAX_ATTEMPTS
            ),
            delivery_fault=env.get("POCDIR_DELIVERY_FAULT", "").strip() or None,
            ack_deadlines=parse_ack_deadlines(env.get("POCDIR_ACK_DEADLINES", "")),
            webhook_allow_private=_bool(env, "POCDIR_WEBHOOK_ALLOW_PRIVATE"),
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
            ("POCDIR_DELIVERY_POLL_SECONDS", self.delivery_poll_seconds),
            ("POCDIR_DELIVERY_RETRY_SECONDS", self.delivery_retry_seconds),
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
        self._validate_delivery()

    def _validate_delivery(self) -> None:
        if not 1 <= self.smtp_port <= 65535:
            raise SettingsError("POCDIR_SMTP_PORT must be a port number (1-65535)")
        if not 1 <= self.delivery_max_attempts <= 100:
            raise SettingsError("POCDIR_DELIVERY_MAX_ATTEMPTS must be between 1 and 100")
        if self.smtp_sender is not None and not _SENDER_RE.match(self.smtp_sender):
            raise SettingsError(
                "POCDIR_SMTP_SENDER must be an e-mail address such as pocdir@example.org"
            )
        if self.smtp_username is not None and self.smtp_password_file is None:
            raise SettingsError("POCDIR_SMTP_USERNAME needs POCDIR_SMTP_PASSWORD_FILE")
        if self.smtp_username is not None and not self.smtp_starttls:
            raise SettingsError(
                "POCDIR_SMTP_USERNAME needs POCDIR_SMTP_STARTTLS=true: a password is never sent "
                "in the clear"
            )
        if self.delivery_fault is not None and self.delivery_fault not in _FAULT_POINTS:
            raise SettingsError(
                f"POCDIR_DELIVERY_FAULT must be one of {', '.join(_FAULT_POINTS)} (tests only)"
            )

    @property
    def sender(self) -> str:
        """The alerts' From address (``POCDIR_SMTP_SENDER``, else derived from the origin)."""
        if self.smtp_sender is not None:
            return self.smtp_sender
        host = self.origin.split("/", 1)[0].split(":", 1)[0] or "localhost"
        return f"pocdir@{host}"

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


_DURATION = re.compile(r"^(\d{1,6})([mhd])$", re.ASCII)
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_ack_deadlines(raw: str) -> dict[Urgency, timedelta]:
    """``POCDIR_ACK_DEADLINES`` (the table above): the defaults, overridden by each
    ``urgency=duration`` given."""
    name = "POCDIR_ACK_DEADLINES"
    deadlines = dict(DEFAULT_ACKNOWLEDGEMENT_DEADLINES)
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep:
            raise SettingsError(f"{name}: give urgency=duration pairs, not {part[:30]!r}")
        try:
            urgency = Urgency(key)
        except ValueError:
            allowed = ", ".join(u.value for u in Urgency)
            raise SettingsError(f"{name}: {key[:20]!r} is not an urgency ({allowed})") from None
        match = _DURATION.match(value)
        if match is None:
            raise SettingsError(
                f"{name}: {urgency} takes a duration like 90m, 2h or 3d, not {value[:20]!r}"
            )
        duration = int(match[1]) * _UNIT[match[2]]
        if not timedelta(minutes=1) <= duration <= timedelta(days=366):
            raise SettingsError(f"{name}: {urgency} must be between 1 minute and a year")
        deadlines[urgency] = duration
    return deadlines


def _bool(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise SettingsError(f"{name} must be true or false, not {raw[:20]!r}")


def _path(value: str) -> Path | None:
    value = value.strip()
    return Path(value).expanduser() if value else None
