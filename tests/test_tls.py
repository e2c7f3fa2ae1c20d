"""Protected channels (R14, issue 15 item 6): a real ``pocdir serve`` over TLS, refused on
plain HTTP off loopback, and with client certificates (mTLS) from the Secretariat's CA
(``pocdir ca``), checked against its revocation list and bound to the token's principal.

One backend (SQLite): the channel does not touch storage."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.tls import check_files
from domain.channel import check_plain_http
from domain.errors import ValidationError
from infra.settings import Settings, SettingsError
from tests.support.cli import POCDIR, ROOT, free_port, issue
from tests.support.cli import run as cli
from tests.support.db import Backend

#: Slow (each test starts real `pocdir serve` processes): `make check` leaves it out.
pytestmark = pytest.mark.slow

NOW = dt.datetime.now(dt.UTC)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_cert(
    path: Path,
    common_name: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=30),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and certificate made with ``cryptography`` alone (self-signed if no issuer),
    written to ``path``.pem and ``path``.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key, issuer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(_pem(key))
    return key, cert


def client(ca: Path, cert: Path | None = None, tls12: bool = False) -> ssl.SSLContext:
    """A client's context trusting ``ca``, presenting ``cert`` (``.pem``/``.key``) if given.
    ``tls12``: at most TLS 1.2, where the client certificate is checked inside the handshake
    (TLS 1.3 completes the client's side first and reports the refusal as a disconnect)."""
    context = ssl.create_default_context(cafile=str(ca))
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert.with_suffix(".pem"), cert.with_suffix(".key"))
    return context


