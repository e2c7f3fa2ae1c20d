"""The RFC 9162 Merkle tree over the record's leaf hashes: tree heads, proofs and their verifier.

This module holds no state and touches no database. The tree is the one of RFC 9162 §2.1 (the
same as RFC 6962 §2.1): its leaves are the chain's leaf hashes ``SHA-256(0x00 ‖ record)``
(``infra.chain.leaf_hash``, the one leaf hash) in position order (leaf index 0 is the first
stored event), and an interior node is ``SHA-256(0x01 ‖ left ‖ right)``. The tree over ``n``
leaves splits at ``k``, the largest power of two smaller than ``n``, so every node is either a
*perfect* subtree of ``2**level`` leaves starting at a multiple of ``2**level``, or lies on the
right edge of the tree.

Stored trees keep only perfect subtrees (``infra/tree_store.py``). A proof names the subtrees it
needs as leaf ranges ``[start, end)`` (``inclusion_ranges``, ``consistency_ranges``); each range
is one perfect subtree or a right-edge range made of a few perfect ones (``perfect_cover``), so a
proof costs O(log n) stored hashes and never rehashes the log.

The verifier (``verify_inclusion``, ``verify_consistency``) follows RFC 9162 §2.1.3.2 and
§2.1.4.2. It raises typed errors carrying the expected and the computed value; it never returns
False. ``tests/test_merkle.py`` checks everything here against the published RFC 6962 vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from infra.chain import NODE_HASH_PREFIX

HASH_SIZE = 32
#: RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: A perfect subtree: (level, index) covers leaves [index * 2**level, (index + 1) * 2**level).
NodeId = tuple[int, int]
#: Fetches the hashes of perfect subtrees; must return every id it is given.
NodeFetcher = Callable[[Sequence[NodeId]], dict[NodeId, bytes]]


# -- errors -----------------------------------------------------------------------------------


class AuditError(Exception):
    """A proof, checkpoint or bundle failed a check. Carries what is wrong and the expected
    and computed values (base64 or hex for hashes), like the chain's ``VerificationError``."""

    def __init__(self, reason: str, *, expected: str, computed: str) -> None:
        self.reason = reason
        self.expected = expected
        self.computed = computed
        super().__init__(f"{reason} (expected {expected}, computed {computed})")


class ProofError(AuditError):
    """A Merkle proof does not prove what it claims."""


class InclusionProofFailed(ProofError):
    """The inclusion proof does not lead from the leaf to the root."""


class ConsistencyProofFailed(ProofError):
    """The consistency proof does not show the first tree is a prefix of the second."""


class ProofRequestInvalid(ValueError):
    """A proof was asked for leaves or sizes the tree does not have (bad input)."""


# -- hashing ----------------------------------------------------------------------------------


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash."""
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162: the largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    if n < 2:
        raise ValueError("n must be at least 2")
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) by the recursive definition, from leaf hashes in memory (reference and tests)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = largest_power_of_two_below(len(leaves))
    return hash_children(root_of(leaves[:k]), root_of(leaves[k:]))


class CompactRange:
    """The root of a growing tree with O(log n) memory: the hashes of the perfect subtrees
    that cover ``[0, size)``, largest first. Used to stream the root over millions of leaves
    and to extend a stored tree (``on_node`` sees every perfect subtree it completes)."""

    def __init__(
        self,
        size: int = 0,
        hashes: Sequence[bytes] = (),
        on_node: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        levels = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
        if len(levels) != len(hashes):
            raise ValueError("a compact range needs one hash per set bit of its size")
        self.size = size
        self._stack: list[tuple[int, bytes]] = list(zip(levels, hashes, strict=True))
        self._on_node = on_node

    @staticmethod
    def node_ids(size: int) -> list[NodeId]:
        """The perfect subtrees covering ``[0, size)``, largest first."""
        return perfect_cover(0, size)

    def append(self, leaf: bytes) -> None:
        stack, index = self._stack, self.size
        level, value = 0, leaf
        while stack and stack[-1][0] == level:
            value = hash_children(stack.pop()[1], value)
            level += 1
            if self._on_node is not None:
                self._on_node(level, index >> level, value)
        stack.append((level, value))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = hash_children(left, value)
        return value


# -- proofs as ranges -------------------------------------------------------------------------


def perfect_cover(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees that make up the tree node over ``[start, end)``, left to right.

    Precondition: ``[start, end)`` is a node of some tree (``start`` is a multiple of the
    largest power of two not above ``end - start``), as every range the proofs name is; then
    the node's hash is the right fold of these subtrees' hashes (``fold_right``).
    """
    ids: list[NodeId] = []
    while start < end:
        size = end - start
        level = size.bit_length() - 1
        if start % (1 << level):
            raise ValueError(f"[{start}, {end}) is not a node of a Merkle tree")
        ids.append((level, start >> level))
        start += 1 << level
    return ids


