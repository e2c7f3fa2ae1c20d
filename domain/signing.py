"""Who signs each write, and the write's signature on its way to the record (issue 15, item 2).

Every event names who caused it, and that party signs it (docs/audit-format.md, "Signers"):

* a **State** signs its own commands, on its own machine (``domain.signed_requests``); the
  server checks the statement before anything is written;
* the **Secretariat** signs onboarding, checks, credentials and key binding with the
  operator key (``POCDIR_OPERATOR_KEY_FILE``);
* the **server** signs what it records by itself (a consented read, an escalation) with its
  own key, the one that signs checkpoints and receipts (``POCDIR_SIGNING_KEY_FILE``).

A write's signature travels in a context variable, as its position does (``domain.position``):
the HTTP gate (or the CLI) opens a :class:`SigningContext` around the command; the command's
save takes it, builds or checks the statement, and the recorder stores it beside the events,
in their transaction (``infra.statement_store``), then reports the events' leaf hashes back
for the receipt. A save outside any context stores no statement: such events are unsigned,
which the verifier accepts only where the signer was not yet held to signing (item 7).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.state_entry import state_entry_id
from domain.state_keys import state_keys_id
from domain.statement import SignedStatement, StatementError, key_fingerprint, statement_digest

__all__ = [
    "RECEIPT_HEADER",
    "RECEIPT_PREFIX",
    "ReceiptInvalid",
    "RecordSigners",
    "operator_fields",
    "receipt_for",
    "verify_receipt",
    "SECRETARIAT_TOPICS",
    "SERVER_TOPICS",
    "SignerKind",
    "SigningContext",
    "SignedWrite",
    "KEY_BINDING_COMMANDS",
    "current_signing",
    "may_read_statement",
    "statement_scope",
    "event_name",
    "expected_signer",
    "signing",
]


class SignerKind(Enum):
    STATE = "state"
    SECRETARIAT = "secretariat"
    SERVER = "server"


#: Event types the Secretariat causes (signed with the operator key). Every other event type
#: is a State's, except :data:`SERVER_TOPICS`.
SECRETARIAT_TOPICS: Final = frozenset(
    {
        # The events' qualified names, as stored topics end (``domain.check:CommunicationCheck.
        # Launched``): a close saves the check's ``Closed`` and the verification marks it
        # causes in one write, under one statement of the Secretariat's.
        "CommunicationCheck.Launched",
        "CommunicationCheck.Closed",
        "ContactVerification.Started",
        "ContactVerification.Counted",
        "ContactVerification.MarkedUnverified",
        "ContactVerification.Reverified",
        "Credential.Issued",
        "Credential.Revoked",
        "StateKeys.KeysBound",
        "StateKeys.KeysReonboarded",
    }
)
#: Event types the server records by itself (signed with the server's key).
SERVER_TOPICS: Final = frozenset(
    {
        "SharingConsent.ContentRead",
        # An escalation is the delivery worker's too: a deadline passed unacknowledged.
        "Notification.Escalated",
        "Notification.EscalationExhausted",
        # The delivery worker's (issue 17): delivery enabled, and every alert's outcomes.
        "DeliverySwitch.Enabled",
        "Alert.Raised",
        "Alert.Deferred",
        "Alert.Sent",
        "Alert.Refused",
        "Alert.GaveUp",
        "Alert.NotDeliverable",
        # The delivery worker's outcomes of a check's challenges (actor ``server:delivery``).
        "CommunicationCheck.ChallengeSent",
        "CommunicationCheck.ChallengeUndeliverable",
    }
)


#: The Secretariat's statements of a key binding and a re-onboarding: their ``fields`` are
#: the events' types and versions and the public keys bound (``operator_fields``), nothing
#: of any exchange.
KEY_BINDING_COMMANDS: Final = frozenset(
    {"secretariat.state_keys.keys_bound", "secretariat.state_keys.keys_reonboarded"}
)


def statement_scope(state: str | None) -> str:
    """How a reader names the statements it was given: ``all`` (the auditor) or
    ``state:XXX`` (a State, filtered by :func:`may_read_statement`)."""
    return "all" if state is None else f"state:{state}"


def may_read_statement(state: str, signer: str, statement: str) -> bool:
    """Whether the State ``state`` may read a stored statement (``signer`` and its canonical
    text), as ``GET /audit/statements`` serves it to a State (docs/access.md).

    A State reads exactly what it needs to prove R15 of itself (nobody else changes or
    withdraws its entry or its keys) and nothing R12 reserves to others:

    1. a statement in its own name: signed as ``state:XXX``, or whose ``state`` is XXX (the
       Secretariat's statements about it; a statement forged in its name);
    2. a statement about its entry or its key set (the ``aggregate`` is one of the two ids
       derived from its code), whoever signed it: one signed by anyone else is what its
       monitor must show;
    3. the Secretariat's key bindings and re-onboardings of every State
       (:data:`KEY_BINDING_COMMANDS`): public keys only, and the first of them is where every
       State is held to signing, which its verifier must know.

    Everything else is not given: another State's statements carry its request bodies' clear
    fields and whom it notifies; the server's ``content_read`` names a consent and its reader;
    the Secretariat's checks and other States' credentials are the Secretariat's. A counterpart's
    statements on a shared exchange are not given either (the exchange routes show the State its
    exchanges; deciding party-ness here would mean reading other States' request bodies). A
    statement that is not a JSON object is given only to the State that signed it."""
    own = f"{SignerKind.STATE.value}:{state}"
    if signer == own:
        return True
    try:
        obj = json.loads(statement)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    aggregate, command = obj.get("aggregate"), obj.get("command")
    if obj.get("state") == state:
        return True
    if isinstance(aggregate, str) and aggregate in _own_aggregates(state):
        return True
    return (
        signer == SignerKind.SECRETARIAT.value
        and isinstance(command, str)
        and command in KEY_BINDING_COMMANDS
    )


@cache
def _own_aggregates(state: str) -> frozenset[str]:
    """The ids (``str(uuid)``, as statements name them) of a State's entry and key set."""
    return frozenset({str(state_entry_id(state)), str(state_keys_id(state))})


def event_name(topic: str) -> str:
    """``Aggregate.Event`` of a stored topic, e.g. ``domain.check:CommunicationCheck.Launched``."""
    return topic.rpartition(":")[2]


def expected_signer(topic: str) -> SignerKind:
    """Who must sign an event of this stored topic."""
    name = event_name(topic)
    if name in SECRETARIAT_TOPICS:
        return SignerKind.SECRETARIAT
    if name in SERVER_TOPICS:
        return SignerKind.SERVER
    return SignerKind.STATE


@dataclass
class SignedWrite:
    """A statement on its way to the record, and what the record says back.

    ``signer`` is ``state:XXX``, ``secretariat`` or ``server``; ``salts`` the commitments'
    salts (stored encrypted under the server's key, never in the clear); ``leaves`` is filled
    by the recorder with each event's position and leaf hash, for the receipt.
    """

    signed: SignedStatement
    signer: str
    public_key: bytes
    salts: Mapping[str, bytes] = field(default_factory=dict)
    #: The salts as stored (encrypted under the server's cipher key if it has one), set at save.
    sealed: bytes | None = None
    leaves: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class SigningContext:
    """What the caller of a command says about who signs its write.

    ``kind`` is who the caller is. ``state_write`` is a State's statement, checked by the gate,
    which the first save in the context is stored with; any other save is signed at save time
    by the signer its events' type names (``expected_signer``), with the keys the application
    holds. A creating command takes the new aggregate's id from ``state_write``
    (``RecordService.new_aggregate_id``). ``written`` collects every write made in the context
    (normally one).
    """

    kind: SignerKind
    state_write: SignedWrite | None = None
    written: list[SignedWrite] = field(default_factory=list)


_context: ContextVar[SigningContext | None] = ContextVar("pocdir_signing", default=None)


@contextmanager
def signing(context: SigningContext) -> Iterator[SigningContext]:
    """Sign the writes made in this block as ``context`` says."""
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)


def current_signing() -> SigningContext | None:
    return _context.get()


@dataclass(frozen=True)
class RecordSigners:
    """The private keys the server holds: the Secretariat's operator key and its own. Either
    may be absent (then those events are recorded unsigned, see item 7 in the docs)."""

    operator: Ed25519PrivateKey | None = None
    server: Ed25519PrivateKey | None = None

    @property
    def any(self) -> bool:
        return self.operator is not None or self.server is not None

    def key_for(self, kind: SignerKind) -> Ed25519PrivateKey | None:
        return self.operator if kind is SignerKind.SECRETARIAT else self.server


def operator_fields(events: Sequence[Any]) -> dict[str, Any]:
    """The ``fields`` of a statement the server signs for the Secretariat or itself: each
    event's type and version, and for a key binding the keys bound (so a verifier rebuilds
    every State's keys from statements alone, without the server's cipher key)."""
    fields: dict[str, Any] = {
        "events": [{"type": type(e).__qualname__, "version": e.originator_version} for e in events]
    }
    for event in events:
        keys = getattr(event, "signing_keys", None)
        encryption = getattr(event, "encryption_key", None)
        if keys is not None and encryption is not None:
            fields["encryption_key"] = encryption.public_key
            fields["signing_keys"] = [k.public_key for k in keys]
    return fields


#: Domain separation of a receipt's signed message.
RECEIPT_PREFIX: Final = b"pocdir receipt v1\n"
#: Response header carrying a signed write's receipt (unpadded base64url of its JSON).
RECEIPT_HEADER: Final = "Pocdir-Receipt"


def receipt_for(write: SignedWrite, key: Ed25519PrivateKey) -> dict[str, str]:
    """The server's signed receipt of a stored write: the statement's digest and each event's
    position and leaf hash (RFC 9162 leaf of docs/audit-format.md), so the State can later
    prove the write was accepted and find it in any checkpointed tree.

    The signed message is :data:`RECEIPT_PREFIX` and the RFC 8785 bytes of the receipt object;
    the wire form is ``{"receipt": <those bytes as text>, "signature": hex, "key": fingerprint}``.
    """
    body: dict[str, Any] = {
        "statement": statement_digest(write.signed.statement),
        "signer": write.signer,
        "events": [{"position": p, "leaf_hash": leaf.hex()} for p, leaf in write.leaves],
    }
    text = rfc8785.dumps(body)
    return {
        "receipt": text.decode("utf-8"),
        "signature": key.sign(RECEIPT_PREFIX + text).hex(),
        "key": key_fingerprint(key.public_key()),
    }


class ReceiptInvalid(StatementError):
    """A receipt does not verify with the server key the client trusts."""


def verify_receipt(wire: Mapping[str, Any], server_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a receipt against the server's public key; its content if genuine."""
    expected = key_fingerprint(server_key)
    try:
        text = str(wire["receipt"]).encode("utf-8")
        signature = bytes.fromhex(str(wire["signature"]))
        if wire["key"] != expected:
            raise ReceiptInvalid(f"the receipt names key {str(wire['key'])[:80]}, not {expected}")
        server_key.verify(signature, RECEIPT_PREFIX + text)
        content: dict[str, Any] = json.loads(text)
    except (KeyError, TypeError, ValueError, InvalidSignature):
        raise ReceiptInvalid(
            f"the receipt does not verify with the server key {expected}"
        ) from None
    return content
