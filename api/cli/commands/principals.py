"""``pocdir principals``: issue, list and revoke API credentials, at the operator's console."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from api.cli.console import CONSOLE, out, print_json, table
from api.cli.errors import exit_on_error
from api.cli.ids import parse_id, record_id
from api.cli.options import Format, FormatOption, IdempotencyOption
from api.cli.session import command_application, command_key
from domain.credential import MAX_LABEL, NO_LABEL, check_label
from domain.values import Role
from infra.wiring import OpenMode

principals_app = typer.Typer(help="Issue, list and revoke API credentials.", no_args_is_help=True)


@principals_app.command("add")
def add_principal(
    role: Annotated[
        Role, typer.Option(metavar="ROLE", help="state, secretariat, auditor or reviewer")
    ],
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="the State's ISO 3166-1 alpha-3 code (role state)"),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="the office or function that holds the credential, e.g. 'CERT duty desk' "
            f"(one line, at most {MAX_LABEL} characters); never a person's name: the record "
            f"is immutable. Default: {NO_LABEL!r}",
        ),
    ] = None,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Issue a credential and print its bearer token once; only its hash is kept. The
    label is recorded and shown by `pocdir principals list`."""
    with exit_on_error():
        checked = NO_LABEL if label is None else check_label(label)
    # Without --label the command is keyed as before labels existed, so a retry across the
    # upgrade is still recognised as the same command.
    args: list[object] = [role, state] if label is None else [role, state, checked]
    with command_application() as application:
        key = command_key(application, CONSOLE, "principals add", args, idempotency_key)
        if key is None:
            out.print("its bearer token was shown then, and is not kept", highlight=False)
            return
        credential, token = application.issue_credential(
            CONSOLE, role, state, label=checked, idempotency=key
        )
    who = f"{role} {credential.state}" if credential.state else str(role)
    out.print(f"issued credential {credential.id} for {who}", highlight=False)
    out.print(f"label: {credential.label}", highlight=False, markup=False)
    out.print("bearer token (shown once, keep it secret):", highlight=False)
    print(token)


@principals_app.command("list")
def list_principals(format: FormatOption = Format.TABLE) -> None:  # noqa: A002
    """Every credential issued, revoked or not, oldest first: id, role, State, label, when
    issued and whether revoked; never a token or its hash. Find the id to revoke here."""
    with command_application(mode=OpenMode.READ_ONLY) as application:
        credentials = application.credentials(CONSOLE)
    rows: list[dict[str, Any]] = [
        {
            "id": str(c.id),
            "role": str(c.role),
            "state": c.state,
            "label": c.label,
            "issued_at": c.created_on.isoformat(),
            "revoked": c.revoked,
            # A credential's one later event is its revocation.
            "revoked_at": c.modified_on.isoformat() if c.revoked else None,
        }
        for c in credentials
    ]
    if format is Format.JSON:
        print_json(rows)
        return
    listing = table(
        f"Credentials: {len(rows)}, {sum(r['revoked'] for r in rows)} revoked",
        "id", "role", "state", "label", "issued at", "revoked",
    )  # fmt: skip
    listing.columns[0].min_width = 36  # the id on one line, to copy
    for r in rows:
        listing.add_row(
            r["id"],
            r["role"],
            r["state"] or "-",
            r["label"],
            r["issued_at"][:19].replace("T", " "),
            f"revoked {r['revoked_at'][:10]}" if r["revoked_at"] else "no",
        )
    out.print(listing, markup=False, highlight=False, crop=False)  # never cut an id or label


@principals_app.command("revoke")
def revoke_principal(
    credential_id: Annotated[
        str,
        typer.Argument(
            metavar="CREDENTIAL_ID",
            help="the credential's id (`pocdir principals list`), or its first characters",
        ),
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
