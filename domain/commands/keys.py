"""The State keys area: the Secretariat binds and re-onboards a State's public keys, the
State rotates and revokes them by signed statements (``domain.state_keys``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.commands.base import RecordService
from domain.errors import AlreadyExists, NotConfigured
from domain.idempotency import IdempotencyKey
from domain.members import check_member_state, member_states
from domain.signing import SignedWrite, current_signing
from domain.state_keys import (
    EncryptionKey,
    SigningKey,
    SigningKeyNotValid,
    StateKeys,
    owners_of,
    state_keys_id,
)
from domain.statement import SignedStatement
from domain.values import Principal


class KeyCommands(RecordService):
    """Commands and reads on ``StateKeys``."""

    def check_operator_key(self) -> None:
        """Binding keys needs the operator key: the binding's statement, which a verifier
        reads to know every State's keys without the server's cipher key, is signed with it."""
        if self.signers.operator is None:
            raise NotConfigured(
                "binding a State's keys needs the Secretariat's operator key, which signs "
                "the binding: set POCDIR_OPERATOR_KEY_FILE (pocdir keys generate PATH makes one)"
            )

    def get_state_keys(self, code: str) -> StateKeys:
        """A State's key history; public to every authenticated principal, since a client
        checks a key against it before encrypting."""
        code = check_member_state(code)
        return self._get(StateKeys, state_keys_id(code), f"keys bound for {code}")

    def bind_state_keys(
        self,
        by: Principal,
        code: str,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateKeys:
        code = check_member_state(code)
        self.check_operator_key()
        if state_keys_id(code) in self.repository:
            raise AlreadyExists(
                f"{code}'s keys are already bound; the State rotates them, or the Secretariat "
                "re-onboards it if it lost every key"
            )
        keys = StateKeys.bind(code, encryption_key, signing_keys, by, self.clock.now())
        self._save(keys, idempotency=idempotency)
        return keys

    def reonboard_state_keys(
        self,
        by: Principal,
        code: str,
        encryption_key: EncryptionKey,
        signing_keys: tuple[SigningKey, ...],
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateKeys:
        self.check_operator_key()
        return self._change(
            lambda: self.get_state_keys(code),
            lambda k, at: k.reonboard(encryption_key, signing_keys, by, at),
            idempotency=idempotency,
        )

    def rotate_state_keys(
        self,
        by: Principal,
        code: str,
        signed: SignedStatement,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateKeys:
        return self._signed_change(
            code, signed, lambda k, at: k.rotate(signed, by, at), idempotency=idempotency
        )

    def revoke_state_key(
        self,
        by: Principal,
        code: str,
        signed: SignedStatement,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> StateKeys:
        return self._signed_change(
            code, signed, lambda k, at: k.revoke(signed, by, at), idempotency=idempotency
        )

    def _signed_change(
        self,
        code: str,
        signed: SignedStatement,
        change: Callable[[StateKeys, datetime], None],
        *,
        idempotency: IdempotencyKey | None,
    ) -> StateKeys:
        """A change the State signed, applied by the one load-change-save helper; a refused
        signer is named as another State's when its key is one (``_named``). Once checked,
        the statement is this write's own (``domain.signing``): stored beside its event,
        where a verifier reads it without the server's key."""

        def signed_change(keys: StateKeys, at: datetime) -> None:
            signer = keys.current.signing_key(signed.key)
            change(keys, at)
            context = current_signing()
            if context is not None and context.state_write is None and signer is not None:
                context.state_write = SignedWrite(
                    signed, f"state:{keys.state}", bytes.fromhex(signer.public_key)
                )

        try:
            return self._change(
                lambda: self.get_state_keys(code), signed_change, idempotency=idempotency
            )
        except SigningKeyNotValid as e:
            raise self._named(e) from None

    def _named(self, refused: SigningKeyNotValid) -> SigningKeyNotValid:
        """An ``unknown`` key that another State's history holds is named as that State's:
        read only on this refusal path, which loads every bound State's keys."""
        if refused.reason != "unknown":
            return refused
        others = (
            self.get_state_keys(code)
            for code in sorted(member_states())
            if code != refused.state and state_keys_id(code) in self.repository
        )
        owner = owners_of(refused.key, others)
        if owner is None:
            return refused
        return SigningKeyNotValid(refused.state, refused.key, "other_state", owner)
