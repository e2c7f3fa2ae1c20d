"""``pocdir principals``: issue and revoke API credentials, at the operator's console."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.console import CONSOLE, out
from api.cli.ids import parse_id, record_id
from api.cli.options import IdempotencyOption
from api.cli.session import command_application, command_key
from domain.values import Role

principals_app = typer.Typer(help="Issue and revoke API credentials.", no_args_is_help=True)


@principals_app.command("add")
def add_principal(
    role: Annotated[
        Role,
        typer.Option(metavar="ROLE", help="state, secretariat, auditor or reviewer"),
    ],
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="the State's ISO 3166-1 alpha-3 code (role state)"),
    ] = None,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Issue a credential and print its bearer token once; only its hash is kept."""
    with command_application() as application:
        key = command_key(application, CONSOLE, "principals add", [role, state], idempotency_key)
        if key is None:
            out.print("its bearer token was shown then, and is not kept", highlight=False)
            return
        credential, token = application.issue_credential(CONSOLE, role, state, idempotency=key)
    who = f"{role} {credential.state}" if credential.state else str(role)
    out.print(f"issued credential {credential.id} for {who}", highlight=False)
    out.print("bearer token (shown once, keep it secret):", highlight=False)
    print(token)


@principals_app.command("revoke")
def revoke_principal(
    credential_id: Annotated[
        str,
        typer.Argument(metavar="CREDENTIAL_ID", help="the credential id, or its first characters"),
    ],
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Revoke a credential; requests with its token get 401 from now on."""
    given = parse_id(credential_id, "CREDENTIAL_ID", "credential")
    with command_application() as application:
        cid = record_id(application, given, "credential")
        key = command_key(application, CONSOLE, "principals revoke", [cid], idempotency_key)
        if key is None:
            return
        application.revoke_credential(CONSOLE, cid, idempotency=key)
    out.print(f"revoked credential {cid}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``principals`` to the ``pocdir`` app."""
    app.add_typer(principals_app, name="principals")
