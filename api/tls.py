"""TLS for ``pocdir serve`` (R14): the server's SSL context, and the client certificate's
subject handed to the app.

uvicorn builds the context from ``ssl_certfile``/``ssl_keyfile``/``ssl_ca_certs``/
``ssl_cert_reqs``; its ``ssl_context_factory`` hook lets us add what those cannot say: the
CA's revocation list and ``VERIFY_CRL_CHECK_LEAF``, so a revoked (or expired) client
certificate fails the handshake itself; and it keeps the context, so that a new CRL file is
loaded into it while the server runs (``CrlWatcher``).

uvicorn does not pass the peer certificate to the app (no ASGI ``tls`` extension), so
``ClientCertH11Protocol`` is its HTTP/1.1 protocol with one addition: on a TLS connection it
reads the verified peer certificate once and puts its subject's common name in each request's
``scope["extensions"]["tls"]["client_cert_name"]`` (the ASGI TLS extension's key), where the
request gate binds it to the token's principal (``domain.channel``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from infra.settings import Settings, SettingsError

log = logging.getLogger("pocdir.serve")
#: How often the server looks for a new CRL file.
CRL_RELOAD_SECONDS = 2.0


def uvicorn_tls_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` options for the TLS settings (none: plain HTTP)."""
    if not settings.tls:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
    }
    if settings.tls_client_ca_file is not None:
        crl = settings.tls_crl_file
        options |= {
            "ssl_ca_certs": str(settings.tls_client_ca_file),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_context_factory": _with_crl(crl) if crl is not None else None,
            "http": ClientCertH11Protocol,
        }
    return options


def _with_crl(
    crl_file: Path,
) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        add_crl(context, crl_file)
        CrlWatcher(context, crl_file).start()
        return context

    return factory


def add_crl(context: ssl.SSLContext, crl_file: Path) -> None:
    """Check every client certificate against the CA's CRL (an expired CRL fails closed)."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(crl_file))
    except (OSError, ssl.SSLError) as e:
        raise SettingsError(f"POCDIR_TLS_CRL_FILE {crl_file}: cannot load the CRL ({e})") from e
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


class CrlWatcher(threading.Thread):
    """Loads the CRL file into the live context again whenever it changes, so a revocation
    (``pocdir ca revoke`` rewrites the file) refuses new connections within
    ``CRL_RELOAD_SECONDS``, without a restart. OpenSSL keeps every CRL it was given and
    checks against the one with the latest ``lastUpdate``, which is the newest file. A file
    that does not load is logged and the CRLs already loaded stay in force."""

    def __init__(self, context: ssl.SSLContext, crl_file: Path) -> None:
        super().__init__(name="pocdir-crl-watcher", daemon=True)
        self.context = context
        self.crl_file = crl_file
        self.seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.crl_file.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def run(self) -> None:
        while True:
            time.sleep(CRL_RELOAD_SECONDS)
            stamp = self._stamp()
            if stamp is None or stamp == self.seen:
                continue
            try:
                self.context.load_verify_locations(cafile=str(self.crl_file))
            except (OSError, ssl.SSLError) as e:
                log.warning("POCDIR_TLS_CRL_FILE %s not reloaded: %s", self.crl_file, e)
                continue
            self.seen = stamp
            log.info("revocation list reloaded from %s", self.crl_file)


def check_files(settings: Settings) -> ssl.SSLContext | None:
    """Load the certificate, key, client CA and CRL once before serving, so a bad file is
    one line at start (exit 2) rather than uvicorn's traceback. The context is built as
    uvicorn builds it (``ssl_cert_reqs`` and all), so it shows what the server accepts."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        if settings.tls_client_ca_file is not None:
            context.load_verify_locations(cafile=settings.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise SettingsError(f"cannot load the TLS certificate, key or client CA: {e}") from e
    if settings.tls_crl_file is not None:
        add_crl(context, settings.tls_crl_file)
    return context


def client_cert_name(der: bytes | None) -> str | None:
    """The common name of the (already verified) peer certificate's subject."""
    if not der:
        return None
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if len(names) == 1 else None


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, telling the app which certificate the client presented."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        tls = {"client_cert_name": client_cert_name(ssl_object.getpeercert(binary_form=True))}
        inner = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})["tls"] = tls
            await inner(scope, receive, send)

        self.app = app
