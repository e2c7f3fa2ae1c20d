"""Signed statements (issue 15): the byte-exact format an independent verifier relies on.

The golden vectors in tests/fixtures/statement-vectors.json are the format: a change that
alters one byte of their canonical encoding, digest or signature breaks every verifier
written from docs/audit-format.md, so it must be a new format version, not an edit.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.statement import (
    CREATION_WINDOW,
    STATEMENT_PREFIX,
    SignedStatement,
    Statement,
    StatementExpired,
    StatementMalformed,
    StatementReused,
    StatementSignatureInvalid,
    check_creation_time,
    check_replay,
    key_fingerprint,
    parse_statement,
    sign_statement,
    statement_digest,
    verify_statement,
)

VECTORS = json.loads(
    (Path(__file__).parent / "fixtures" / "statement-vectors.json").read_text("utf-8")
)
AT = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
AGGREGATE = UUID("6f1c2b5e-3d4a-4e8b-9c0d-1a2b3c4d5e6f")


def _from_object(obj: dict[str, Any]) -> Statement:
    return Statement.create(
        command=obj["command"],
        state=obj["state"],
        aggregate=UUID(obj["aggregate"]),
        expected_version=obj["expected_version"],
        fields=obj["fields"],
        idempotency_key=obj["idempotency_key"],
        created_at=datetime.strptime(obj["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
    )


def _statement(**changes: Any) -> Statement:
    values: dict[str, Any] = {
        "command": "notification.acknowledge",
        "state": "DEU",
        "aggregate": AGGREGATE,
        "expected_version": 1,
        "fields": {},
        "idempotency_key": "ack-1",
        "created_at": AT,
    }
    values.update(changes)
    return Statement.create(**values)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"][:30])
def test_golden_vectors_hold_byte_for_byte(vector: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["seed"]))
    assert key.public_key().public_bytes_raw().hex() == vector["public_key"]
    assert key_fingerprint(key.public_key()) == vector["key"]
    statement = _from_object(vector["statement"])
    assert statement.canonical_bytes().hex() == vector["canonical"]
    assert statement.signing_input() == STATEMENT_PREFIX + bytes.fromhex(vector["canonical"])
    assert statement_digest(statement) == vector["digest"]
    signed = sign_statement(statement, key)
    assert signed.signature.hex() == vector["signature"]
    # A verifier that only has the bytes reads the same statement and accepts the signature.
    parsed = parse_statement(bytes.fromhex(vector["canonical"]))
    assert parsed == statement
    wire = SignedStatement(parsed, bytes.fromhex(vector["signature"]), vector["key"])
    assert verify_statement(wire, key.public_key()) == statement


def test_the_prefix_and_a_canonical_form_are_written_out() -> None:
    """The format in plain sight: a verifier in another language can be written from this."""
    assert VECTORS["prefix"] == "pocdir statement v1\n" == STATEMENT_PREFIX.decode()
    canonical = bytes.fromhex(VECTORS["vectors"][1]["canonical"]).decode("utf-8")
    assert canonical == (
        '{"aggregate":"6f1c2b5e-3d4a-4e8b-9c0d-1a2b3c4d5e6f",'
        '"command":"notification.acknowledge","created_at":"2026-12-01T11:02:03Z",'
        '"expected_version":1,"fields":{},"idempotency_key":"ack-1","state":"DEU"}'
    )


def test_the_doc_snippet_and_vector_verify() -> None:
    """docs/audit-format.md §14.4: its verifier and its vector are the ones tested here."""
    doc = (Path(__file__).parent.parent / "docs" / "audit-format.md").read_text("utf-8")
    section = doc[doc.index("### 14.4 Golden vector") :]
    snippet = re.search(r"```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the documented verifier, run as written
    for vector in VECTORS["vectors"]:
        canonical = bytes.fromhex(vector["canonical"])
        digest = namespace["verify"](canonical, vector["signature"], vector["public_key"])
        assert digest == vector["digest"]
    shown = VECTORS["vectors"][1]
    for name in ("seed", "public_key", "key", "digest", "signature"):
        assert shown[name] in section
    assert bytes.fromhex(shown["canonical"]).decode("utf-8") in section


def test_keys_are_ordered_by_utf16_code_units_as_rfc8785_requires() -> None:
    """json.dumps(sort_keys=True) would put U+FB01 before U+1F600 (code point order)."""
    canonical = bytes.fromhex(VECTORS["vectors"][2]["canonical"]).decode("utf-8")
    assert canonical.index("\U0001f600") < canonical.index("\ufb01")


def test_a_changed_statement_or_a_wrong_key_fails_with_both_values() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_statement(_statement(), key)
    changed = SignedStatement(_statement(expected_version=2), signed.signature, signed.key)
    with pytest.raises(StatementSignatureInvalid) as caught:
        verify_statement(changed, key.public_key())
    assert caught.value.expected_key == key_fingerprint(key.public_key())
    assert caught.value.digest == statement_digest(changed.statement)

    other = Ed25519PrivateKey.generate()
    with pytest.raises(StatementSignatureInvalid) as caught:
        verify_statement(signed, other.public_key())
    assert caught.value.expected_key == key_fingerprint(other.public_key())
    # Naming the expected key's fingerprint does not help a signature by another key.
    relabelled = SignedStatement(signed.statement, signed.signature, caught.value.expected_key)
    with pytest.raises(StatementSignatureInvalid):
        verify_statement(relabelled, other.public_key())


def test_the_wire_form_round_trips() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_statement(_statement(fields={"response": "é"}), key)
    data = json.loads(json.dumps(signed.to_dict()))
    assert SignedStatement.from_dict(data) == signed
    assert verify_statement(SignedStatement.from_dict(data), key.public_key()) == signed.statement


def test_the_creation_time_window() -> None:
    statement = _statement()
    check_creation_time(statement, AT + CREATION_WINDOW)
    check_creation_time(statement, AT - CREATION_WINDOW)
    late = AT + CREATION_WINDOW + timedelta(seconds=1)
    with pytest.raises(StatementExpired) as caught:
        check_creation_time(statement, late)
    assert (caught.value.created_at, caught.value.now, caught.value.window) == (
        AT,
        late,
        CREATION_WINDOW,
    )
    assert "too old" in str(caught.value)
    with pytest.raises(StatementExpired, match="in the future"):
        check_creation_time(statement, AT - CREATION_WINDOW - timedelta(seconds=1))


def test_a_replay_is_a_retry_and_a_reused_key_is_refused() -> None:
    first = _statement(fields={"response": "yes"})
    check_replay(_statement(fields={"response": "yes"}), statement_digest(first))
    other = _statement(fields={"response": "no"})
    with pytest.raises(StatementReused) as caught:
        check_replay(other, statement_digest(first))
    assert caught.value.idempotency_key == "ack-1"
    assert caught.value.expected_digest == statement_digest(first)
    assert caught.value.computed_digest == statement_digest(other)


def test_fields_cannot_be_changed_after_creation() -> None:
    fields: dict[str, Any] = {"a": [1]}
    statement = _statement(fields=fields)
    digest = statement_digest(statement)
    fields["a"].append(2)
    statement.fields["a"].append(3)
    assert statement_digest(statement) == digest
    assert statement.fields == {"a": [1]}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"fields": {"x": 1.5}}, "fields.x is not a JSON value"),
        ({"fields": {"x": 2**53}}, "fields.x is too large"),
        ({"fields": {1: "x"}}, "key that is not a string"),
        ({"fields": ["x"]}, "fields is not an object"),
        ({"state": "fra"}, "state is not a member State"),
        ({"state": "XXX"}, "state is not a member State"),
        ({"command": "Notify Now"}, "command is not a command type"),
        ({"expected_version": -1}, "expected_version is not a version"),
        ({"expected_version": True}, "expected_version is not a version"),
        ({"idempotency_key": "has space"}, "idempotency_key is not"),
        ({"created_at": datetime(2026, 12, 1, 11, 0)}, "created_at has no time zone"),
    ],
)
def test_values_outside_the_format_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(StatementMalformed, match=problem):
        _statement(**changes)


_CANONICAL = bytes.fromhex(VECTORS["vectors"][1]["canonical"])


@pytest.mark.parametrize(
    "data",
    [
        # Not canonical: whitespace, another key order, an escape RFC 8785 does not use.
        _CANONICAL.replace(b'"aggregate":', b'"aggregate": '),
        b'{"command":"notification.acknowledge",'
        + _CANONICAL[1:].replace(b'"command":"notification.acknowledge",', b""),
        _CANONICAL.replace(b'"ack-1"', b'"\\u0061ck-1"'),
    ],
)
def test_only_canonical_bytes_parse(data: bytes) -> None:
    with pytest.raises(StatementMalformed, match="not the canonical encoding") as caught:
        parse_statement(data)
    assert "SHA-256" in caught.value.expected and "SHA-256" in caught.value.given


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "other keys"),
        (b'{"state":"DEU"}', "other keys"),
        (
            b'{"aggregate":"6F1C2B5E-3D4A-4E8B-9C0D-1A2B3C4D5E6F","command":"a","created_at":'
            b'"2026-12-01T11:02:03Z","expected_version":1,"fields":{},"idempotency_key":"k",'
            b'"state":"DEU"}',
            "aggregate is not a UUID in canonical form",
        ),
        (
            b'{"aggregate":"6f1c2b5e-3d4a-4e8b-9c0d-1a2b3c4d5e6f","command":"a","created_at":'
            b'"2026-12-01 11:02:03","expected_version":1,"fields":{},"idempotency_key":"k",'
            b'"state":"DEU"}',
            "created_at is not a UTC time",
        ),
        (
            b'{"aggregate":"6f1c2b5e-3d4a-4e8b-9c0d-1a2b3c4d5e6f","command":"a","created_at":'
            b'"2026-12-01T11:02:03Z","expected_version":1,"fields":{"x":1.0},"idempotency_key":'
            b'"k","state":"DEU"}',
            "not an integer",
        ),
    ],
)
def test_malformed_bytes_are_refused_with_what_was_expected(data: bytes, problem: str) -> None:
    with pytest.raises(StatementMalformed, match=problem):
        parse_statement(data)


def test_direct_construction_is_held_to_the_format() -> None:
    """Only one byte form per statement: a Statement built by hand is checked like create's."""
    good = _statement(fields={"a": 1})
    values: dict[str, Any] = {
        "command": good.command,
        "state": good.state,
        "aggregate": good.aggregate,
        "expected_version": good.expected_version,
        "fields_json": good.fields_json,
        "idempotency_key": good.idempotency_key,
        "created_at": good.created_at,
    }
    assert Statement(**values) == good
    for name, bad, problem in [
        ("fields_json", b'{"a": 1}', "not canonical"),
        ("fields_json", b"[1]", "fields is not an object"),
        ("created_at", AT.replace(microsecond=5), "to the second"),
        ("created_at", AT.astimezone(timezone(timedelta(hours=1))), "to the second"),
        ("aggregate", str(AGGREGATE), "not a UUID"),
        ("state", "ZZZ", "member State"),
    ]:
        with pytest.raises(StatementMalformed, match=problem):
            Statement(**{**values, name: bad})
