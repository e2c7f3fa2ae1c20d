"""``pocdir principals`` (credentials) and ``pocdir serve`` (the HTTP API under uvicorn)."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

import typer
from eventsourcing.persistence import OperationalError, PersistenceError

from api.cli_options import IdempotencyOption
from domain.clock import SimulatedClock
from domain.credential import MAX_LABEL, NO_LABEL, check_label
from domain.errors import PocdirError
from domain.values import Principal, Role
from infra.settings import Settings, SettingsError

#: The operator's console on the server's host acts as the Secretariat (it onboards States
#: and issues credentials); this is the principal recorded on what it does.
CONSOLE = Principal("console", Role.SECRETARIAT)

principals = typer.Typer(help="Issue, list and revoke API credentials.", no_args_is_help=True)
log = logging.getLogger("pocdir.serve")


@principals.command("add")
def add_principal(
    role: Annotated[Role, typer.Option(help="state, secretariat, auditor or reviewer")],
    state: Annotated[
        str | None, typer.Option(help="the State's ISO 3166-1 alpha-3 code (role state)")
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="the office or function that holds the credential, e.g. 'CERT duty desk' "
            f"(one line, at most {MAX_LABEL} characters); never a person's name: the record "
            f"is immutable. Default: {NO_LABEL!r}"
        ),
    ] = None,
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Issue a credential and print its bearer token once; only its hash is kept. The
    label is recorded and shown by `pocdir principals list`."""
    from api.cli import command_application, command_key, fail, out

    try:
        checked = NO_LABEL if label is None else check_label(label)
    except PocdirError as e:
        fail(str(e))
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


@principals.command("revoke")
def revoke_principal(
    credential_id: Annotated[
        str, typer.Argument(help="the credential id (`pocdir principals list` shows them)")
    ],
    idempotency_key: IdempotencyOption = None,
) -> None:
    """Revoke a credential; requests with its token get 401 from now on."""
    from api.cli import command_application, command_key, fail, out

    try:
        cid = UUID(credential_id)
    except ValueError:
        fail(f"{credential_id[:40]!r} is not a credential id (a UUID)")
    with command_application() as application:
        key = command_key(application, CONSOLE, "principals revoke", [cid], idempotency_key)
        if key is None:
            return
        application.revoke_credential(CONSOLE, cid, idempotency=key)
    out.print(f"revoked credential {cid}", highlight=False)


def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    demo_if_empty: Annotated[
        bool,
        typer.Option("--demo-if-empty", help="load a simulated year first if the record is empty"),
    ] = False,
    checkpoint_every: Annotated[
        float | None,
        typer.Option(help="sign a checkpoint every this many seconds (POCDIR_SIGNING_KEY_FILE)"),
    ] = None,
    review_period: Annotated[
        str | None,
        typer.Option(help="FROM:TO, to log where reviewers find that period's report"),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from api.app import create_app
    from api.cli import _settings, fail

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    settings = _settings()
    if checkpoint_every is not None and checkpoint_every <= 0:
        fail("--checkpoint-every must be a positive number of seconds")
    if demo_if_empty:
        _load_demo_year()
    _check_cipher_key(settings)
    log.info("pocdir serves %s", settings.backend)
    log.info(
        "to get a token: pocdir principals add --role state --state FRA "
        "(or --role secretariat | auditor | reviewer; with this server's POCDIR_CIPHER_KEY); "
        "then send Authorization: Bearer <token>"
    )
    log.info("API docs at http://%s:%d/docs", host, port)
    if review_period:
        start, _, end = review_period.partition(":")
        log.info(
            "review report (reviewer token): http://%s:%d/review/report?from=%s&to=%s&format=html",
            host,
            port,
            start,
            end,
        )
    if checkpoint_every is not None and checkpoint_every <= 0:
        fail("--checkpoint-every must be a positive number of seconds")
    app = create_app(settings, checkpoint_every=checkpoint_every)
    uvicorn.run(app, host=host, port=port, log_level="info")


def _check_cipher_key(settings: Settings) -> None:
    """Refuse to start (exit 2, one line) under a cipher key that is not the record's. If the
    database is down, serve anyway: the key is checked when the services are first built,
    and a mismatch then answers 503 (``api.errors``)."""
    from api.cli import fail
    from api.errors import DATABASE_ERRORS
    from infra.wiring import build_application

    try:
        build_application(settings).close()
    except SettingsError as e:
        fail(str(e))
    except DATABASE_ERRORS as e:
        log.warning("database unreachable at start (%s); serving anyway", type(e).__name__)


def _load_demo_year() -> None:
    from api.cli import EXIT_UNAVAILABLE, fail, open_application
    from api.simulator import DEFAULT_START, Simulator, seeded_ids

    clock = SimulatedClock(DEFAULT_START)
    application = open_application(clock, new_id=seeded_ids(1))
    try:
        existing = application.recorder.max_notification_id() or 0
        if existing:
            log.info("the record holds %d events; serving it as it is", existing)
            return
        log.info("the record is empty: loading a simulated year (193 States, 400 days, seed 1)")
        report = Simulator(application, clock, states=193, days=400, seed=1).run()
        log.info("simulated year loaded: %d commands", report.total)
    except (OperationalError, PersistenceError) as e:
        fail(f"database error: {str(e).splitlines()[0]}", EXIT_UNAVAILABLE)
    finally:
        application.close()


def register(app: typer.Typer) -> None:
    app.add_typer(principals, name="principals")
    app.command("serve")(serve)
