"""``pocdir ca``: the Secretariat's certificate authority for client certificates (mTLS, R14).

The CA's logic is ``infra/ca.py``; these commands only parse, call it and print.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from api.cli.console import out
from api.cli.errors import exit_on_error, fail
from domain.channel import certificate_name
from domain.errors import PocdirError
from domain.members import check_member_state
from domain.values import Principal, Role

T = TypeVar("T")

ca = typer.Typer(
    help="The Secretariat's CA for client certificates (mTLS, R14): init, issue, revoke, crl.",
    no_args_is_help=True,
)
CaDir = Annotated[
    Path,
    typer.Option("--ca", metavar="DIR", help="the CA's directory (`pocdir ca init DIR` made it)"),
]


def _ca_call(action: Callable[[], T]) -> T:
    """``action``'s result; a CA error is one line and exit 2 (``api.cli.errors``), and so is
    a file that cannot be read or written."""
    try:
        with exit_on_error():
            return action()
    except OSError as e:
        fail(str(e))


@ca.command("init")
def ca_init(
    directory: Annotated[Path, typer.Argument(help="a new directory for the CA; keep it offline")],
) -> None:
    """Make the CA: its key (ca.key, owner-only), certificate (ca.pem, the server's
    POCDIR_TLS_CLIENT_CA_FILE) and an empty revocation list (crl.pem, POCDIR_TLS_CRL_FILE)."""
    from infra import ca as authority

    cert = _ca_call(lambda: authority.init(directory))
    out.print(f"CA certificate: {cert}", highlight=False)
    out.print(f"revocation list: {directory / authority.CRL}", highlight=False)


@ca.command("issue")
def ca_issue(
    out_prefix: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="PREFIX",
            help="write PREFIX.pem (certificate) and PREFIX.key (its key)",
        ),
    ],
    ca_dir: CaDir = Path("var/ca"),
    state: Annotated[
        str | None,
        typer.Option(
            metavar="STATE", help="a State's client certificate: its ISO 3166-1 alpha-3 code"
        ),
    ] = None,
    role: Annotated[
        Role | None,
        typer.Option(
            metavar="ROLE", help="a client certificate for secretariat, auditor or reviewer"
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(metavar="HOST", help="a server certificate for this host name or IP address"),
    ] = None,
    days: Annotated[int, typer.Option(metavar="DAYS", help="days the certificate is valid")] = 365,
) -> None:
    """Issue a key and certificate. A client certificate's subject names its principal:
    CN=state:FRA for a State, CN=secretariat (auditor, reviewer) for the other roles; the
    server accepts a token only over a certificate naming the token's own State or role."""
    from infra import ca as authority

    if sum(x is not None for x in (state, role, server)) != 1:
        fail("give exactly one of --state XXX, --role ROLE or --server HOST")
    if server is not None:
        name = server
    else:
        if role is Role.STATE:
            fail("a State's certificate is issued with --state XXX (not --role state)")
        try:
            code = None if state is None else check_member_state(state)
            principal = Principal("certificate", role or Role.STATE, code)
        except PocdirError as e:
            fail(str(e))
        name = certificate_name(principal)
    issued = _ca_call(
        lambda: authority.issue(ca_dir, name, out_prefix, days=days, server_name=server)
    )
    out.print(f"issued certificate {issued.serial:x} for {name}", highlight=False)
    out.print(f"valid until {issued.not_after:%Y-%m-%d %H:%M} UTC", highlight=False)
    out.print(f"certificate: {issued.cert_path}", highlight=False)
    out.print(f"key (keep it secret): {issued.key_path}", highlight=False)


@ca.command("revoke")
def ca_revoke(
    serial: Annotated[str, typer.Argument(help="the serial `pocdir ca issue` printed (hex)")],
    ca_dir: CaDir = Path("var/ca"),
) -> None:
    """Revoke a certificate and rewrite crl.pem; a server reading that file refuses the
    certificate on new connections within 2 seconds."""
    from infra import ca as authority

    subject = _ca_call(lambda: authority.revoke(ca_dir, serial))
    out.print(f"revoked certificate {serial} ({subject}); crl.pem rewritten", highlight=False)
    out.print("servers reading this crl.pem refuse it on new connections", highlight=False)


@ca.command("crl")
def ca_crl(ca_dir: CaDir = Path("var/ca")) -> None:
    """Sign a fresh CRL (valid 30 days; a server with an expired CRL refuses all clients)."""
    from infra import ca as authority

    path = _ca_call(lambda: authority.write_crl(ca_dir))
    out.print(f"revocation list: {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``pocdir ca`` to the ``pocdir`` app."""
    app.add_typer(ca, name="ca")