def fold_right(hashes: Sequence[bytes]) -> bytes:
    value = hashes[-1]
    for left in reversed(hashes[:-1]):
        value = hash_children(left, value)
    return value


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]) as leaf ranges, from the leaf's sibling up."""
    if not 0 <= index < size:
        raise ProofRequestInvalid(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.4.1 PROOF(first, D[second]) as leaf ranges, in proof order."""
    if not 0 < first <= second:
        raise ProofRequestInvalid(
            f"a consistency proof needs 0 < first <= second, not {first} and {second}"
        )
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, second, first, True
    while m != end - start:
        k = largest_power_of_two_below(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            m -= k
            start += k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def hashes_of_ranges(ranges: Sequence[tuple[int, int]], fetch: NodeFetcher) -> list[bytes]:
    """The node hash of each range, from one fetch of the perfect subtrees they need."""
    covers = [perfect_cover(start, end) for start, end in ranges]
    wanted = sorted({node for cover in covers for node in cover})
    stored = fetch(wanted) if wanted else {}
    return [fold_right([stored[node] for node in cover]) for cover in covers]


def root_from_store(size: int, fetch: NodeFetcher) -> bytes:
    return EMPTY_ROOT if size == 0 else hashes_of_ranges([(0, size)], fetch)[0]


# -- verification (RFC 9162 §2.1.3.2, §2.1.4.2) ----------------------------------------------


def _hex(value: bytes) -> str:
    return value.hex()


def _check_hash(what: str, value: bytes, error: type[ProofError]) -> None:
    if len(value) != HASH_SIZE:
        raise error(
            f"{what} is not a SHA-256 hash",
            expected=f"{HASH_SIZE} bytes",
            computed=f"{len(value)} bytes",
        )


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``.
    Raises ``InclusionProofFailed`` if the proof has the wrong shape."""
    if not 0 <= index < size:
        raise InclusionProofFailed(
            "leaf index is outside the tree",
            expected=f"0 <= index < {size}",
            computed=str(index),
        )
    _check_hash("the leaf hash", leaf, InclusionProofFailed)
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p, InclusionProofFailed)
        if sn == 0:
            raise InclusionProofFailed(
                "the proof is longer than the path to the root",
                expected=f"{i} hashes",
                computed=f"{len(proof)} hashes",
            )
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofFailed(
            "the proof is shorter than the path to the root",
            expected=f"more than {len(proof)} hashes",
            computed=f"{len(proof)} hashes",
        )
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` whose root is ``root``.
    Returns nothing; raises ``InclusionProofFailed`` naming the expected and computed root."""
    _check_hash("the root hash", root, InclusionProofFailed)
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise InclusionProofFailed(
            f"the proof for leaf {index} does not lead to the root of the tree of size {size}",
            expected=f"root {_hex(root)}",
            computed=f"root {_hex(computed)}",
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of size ``first`` with ``first_root`` is a prefix of the tree of
    size ``second`` with ``second_root``. Raises ``ConsistencyProofFailed``."""
    error = ConsistencyProofFailed
    _check_hash("the first root", first_root, error)
    _check_hash("the second root", second_root, error)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p, error)
    if not 0 <= first <= second:
        raise error(
            "the first tree is larger than the second",
            expected=f"first <= {second}",
            computed=str(first),
        )
    if first == second or first == 0:
        if proof:
            raise error(
                "a proof between these sizes must be empty",
                expected="0 hashes",
                computed=f"{len(proof)} hashes",
            )
        if first == second and first_root != second_root:
            raise error(
                "two trees of the same size have different roots",
                expected=f"root {_hex(first_root)}",
                computed=f"root {_hex(second_root)}",
            )
        return
    if not proof:
        raise error("the proof is empty", expected="at least 1 hash", computed="0 hashes")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: its root is a node of the second tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise error(
                "the proof is longer than the path to the root",
                expected="fewer hashes",
                computed=f"{len(proof)} hashes",
            )
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise error(
            "the proof is shorter than the path to the root",
            expected="more hashes",
            computed=f"{len(proof)} hashes",
        )
    if fr != first_root:
        raise error(
            f"the proof does not lead to the root of the tree of size {first}",
            expected=f"root {_hex(first_root)}",
            computed=f"root {_hex(fr)}",
        )
    if sr != second_root:
        raise error(
            f"the proof does not lead to the root of the tree of size {second}",
            expected=f"root {_hex(second_root)}",
            computed=f"root {_hex(sr)}",
        )


# -- JSON shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """An inclusion proof; ``to_json`` is the shape auditors' scripts rely on. ``position`` is
    the record position of the leaf when the caller asked by event (not part of the JSON)."""

    index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    proof: tuple[bytes, ...]
    position: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": b64(self.leaf_hash),
            "root_hash": b64(self.root_hash),
            "proof": [b64(h) for h in self.proof],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> InclusionProof:
        return cls(
            index=_int(data, "index"),
            tree_size=_int(data, "tree_size"),
            leaf_hash=unb64(_str(data, "leaf_hash")),
            root_hash=unb64(_str(data, "root_hash")),
            proof=tuple(unb64(h) for h in _list(data, "proof")),
        )

    def verify(self) -> None:
        verify_inclusion(self.index, self.tree_size, self.leaf_hash, self.proof, self.root_hash)


@dataclass(frozen=True)
class ConsistencyProof:
    first_size: int
    second_size: int
    first_root: bytes
    second_root: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "first_size": self.first_size,
            "second_size": self.second_size,
            "first_root": b64(self.first_root),
            "second_root": b64(self.second_root),
            "proof": [b64(h) for h in self.proof],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ConsistencyProof:
        return cls(
            first_size=_int(data, "first_size"),
            second_size=_int(data, "second_size"),
            first_root=unb64(_str(data, "first_root")),
            second_root=unb64(_str(data, "second_root")),
            proof=tuple(unb64(h) for h in _list(data, "proof")),
        )

    def verify(self) -> None:
        verify_consistency(
            self.first_size, self.second_size, self.first_root, self.second_root, self.proof
        )


def b64(value: bytes) -> str:
    """Standard base64 (RFC 4648 §4), with padding."""
    return base64.b64encode(value).decode("ascii")


def unb64(value: str) -> bytes:
    """Strict standard base64; ``ValueError`` otherwise."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not standard base64: {value[:20]!r}") from None


def _int(data: dict[str, object], key: str) -> int:
    value = data.get(key)
    if type(value) is not int:
        raise ValueError(f"{key} must be an integer")
    return value


def _str(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a base64 string")
    return value


def _list(data: dict[str, object], key: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of base64 strings")
    return value
