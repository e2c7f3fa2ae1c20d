"""Credential: a bearer token the Secretariat issues to one principal (docs/domain.md roles).

Only a SHA-256 hash of the token is recorded, never the token: it is printed once when
issued. The credential's id is derived from that hash, so authenticating a token is one read
of one aggregate, and a revocation recorded by any process takes effect on the next request.
Tokens carry 256 random bits, so an unsalted hash is enough to make them unrecoverable.

A credential carries a label naming the office or function that holds it ("CERT duty desk",
"Secretariat console"), so that the Secretariat can tell its credentials apart and revoke a
lost one (``pocdir principals list``). Never a person's name: the record is immutable, and a
name in it would be personal data that could never be corrected or erased.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any, Final
from uuid import UUID, uuid5

from domain.base import PocdirAggregate
from domain.errors import InvalidTransition, NotPermitted, ValidationError
from domain.members import check_member_state
from domain.values import Principal, Role, check_unicode

#: Namespace of credential ids, derived from the token's hash.
CREDENTIAL_NAMESPACE = UUID("2b0c7f55-8f4e-4c1f-9b7e-1d0b7f0c2a31")
#: Every token starts with this, so a leaked one is easy to recognise in a scan.
TOKEN_PREFIX = "pocdir_"
#: The label of a credential issued before credentials had labels (``Issued`` version 1).
UNLABELLED: Final = "(no label: issued before labels)"
#: The label of a credential issued without one.
NO_LABEL: Final = "(no label)"
#: A label is one short line: it names an office or function, nothing more.
MAX_LABEL: Final = 80


def check_label(label: str) -> str:
    """``label``, stripped, if it can name an office or function: Unicode text (as ``Text``
    requires), not empty, at most ``MAX_LABEL`` characters, one line of printable characters
    (no control or invisible characters, which would make listings lie). Whether it names a
    person cannot be checked; the CLI's help and the README say it must not."""
    if not isinstance(label, str):
        raise ValidationError("label must be a string")
    label = check_unicode(label, "label").strip()
    if not label:
        raise ValidationError(
            "label must not be empty; name the office or function, e.g. 'CERT duty desk'"
        )
    if len(label) > MAX_LABEL:
        raise ValidationError(f"label is {len(label)} characters long; at most {MAX_LABEL}")
    if not label.isprintable():
        raise ValidationError(
            "label contains control or invisible characters; give one line of plain text"
        )
    return label


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def credential_id(token: str) -> UUID:
    """The id of the credential a token belongs to, if it was ever issued."""
    return uuid5(CREDENTIAL_NAMESPACE, token_hash(token))


class Credential(PocdirAggregate):
    class Issued(PocdirAggregate.Created):
        """Version 2 added ``label`` (issue 14); version 1 events, stored before it, are
        upcast when read, never rewritten (the chain hashes their stored bytes)."""

        class_version = 2

        role: str
        state: str | None
        token_hash: str
        label: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["label"] = UNLABELLED

    class Revoked(PocdirAggregate.Event):
        def apply(self, c: Credential) -> None:
            c.revoked = True

    def __init__(self, role: str, state: str | None, token_hash: str, label: str) -> None:
        self.role = Role(role)
        self.state = state
        self.token_hash = token_hash
        self.label = label
        self.revoked = False

    @property
    def principal(self) -> Principal:
        """Who acts with this credential; its id is recorded on every event it causes."""
        return Principal(str(self.id), self.role, self.state)

    @classmethod
    def issue(
        cls,
        by: Principal,
        at: datetime,
        token: str,
        role: Role,
        state: str | None,
        label: str = NO_LABEL,
    ) -> Credential:
        """Only the Secretariat onboards principals. A State credential names a member State;
        every credential carries a label naming an office or function (``check_label``)."""
        check_is_secretariat(by)
        label = check_label(label)
        role = Role(role)
        if role is Role.STATE:
            if not state:
                raise ValidationError("a State credential names its State (ISO 3166-1 alpha-3)")
            state = check_member_state(state)
        elif state is not None:
            raise NotPermitted("only a State credential names a State")
        Principal("new", role, state)  # validates the role/state pairing
        return cls._create(
            cls.Issued,
            id=credential_id(token),
            role=str(role),
            state=state,
            token_hash=token_hash(token),
            label=label,
            actor=by.ref,
            timestamp=at,
        )

    def revoke(self, by: Principal, at: datetime) -> None:
        check_is_secretariat(by)
        if self.revoked:
            raise InvalidTransition("this credential is already revoked")
        self.trigger_event(self.Revoked, actor=by.ref, timestamp=at)


def check_is_secretariat(by: Principal) -> None:
    if by.role is not Role.SECRETARIAT:
        raise NotPermitted("only the Secretariat issues and revokes credentials")
