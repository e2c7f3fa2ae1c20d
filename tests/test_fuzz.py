"""Schema-driven fuzzing of the OpenAPI document against the app, for every role and for no
token at all: no input may produce a 5xx or a response the document does not describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.app import create_app
from api.cli.console import CONSOLE
from domain.values import Role
from infra.settings import Settings
from tests.support.builders import register_states

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
    """An app over a small record (two registered States), tokens per role."""
    path = Path(tmp_path_factory.mktemp("fuzz")) / "pocdir.sqlite3"
    app = create_app(Settings(database_url=f"sqlite:///{path}"))
    application = app.state.services.get().application
    register_states(application, "FRA", "DEU")
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in Role:
        _, token = application.issue_credential(
            CONSOLE, role, "FRA" if role is Role.STATE else None
        )
        headers[str(role)] = {"Authorization": f"Bearer {token}"}
    yield {
        "app": app,
        "headers": headers,
        "schema": schemathesis.openapi.from_asgi("/openapi.json", app),
    }
    app.state.services.close()


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

        try:
            fuzz()
        except Exception as e:  # noqa: BLE001 - re-raised with the operation named
            e.add_note(f"operation: {operation.label}")
            raise
