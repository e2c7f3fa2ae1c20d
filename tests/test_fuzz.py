"""Schema-driven fuzzing of the OpenAPI document against the app, for every role and for no
token at all: no input may produce a 5xx or a response the document does not describe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.app import create_app
from api.cli.console import CONSOLE
from domain.errors import ValidationError
from domain.signed_requests import sign_request
from domain.values import Role
from infra.settings import Settings
from tests.support.builders import register_states
from tests.support.officials import Official, onboard
from tests.support.record_keys import record_key_files

#: Slow (hundreds of generated requests per operation): `make check` leaves it out.
pytestmark = pytest.mark.slow

#: Each operation gets this many generated requests, each sent once per role and anonymously.
EXAMPLES = 20

CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An app over a small record (two registered States, DEU onboarded with keys, so every
    State write must be signed), tokens per role, and DEU's official to sign with."""
    path = Path(tmp_path_factory.mktemp("fuzz")) / "pocdir.sqlite3"
    operator, server = record_key_files()
    app = create_app(
        Settings(
            database_url=f"sqlite:///{path}", operator_key_file=operator, signing_key_file=server
        )
    )
    application = app.state.services.get().application
    register_states(application, "FRA", "DEU")
    deu = onboard(application, "DEU")
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in Role:
        _, token = application.issue_credential(
            CONSOLE, role, "FRA" if role is Role.STATE else None
        )
        headers[str(role)] = {"Authorization": f"Bearer {token}"}
    _, deu_token = application.issue_credential(CONSOLE, Role.STATE, "DEU")
    yield {
        "app": app,
        "headers": headers,
        "signed": (deu, {"Authorization": f"Bearer {deu_token}"}),
        "schema": schemathesis.openapi.from_asgi("/openapi.json", app),
    }
    app.state.services.close()


def signed_headers(official: Official, case: Any) -> dict[str, str]:
    """The generated request signed by ``official`` as the State client would sign it, if it
    is a State write with a JSON body (or none) whose path names its aggregate; else none, and
    the request goes unsigned (refused with 403, which the document describes)."""
    body = case.body if isinstance(case.body, dict) else None
    if case.body is not None and body is None:
        return {}
    try:
        return sign_request(
            method=case.method,
            path=case.formatted_path,
            body=body,
            state=official.state,
            private_key=official.signing_key,
            idempotency_key=f"fuzz-{uuid4().hex}",
            created_at=datetime.now(UTC),
            query={k: str(v) for k, v in (case.query or {}).items()},
        ).headers
    except ValidationError:
        return {}


def test_no_input_gets_a_server_error_or_an_undocumented_response(
    fuzzed: dict[str, Any],
) -> None:
    """Every operation of the OpenAPI document, ``EXAMPLES`` generated requests each."""
    operations = [result.ok() for result in fuzzed["schema"].get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            for who in fuzzed["headers"].values():
                case.call_and_validate(headers=who, checks=CHECKS)
            official, token = fuzzed["signed"]
            case.call_and_validate(
                headers={**token, **signed_headers(official, case)}, checks=CHECKS
            )

        try:
            fuzz()
        except Exception as e:  # noqa: BLE001 - re-raised with the operation named
            e.add_note(f"operation: {operation.label}")
            raise
