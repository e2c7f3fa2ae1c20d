"""The verifier's witness policy: which log keys and witnesses it trusts and how many
witnesses must have cosigned a checkpoint before it accepts it (issue 16, item 3).

The policy is a file the verifier holds, never read from the record, so the operator cannot
lower it. Its grammar is Sigsum's trust policy (sigsum-go ``pkg/policy``), one statement per
line, with C2SP verifier keys in place of Sigsum's hex keys because a cosignature line is
found by its key name and key id (C2SP tlog-cosignature):

    # comment
    log <log vkey> [<url>]                      the log's checkpoint key (type 0x01); repeatable
    witness <name> <witness vkey> [<url>]       a witness (type 0x04 key, tlog-cosignature)
    group <name> <threshold> <member> ...       threshold: a number, "all" or "any"; members
                                                are witnesses or groups defined above
    quorum <name> | quorum none                 the witness or group that must be satisfied

Every name is defined once, before it is used, and every ``group`` has at least one member and
a threshold between 1 and its number of members. ``quorum none`` is the explicit no-witness
policy: it is the only one that accepts a checkpoint made before witnesses existed. Regional
groups are ordinary groups (``group WEOG any w-fra w-deu``), so "at least one from each
regional group" is ``group regions all AFRICAN ASIA-PACIFIC EEG GRULAC WEOG``.

The URLs are where the server submits checkpoints (``POCDIR_WITNESS_POLICY_FILE``, the same
grammar); a verifier's copy may omit them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from infra.cosignature import CosignatureMissing, WitnessVerifierKey, verify_cosignature
from infra.note import (
    CheckpointError,
    KeyFormatError,
    SignedCheckpoint,
    VerifierKey,
    open_checkpoint,
)

#: The ``quorum`` argument of the explicit no-witness policy.
NO_QUORUM: Final = "none"
THRESHOLD_ALL: Final = "all"
THRESHOLD_ANY: Final = "any"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PolicyInvalid(ValueError):
    """The policy file does not follow the grammar; the message names the line."""


class QuorumNotMet(CheckpointError):
    """The checkpoint lacks the cosignatures the policy requires: ``missing`` names the
    witnesses of the quorum that did not cosign it."""

    def __init__(
        self, reason: str, *, missing: Sequence[str], expected: str, computed: str
    ) -> None:
        self.missing = tuple(missing)
        super().__init__(reason, expected=expected, computed=computed)


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: WitnessVerifierKey
    url: str | None = None


@dataclass(frozen=True)
class PolicyGroup:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint the policy accepts: signed by a trusted log key, and cosigned (at the
    given POSIX times) by the witnesses that satisfied the quorum."""

    signed: SignedCheckpoint
    cosigned_by: dict[str, int]
    quorum: str

    @property
    def tree_size(self) -> int:
        return self.signed.checkpoint.tree_size

    @property
    def root_hash(self) -> bytes:
        return self.signed.checkpoint.root_hash


