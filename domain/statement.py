"""Signed statements: what a signer says it asked for, in bytes no one can reinterpret (issue 15).

The operator runs the server and holds the database, so an event's own fields cannot prove who
asked for it: the operator could write any of them. A *statement* is the command as the signer
saw it -- its type, the State, the aggregate, the expected version, the fields, the
idempotency key and the creation time -- signed with the signer's Ed25519 key, so that anyone
holding the public key can check, without any server key, that the signer asked for exactly
this.

A signature covers bytes, not objects, so the statement has one canonical encoding:

* the statement object is serialised with the JSON Canonicalization Scheme (RFC 8785, the
  ``rfc8785`` library: keys sorted by UTF-16 code units, no whitespace, UTF-8, minimal string
  escapes). The standard library's ``json.dumps(sort_keys=True)`` is not enough: it sorts by
  code point, which differs from JCS for keys outside the Basic Multilingual Plane;
* numbers are integers only, within the I-JSON safe range (|n| <= 2**53 - 1): a float has more
  than one decimal spelling in other languages' libraries, so it is refused, not canonicalised;
* the signed message is :data:`STATEMENT_PREFIX` followed by the canonical bytes. The prefix
  separates this use of the key from any other (a signature over a statement can never be
  replayed as a signature over something else that happens to be valid JSON).

Parsing is strict: :func:`parse_statement` accepts only bytes that are already canonical, so a
statement has exactly one byte form and one digest. The digest (:func:`statement_digest`) is
what a replay check compares: the same idempotency key with another digest is another request.

The server's write path checks and stores them (``domain.signing``,
``domain.signed_requests``; docs/audit-format.md, "Signed statements" and "Signed writes").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.errors import NotAMemberState, ValidationError
from domain.idempotency import check_key
from domain.members import check_member_state

__all__ = [
    "CREATION_WINDOW",
    "MAX_SAFE_INTEGER",
    "STATEMENT_PREFIX",
    "SignedStatement",
    "Statement",
    "StatementError",
    "StatementExpired",
    "StatementMalformed",
    "StatementReused",
    "StatementSignatureInvalid",
    "check_creation_time",
    "check_replay",
    "key_fingerprint",
    "parse_statement",
    "sign_statement",
    "statement_digest",
    "verify_statement",
]

#: Domain separation: the signed message is this prefix followed by the canonical bytes.
STATEMENT_PREFIX: Final = b"pocdir statement v1\n"

#: A statement is accepted only if its creation time is within this much of the server's
#: clock, either way: late enough that a captured statement cannot be replayed days later
#: once its idempotency key has been forgotten (keys are kept at least 24 hours), early
#: enough to absorb clock skew between an official's machine and the server.
CREATION_WINDOW: Final = timedelta(minutes=5)

#: The largest integer the canonical form carries (I-JSON, RFC 7493): beyond it a JavaScript
#: or other double-based verifier would read another number than the one signed.
MAX_SAFE_INTEGER: Final = 2**53 - 1

_COMMAND_RE: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_MAX_COMMAND_LENGTH: Final = 64
_TIME_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_KEYS: Final = (
    "aggregate",
    "command",
    "created_at",
    "expected_version",
    "fields",
    "idempotency_key",
    "state",
)
_MAX_DEPTH: Final = 16
_SIGNATURE_LENGTH: Final = 64


class StatementError(ValidationError):
    """A statement or its signature is refused; the subclass says why."""


class StatementMalformed(StatementError):
    """The statement is not of the format, or its bytes are not the canonical ones.

    ``expected`` says what the format asks for and ``given`` what was found (both short
    texts, never the statement's fields, which may be confidential).
    """

    def __init__(self, problem: str, *, expected: str, given: str) -> None:
        self.problem = problem
        self.expected = expected
        self.given = given
        super().__init__(f"malformed statement: {problem}; expected {expected}, got {given}")


class StatementSignatureInvalid(StatementError):
    """The signature does not verify with the key the signer is expected to hold.

    ``expected_key`` is the fingerprint of that key and ``digest`` the digest of the statement
    as computed here, so a State can tell a wrong key from a changed statement.
    """

    def __init__(self, *, expected_key: str, digest: str) -> None:
        self.expected_key = expected_key
        self.digest = digest
        super().__init__(
            f"the statement's signature does not verify with key {expected_key} "
            f"(statement digest {digest}); sign the statement's canonical bytes with that key"
        )


class StatementExpired(StatementError):
    """The creation time is outside :data:`CREATION_WINDOW` of the server's clock."""

    def __init__(self, created_at: datetime, now: datetime, window: timedelta) -> None:
        self.created_at = created_at
        self.now = now
        self.window = window
        when = "in the future" if created_at > now else "too old"
        super().__init__(
            f"the statement was created at {_format_time(created_at)}, {when} for "
            f"{_format_time(now)}: it must be within {int(window.total_seconds())} seconds; "
            "create and sign a new statement with the current time"
        )


class StatementReused(StatementError):
    """The idempotency key was used before for a statement with another digest."""

    def __init__(self, idempotency_key: str, *, expected_digest: str, computed_digest: str):
        self.idempotency_key = idempotency_key
        self.expected_digest = expected_digest
        self.computed_digest = computed_digest
        super().__init__(
            f"idempotency key {idempotency_key!r} was used for statement {expected_digest}, "
            f"this statement is {computed_digest}; use a new key for a new request"
        )


@dataclass(frozen=True)
class Statement:
    """One command as its signer states it. Immutable: ``fields`` is kept in canonical form.

    ``expected_version`` is ``None`` for a command that creates its aggregate (or that does not
    check the version). ``state`` is ``None`` only in a statement of the Secretariat or the
    server that concerns no one State (a credential for an auditor). ``created_at``
    is kept to the second, in UTC, as it is signed.
    """

    command: str
    state: str | None
    aggregate: UUID
    expected_version: int | None
    fields_json: bytes = field(repr=False)
    idempotency_key: str
    created_at: datetime

    def __post_init__(self) -> None:
        """Direct construction is checked too, so every Statement has its one canonical form."""
        _check_command(self.command)
        _check_state(self.state)
        if not isinstance(self.aggregate, UUID):
            raise StatementMalformed(
                "aggregate is not a UUID", expected="a uuid.UUID", given=_kind(self.aggregate)
            )
        _check_version(self.expected_version)
        _check_idempotency_key(self.idempotency_key)
        if (
            not isinstance(self.created_at, datetime)
            or self.created_at.utcoffset() != timedelta(0)
            or self.created_at.microsecond
        ):
            raise StatementMalformed(
                "created_at is not a UTC time to the second",
                expected="an aware datetime in UTC without microseconds (use Statement.create)",
                given=repr(self.created_at)[:60],
            )
        try:
            fields = json.loads(self.fields_json, parse_float=_refuse_float)
        except (TypeError, UnicodeDecodeError, json.JSONDecodeError):
            raise StatementMalformed(
                "fields_json is not JSON", expected="canonical JSON bytes", given="other bytes"
            ) from None
        if _canonical(_check_json(fields, "fields", 0, require_object=True)) != self.fields_json:
            raise StatementMalformed(
                "fields_json is not canonical",
                expected="the RFC 8785 bytes of the fields (use Statement.create)",
                given="other bytes",
            )

    @classmethod
    def create(
        cls,
        *,
        command: str,
        state: str | None,
        aggregate: UUID,
        expected_version: int | None,
        fields: Mapping[str, Any],
        idempotency_key: str,
        created_at: datetime,
    ) -> Statement:
        """Build a statement from Python values: canonicalise the fields, take the time to the
        second in UTC, and check every value against the format."""
        if not isinstance(created_at, datetime) or created_at.tzinfo is None:
            raise StatementMalformed(
                "created_at has no time zone",
                expected="an aware datetime (UTC)",
                given="a naive datetime",
            )
        # The other values are checked once, by __post_init__.
        return cls(
            command=command,
            state=state,
            aggregate=aggregate,
            expected_version=expected_version,
            fields_json=_canonical(_check_json(fields, "fields", 0, require_object=True)),
            idempotency_key=idempotency_key,
            created_at=created_at.astimezone(UTC).replace(microsecond=0),
        )

    @property
    def fields(self) -> dict[str, Any]:
        """A fresh copy of the fields (changing it cannot change the statement)."""
        value: dict[str, Any] = json.loads(self.fields_json)
        return value

    def to_object(self) -> dict[str, Any]:
        """The statement object that is canonicalised (the keys of docs/audit-format.md)."""
        return {
            "aggregate": str(self.aggregate),
            "command": self.command,
            "created_at": _format_time(self.created_at),
            "expected_version": self.expected_version,
            "fields": self.fields,
            "idempotency_key": self.idempotency_key,
            "state": self.state,
        }

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 bytes of :meth:`to_object`: what the signature and the digest cover."""
        return self._canonical_form

    @cached_property
    def _canonical_form(self) -> bytes:
        # Computed once: the statement is immutable, and a signed write needs its bytes to
        # parse, to verify, to store and for its receipt's digest.
        return _canonical(self.to_object())

    def signing_input(self) -> bytes:
        """The exact message signed: :data:`STATEMENT_PREFIX` then the canonical bytes."""
        return STATEMENT_PREFIX + self.canonical_bytes()


@dataclass(frozen=True)
class SignedStatement:
    """A statement with its Ed25519 signature and the fingerprint of the key that made it."""

    statement: Statement
    signature: bytes
    key: str

    def to_dict(self) -> dict[str, Any]:
        """The wire form: the statement's canonical bytes as text, the signature in hex."""
        return {
            "statement": self.statement.canonical_bytes().decode("utf-8"),
            "signature": self.signature.hex(),
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedStatement:
        """Read :meth:`to_dict`'s form, strictly (the statement must be canonical)."""
        if not isinstance(data, Mapping) or set(data) != {"statement", "signature", "key"}:
            raise StatementMalformed(
                "a signed statement has other keys",
                expected="exactly the keys 'statement', 'signature' and 'key'",
                given=_describe_keys(data),
            )
        text, signature, key = data["statement"], data["signature"], data["key"]
        if not isinstance(text, str):
            raise StatementMalformed(
                "statement is not text",
                expected="the canonical JSON as a string",
                given=_kind(text),
            )
        if not isinstance(signature, str) or not re.fullmatch(r"[0-9a-f]{128}", signature):
            raise StatementMalformed(
                "signature is not 64 bytes in hex",
                expected="128 lowercase hexadecimal characters",
                given=_kind(signature)
                if not isinstance(signature, str)
                else f"{len(signature)} characters",
            )
        if not isinstance(key, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
            raise StatementMalformed(
                "key is not a key fingerprint",
                expected="'sha256:' and 64 lowercase hexadecimal characters",
                given=_kind(key),
            )
        return cls(parse_statement(text.encode("utf-8")), bytes.fromhex(signature), key)


def fingerprint_of(raw_public_key: bytes) -> str:
    """``sha256:`` and the SHA-256 of a public key's raw bytes, in hex: how every key is named
    (signing keys here, the States' encryption keys in ``domain.state_keys`` and the State
    client), and what a State's mission confirms out of band."""
    return "sha256:" + hashlib.sha256(raw_public_key).hexdigest()


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """The name of an Ed25519 signing key: ``fingerprint_of`` its raw 32 bytes."""
    return fingerprint_of(public_key.public_bytes_raw())


def statement_digest(statement: Statement) -> str:
    """SHA-256 of the signing input, in hex: the statement's identity for replay checks.

    It covers the prefix, so a digest of a statement never equals a digest of other bytes
    that a later format version might sign.
    """
    return hashlib.sha256(statement.signing_input()).hexdigest()


def sign_statement(statement: Statement, private_key: Ed25519PrivateKey) -> SignedStatement:
    """Sign the statement's signing input (Ed25519 is deterministic: same key, same bytes)."""
    return SignedStatement(
        statement=statement,
        signature=private_key.sign(statement.signing_input()),
        key=key_fingerprint(private_key.public_key()),
    )


def verify_statement(signed: SignedStatement, public_key: Ed25519PublicKey) -> Statement:
    """Check the signature with ``public_key``, the key the signer is expected to hold.

    The fingerprint the statement names must be that key's: a statement naming another key
    is refused even before the signature is checked, so a record never shows a key that did
    not sign.
    """
    expected = key_fingerprint(public_key)
    digest = statement_digest(signed.statement)
    if signed.key != expected or len(signed.signature) != _SIGNATURE_LENGTH:
        raise StatementSignatureInvalid(expected_key=expected, digest=digest)
    try:
        public_key.verify(signed.signature, signed.statement.signing_input())
    except InvalidSignature:
        raise StatementSignatureInvalid(expected_key=expected, digest=digest) from None
    return signed.statement


def check_creation_time(
    statement: Statement, now: datetime, window: timedelta = CREATION_WINDOW
) -> None:
    """Refuse a statement created more than ``window`` before or after ``now``."""
    if abs(statement.created_at - now) > window:
        raise StatementExpired(statement.created_at, now, window)


def check_replay(statement: Statement, recorded_digest: str) -> None:
    """Called when the statement's idempotency key was recorded before with ``recorded_digest``.

    The same digest is a retry (the caller returns the first outcome and writes nothing);
    another digest is a different request reusing the key, refused with both digests.
    """
    computed = statement_digest(statement)
    if computed != recorded_digest:
        raise StatementReused(
            statement.idempotency_key, expected_digest=recorded_digest, computed_digest=computed
        )


def parse_statement(data: bytes) -> Statement:
    """Read a statement from its canonical bytes; any other byte form is refused.

    Refusing non-canonical input (extra spaces, another key order, escapes) means a verifier
    never has to re-encode to check a signature, and a statement has one digest.
    """
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise StatementMalformed(
            "the bytes are not UTF-8", expected="UTF-8 JSON", given="invalid UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise StatementMalformed(
            "the bytes are not JSON", expected="a JSON object", given=f"error at {exc.pos}"
        ) from None
    if not isinstance(obj, dict) or set(obj) != set(_KEYS):
        raise StatementMalformed(
            "the statement has other keys",
            expected="exactly the keys " + ", ".join(_KEYS),
            given=_describe_keys(obj),
        )
    statement = Statement.create(
        command=_require(obj, "command", str),
        state=obj["state"],
        aggregate=_parse_uuid(obj["aggregate"]),
        expected_version=obj["expected_version"],
        fields=_require(obj, "fields", dict),
        idempotency_key=_require(obj, "idempotency_key", str),
        created_at=_parse_time(obj["created_at"]),
    )
    canonical = statement.canonical_bytes()
    if canonical != data:
        raise StatementMalformed(
            "the bytes are not the canonical encoding (RFC 8785)",
            expected=f"{len(canonical)} bytes, SHA-256 {hashlib.sha256(canonical).hexdigest()}",
            given=f"{len(data)} bytes, SHA-256 {hashlib.sha256(data).hexdigest()}",
        )
    return statement


# --- helpers -------------------------------------------------------------------------------


def _canonical(obj: Any) -> bytes:
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise StatementMalformed(
            "a value cannot be canonicalised", expected="JSON values (RFC 8785)", given=str(exc)
        ) from None


def _format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise StatementMalformed(
            "created_at is not a UTC time to the second",
            expected="YYYY-MM-DDTHH:MM:SSZ",
            given=_kind(value),
        )
    try:
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise StatementMalformed(
            "created_at is not a calendar time", expected="a valid date and time", given=value
        ) from None


def _parse_uuid(value: object) -> UUID:
    if isinstance(value, str):
        try:
            parsed = UUID(value)
        except ValueError:
            pass
        else:
            if str(parsed) == value:
                return parsed
    raise StatementMalformed(
        "aggregate is not a UUID in canonical form",
        expected="a lowercase hyphenated UUID",
        given=_kind(value),
    )


def _check_command(command: object) -> str:
    if (
        not isinstance(command, str)
        or len(command) > _MAX_COMMAND_LENGTH
        or not _COMMAND_RE.fullmatch(command)
    ):
        raise StatementMalformed(
            "command is not a command type",
            expected=f"dotted lowercase names of at most {_MAX_COMMAND_LENGTH} characters, "
            "such as 'notification.send'",
            given=_kind(command),
        )
    return command


def _check_state(state: object) -> str | None:
    if state is None:
        return None  # the Secretariat's or the server's statement about no one State
    if isinstance(state, str):
        try:
            if check_member_state(state) == state:
                return state
        except NotAMemberState:
            pass
    raise StatementMalformed(
        "state is not a member State's code",
        expected="null or the uppercase ISO 3166-1 alpha-3 code of a UN member State",
        given=_kind(state),
    )


def _check_version(version: object) -> int | None:
    if version is None:
        return None
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 0 <= version <= MAX_SAFE_INTEGER
    ):
        raise StatementMalformed(
            "expected_version is not a version",
            expected=f"null or an integer from 0 to {MAX_SAFE_INTEGER}",
            given=_kind(version),
        )
    return version


def _check_idempotency_key(key: object) -> str:
    if isinstance(key, str):
        try:
            return check_key(key)
        except ValidationError:
            pass
    raise StatementMalformed(
        "idempotency_key is not an idempotency key",
        expected="1 to 255 visible ASCII characters",
        given=_kind(key),
    )


def _check_json(value: object, path: str, depth: int, *, require_object: bool = False) -> Any:
    """Refuse what the canonical form does not carry: floats, big integers, non-string keys."""
    if depth > _MAX_DEPTH:
        raise StatementMalformed(
            f"{path} is nested too deeply", expected=f"at most {_MAX_DEPTH} levels", given="more"
        )
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StatementMalformed(
                    f"{path} has a key that is not a string",
                    expected="string keys",
                    given=_kind(key),
                )
            result[key] = _check_json(item, f"{path}.{key}", depth + 1)
        return result
    if require_object:
        raise StatementMalformed(
            f"{path} is not an object", expected="an object", given=_kind(value)
        )
    if isinstance(value, (list, tuple)):
        return [_check_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise StatementMalformed(
                f"{path} is too large",
                expected=f"|n| <= {MAX_SAFE_INTEGER}",
                given="a larger integer",
            )
        return value
    raise StatementMalformed(
        f"{path} is not a JSON value of the format",
        expected="an object, array, string, integer, true, false or null (no floats)",
        given=_kind(value),
    )


def _require(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj[key]
    if not isinstance(value, kind):
        raise StatementMalformed(
            f"{key} has the wrong type", expected=kind.__name__, given=_kind(value)
        )
    return value


def _refuse_float(text: str) -> float:
    raise StatementMalformed(
        "a number is not an integer", expected="integers only", given="a float"
    )


def _refuse_constant(text: str) -> float:
    raise StatementMalformed("a number is not finite", expected="integers only", given=text)


def _kind(value: object) -> str:
    """Name a value's type, never its content (statements may carry confidential text)."""
    return type(value).__name__


def _describe_keys(obj: object) -> str:
    if isinstance(obj, Mapping):
        return "keys " + ", ".join(sorted(repr(k)[:40] for k in obj))
    return _kind(obj)
