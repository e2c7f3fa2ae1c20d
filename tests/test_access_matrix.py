"""docs/access.md is the access policy: every route in the OpenAPI document must be in its
table, and every cell must be what the API does for that role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from api.public import PUBLIC_PATHS, PUBLIC_PREFIXES, is_public
from domain.values import Role
from tests.support.db import Backend
from tests.support.http import Api, api_for

ACCESS_DOC = Path(__file__).resolve().parent.parent / "docs" / "access.md"
ROLES = [Role.STATE, Role.SECRETARIAT, Role.AUDITOR, Role.REVIEWER]


def documented_matrix() -> dict[tuple[str, str], dict[Role, str]]:
    rows: dict[tuple[str, str], dict[Role, str]] = {}
    for line in ACCESS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or cells[0] not in {"GET", "POST", "PUT", "DELETE", "PATCH"}:
            continue
        assert all(c in {"yes", "no", "public"} for c in cells[2:6]), line
        rows[(cells[0], cells[1])] = dict(zip(ROLES, cells[2:6], strict=True))
    return rows


@pytest.fixture
def api(sqlite_backend: Backend) -> Iterator[Api]:
    with api_for(sqlite_backend.settings) as a:
        yield a


def concrete(path: str) -> str:
    """Fill path parameters: the caller's own State, a documentation asset, and ids that
    name nothing."""
    known = {"state": "FRA", "contact_id": "cert", "file": "swagger-ui.css"}
    return re.sub(r"\{(\w+)\}", lambda m: known.get(m.group(1), str(uuid4())), path)


def test_every_route_is_in_the_access_table(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    matrix = documented_matrix()
    documented = set(matrix)
    assert served - documented == set(), "routes missing from docs/access.md"
    # The documentation's own routes are not in the OpenAPI document: they must be public,
    # and be exactly what api/public.py (which the authentication layer reads) says.
    outside = documented - served
    assert all(set(matrix[row].values()) == {"public"} for row in outside), outside
    public = {path for (_, path), cells in matrix.items() if set(cells.values()) == {"public"}}
    assert public >= PUBLIC_PATHS, "api/public.py names routes docs/access.md does not"
    assert all(any(p.startswith(prefix) for p in public) for prefix in PUBLIC_PREFIXES)
    for (_, path), cells in matrix.items():
        assert is_public(concrete(path)) == (path in public), (path, cells)


def test_each_role_gets_what_the_access_table_says(api: Api) -> None:
    for (method, path), cells in documented_matrix().items():
        url = concrete(path) + ("?incident_type=malware" if path.endswith("/route") else "")
        anonymous = api.client.request(method, url, json={})
        if set(cells.values()) == {"public"}:
            assert anonymous.status_code == 200, (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        for role, cell in cells.items():
            who = api.auth(role, "FRA" if role is Role.STATE else None)
            status = api.call(method, url, who, json={}).status_code
            if cell == "no":
                assert status == 403, (method, path, role, status)
            else:
                assert status not in (401, 403, 500), (method, path, role, status)


def test_a_states_key_history_is_read_by_every_role_and_changed_by_none_but_its_own(
    api: Api,
) -> None:
    """GET /keys/states/{state} is public to every authenticated principal: a client checks
    a State's key there before encrypting to it. Only the Secretariat binds, and only the
    State itself sends its signed changes (another State gets 403 even with a statement)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from domain.state_keys import EncryptionKey, SigningKey
    from state_client.keys import EncryptionPrivateKey

    signer = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    team = EncryptionPrivateKey.generate().public_key().to_bytes()
    api.application.bind_state_keys(
        api.application.authenticate(api.token(Role.SECRETARIAT)),
        "FRA",
        EncryptionKey.from_bytes(team),
        (SigningKey.from_bytes(signer),),
    )
    for role in ROLES:
        who = api.auth(role, "DEU" if role is Role.STATE else None)
        assert api.call("GET", "/keys/states/FRA", who).status_code == 200, role
    body = {"statement": "{}", "signature": "00" * 64, "key": "sha256:" + "0" * 64}
    r = api.call("POST", "/keys/states/FRA/rotation", api.auth(Role.STATE, "DEU"), json=body)
    assert r.status_code == 403 and "only FRA itself" in r.json()["detail"], r.text


def state_write_routes() -> list[tuple[str, str]]:
    """Every route of the table that changes something and that a State may call."""
    return sorted(
        (method, path)
        for (method, path), cells in documented_matrix().items()
        if method in {"POST", "PUT", "PATCH", "DELETE"} and cells[Role.STATE] == "yes"
    )


def test_every_state_write_route_has_a_signed_statement_form() -> None:
    """The gate asks for a signature on exactly the routes ``domain.signed_requests`` knows:
    a State write route missing there would be let through unsigned once States sign."""
    from domain.signed_requests import KEY_WRITES, STATE_WRITES

    known = {(r.method, r.template) for r in STATE_WRITES + KEY_WRITES}
    routes = {(method, re.sub(r"\{\w+\}", "{}", path)) for method, path in state_write_routes()}
    signed = {(method, re.sub(r"\{\w+\}", "{}", path)) for method, path in known}
    assert routes - signed == set(), "State write routes without a statement form"


def test_once_states_sign_every_state_write_route_refuses_an_unsigned_request(
    api: Api,
) -> None:
    """After the first key binding, an unsigned write is refused before the route runs: by a
    State with keys (403 ``signature_required``, "sign") and by one without (403, "onboard")."""
    from tests.support.officials import onboard

    onboard(api.application, "FRA")
    for method, path in state_write_routes():
        if path.startswith("/keys/states/"):
            continue  # key changes carry their statement in the body (tested apart)
        for code, says in (("FRA", "must be signed"), ("DEU", "no keys bound")):
            url = concrete(path).replace("/FRA", f"/{code}")
            r = api.call(method, url, api.auth(Role.STATE, code), json={})
            assert r.status_code == 403, (method, path, code, r.text)
            assert r.json()["error"] == "signature_required", (method, path, code)
            assert says in r.json()["detail"], (method, path, code)
