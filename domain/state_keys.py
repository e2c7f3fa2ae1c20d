"""StateKeys: a State's public keys, in the record (issue 15, item 1; R12, R14).

The operator runs the server and holds the database, so a State's keys cannot simply be a
setting the operator could swap: they are events of the record, and every change after the
first is signed by a key the State already holds.

* **Bound** (``KeysBound``): when the Secretariat onboards a State it binds the State's first
  keys: one encryption key (the HPKE public key of ``state_client/keys.py``, held by the
  State's team) and one Ed25519 signing key per official. The fingerprints are what the
  State's mission confirms out of band (README, "State keys").
* **Rotated** (``KeysRotated``) and **revoked** (``SigningKeyRevoked``): the State itself,
  through a :class:`~domain.statement.SignedStatement` signed by one of its currently valid
  signing keys. The statement names the State, this aggregate and its current version, so
  it yields one change and cannot be replayed for another. The event keeps the statement's
  canonical text and signature, so anyone holding the earlier keys can check it without any
  server key.
* **Re-onboarded** (``KeysReonboarded``): when a State has lost every key, the Secretariat
  replaces all of them. It is its own event type, so it is plainly visible in the history.

Private keys never reach the server: every key here is public.

:func:`keys_valid_at` is the pure function later signature checks use: the keys in force at
an aggregate version, or at a time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final
from uuid import NAMESPACE_URL, UUID, uuid5

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotFound, NotPermitted, ValidationError
from domain.members import check_member_state, member_states
from domain.statement import (
    SignedStatement,
    Statement,
    StatementMalformed,
    check_creation_time,
    fingerprint_of,
    key_fingerprint,
    verify_statement,
)
from domain.values import Principal, Role

__all__ = [
    "split_encryption_key",
    "ENCRYPTION_KEY_LENGTH",
    "MAX_SIGNING_KEYS",
    "REVOKE_COMMAND",
    "ROTATE_COMMAND",
    "EncryptionKey",
    "KeySet",
    "SigningKey",
    "SigningKeyNotValid",
    "StateKeys",
    "check_changes_own_keys",
    "code_of_state_keys",
    "KeyHistoryBroken",
    "keys_valid_at",
    "verify_key_history",
    "owners_of",
    "parse_signing_keys",
    "state_keys_id",
]

#: A State registers one signing key per official; this bounds a key set's size.
MAX_SIGNING_KEYS: Final = 64
#: The statement commands a State signs to change its keys (docs/audit-format.md §14).
ROTATE_COMMAND: Final = "state_keys.rotate"
REVOKE_COMMAND: Final = "state_keys.revoke"

# The serialisation of a State's encryption public key (docs/e2e.md, "Key formats"):
# ML-KEM-768 encapsulation key then X25519 key. It is decided here, where the server checks
# the keys it records; the State client (which may import the domain, never the reverse)
# reads its keys with ``split_encryption_key`` too.
_MLKEM_LENGTH: Final = 1184
_X25519_LENGTH: Final = 32
ENCRYPTION_KEY_LENGTH: Final = _MLKEM_LENGTH + _X25519_LENGTH
_ED25519_LENGTH: Final = 32


def state_keys_id(code: str) -> UUID:
    """The key aggregate's id is derived from the State code, as the entry's is."""
    return uuid5(NAMESPACE_URL, f"urn:pocdir:state-keys:{code.upper()}")


@cache
def _key_codes() -> dict[UUID, str]:
    return {state_keys_id(code): code for code in member_states()}


def code_of_state_keys(keys_id: UUID) -> str:
    """The State code whose key aggregate has this id."""
    return _key_codes()[keys_id]


def split_encryption_key(
    raw: bytes,
) -> tuple[mlkem.MLKEM768PublicKey, x25519.X25519PublicKey]:
    """The two halves of an encryption public key's bytes, or ``ValidationError`` saying why
    they are not a valid ML-KEM-768 + X25519 public key."""
    if len(raw) != ENCRYPTION_KEY_LENGTH:
        raise ValidationError(
            f"an encryption key is {ENCRYPTION_KEY_LENGTH} bytes (ML-KEM-768 then X25519, "
            f"state_client/keys.py), got {len(raw)}"
        )
    try:
        return (
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_LENGTH]),
            x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_LENGTH:]),
        )
    except ValueError:
        raise ValidationError(
            "the encryption key is not a valid ML-KEM-768 + X25519 public key"
        ) from None


@dataclass(frozen=True)
class EncryptionKey:
    """A State's HPKE public key (MLKEM768-X25519), as base64 of its 1216 bytes."""

    public_key: str
    fingerprint: str

    @classmethod
    def from_bytes(cls, raw: bytes) -> EncryptionKey:
        """Check the bytes are a valid ML-KEM-768 + X25519 public key and name them."""
        split_encryption_key(raw)
        return cls(base64.b64encode(raw).decode("ascii"), fingerprint_of(raw))

    @classmethod
    def parse(cls, text: object) -> EncryptionKey:
        """Read the base64 form (how the HTTP API and statements carry it)."""
        if not isinstance(text, str) or len(text) > 2 * ENCRYPTION_KEY_LENGTH:
            raise ValidationError("encryption_key must be the key's 1216 bytes in base64")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("encryption_key is not base64") from None
        return cls.from_bytes(raw)

    def to_bytes(self) -> bytes:
        return base64.b64decode(self.public_key)

    def to_dict(self) -> dict[str, str]:
        return {"public_key": self.public_key, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncryptionKey:
        key = cls.parse(data["public_key"])
        if key.fingerprint != data["fingerprint"]:
            raise ValidationError("the encryption key's fingerprint does not match its bytes")
        return key


@dataclass(frozen=True)
class SigningKey:
    """An official's Ed25519 public key, as hex of its 32 raw bytes."""

    public_key: str
    fingerprint: str

    @classmethod
    def from_bytes(cls, raw: bytes) -> SigningKey:
        if len(raw) != _ED25519_LENGTH:
            raise ValidationError(f"a signing key is 32 raw Ed25519 bytes, got {len(raw)}")
        try:
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise ValidationError("the signing key is not a valid Ed25519 public key") from None
        return cls(raw.hex(), key_fingerprint(key))

    @classmethod
    def parse(cls, text: object) -> SigningKey:
        """Read the hex form (64 lowercase hexadecimal characters)."""
        if not isinstance(text, str) or len(text) != 2 * _ED25519_LENGTH:
            raise ValidationError("a signing key must be its 32 raw bytes in hex (64 characters)")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValidationError("a signing key is not hexadecimal") from None
        return cls.from_bytes(raw)

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_key))

    def to_dict(self) -> dict[str, str]:
        return {"public_key": self.public_key, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SigningKey:
        key = cls.parse(data["public_key"])
        if key.fingerprint != data["fingerprint"]:
            raise ValidationError("the signing key's fingerprint does not match its bytes")
        return key


def parse_signing_keys(values: object, *, at_least: int = 1) -> tuple[SigningKey, ...]:
    """A list of hex signing keys: no duplicates, at most :data:`MAX_SIGNING_KEYS`."""
    if not isinstance(values, (list, tuple)):
        raise ValidationError("signing keys must be a list of hex Ed25519 public keys")
    if not at_least <= len(values) <= MAX_SIGNING_KEYS:
        raise ValidationError(
            f"give {at_least} to {MAX_SIGNING_KEYS} signing keys, got {len(values)}"
        )
    keys = tuple(SigningKey.parse(v) for v in values)
    if len({k.fingerprint for k in keys}) != len(keys):
        raise ValidationError("a signing key is listed twice")
    return keys


class SigningKeyNotValid(NotPermitted):
    """A key statement is signed by a key that is not valid for this State now.

    ``reason`` is ``unknown`` (never bound for this State), ``revoked`` (revoked, retired or
    replaced at re-onboarding) or ``other_state`` (another State's key, given in ``owner``).
    """

    def __init__(self, state: str, key: str, reason: str, owner: str | None = None) -> None:
        self.state = state
        self.key = key
        self.reason = reason
        self.owner = owner
        why = {
            "unknown": "is not a key of",
            "revoked": "is no longer valid for",
            "other_state": f"is {owner}'s key, not one of",
        }[reason]
        super().__init__(
            f"the statement's signing key {key} {why} {state}; sign with one of {state}'s "
            "current signing keys (GET /keys/states/" + state + ")"
        )


@dataclass(frozen=True)
class KeySet:
    """The keys in force from one aggregate version until the next key event.

    ``event`` is the event type that made it (``KeysBound``, ``KeysRotated``,
    ``SigningKeyRevoked``, ``KeysReonboarded``); ``signed_by`` the fingerprint of the State's
    key that signed it, ``None`` for the Secretariat's events."""

    version: int
    at: datetime
    event: str
    actor: str
    encryption_key: EncryptionKey
    signing_keys: tuple[SigningKey, ...]
    signed_by: str | None = None
    statement: str | None = None
    signature: str | None = None

    def signing_key(self, fingerprint: str) -> SigningKey | None:
        return next((k for k in self.signing_keys if k.fingerprint == fingerprint), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeySet:
        """Read :meth:`to_json`'s form as served (``at`` as RFC 3339 text), e.g. by a client
        that checks a history with :func:`verify_key_history`."""
        at = data["at"]
        return cls(
            version=data["version"],
            at=datetime.fromisoformat(at) if isinstance(at, str) else at,
            event=data["event"],
            actor=data["actor"],
            encryption_key=EncryptionKey.from_dict(data["encryption_key"]),
            signing_keys=tuple(SigningKey.from_dict(k) for k in data["signing_keys"]),
            signed_by=data.get("signed_by"),
            statement=data.get("statement"),
            signature=data.get("signature"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "at": self.at,
            "event": self.event,
            "actor": self.actor,
            "encryption_key": self.encryption_key.to_dict(),
            "signing_keys": [k.to_dict() for k in self.signing_keys],
            "signed_by": self.signed_by,
            "statement": self.statement,
            "signature": self.signature,
        }


def keys_valid_at(
    history: Sequence[KeySet], *, version: int | None = None, at: datetime | None = None
) -> KeySet:
    """The keys in force once the aggregate had reached ``version`` (or at time ``at``).

    A statement with ``expected_version`` v is checked against ``keys_valid_at(history,
    version=v)``: the keys the State held when it signed. Give one of ``version`` and ``at``,
    or neither for the current keys. ``NotFound`` before the first binding."""
    if version is not None and at is not None:
        raise ValidationError("give a version or a time, not both")
    found = [
        k
        for k in history
        if (version is None or k.version <= version) and (at is None or k.at <= at)
    ]
    if not found:
        raise NotFound("no keys were bound for this State at that point")
    return found[-1]


class KeyHistoryBroken(ValidationError):
    """A key history does not hold together: ``version`` names the first step that fails."""

    def __init__(self, version: int, problem: str) -> None:
        self.version = version
        self.problem = problem
        super().__init__(f"the key history breaks at version {version}: {problem}")


#: The signed steps of a key history and the command each one's statement must be.
_SIGNED_EVENTS: Final = {"KeysRotated": ROTATE_COMMAND, "SigningKeyRevoked": REVOKE_COMMAND}


def verify_key_history(
    history: Sequence[KeySet], state: str, *, anchor: str | None = None
) -> list[int]:
    """Check a State's key history without any server key, as a client does before it
    trusts a key: the first step binds the encryption key ``anchor`` (its fingerprint, as
    confirmed out of band) when given; each signed step's statement is genuine, signed by a
    key valid at the step before, about this State's keys at that version, and says exactly
    the change the step shows. Returns the versions of re-onboardings, which are the
    Secretariat's and unsigned, so the caller can confirm their fingerprints out of band too.
    """
    if not history or history[0].event != "KeysBound" or history[0].version != 1:
        raise KeyHistoryBroken(1, "it does not start with the binding at version 1")
    if anchor is not None and history[0].encryption_key.fingerprint != anchor:
        raise KeyHistoryBroken(1, f"the bound encryption key is not {anchor}")
    reonboarded = []
    for before, step in zip(history, history[1:], strict=False):
        if step.version != before.version + 1:
            raise KeyHistoryBroken(step.version, f"it follows version {before.version}")
        if step.event == "KeysReonboarded":
            reonboarded.append(step.version)
            continue
        command = _SIGNED_EVENTS.get(step.event)
        if command is None or step.statement is None or step.signature is None:
            raise KeyHistoryBroken(step.version, f"{step.event[:40]} is not a signed key step")
        _check_step(before, step, state, command, step.statement, step.signature)
    return reonboarded


def _check_step(
    before: KeySet, step: KeySet, state: str, command: str, text: str, signature: str
) -> None:
    signer = before.signing_key(step.signed_by or "")
    if signer is None:
        raise KeyHistoryBroken(step.version, "its signer held no valid key at the step before")
    try:
        signed = SignedStatement.from_dict(
            {"statement": text, "signature": signature, "key": signer.fingerprint}
        )
        statement = verify_statement(signed, signer.verifier())
    except ValidationError as e:
        raise KeyHistoryBroken(step.version, str(e)) from None
    if (
        statement.command != command
        or statement.state != state
        or statement.aggregate != state_keys_id(state)
        or statement.expected_version != before.version
    ):
        raise KeyHistoryBroken(step.version, "the statement is about another change")
    fields = statement.fields
    if command == REVOKE_COMMAND:
        expected = (
            before.encryption_key,
            [k for k in before.signing_keys if k.fingerprint != fields.get("key")],
        )
    else:
        retire = fields.get("retire") or []
        raw = fields.get("encryption_key")
        try:
            encryption = before.encryption_key if raw is None else EncryptionKey.parse(raw)
            added = list(parse_signing_keys(fields.get("add") or [], at_least=0))
        except ValidationError as e:
            raise KeyHistoryBroken(step.version, str(e)) from None
        kept = [k for k in before.signing_keys if k.fingerprint not in retire]
        expected = (encryption, kept + added)
    if (step.encryption_key, list(step.signing_keys)) != expected:
        raise KeyHistoryBroken(step.version, "its keys are not what its statement says")


def check_changes_own_keys(by: Principal, code: str) -> None:
    """R15: only the State itself rotates or revokes its keys. Decided here only: the
    aggregate calls it, and so does the HTTP route before it reads the statement."""
    if by.role is not Role.STATE or by.state != code:
        raise NotPermitted(f"only {code[:10]} itself changes its keys (R15)")


def _check_secretariat(by: Principal, verb: str) -> None:
    if by.role is not Role.SECRETARIAT:
        raise NotPermitted(f"only the Secretariat {verb} a State's keys")


class StateKeys(PocdirAggregate):
    """One State's key history, rebuilt from its events."""

    class KeysBound(PocdirAggregate.Created):
        state: str
        encryption_key: EncryptionKey
        signing_keys: tuple[SigningKey, ...]

    class KeysReonboarded(PocdirAggregate.Event):
        """The Secretariat replaced every key of a State that lost them all."""

        encryption_key: EncryptionKey
        signing_keys: tuple[SigningKey, ...]

        def apply(self, keys: StateKeys) -> None:
            keys.revoked |= {k.fingerprint for k in keys.current.signing_keys}
            keys.record(self, self.encryption_key, tuple(self.signing_keys))

    class KeysRotated(PocdirAggregate.Event):
        """The State changed its keys, by a statement signed with a key it held."""

        statement: str
        signature: str
        signed_by: str
        encryption_key: EncryptionKey
        added: tuple[SigningKey, ...]
        retired: tuple[str, ...]

        def apply(self, keys: StateKeys) -> None:
            kept = tuple(k for k in keys.current.signing_keys if k.fingerprint not in self.retired)
            keys.revoked |= set(self.retired)
            keys.record(self, self.encryption_key, kept + tuple(self.added), self)

    class SigningKeyRevoked(PocdirAggregate.Event):
        """The State revoked one official's signing key, by a signed statement."""

        statement: str
        signature: str
        signed_by: str
        key: str

        def apply(self, keys: StateKeys) -> None:
            kept = tuple(k for k in keys.current.signing_keys if k.fingerprint != self.key)
            keys.revoked.add(self.key)
            keys.record(self, keys.current.encryption_key, kept, self)

    def __init__(
        self,
        state: str,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        actor: str,
    ) -> None:
        self.state = state
        self.revoked: set[str] = set()
        # The library passes the Created event's fields that __init__ names (``actor`` too);
        # the first key set is version 1.
        self.history: list[KeySet] = [
            # Stored tuples are read back as lists: keep the key set immutable.
            KeySet(1, self.created_on, "KeysBound", actor, encryption_key, tuple(signing_keys))
        ]

    @property
    def current(self) -> KeySet:
        return self.history[-1]

    def record(
        self,
        event: PocdirAggregate.Event,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        signed: KeysRotated | SigningKeyRevoked | None = None,
    ) -> None:
        self.history.append(
            KeySet(
                event.originator_version,
                event.timestamp,
                type(event).__name__,
                event.actor,
                encryption_key,
                signing_keys,
                signed_by=None if signed is None else signed.signed_by,
                statement=None if signed is None else signed.statement,
                signature=None if signed is None else signed.signature,
            )
        )

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def bind(
        cls,
        code: str,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        by: Principal,
        at: datetime,
    ) -> StateKeys:
        """The Secretariat binds a State's first keys when it onboards the State."""
        code = check_member_state(code)
        _check_secretariat(by, "binds")
        return cls._create(
            cls.KeysBound,
            id=state_keys_id(code),
            state=code,
            encryption_key=encryption_key,
            signing_keys=signing_keys,
            actor=by.ref,
            timestamp=at,
        )

    def reonboard(
        self,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        by: Principal,
        at: datetime,
    ) -> None:
        """The Secretariat replaces every key of a State that lost them all."""
        _check_secretariat(by, "re-onboards")
        # The State lost its keys: whoever found them must not keep their power.
        held = self.revoked | {k.fingerprint for k in self.current.signing_keys}
        reused = sorted({k.fingerprint for k in signing_keys} & held)
        if reused or encryption_key == self.current.encryption_key:
            what = f"signing key {reused[0]}" if reused else "the encryption key"
            raise InvalidTransition(
                f"{what} was {self.state}'s before; a re-onboarded State needs new keys"
            )
        self.trigger_event(
            self.KeysReonboarded,
            encryption_key=encryption_key,
            signing_keys=signing_keys,
            actor=by.ref,
            timestamp=at,
        )

    def rotate(self, signed: SignedStatement, by: Principal, at: datetime) -> None:
        """The State changes its keys: a new encryption key and/or signing keys added and
        retired, in fields ``encryption_key`` (base64 or null), ``add`` (hex keys) and
        ``retire`` (fingerprints)."""
        statement = self.check_signed(signed, ROTATE_COMMAND, by, at)
        fields = _fields(statement, {"encryption_key", "add", "retire"})
        raw_encryption = fields["encryption_key"]
        encryption = (
            self.current.encryption_key
            if raw_encryption is None
            else EncryptionKey.parse(raw_encryption)
        )
        added = parse_signing_keys(fields["add"], at_least=0)
        retire = fields["retire"]
        if not isinstance(retire, list) or not all(isinstance(r, str) for r in retire):
            raise ValidationError("retire must be a list of signing key fingerprints")
        held = {k.fingerprint for k in self.current.signing_keys}
        unknown = [r for r in retire if r not in held]
        if unknown:
            raise InvalidTransition(f"{unknown[0][:80]} is not a current signing key")
        for key in added:
            if key.fingerprint in held or key.fingerprint in self.revoked:
                raise InvalidTransition(
                    f"signing key {key.fingerprint} is already or was once {self.state}'s"
                )
        remaining = len(held) - len(set(retire)) + len(added)
        if remaining < 1:
            raise InvalidTransition(
                f"{self.state} must keep at least one signing key; add one in the same rotation"
            )
        if remaining > MAX_SIGNING_KEYS:
            raise InvalidTransition(f"a State holds at most {MAX_SIGNING_KEYS} signing keys")
        if raw_encryption is None and not added and not retire:
            raise InvalidTransition("the rotation changes no key")
        self.trigger_event(
            self.KeysRotated,
            **_signed_fields(signed),
            encryption_key=encryption,
            added=added,
            retired=tuple(dict.fromkeys(retire)),
            actor=by.ref,
            timestamp=at,
        )

    def revoke(self, signed: SignedStatement, by: Principal, at: datetime) -> None:
        """The State revokes one signing key (field ``key``: its fingerprint)."""
        statement = self.check_signed(signed, REVOKE_COMMAND, by, at)
        key = _fields(statement, {"key"})["key"]
        if not isinstance(key, str) or self.current.signing_key(key) is None:
            raise InvalidTransition(f"{str(key)[:80]} is not a current signing key")
        if len(self.current.signing_keys) == 1:
            raise InvalidTransition(
                f"that is {self.state}'s last signing key; rotate in a new one first"
            )
        self.trigger_event(
            self.SigningKeyRevoked, **_signed_fields(signed), key=key, actor=by.ref, timestamp=at
        )

    # -- guards -----------------------------------------------------------------------------

    def check_signed(
        self, signed: SignedStatement, command: str, by: Principal, at: datetime
    ) -> Statement:
        """A key change is the State's own (R15), signed by a key it holds now, about this
        aggregate at its current version, created within the window of ``at``."""
        check_changes_own_keys(by, self.state)
        statement = signed.statement
        if statement.command != command:
            raise StatementMalformed(
                "the statement is for another command", expected=command, given="another"
            )
        if statement.state != self.state or statement.aggregate != self.id:
            raise StatementMalformed(
                "the statement is about another State's keys",
                expected=f"state {self.state}, aggregate {self.id}",
                given=f"state {statement.state}",
            )
        if statement.expected_version != self.version:
            raise InvalidTransition(
                f"the statement expects version {statement.expected_version} of {self.state}'s "
                f"keys, which are at version {self.version}; read them again and sign anew"
            )
        self.check_signer(signed, at)
        return statement

    def check_signer(self, signed: SignedStatement, at: datetime) -> SigningKey:
        """The key, valid for this State now, whose signature ``signed`` carries; and the
        statement was created within the window of ``at``. For every signed write of the
        State (``domain.signed_requests``), as for its key changes."""
        key = keys_valid_at(self.history, version=self.version).signing_key(signed.key)
        if key is None:
            reason = "revoked" if signed.key in self.revoked else "unknown"
            raise SigningKeyNotValid(self.state, signed.key, reason)
        verify_statement(signed, key.verifier())
        check_creation_time(signed.statement, at)
        return key


def _fields(statement: Statement, names: set[str]) -> dict[str, Any]:
    fields = statement.fields
    if set(fields) != names:
        raise StatementMalformed(
            "the statement's fields are not the command's",
            expected="exactly " + ", ".join(sorted(names)),
            given=", ".join(sorted(fields))[:120] or "none",
        )
    return fields


def _signed_fields(signed: SignedStatement) -> dict[str, str]:
    wire = signed.to_dict()
    return {"statement": wire["statement"], "signature": wire["signature"], "signed_by": signed.key}


def owners_of(key: str, aggregates: Iterable[StateKeys]) -> str | None:
    """The State whose key history ever held signing key ``key``, if any."""
    for keys in aggregates:
        if any(k.signing_key(key) is not None for k in keys.history):
            return keys.state
    return None