@contextmanager
def serving(
    url: str,
    tmp_path: Path,
    env: dict[str, str],
    ready: ssl.SSLContext | None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """A real ``pocdir serve`` over TLS (plain HTTP if ``ready`` is None), reached on
    127.0.0.1; yields its base URL once it answers."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*POCDIR, "serve", "--host", host, "--port", str(port)],
        env={**os.environ, "POCDIR_DATABASE_URL": url, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"{'http' if ready is None else 'https'}://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text())
            try:
                r = httpx.get(base + "/health", verify=ready or True, timeout=1)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(log_path.read_text())
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert "Traceback" not in log_path.read_text()


def refused(base: str, context: ssl.SSLContext, token: str) -> httpx.TransportError:
    """The TLS failure of a request that must not be served."""
    with pytest.raises(httpx.TransportError) as failure:
        httpx.get(
            base + "/directory",
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=10,
        )
    return failure.value


def handshake(server: ssl.SSLContext, client_context: ssl.SSLContext) -> str:
    """A TLS handshake between the two contexts in memory: "ok", or the server's refusal."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    ours = client_context.wrap_bio(to_client, from_client, server_hostname="127.0.0.1")
    theirs = server.wrap_bio(to_server, from_server, server_side=True)
    for _ in range(10):
        done = True
        for side in (ours, theirs):
            try:
                side.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                done = False
            except ssl.SSLError as e:
                if side is theirs:
                    return str(e)
                done = False
            to_server.write(from_client.read())
            to_client.write(from_server.read())
        if done:
            return "ok"
    return "no end"


def test_https_with_the_servers_ca_and_no_plain_http(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    ca = make_cert(tmp_path / "ca", "test CA", None, ca=True)
    make_cert(tmp_path / "server", "127.0.0.1", ca, ip="127.0.0.1")
    _, token = issue(sqlite_backend.url, "--role", "state", "--state", "FRA")
    env = {
        "POCDIR_TLS_CERT_FILE": str(tmp_path / "server.pem"),
        "POCDIR_TLS_KEY_FILE": str(tmp_path / "server.key"),
    }
    trusted = client(tmp_path / "ca.pem")
    with serving(sqlite_backend.url, tmp_path, env, trusted) as base:
        r = httpx.get(
            base + "/directory", headers={"Authorization": f"Bearer {token}"}, verify=trusted
        )
        assert r.status_code == 200, r.text
        # A client that does not trust the CA cannot talk to it...
        other = make_cert(tmp_path / "other", "other CA", None, ca=True)
        assert other
        assert "CERTIFICATE_VERIFY_FAILED" in str(
            refused(base, client(tmp_path / "other.pem"), token)
        )
        # ...and the port speaks no plain HTTP.
        with pytest.raises(httpx.TransportError):
            httpx.get(base.replace("https:", "http:") + "/health", timeout=10)


def test_plain_http_off_loopback_is_refused_at_start(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    port = free_port()
    for env, message in (
        ({}, "error: refusing plain HTTP on 0.0.0.0: set POCDIR_TLS_CERT_FILE"),
        (
            {"POCDIR_TLS_TERMINATED_BY_PROXY": "true"},
            "error: POCDIR_TLS_TERMINATED_BY_PROXY=true needs POCDIR_TLS_PROXY_ADDRESSES",
        ),
        (
            {"POCDIR_TLS_CERT_FILE": str(tmp_path / "missing.pem")},
            "error: set both POCDIR_TLS_CERT_FILE and POCDIR_TLS_KEY_FILE, or neither",
        ),
        (
            {
                "POCDIR_TLS_CERT_FILE": str(tmp_path / "missing.pem"),
                "POCDIR_TLS_KEY_FILE": str(tmp_path / "missing.key"),
            },
            "error: cannot load the TLS certificate, key or client CA",
        ),
    ):
        started = subprocess.run(
            [*POCDIR, "serve", "--host", "0.0.0.0", "--port", str(port)],
            env={**os.environ, "POCDIR_DATABASE_URL": sqlite_backend.url, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 2, started.stderr
        lines = started.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), started.stderr
        assert "Uvicorn running" not in started.stdout + started.stderr
    # Nothing was served, and nothing was written.
    assert not Path(sqlite_backend.sqlite_path or "").exists()


def test_plain_http_behind_a_declared_tls_proxy(sqlite_backend: Backend, tmp_path: Path) -> None:
    """The operator says a TLS proxy at 127.0.0.1 fronts the server: it then serves plain
    HTTP on every interface."""
    env = {"POCDIR_TLS_TERMINATED_BY_PROXY": "true", "POCDIR_TLS_PROXY_ADDRESSES": "127.0.0.1"}
    with serving(sqlite_backend.url, tmp_path, env, None, host="0.0.0.0") as base:
        assert httpx.get(base + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {
                "POCDIR_TLS_CERT_FILE": "s.pem",
                "POCDIR_TLS_KEY_FILE": "s.key",
                "POCDIR_TLS_CLIENT_CA_FILE": "ca.pem",
            },
            "POCDIR_TLS_CLIENT_CA_FILE needs POCDIR_TLS_CRL_FILE",
        ),
        (
            {"POCDIR_TLS_CLIENT_CA_FILE": "ca.pem", "POCDIR_TLS_CRL_FILE": "crl.pem"},
            "POCDIR_TLS_CLIENT_CA_FILE needs POCDIR_TLS_CERT_FILE",
        ),
        ({"POCDIR_TLS_CRL_FILE": "crl.pem"}, "POCDIR_TLS_CRL_FILE is used only with"),
        (
            {"POCDIR_TLS_TERMINATED_BY_PROXY": "true", "POCDIR_TLS_PROXY_ADDRESSES": "proxy"},
            "POCDIR_TLS_PROXY_ADDRESSES: 'proxy' is not an IP address or network",
        ),
        ({"POCDIR_TLS_TERMINATED_BY_PROXY": "sure"}, "must be true or false"),
    ],
)
def test_tls_settings_that_do_not_fit_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_plain_http_only_on_loopback_or_behind_a_declared_proxy() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        check_plain_http(host, terminated_by_proxy=False)
    for host in ("0.0.0.0", "::", "10.0.0.5", "192.0.2.1", "pocdir.example", ""):
        with pytest.raises(ValidationError, match="refusing plain HTTP"):
            check_plain_http(host, terminated_by_proxy=False)
        check_plain_http(host, terminated_by_proxy=True)


def test_mtls_with_the_secretariats_ca(sqlite_backend: Backend, tmp_path: Path) -> None:
    url = sqlite_backend.url
    ca_dir = tmp_path / "ca"
    assert cli(url, "ca", "init", str(ca_dir)).returncode == 0

    def ca_issue(out: str, *args: str) -> str:
        done = cli(url, "ca", "issue", "--ca", str(ca_dir), "--out", str(tmp_path / out), *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.split("issued certificate ", 1)[1].split()[0]

    ca_issue("server", "--server", "127.0.0.1")
    ca_issue("fra", "--state", "FRA")
    ca_issue("deu", "--state", "DEU")
    ca_issue("reviewer", "--role", "reviewer")
    revoked_serial = ca_issue("fra-old", "--state", "FRA")
    revoked = cli(url, "ca", "revoke", "--ca", str(ca_dir), revoked_serial)
    assert revoked.returncode == 0 and "state:FRA" in revoked.stdout, revoked.stderr
    again = cli(url, "ca", "revoke", "--ca", str(ca_dir), revoked_serial)
    assert again.returncode == 2 and "already revoked" in again.stderr
    # An expired certificate from the same CA, made with the CA's key.
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    make_cert(
        tmp_path / "fra-expired",
        "state:FRA",
        (ca_key, ca_cert),
        not_before=NOW - dt.timedelta(days=10),
        not_after=NOW - dt.timedelta(days=1),
    )

    _, fra = issue(url, "--role", "state", "--state", "FRA")
    _, deu = issue(url, "--role", "state", "--state", "DEU")
    _, reviewer = issue(url, "--role", "reviewer")
    env = {
        "POCDIR_TLS_CERT_FILE": str(tmp_path / "server.pem"),
        "POCDIR_TLS_KEY_FILE": str(tmp_path / "server.key"),
        "POCDIR_TLS_CLIENT_CA_FILE": str(ca_dir / "ca.pem"),
        "POCDIR_TLS_CRL_FILE": str(ca_dir / "crl.pem"),
    }
    ca_pem = ca_dir / "ca.pem"
    with serving(url, tmp_path, env, client(ca_pem, tmp_path / "fra")) as base:

        def get(cert: str, token: str) -> httpx.Response:
            return httpx.get(
                base + "/directory",
                headers={"Authorization": f"Bearer {token}"},
                verify=client(ca_pem, tmp_path / cert),
                timeout=10,
            )

        # The right certificate with its State's token.
        assert get("fra", fra).status_code == 200
        assert get("deu", deu).status_code == 200
        # No certificate, a revoked one, an expired one: the handshake fails (over TLS 1.2
        # the client sees it fail, with the server's alert for a certificate it refused; over
        # TLS 1.3 the connection is dropped before any answer).
        server_context = check_files(Settings.from_env({"POCDIR_DATABASE_URL": url, **env}))
        assert server_context is not None
        for cert, alert in (
            (None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
            ("fra-old", "certificate revoked"),
            ("fra-expired", "certificate has expired"),
        ):
            path = None if cert is None else tmp_path / cert
            during_handshake = refused(base, client(ca_pem, path, tls12=True), fra)
            assert isinstance(during_handshake, httpx.ConnectError), during_handshake
            assert "disconnected" in str(refused(base, client(ca_pem, path), fra))
            # Why: the server's own context, in memory, names the reason it refuses.
            assert alert in handshake(server_context, client(ca_pem, path))
        assert handshake(server_context, client(ca_pem, tmp_path / "fra")) == "ok"
        # A certificate revoked while the server runs: refused from the new CRL on.
        late = ca_issue("fra-late", "--state", "FRA")
        assert get("fra-late", fra).status_code == 200
        assert cli(url, "ca", "revoke", "--ca", str(ca_dir), late).returncode == 0
        for _ in range(100):
            try:
                get("fra-late", fra)
            except httpx.TransportError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("a certificate revoked while the server ran still connects")
        assert get("fra", fra).status_code == 200
        # The other roles' certificates name the role.
        report = "/review/report?from=2025-01-01&to=2025-01-31&format=json"
        r = httpx.get(
            base + report,
            headers={"Authorization": f"Bearer {reviewer}"},
            verify=client(ca_pem, tmp_path / "reviewer"),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        r = get("fra", reviewer)
        assert r.status_code == 403 and "'reviewer'" in r.json()["detail"], r.text
        # Another State's certificate with this State's token, and the other way round.
        for cert, token, named, expected in (
            ("deu", fra, "DEU", "FRA"),
            ("fra", deu, "FRA", "DEU"),
        ):
            r = get(cert, token)
            assert r.status_code == 403, r.text
            message = r.json()["detail"]
            assert f"state:{named}" in message and f"state:{expected}" in message, message
