"""A State's public keys in the record (issue 15, item 1): bound by the Secretariat, rotated
and revoked by statements the State signs with a key it holds, re-onboarded when all are
lost, and the key history as of any version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli.console import CONSOLE
from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.errors import AlreadyExists, InvalidTransition, NotFound, NotPermitted
from domain.state_keys import (
    REVOKE_COMMAND,
    ROTATE_COMMAND,
    EncryptionKey,
    KeyHistoryBroken,
    KeySet,
    SigningKey,
    SigningKeyNotValid,
    StateKeys,
    keys_valid_at,
    state_keys_id,
    verify_key_history,
)
from domain.statement import (
    SignedStatement,
    Statement,
    StatementExpired,
    StatementMalformed,
    StatementSignatureInvalid,
    sign_statement,
)
from state_client.keys import EncryptionPrivateKey
from tests.support.builders import state

SECRETARIAT = CONSOLE


@pytest.fixture(scope="module")
def encryption_keys() -> list[EncryptionPrivateKey]:
    return [EncryptionPrivateKey.generate() for _ in range(3)]


def enc(key: EncryptionPrivateKey) -> EncryptionKey:
    return EncryptionKey.from_bytes(key.public_key().to_bytes())


def sig(key: Ed25519PrivateKey) -> SigningKey:
    return SigningKey.from_bytes(key.public_key().public_bytes_raw())


def statement(
    keys: StateKeys,
    command: str,
    fields: dict[str, Any],
    signer: Ed25519PrivateKey,
    *,
    at: Any,
    version: int | None = None,
    state_code: str | None = None,
    aggregate: UUID | None = None,
) -> SignedStatement:
    return sign_statement(
        Statement.create(
            command=command,
            state=state_code or keys.state,
            aggregate=aggregate or keys.id,
            expected_version=keys.version if version is None else version,
            fields=fields,
            idempotency_key=f"k-{keys.version}-{command}",
            created_at=at,
        ),
        signer,
    )


def rotate_fields(
    add: list[Ed25519PrivateKey] = (),  # type: ignore[assignment]
    retire: list[Ed25519PrivateKey] = (),  # type: ignore[assignment]
    encryption: EncryptionPrivateKey | None = None,
) -> dict[str, Any]:
    return {
        "encryption_key": None if encryption is None else enc(encryption).public_key,
        "add": [k.public_key().public_bytes_raw().hex() for k in add],
        "retire": [sig(k).fingerprint for k in retire],
    }


class Bound:
    def __init__(self, app: PocDirectory, clock: SimulatedClock, e: list[EncryptionPrivateKey]):
        self.app, self.clock, self.e = app, clock, e
        self.alice, self.bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        self.keys = app.bind_state_keys(
            SECRETARIAT, "FRA", enc(e[0]), (sig(self.alice), sig(self.bob))
        )

    def signed(self, command: str, fields: dict[str, Any], signer: Ed25519PrivateKey, **kw: Any):
        current = self.app.get_state_keys("FRA")
        return statement(current, command, fields, signer, at=self.clock.now(), **kw)


@pytest.fixture
def bound(
    app: PocDirectory, clock: SimulatedClock, encryption_keys: list[EncryptionPrivateKey]
) -> Iterator[Bound]:
    yield Bound(app, clock, encryption_keys)


def test_the_secretariat_binds_a_states_first_keys_with_their_fingerprints(
    bound: Bound, encryption_keys: list[EncryptionPrivateKey]
) -> None:
    keys = bound.app.get_state_keys("FRA")
    assert keys.id == state_keys_id("FRA") and keys.version == 1
    current = keys.current
    assert current.event == "KeysBound" and current.actor == SECRETARIAT.ref
    # The fingerprints are the State client's and domain/statement.py's key names.
    assert current.encryption_key.fingerprint == encryption_keys[0].public_key().fingerprint()
    assert current.encryption_key.to_bytes() == encryption_keys[0].public_key().to_bytes()
    assert [k.fingerprint for k in current.signing_keys] == [
        sig(bound.alice).fingerprint,
        sig(bound.bob).fingerprint,
    ]
    with pytest.raises(AlreadyExists):
        bound.app.bind_state_keys(SECRETARIAT, "FRA", enc(encryption_keys[1]), (sig(bound.bob),))


def test_only_the_secretariat_binds_and_reonboards(
    app: PocDirectory, encryption_keys: list[EncryptionPrivateKey]
) -> None:
    key = (sig(Ed25519PrivateKey.generate()),)
    with pytest.raises(NotPermitted):
        app.bind_state_keys(state("FRA"), "FRA", enc(encryption_keys[0]), key)
    with pytest.raises(NotFound):
        app.get_state_keys("FRA")


def test_a_rotation_signed_by_a_current_key_changes_the_keys(bound: Bound) -> None:
    carol = Ed25519PrivateKey.generate()
    signed = bound.signed(
        ROTATE_COMMAND, rotate_fields([carol], [bound.bob], bound.e[1]), bound.alice
    )
    keys = bound.app.rotate_state_keys(state("FRA"), "FRA", signed)
    assert keys.version == 2
    current = bound.app.get_state_keys("FRA").current
    assert current.event == "KeysRotated" and current.signed_by == sig(bound.alice).fingerprint
    assert current.encryption_key == enc(bound.e[1])
    assert [k.fingerprint for k in current.signing_keys] == [
        sig(bound.alice).fingerprint,
        sig(carol).fingerprint,
    ]
    # The event keeps the statement and signature: checkable with the earlier keys alone.
    assert current.statement == signed.statement.canonical_bytes().decode()
    assert current.signature == signed.signature.hex()


def test_a_statement_by_a_retired_or_revoked_key_is_refused(bound: Bound) -> None:
    bound.app.revoke_state_key(
        state("FRA"),
        "FRA",
        bound.signed(REVOKE_COMMAND, {"key": sig(bound.bob).fingerprint}, bound.alice),
    )
    current = bound.app.get_state_keys("FRA").current
    assert current.event == "SigningKeyRevoked"
    assert [k.fingerprint for k in current.signing_keys] == [sig(bound.alice).fingerprint]
    late = bound.signed(ROTATE_COMMAND, rotate_fields(encryption=bound.e[1]), bound.bob)
    with pytest.raises(SigningKeyNotValid) as refused:
        bound.app.rotate_state_keys(state("FRA"), "FRA", late)
    assert refused.value.reason == "revoked" and refused.value.key == sig(bound.bob).fingerprint
    assert bound.app.get_state_keys("FRA").version == 2  # nothing written
    # The last key cannot be revoked: a State without keys needs the Secretariat.
    with pytest.raises(InvalidTransition, match="last signing key"):
        bound.app.revoke_state_key(
            state("FRA"),
            "FRA",
            bound.signed(REVOKE_COMMAND, {"key": sig(bound.alice).fingerprint}, bound.alice),
        )


def test_a_statement_by_an_unknown_or_another_states_key_is_refused(
    bound: Bound, encryption_keys: list[EncryptionPrivateKey]
) -> None:
    stranger = Ed25519PrivateKey.generate()
    fields = rotate_fields(encryption=bound.e[1])
    with pytest.raises(SigningKeyNotValid) as refused:
        bound.app.rotate_state_keys(
            state("FRA"), "FRA", bound.signed(ROTATE_COMMAND, fields, stranger)
        )
    assert refused.value.reason == "unknown"
    german = Ed25519PrivateKey.generate()
    bound.app.bind_state_keys(SECRETARIAT, "DEU", enc(encryption_keys[2]), (sig(german),))
    with pytest.raises(SigningKeyNotValid) as refused:
        bound.app.rotate_state_keys(
            state("FRA"), "FRA", bound.signed(ROTATE_COMMAND, fields, german)
        )
    assert refused.value.reason == "other_state" and refused.value.owner == "DEU"
    assert bound.app.get_state_keys("FRA").version == 1


def test_a_statement_must_be_this_states_own_current_and_genuine(bound: Bound) -> None:
    fields = rotate_fields(encryption=bound.e[1])
    fra = state("FRA")
    # Another State's principal may not change FRA's keys, even holding a FRA statement.
    with pytest.raises(NotPermitted):
        bound.app.rotate_state_keys(
            state("DEU"), "FRA", bound.signed(ROTATE_COMMAND, fields, bound.alice)
        )
    with pytest.raises(StatementMalformed):  # the statement is a revocation's
        bound.app.rotate_state_keys(fra, "FRA", bound.signed(REVOKE_COMMAND, fields, bound.alice))
    with pytest.raises(StatementMalformed):  # about another State
        bound.app.rotate_state_keys(
            fra, "FRA", bound.signed(ROTATE_COMMAND, fields, bound.alice, state_code="DEU")
        )
    with pytest.raises(InvalidTransition, match="version"):  # replayed or stale
        bound.app.rotate_state_keys(
            fra, "FRA", bound.signed(ROTATE_COMMAND, fields, bound.alice, version=0)
        )
    good = bound.signed(ROTATE_COMMAND, fields, bound.alice)
    forged = SignedStatement(good.statement, bytes(64), good.key)
    with pytest.raises(StatementSignatureInvalid):
        bound.app.rotate_state_keys(fra, "FRA", forged)
    bound.clock.advance(timedelta(minutes=6))
    with pytest.raises(StatementExpired):
        bound.app.rotate_state_keys(fra, "FRA", good)
    assert bound.app.get_state_keys("FRA").version == 1
    # A statement yields one write: once applied, the same statement is stale.
    fresh = bound.signed(ROTATE_COMMAND, fields, bound.alice)
    bound.app.rotate_state_keys(fra, "FRA", fresh)
    with pytest.raises(InvalidTransition, match="version"):
        bound.app.rotate_state_keys(fra, "FRA", fresh)


def test_reonboarding_replaces_every_key_and_is_its_own_event(bound: Bound) -> None:
    new = Ed25519PrivateKey.generate()
    with pytest.raises(NotPermitted):
        bound.app.reonboard_state_keys(state("FRA"), "FRA", enc(bound.e[2]), (sig(new),))
    with pytest.raises(InvalidTransition, match="new keys"):
        bound.app.reonboard_state_keys(SECRETARIAT, "FRA", enc(bound.e[2]), (sig(bound.bob),))
    bound.app.reonboard_state_keys(SECRETARIAT, "FRA", enc(bound.e[2]), (sig(new),))
    keys = bound.app.get_state_keys("FRA")
    assert keys.current.event == "KeysReonboarded" and keys.current.actor == SECRETARIAT.ref
    assert [k.fingerprint for k in keys.current.signing_keys] == [sig(new).fingerprint]
    old = bound.signed(ROTATE_COMMAND, rotate_fields(encryption=bound.e[1]), bound.alice)
    with pytest.raises(SigningKeyNotValid) as refused:
        bound.app.rotate_state_keys(state("FRA"), "FRA", old)
    assert refused.value.reason == "revoked"
    bound.app.rotate_state_keys(
        state("FRA"),
        "FRA",
        bound.signed(ROTATE_COMMAND, rotate_fields(encryption=bound.e[1]), new),
    )


def test_the_key_history_as_of_a_version_or_a_time(bound: Bound) -> None:
    t1 = bound.clock.now()
    bound.clock.advance(timedelta(hours=1))
    carol = Ed25519PrivateKey.generate()
    bound.app.rotate_state_keys(
        state("FRA"),
        "FRA",
        bound.signed(ROTATE_COMMAND, rotate_fields([carol], [bound.alice]), bound.alice),
    )
    t2 = bound.clock.advance(timedelta(minutes=30))
    bound.clock.advance(timedelta(minutes=30))
    dave = Ed25519PrivateKey.generate()
    bound.app.reonboard_state_keys(SECRETARIAT, "FRA", enc(bound.e[2]), (sig(dave),))
    history = bound.app.get_state_keys("FRA").history
    assert [k.version for k in history] == [1, 2, 3]
    assert [k.event for k in history] == ["KeysBound", "KeysRotated", "KeysReonboarded"]

    def names(keyset: Any) -> list[str]:
        return [k.fingerprint for k in keyset.signing_keys]

    assert names(keys_valid_at(history, version=1)) == [
        sig(bound.alice).fingerprint,
        sig(bound.bob).fingerprint,
    ]
    assert names(keys_valid_at(history, version=2)) == [
        sig(bound.bob).fingerprint,
        sig(carol).fingerprint,
    ]
    assert names(keys_valid_at(history, version=3)) == [sig(dave).fingerprint]
    assert keys_valid_at(history, version=3).encryption_key == enc(bound.e[2])
    assert keys_valid_at(history, at=t1).version == 1
    assert keys_valid_at(history, at=t2).version == 2
    assert keys_valid_at(history).version == 3
    with pytest.raises(NotFound):
        keys_valid_at(history, version=0)


def test_keys_are_checked_before_they_are_bound() -> None:
    with pytest.raises(ValueError, match="1216 bytes"):
        EncryptionKey.from_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="base64"):
        EncryptionKey.parse("not base64!")
    with pytest.raises(ValueError, match="64 characters"):
        SigningKey.parse("00")


def test_a_key_history_checks_without_the_server_and_shows_a_substitution(
    bound: Bound,
) -> None:
    carol = Ed25519PrivateKey.generate()
    fra = state("FRA")
    bound.app.rotate_state_keys(
        fra, "FRA", bound.signed(ROTATE_COMMAND, rotate_fields([carol], [], bound.e[1]), bound.bob)
    )
    bound.app.revoke_state_key(
        fra, "FRA", bound.signed(REVOKE_COMMAND, {"key": sig(bound.bob).fingerprint}, carol)
    )
    bound.app.reonboard_state_keys(
        SECRETARIAT, "FRA", enc(bound.e[2]), (sig(Ed25519PrivateKey.generate()),)
    )
    history = bound.app.get_state_keys("FRA").history
    anchor = enc(bound.e[0]).fingerprint
    # Read back as served (JSON), the history holds, anchored in the onboarding fingerprint;
    # the re-onboarding is named, for its fingerprints to be confirmed out of band too.
    served = [KeySet.from_json(k.to_json()) for k in history]
    assert verify_key_history(served, "FRA", anchor=anchor) == [4]
    with pytest.raises(KeyHistoryBroken) as broken:
        verify_key_history(history, "FRA", anchor=enc(bound.e[1]).fingerprint)
    assert broken.value.version == 1
    # An operator who swaps the encryption key a rotation brought in is seen at that step.
    swapped = [*history[:1], replace(history[1], encryption_key=enc(bound.e[2])), *history[2:]]
    with pytest.raises(KeyHistoryBroken, match="not what its statement says") as broken:
        verify_key_history(swapped, "FRA", anchor=anchor)
    assert broken.value.version == 2
    # ... and one who adds a signing key of its own to a step, at the next step it signs.
    rogue = Ed25519PrivateKey.generate()
    forged = replace(history[1], signing_keys=(*history[1].signing_keys, sig(rogue)))
    with pytest.raises(KeyHistoryBroken) as broken:
        verify_key_history([history[0], forged, *history[2:]], "FRA", anchor=anchor)
    assert broken.value.version == 2
    # A history read as another State's does not hold either.
    with pytest.raises(KeyHistoryBroken):
        verify_key_history(history, "DEU")
