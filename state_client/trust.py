"""Which encryption key of another State the client will encrypt to (issue 15, item 4, "key
substitution").

The operator serves every State's keys (``GET /keys/states/{state}``), so a served key proves
nothing by itself: an operator could serve its own key and read what is sealed to it. The
client therefore accepts another State's encryption key only when

1. the official **pinned** a fingerprint for that State, confirmed out of band with its
   mission (``pocdir-state trust add DEU sha256:...``). There is no trust on first use: a
   State without a pin is refused, with the fingerprint the server serves so the official can
   have it confirmed. A first use is exactly when an operator who substitutes keys would act;
2. the served history holds together without any server key
   (:func:`domain.state_keys.verify_key_history`): it starts with the binding, and every
   signed step is signed by a key the State held at the step before;
3. the history's last **unsigned** step, the binding (``KeysBound``) or the latest
   re-onboarding (``KeysReonboarded``, which the Secretariat makes and nobody signs), bound an
   encryption key whose fingerprint is pinned. So a re-onboarding, the operator's one way to
   replace a State's keys, is accepted only once its fingerprint too was confirmed out of
   band and pinned;
4. the served current key set is the history's last step (not a key beside the history);
5. the history does not go back behind what this client saw before (it records the last
   version and key it accepted for each State), so an operator cannot serve an older
   history to bring back a key the State rotated away from.

Anything else is :class:`KeySubstituted`, naming the State and the fingerprints expected and
served; the client never encrypts to such a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from domain.errors import ValidationError
from domain.members import check_member_state
from domain.state_keys import KeyHistoryBroken, KeySet, verify_key_history
from state_client.keys import EncryptionPublicKey
from state_client.store import KeyStore

__all__ = [
    "KeySubstituted",
    "NotPinned",
    "TrustStore",
    "TrustedKey",
    "check_fingerprint",
    "trusted_key",
]

_HEX: Final = frozenset("0123456789abcdef")


class KeySubstituted(ValidationError):
    """The server serves a key for ``state`` that does not chain to what was pinned."""

    def __init__(self, state: str, problem: str, expected: Sequence[str], served: str) -> None:
        self.state = state
        self.problem = problem
        self.expected = tuple(expected)
        self.served = served
        super().__init__(
            f"refusing to encrypt to {state}: {problem}; expected a key history anchored in "
            f"{', '.join(self.expected) or '(nothing pinned)'}, the server serves {served}. "
            f"The server may be substituting {state}'s key: confirm the fingerprint with "
            f"{state}'s mission out of band before you trust it"
        )


class NotPinned(ValidationError):
    """No fingerprint is pinned for this State (the client does not trust on first use)."""

    def __init__(self, state: str, served: str) -> None:
        self.state = state
        self.served = served
        super().__init__(
            f"no key fingerprint is pinned for {state}: confirm {state}'s onboarding "
            f"fingerprint with its mission out of band, then `pocdir-state trust add {state} "
            f"FINGERPRINT` (the server serves {served}; do not take it from the server)"
        )


def check_fingerprint(fingerprint: str) -> str:
    """``sha256:`` and 64 lowercase hex digits, as ``pocdir keys bind`` prints them."""
    value = fingerprint.strip()
    digest = value.removeprefix("sha256:")
    if not value.startswith("sha256:") or len(digest) != 64 or not set(digest) <= _HEX:
        raise ValidationError(
            "a fingerprint is sha256: and 64 lowercase hexadecimal digits, as printed by "
            "`pocdir keys bind`"
        )
    return value


@dataclass(frozen=True)
class TrustedKey:
    """Another State's encryption key, accepted through its verified history."""

    state: str
    key: EncryptionPublicKey
    fingerprint: str
    version: int
    anchor: str


