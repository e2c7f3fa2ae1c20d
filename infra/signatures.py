"""Check every event's signature against the keys valid at its position, without any server
key (issue 15, items 3 and 7; docs/audit-format.md, "Signed writes").

Input: the events' metadata (position, aggregate, version, type), which the record keeps in
the clear, and the stored statements (``infra.statement_store``). Nothing here decrypts an
event: every State's keys are rebuilt from statements alone (the Secretariat's bindings carry
the keys they bind, a State's rotations the keys they add), so an auditor with an audit
bundle checks exactly what the operator's own ``pocdir verify`` checks.

Who is held to signing, from where (item 7): every State from the position of the record's
first key binding (from then on a State without keys cannot write: the gate refuses it); the
Secretariat from the first statement signed with the operator key, the server from the first
signed with its own key. An event before that is *unsigned by design* (the
record predates signatures, or the signer had no key yet) and counted as such; an event after
it without a valid statement from its signer is a :class:`SignatureFault`, named with its
position, its signer and the key that was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.signing import SignerKind, event_name, expected_signer
from domain.state_entry import code_of_entry
from domain.state_keys import code_of_state_keys
from domain.statement import STATEMENT_PREFIX, fingerprint_of
from infra.chain import VerificationError
from infra.statement_store import StatementRow

_BIND_COMMANDS: Final = frozenset(
    {"secretariat.state_keys.keys_bound", "secretariat.state_keys.keys_reonboarded"}
)


class SignatureFault(VerificationError):
    """An event without a valid signature from its signer: ``signer`` is who had to sign,
    ``expected`` the key (or keys) that was expected, ``computed`` what the record holds."""

    def __init__(
        self, position: int, reason: str, *, signer: str, expected: str, computed: str
    ) -> None:
        self.signer = signer
        super().__init__(
            position, f"{reason} (signer {signer})", expected=expected, computed=computed
        )


@dataclass(frozen=True)
class SignatureSummary:
    """What the signature check found in an intact record."""

    signed: int
    unsigned_by_design: int
    statements: int
    states_signing: tuple[str, ...]
    operator_key: str | None
    server_key: str | None


@cache
def _verifier(raw_hex: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw_hex))


@dataclass
class _Statement:
    row: StatementRow
    obj: dict[str, Any]

    @property
    def command(self) -> str:
        return str(self.obj.get("command"))

    @property
    def fields(self) -> dict[str, Any]:
        value = self.obj.get("fields")
        return value if isinstance(value, dict) else {}


@dataclass
class SignatureVerifier:
    """Feed it every event in position order (:meth:`check`), then :meth:`finish`.

    ``operator_key`` pins the Secretariat's key fingerprint (as published); without it the
    first operator-signed statement's key is taken, which proves consistency only.
    """

    statements: Sequence[StatementRow]
    operator_key: str | None = None
    _next: int = 0
    _current: _Statement | None = None
    _keys: dict[str, dict[str, str]] = field(default_factory=dict)  # state -> fp -> hex
    _pinned: dict[str, str] = field(default_factory=dict)  # kind -> fingerprint
    _parties: dict[str, frozenset[str]] = field(default_factory=dict)  # aggregate -> States
    _signed: int = 0
    _unsigned: int = 0
    #: The position of the first key binding: from there on every State event is signed.
    _states_from: int | None = None

    def check(
        self, position: int, originator_id: Any, version: int, topic: str
    ) -> StatementRow | None:
        """Check one event; return the statement that covers it (its signer and key), or
        ``None`` for an event unsigned by design. Raises ``SignatureFault``."""
        statement = self._statement_at(position, originator_id, version)
        if (
            statement is None
            and self._states_from is None
            and not self._pinned
            and not topic.endswith(_BINDING_TOPIC)
        ):
            # Nobody is held to signing yet (a record from before signatures): the common
            # case of an old record costs one look at the topic.
            self._unsigned += 1
            return None
        aggregate = _uuid_text(originator_id)
        kind = _signer_of(topic)
        if topic.endswith(_BINDING_TOPIC):
            # Binding needs the operator key, so it is always signed; and it shows, in the
            # clear, that from here on every State signs, even if statements went missing.
            if self._states_from is None:
                self._states_from = position
            if statement is None:
                raise SignatureFault(
                    position,
                    "a key binding has no statement signed with the operator key",
                    signer=SignerKind.SECRETARIAT.value,
                    expected="a statement signed by the secretariat",
                    computed="no statement",
                )
        if statement is None:
            self._unsigned_event(position, aggregate, topic, kind)
            return None
        signer = statement.row.signer
        wanted = kind.value if kind is not SignerKind.STATE else "state:"
        if not signer.startswith(wanted):
            raise SignatureFault(
                position,
                f"{event_name(topic)} is signed by the wrong party",
                signer=_who(kind, self._states_of(aggregate)),
                expected=f"a statement signed by {_who(kind, self._states_of(aggregate))}",
                computed=f"a statement signed by {signer}",
            )
        if kind is SignerKind.STATE:
            states = self._states_of(aggregate)
            if states and signer[6:] not in states:
                raise SignatureFault(
                    position,
                    f"{event_name(topic)} is signed by a State not party to it",
                    signer=_who(kind, states),
                    expected=f"a statement signed by {_who(kind, states)}",
                    computed=f"a statement signed by {signer}",
                )
        self._signed += 1
        return statement.row

    def finish(self) -> SignatureSummary:
        if self._next < len(self.statements):
            raise _orphan(self.statements[self._next])
        return SignatureSummary(
            self._signed,
            self._unsigned,
            len(self.statements),
            tuple(sorted(self._keys)),
            self._pinned.get(SignerKind.SECRETARIAT.value),
            self._pinned.get(SignerKind.SERVER.value),
        )

    # -- statements -------------------------------------------------------------------------

    def _statement_at(self, position: int, originator_id: Any, version: int) -> _Statement | None:
        current = self._current
        if current is not None and current.row.last_position >= position:
            return current
        self._current = None
        if self._next < len(self.statements):
            row = self.statements[self._next]
            if row.first_position < position:
                raise _orphan(row)
            if row.first_position == position:
                self._next += 1
                self._current = self._open(row, position, _uuid_text(originator_id), version)
        return self._current

    def _open(self, row: StatementRow, position: int, aggregate: str, version: int) -> _Statement:
        """Check one statement's signature by its signer's key valid here, and that it is
        about this aggregate at this version; then apply what it says about keys."""
        try:
            obj = json.loads(row.statement)
            signature = bytes.fromhex(row.signature)
        except ValueError:
            raise SignatureFault(
                position,
                "the stored statement is not a statement",
                signer=row.signer,
                expected="canonical JSON and a hex signature",
                computed="other text",
            ) from None
        if not isinstance(obj, dict):
            obj = {}
        statement = _Statement(row, obj)
        public_hex = self._expected_key(row, statement, position)
        try:
            _verifier(public_hex).verify(signature, STATEMENT_PREFIX + row.statement.encode())
        except (InvalidSignature, ValueError):
            raise SignatureFault(
                position,
                "the signature does not verify",
                signer=row.signer,
                expected=f"a valid signature by {row.key}",
                computed=f"signature {row.signature[:16]}...",
            ) from None
        named = (str(obj.get("aggregate")), obj.get("expected_version"))
        if named[0] != aggregate or (named[1] is not None and named[1] + 1 != version):
            raise SignatureFault(
                position,
                "the statement is about another change",
                signer=row.signer,
                expected=f"aggregate {aggregate} from version {version - 1}",
                computed=f"aggregate {named[0][:40]} at version {named[1]}",
            )
        self._apply(statement, aggregate)
        return statement

    def _expected_key(self, row: StatementRow, statement: _Statement, position: int) -> str:
        if row.signer.startswith("state:"):
            state = row.signer[6:]
            valid = self._keys.get(state, {})
            if statement.obj.get("state") != state or row.key not in valid:
                raise SignatureFault(
                    position,
                    f"the statement is not signed by a key {state} held at this position",
                    signer=row.signer,
                    expected=_keys_text(state, valid),
                    computed=f"key {row.key}",
                )
            return valid[row.key]
        if fingerprint_of(bytes.fromhex(row.public_key)) != row.key:
            raise SignatureFault(
                position,
                "the statement's public key is not the key it names",
                signer=row.signer,
                expected=row.key,
                computed=fingerprint_of(bytes.fromhex(row.public_key)),
            )
        pinned = self._pinned.get(row.signer)
        if pinned is None and row.signer == SignerKind.SECRETARIAT.value and self.operator_key:
            pinned = self.operator_key
        if pinned is not None and pinned != row.key:
            raise SignatureFault(
                position,
                f"the {row.signer}'s statement is signed by another key",
                signer=row.signer,
                expected=f"key {pinned}",
                computed=f"key {row.key}",
            )
        self._pinned[row.signer] = row.key
        return row.public_key

    def _apply(self, statement: _Statement, aggregate: str) -> None:
        """Keys bound, rotated or revoked; the parties of a new exchange."""
        command, fields, state = statement.command, statement.fields, statement.obj.get("state")
        if command in _BIND_COMMANDS and state is None:
            # A re-onboarding's statement names no State (its event carries none): the key
            # set it is about does, by its id, which the statement is checked to name.
            state = next(iter(self._states_of(aggregate)), None)
        if command in _BIND_COMMANDS and isinstance(state, str):
            if self._states_from is None:
                self._states_from = statement.row.first_position
            keys = fields.get("signing_keys") or []
            self._keys[state] = {fingerprint_of(bytes.fromhex(k)): k for k in keys}
        elif command == "state_keys.rotate" and isinstance(state, str):
            held = self._keys.setdefault(state, {})
            for fp in fields.get("retire") or []:
                held.pop(fp, None)
            for k in fields.get("add") or []:
                held[fingerprint_of(bytes.fromhex(k))] = k
        elif command == "state_keys.revoke" and isinstance(state, str):
            self._keys.get(state, {}).pop(str(fields.get("key")), None)
        elif command == "notification.send" and isinstance(state, str):
            body = fields.get("body") or {}
            self._parties[aggregate] = frozenset({state, str(body.get("recipient"))})
        elif command == "consent.request" and isinstance(state, str):
            body = fields.get("body") or {}
            parties = self._parties.get(str(body.get("notification_id")), frozenset())
            self._parties[aggregate] = parties | {state}

    # -- events without a statement ---------------------------------------------------------

    def _unsigned_event(self, position: int, aggregate: str, topic: str, kind: SignerKind) -> None:
        if kind is SignerKind.STATE and self._states_from is not None:
            states = sorted(self._states_of(aggregate))
            name = " or ".join(states) if states else "a State"
            raise SignatureFault(
                position,
                f"{event_name(topic)} in {name}'s name has no signed statement (States sign "
                f"every write from position {self._states_from} on)",
                signer=_who(kind, states),
                expected="; ".join(_keys_text(s, self._keys.get(s, {})) for s in states)
                or "a signature by the State that caused it",
                computed="no statement",
            )
        if kind is not SignerKind.STATE and kind.value in self._pinned:
            raise SignatureFault(
                position,
                f"{event_name(topic)} has no signed statement",
                signer=kind.value,
                expected=f"a statement signed by the {kind.value}'s key {self._pinned[kind.value]}",
                computed="no statement",
            )
        self._unsigned += 1

    def _states_of(self, aggregate: str) -> frozenset[str]:
        """The States an aggregate belongs to, as far as the record shows without any key."""
        uuid = UUID(aggregate)
        try:
            return frozenset({code_of_entry(uuid)})
        except KeyError:
            pass
        try:
            return frozenset({code_of_state_keys(uuid)})
        except KeyError:
            pass
        return self._parties.get(aggregate, frozenset())


_BINDING_TOPIC: Final = ":StateKeys.KeysBound"


@cache
def _signer_of(topic: str) -> SignerKind:
    """``expected_signer``, once per stored topic (a record has a few dozen)."""
    return expected_signer(topic)


def _orphan(row: StatementRow) -> SignatureFault:
    """A statement whose first position holds no event (deleted, or never there)."""
    return SignatureFault(
        row.first_position,
        "a statement covers positions that hold no event",
        signer=row.signer,
        expected="an event at every position a statement covers",
        computed=f"statement for positions {row.first_position}-{row.last_position}",
    )


def _uuid_text(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    text = str(value)
    return str(UUID(text)) if len(text) == 32 else text


def _who(kind: SignerKind, states: Iterable[str]) -> str:
    if kind is SignerKind.STATE:
        names = sorted(states)
        return " or ".join(names) if names else "a State"
    return f"the {kind.value}"


def _keys_text(state: str, keys: dict[str, str]) -> str:
    if not keys:
        return f"a key of {state} (none valid here)"
    return f"a signature by {state} with " + " or ".join(sorted(keys))


def check_signatures(
    events: Iterable[tuple[int, Any, int, str]],
    statements: Sequence[StatementRow],
    operator_key: str | None = None,
) -> SignatureSummary:
    """Check every event of ``events`` (position, aggregate id, version, topic)."""
    verifier = SignatureVerifier(statements, operator_key)
    for position, originator_id, version, topic in events:
        verifier.check(position, originator_id, version, topic)
    return verifier.finish()