@dataclass(frozen=True)
class Policy:
    log_keys: tuple[VerifierKey, ...]
    witnesses: dict[str, PolicyWitness] = field(default_factory=dict)
    groups: dict[str, PolicyGroup] = field(default_factory=dict)
    #: The witness or group that must be satisfied; ``None`` for ``quorum none``.
    quorum: str | None = None
    log_urls: tuple[str, ...] = ()

    # -- reading --------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Policy:
        log_keys: list[VerifierKey] = []
        log_urls: list[str] = []
        witnesses: dict[str, PolicyWitness] = {}
        groups: dict[str, PolicyGroup] = {}
        quorum: str | None = None
        quorum_seen = False
        for number, raw in enumerate(text.splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            keyword, args = words[0], words[1:]
            where = f"policy line {number}"
            if quorum_seen:
                raise PolicyInvalid(f"{where}: nothing may follow the quorum line")
            if keyword == "log":
                if len(args) not in (1, 2):
                    raise PolicyInvalid(f"{where}: log <log vkey> [<url>]")
                log_keys.append(_log_key(args[0], where))
                log_urls.extend(args[1:])
            elif keyword == "witness":
                if len(args) not in (2, 3):
                    raise PolicyInvalid(f"{where}: witness <name> <witness vkey> [<url>]")
                name = _new_name(args[0], where, witnesses, groups)
                key = _witness_key(args[1], where)
                if any(w.key == key for w in witnesses.values()):
                    raise PolicyInvalid(f"{where}: witness key {key} is listed twice")
                witnesses[name] = PolicyWitness(name, key, args[2] if len(args) == 3 else None)
            elif keyword == "group":
                if len(args) < 3:
                    raise PolicyInvalid(f"{where}: group <name> <threshold> <member> ...")
                name = _new_name(args[0], where, witnesses, groups)
                members = tuple(args[2:])
                for member in members:
                    if member not in witnesses and member not in groups:
                        raise PolicyInvalid(f"{where}: {member!r} is not defined above")
                if len(set(members)) != len(members):
                    raise PolicyInvalid(f"{where}: group {name} lists a member twice")
                groups[name] = PolicyGroup(name, _threshold(args[1], len(members), where), members)
            elif keyword == "quorum":
                if len(args) != 1:
                    raise PolicyInvalid(f"{where}: quorum <witness or group name> | quorum none")
                if args[0] != NO_QUORUM and args[0] not in witnesses and args[0] not in groups:
                    raise PolicyInvalid(f"{where}: quorum {args[0]!r} is not defined above")
                quorum, quorum_seen = (None if args[0] == NO_QUORUM else args[0]), True
            else:
                raise PolicyInvalid(
                    f"{where}: unknown keyword {keyword!r} (log, witness, group or quorum)"
                )
        if not log_keys:
            raise PolicyInvalid("a policy names at least one log key (log <vkey>)")
        if not quorum_seen:
            raise PolicyInvalid(
                "a policy ends with its quorum line (quorum <name>, or quorum none to accept "
                "checkpoints no witness cosigned)"
            )
        return cls(tuple(log_keys), witnesses, groups, quorum, tuple(log_urls))

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as e:
            raise PolicyInvalid(f"cannot read the witness policy {path}: {e}") from None
        return cls.parse(text)

    # -- checking -------------------------------------------------------------------------

    def quorum_witnesses(self) -> list[str]:
        """The witnesses the quorum can count, in policy order."""
        if self.quorum is None:
            return []
        found: list[str] = []
        self._collect(self.quorum, found)
        return [w for w in self.witnesses if w in found]

    def _collect(self, name: str, found: list[str]) -> None:
        if name in self.witnesses:
            found.append(name)
            return
        for member in self.groups[name].members:
            self._collect(member, found)

    def _satisfied(self, name: str, cosigned: set[str]) -> bool:
        if name in self.witnesses:
            return name in cosigned
        group = self.groups[name]
        return sum(self._satisfied(m, cosigned) for m in group.members) >= group.threshold

    def _missing(self, name: str, cosigned: set[str]) -> list[str]:
        """The witnesses whose cosignatures the unsatisfied parts of ``name`` lack (a group
        already satisfied lacks none), in policy order, each once."""
        if name in self.witnesses:
            return [] if name in cosigned else [name]
        if self._satisfied(name, cosigned):
            return []
        lacking = {w for m in self.groups[name].members for w in self._missing(m, cosigned)}
        return [w for w in self.witnesses if w in lacking]

    def describe(self, name: str | None = None) -> str:
        """The quorum rule in words: ``2 of (w-fra, w-deu, w-bra)``."""
        name = self.quorum if name is None else name
        if name is None:
            return "no witness (quorum none)"
        if name in self.witnesses:
            return name
        group = self.groups[name]
        inner = ", ".join(self.describe(m) for m in group.members)
        return f"{group.name}: {group.threshold} of ({inner})"

    def cosigners(self, note: str) -> dict[str, int]:
        """The policy's witnesses whose cosignature on ``note`` verifies, with its time. A
        cosignature by a policy witness that does not verify refuses the whole note
        (``CosignatureInvalid``), as a bad log signature does (docs/audit-format.md §11)."""
        found: dict[str, int] = {}
        for name, witness in self.witnesses.items():
            try:
                found[name] = verify_cosignature(note, witness.key)
            except CosignatureMissing:
                continue
        return found

    def check(self, note: str) -> WitnessedCheckpoint:
        """Accept ``note`` only if a trusted log key signed it and the quorum cosigned it.

        Raises the note's ``CheckpointError`` (``UnknownSigner``, ``SignatureInvalid``,
        ``MalformedCheckpoint``), a ``CosignatureError``, or ``QuorumNotMet`` naming the
        quorum's witnesses that are missing."""
        signed = open_checkpoint(note, list(self.log_keys))
        cosigned = self.cosigners(note)
        if self.quorum is not None and not self._satisfied(self.quorum, set(cosigned)):
            missing = self._missing(self.quorum, set(cosigned))
            raise QuorumNotMet(
                f"the checkpoint of {signed.checkpoint.tree_size} events lacks the witness "
                f"quorum; missing cosignatures from: {', '.join(missing)}",
                missing=missing,
                expected=self.describe(),
                computed="cosigned by " + (", ".join(sorted(cosigned)) or "no witness"),
            )
        return WitnessedCheckpoint(signed, cosigned, self.describe())


def _new_name(name: str, where: str, *taken: Iterable[str]) -> str:
    if not _NAME.fullmatch(name) or name in (NO_QUORUM, THRESHOLD_ALL, THRESHOLD_ANY):
        raise PolicyInvalid(
            f"{where}: {name!r} is not a name (letters, digits, '.', '_', '-'; not none/all/any)"
        )
    if any(name in t for t in taken):
        raise PolicyInvalid(f"{where}: {name!r} is defined twice")
    return name


def _threshold(text: str, members: int, where: str) -> int:
    if text == THRESHOLD_ALL:
        return members
    if text == THRESHOLD_ANY:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= members:
        raise PolicyInvalid(
            f"{where}: a threshold is all, any or a number from 1 to {members}, not {text!r}"
        )
    return int(text)


def _log_key(text: str, where: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text)
    except KeyFormatError as e:
        raise PolicyInvalid(f"{where}: log key: {e}") from None


def _witness_key(text: str, where: str) -> WitnessVerifierKey:
    try:
        return WitnessVerifierKey.parse(text)
    except KeyFormatError as e:
        raise PolicyInvalid(f"{where}: witness key: {e}") from None
