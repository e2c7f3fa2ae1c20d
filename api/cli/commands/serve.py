"""``pocdir serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from api.cli.errors import exit_on_error, fail
from api.cli.session import open_application, settings
from domain.clock import SimulatedClock
from domain.errors import PocdirError
from infra.settings import Settings, SettingsError

log = logging.getLogger("pocdir.serve")


def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port")] = 8000,
    demo_if_empty: Annotated[
        bool,
        typer.Option("--demo-if-empty", help="load a simulated year first if the record is empty"),
    ] = False,
    checkpoint_every: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="sign a checkpoint every this many seconds (POCDIR_SIGNING_KEY_FILE)",
        ),
    ] = None,
    review_period: Annotated[
        str | None,
        typer.Option(
            metavar="FROM:TO", help="FROM:TO, to log where reviewers find that period's report"
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from api.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    config = settings()
    tls_options = _check_channel(config, host)
    if checkpoint_every is not None and checkpoint_every <= 0:
        fail("--checkpoint-every must be a positive number of seconds")
    if demo_if_empty:
        _load_demo_year()
    _check_cipher_key(config)
    log.info("pocdir serves %s", config.backend)
    log.info(
        "to get a token: pocdir principals add --role state --state FRA "
        "(or --role secretariat | auditor | reviewer; with this server's POCDIR_CIPHER_KEY); "
        "then send Authorization: Bearer <token>"
    )
    scheme = "https" if config.tls else "http"
    log.info("API docs at %s://%s:%d/docs", scheme, host, port)
    if review_period:
        start, _, end = review_period.partition(":")
        log.info(
            "review report (reviewer token): %s://%s:%d/review/report?from=%s&to=%s&format=html",
            scheme,
            host,
            port,
            start,
            end,
        )
    app = create_app(config, checkpoint_every=checkpoint_every)
    uvicorn.run(app, host=host, port=port, log_level="info", **tls_options)


def _check_channel(config: Settings, host: str) -> dict[str, Any]:
    """Refuse to start (exit 2, one line, nothing served) on plain HTTP where the network
    could read it, or with TLS files that do not load; else uvicorn's TLS and proxy options.
    X-Forwarded-* is believed only from the configured proxy (none unless
    ``POCDIR_TLS_TERMINATED_BY_PROXY``)."""
    from api.tls import check_files, uvicorn_tls_options
    from domain.channel import check_plain_http

    try:
        if config.tls:
            check_files(config)
        else:
            check_plain_http(host, config.tls_terminated_by_proxy)
    except (PocdirError, SettingsError) as e:
        fail(str(e))
    proxy: dict[str, Any] = {"proxy_headers": config.tls_terminated_by_proxy}
    if config.tls_terminated_by_proxy:
        proxy["forwarded_allow_ips"] = list(config.tls_proxy_addresses)
    if config.tls_client_ca_file is not None:
        log.info("client certificates required (mTLS), CA %s", config.tls_client_ca_file)
    return {**uvicorn_tls_options(config), **proxy}


def _check_cipher_key(config: Settings) -> None:
    """Refuse to start (exit 2, one line) under a cipher key that is not the record's. If the
    database is down, serve anyway: the key is checked when the services are first built,
    and a mismatch then answers 503 (``api.errors``)."""
    from api.errors import DATABASE_ERRORS
    from infra.wiring import build_application

    try:
        build_application(config).close()
    except SettingsError as e:
        fail(str(e))
    except DATABASE_ERRORS as e:
        log.warning("database unreachable at start (%s); serving anyway", type(e).__name__)


def _load_demo_year() -> None:
    from simulation.simulator import DEFAULT_START, Simulator, seeded_ids

    clock = SimulatedClock(DEFAULT_START)
    application = open_application(clock, new_id=seeded_ids(1))
    try:
        with exit_on_error():
            existing = application.recorder.max_notification_id() or 0
            if existing:
                log.info("the record holds %d events; serving it as it is", existing)
                return
            log.info("the record is empty: loading a simulated year (193 States, 400 days, seed 1)")
            report = Simulator(application, clock, states=193, days=400, seed=1).run()
            log.info("simulated year loaded: %d commands", report.total)
    finally:
        application.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``pocdir`` app."""
    app.command("serve")(serve)
