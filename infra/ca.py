"""The Secretariat's certificate authority for client certificates (R14): ``pocdir ca``.

A directory holds the CA's key and certificate, the certificates it issued (``issued.json``:
serial, subject, expiry) and those it revoked (``revoked.json``), and the signed revocation
list the server loads (``crl.pem``). Every change rewrites ``crl.pem``, and a server given
``POCDIR_TLS_CRL_FILE`` rereads it (``api.tls.CrlWatcher``), so a revoked certificate fails
the TLS handshake of every new connection. The CRL is valid for ``CRL_DAYS``: run
``pocdir ca crl`` before that (a server with an expired CRL refuses every client
certificate, which fails closed).

The subject's common name names the principal (``domain.channel``): ``state:FRA`` for a
State, ``secretariat``, ``auditor`` or ``reviewer`` for the other roles. A server certificate
(``issue_server``) names its host in the subject alternative name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
CRL = "crl.pem"
ISSUED = "issued.json"
REVOKED = "revoked.json"
#: How long a CRL is valid before ``pocdir ca crl`` must sign a fresh one.
CRL_DAYS = 30
#: Default lifetime of a client certificate: a year, so each is renewed at the annual update.
CERT_DAYS = 365
CA_DAYS = 3650


class CaError(ValueError):
    """The CA directory or a request to it is not usable; the message says what to fix."""


@dataclass(frozen=True)
class Issued:
    serial: int
    common_name: str
    not_after: dt.datetime
    cert_path: Path
    key_path: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, never overwriting one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init(directory: Path, name: str = "pocdir Secretariat CA") -> Path:
    """Make a new CA in an empty (or new) directory; returns the CA certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CA_KEY).exists():
        raise CaError(f"{directory} already holds a CA ({CA_KEY}); use another directory")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / CA_KEY, _key_pem(key))
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / ISSUED).write_text("[]\n")
    (directory / REVOKED).write_text("[]\n")
    write_crl(directory)
    return directory / CA_CERT


def _load(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    except FileNotFoundError:
        raise CaError(f"{directory} holds no CA: run `pocdir ca init {directory}`") from None
    except ValueError as e:
        raise CaError(f"{directory}: the CA's key or certificate is unreadable ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{directory}/{CA_KEY} is not an EC key made by `pocdir ca init`")
    return key, cert


def _entries(directory: Path, name: str) -> list[dict[str, object]]:
    try:
        loaded = json.loads((directory / name).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise CaError(f"{directory}/{name} is missing or unreadable ({type(e).__name__})") from None
    if not isinstance(loaded, list):
        raise CaError(f"{directory}/{name} is not a list")
    return loaded


def _save(directory: Path, name: str, entries: list[dict[str, object]]) -> None:
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(entries, indent=1) + "\n")
    tmp.replace(directory / name)


def issue(
    directory: Path,
    common_name: str,
    out: Path,
    *,
    days: int = CERT_DAYS,
    server_name: str | None = None,
) -> Issued:
    """Issue a key and certificate at ``out``.pem and ``out``.key. A client certificate
    names its principal in the common name; a server certificate (``server_name``) names its
    host (DNS name or IP address) in the subject alternative name."""
    if not 1 <= days <= CA_DAYS:
        raise CaError(f"--days must be between 1 and {CA_DAYS}")
    ca_key, ca_cert = _load(directory)
    cert_path, key_path = out.with_suffix(".pem"), out.with_suffix(".key")
    for path in (cert_path, key_path):
        if path.exists():
            raise CaError(f"{path} exists; choose another --out")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_name else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if server_name:
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(server_name))
        except ValueError:
            general = x509.DNSName(server_name)
        builder = builder.add_extension(x509.SubjectAlternativeName([general]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued = _entries(directory, ISSUED)
    issued.append(
        {
            "serial": f"{cert.serial_number:x}",
            "subject": common_name,
            "not_after": not_after.isoformat(),
        }
    )
    _save(directory, ISSUED, issued)
    return Issued(cert.serial_number, common_name, not_after, cert_path, key_path)


def parse_serial(serial: str) -> int:
    try:
        return int(serial.strip().lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise CaError(
            f"{serial[:60]!r} is not a serial number (hex, as `pocdir ca issue` printed)"
        ) from None


def revoke(directory: Path, serial: str) -> str:
    """Revoke an issued certificate and rewrite the CRL; returns its subject."""
    number = parse_serial(serial)
    _load(directory)
    issued = {int(str(e["serial"]), 16): str(e["subject"]) for e in _entries(directory, ISSUED)}
    if number not in issued:
        raise CaError(f"this CA issued no certificate with serial {number:x}")
    revoked = _entries(directory, REVOKED)
    if any(int(str(e["serial"]), 16) == number for e in revoked):
        raise CaError(f"certificate {number:x} is already revoked")
    revoked.append({"serial": f"{number:x}", "revoked_at": _now().isoformat()})
    _save(directory, REVOKED, revoked)
    write_crl(directory)
    return issued[number]


def write_crl(directory: Path, days: int = CRL_DAYS) -> Path:
    """Sign a fresh CRL listing every revoked certificate, valid for ``days``."""
    ca_key, ca_cert = _load(directory)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for entry in _entries(directory, REVOKED):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(str(entry["serial"]), 16))
            .revocation_date(dt.datetime.fromisoformat(str(entry["revoked_at"])))
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = directory / f".{CRL}.tmp"
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(directory / CRL)
    return directory / CRL