def trusted_key(
    served: Mapping[str, Any],
    state: str,
    pins: Sequence[str],
    seen: Mapping[str, Any] | None = None,
) -> TrustedKey:
    """The encryption key of ``state`` from its served key history (``GET
    /keys/states/{state}``), or :class:`KeySubstituted` / :class:`NotPinned`.

    ``pins`` are the fingerprints confirmed out of band; ``seen`` the ``{"version",
    "fingerprint"}`` this client accepted last time (None the first time)."""
    state = check_member_state(state)
    served_fingerprint = _served_fingerprint(served)
    if not pins:
        raise NotPinned(state, served_fingerprint)

    def refuse(problem: str) -> KeySubstituted:
        return KeySubstituted(state, problem, pins, served_fingerprint)

    if served.get("state") != state:
        raise refuse(f"the server answered with the keys of {str(served.get('state'))[:10]}")
    try:
        history = [KeySet.from_json(step) for step in served["history"]]
        current = KeySet.from_json(served["current"])
    except (KeyError, TypeError, ValueError) as e:
        raise refuse(f"the served key history cannot be read ({str(e)[:120]})") from None
    try:
        reonboarded = verify_key_history(history, state)
    except KeyHistoryBroken as e:
        raise refuse(str(e)) from None
    if current != history[-1]:
        raise refuse("the served current keys are not the last step of the served history")
    anchor_step = history[reonboarded[-1] - 1] if reonboarded else history[0]
    anchor = anchor_step.encryption_key.fingerprint
    if anchor not in pins:
        what = (
            f"it was re-onboarded at version {anchor_step.version} with encryption key {anchor}"
            if reonboarded
            else f"the bound encryption key is {anchor}"
        )
        raise refuse(f"{what}, which is not pinned")
    if seen is not None:
        _check_not_rolled_back(history, seen, refuse)
    fingerprint = current.encryption_key.fingerprint
    return TrustedKey(
        state,
        EncryptionPublicKey.from_bytes(current.encryption_key.to_bytes()),
        fingerprint,
        current.version,
        anchor,
    )


def _served_fingerprint(served: Mapping[str, Any]) -> str:
    try:
        return str(served["current"]["encryption_key"]["fingerprint"])[:71]
    except (KeyError, TypeError):
        return "no readable key"


def _check_not_rolled_back(history: list[KeySet], seen: Mapping[str, Any], refuse: Any) -> None:
    version = seen.get("version")
    fingerprint = seen.get("fingerprint")
    if not isinstance(version, int):
        return
    if history[-1].version < version:
        raise refuse(
            f"the served history ends at version {history[-1].version}, but this client "
            f"accepted version {version} before: the history was cut back"
        )
    if history[version - 1].encryption_key.fingerprint != fingerprint:
        raise refuse(
            f"version {version} of the served history has another encryption key than the "
            f"{fingerprint} this client accepted before"
        )


class TrustStore:
    """The pins and the last accepted versions, kept in the key store's ``trust.json``."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    def pins(self, state: str) -> list[str]:
        entry = self.store.trust_data().get(state) or {}
        return [str(f) for f in entry.get("fingerprints", [])]

    def seen(self, state: str) -> dict[str, Any] | None:
        entry = self.store.trust_data().get(state) or {}
        seen = entry.get("seen")
        return dict(seen) if isinstance(seen, Mapping) else None

    def add(self, state: str, fingerprint: str) -> bool:
        """Pin ``fingerprint`` for ``state``; False if it was pinned already."""
        state = check_member_state(state)
        fingerprint = check_fingerprint(fingerprint)
        data = self.store.trust_data()
        entry = dict(data.get(state) or {})
        pinned = list(entry.get("fingerprints", []))
        if fingerprint in pinned:
            return False
        entry["fingerprints"] = [*pinned, fingerprint]
        data[state] = entry
        self.store.save_trust(data)
        return True

    def all(self) -> dict[str, list[str]]:
        return {
            state: [str(f) for f in entry.get("fingerprints", [])]
            for state, entry in sorted(self.store.trust_data().items())
        }

    def accept(self, served: Mapping[str, Any], state: str) -> TrustedKey:
        """:func:`trusted_key` with this store's pins, remembering what it accepted."""
        trusted = trusted_key(served, state, self.pins(state), self.seen(state))
        data = self.store.trust_data()
        entry = dict(data.get(state) or {})
        entry["seen"] = {"version": trusted.version, "fingerprint": trusted.fingerprint}
        data[state] = entry
        self.store.save_trust(data)
        return trusted
