"""The Merkle tree, its proofs and verifier, and signed notes, against published vectors.

Golden vectors: the RFC 6962 test tree of transparency-dev/merkle (``testonly/constants.go``:
8 leaf inputs, the roots for sizes 1-8) and its known proofs (``proof/verify_test.go``,
``testonly/reference_test.go``); the signed-note example of ``golang.org/x/mod/sumdb/note``.
They run against the functions production uses: the chain's ``leaf_hash`` (what every stored
event's leaf is), ``CompactRange`` as the tree store extends with it, and the tree store's
``fetch_nodes`` under ``Transparency`` (roots and proofs), on both backends.
"""

from __future__ import annotations

import base64

import pytest

from domain.application import PocDirectory
from infra.chain import GENESIS_LINK, leaf_hash
from infra.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProofFailed,
    InclusionProofFailed,
    ProofRequestInvalid,
    consistency_ranges,
    hashes_of_ranges,
    inclusion_ranges,
    perfect_cover,
    root_from_store,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from infra.note import (
    Checkpoint,
    MalformedCheckpoint,
    SignatureInvalid,
    SignerKey,
    UnknownSigner,
    VerifierKey,
    open_checkpoint,
    sign_note,
)
from infra.transparency import Transparency
from infra.tree_store import build_tree_store

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAVES = [leaf_hash(x) for x in LEAF_INPUTS]
ROOTS = {
    size: bytes.fromhex(h)
    for size, h in {
        0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }.items()
}


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (leaf index, tree size, proof): verify_test.go lists 1-based leaves; these are 0-based.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (0, 2, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")),
    (1, 2, _h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")),
]

# (first size, second size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def _store_of(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of the 8-leaf tree, as a stored tree would hold them."""
    nodes: dict[tuple[int, int], bytes] = {(0, i): leaf for i, leaf in enumerate(leaves)}
    CompactRange(on_node=lambda lv, i, h: nodes.__setitem__((lv, i), h)).extend(leaves)
    return nodes


NODES = _store_of(LEAVES)


def fetch(ids: object) -> dict[tuple[int, int], bytes]:
    return {i: NODES[i] for i in ids}  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", range(0, 9))
def test_tree_heads_match_the_published_roots(size: int) -> None:
    assert root_of(LEAVES[:size]) == ROOTS[size]
    compact = CompactRange()
    compact.extend(LEAVES[:size])
    assert compact.root() == ROOTS[size]
    assert root_from_store(size, fetch) == ROOTS[size]


def test_the_chain_leaf_hash_is_the_published_leaf_hash() -> None:
    """RFC 9162 leaf 0 (empty input), as transparency-dev/merkle publishes it: the hash
    every stored event's leaf is computed with is the RFC's."""
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


@pytest.fixture
def golden_tree(app: PocDirectory) -> Transparency:
    """The published 8-leaf tree in a real tree store, written as the store writes a tree it
    extends (leaves, then the perfect subtrees ``CompactRange`` completes, then the head)."""
    tree = build_tree_store(app.recorder)
    nodes: list[tuple[int, int, bytes]] = []
    compact = CompactRange(on_node=lambda level, index, value: nodes.append((level, index, value)))
    compact.extend(LEAVES)
    with tree.writing() as c:
        c.executemany(
            tree.sql(f"INSERT INTO {tree.leaves} VALUES (%s, %s, %s)"),
            [(i, i + 1, leaf) for i, leaf in enumerate(LEAVES)],
        )
        c.executemany(tree.sql(f"INSERT INTO {tree.nodes} VALUES (%s, %s, %s)"), nodes)
        c.execute(
            tree.sql(
                f"UPDATE {tree.head_table} SET tree_size = %s, position = %s, link = %s "
                "WHERE id = 1"
            ),
            (8, 8, GENESIS_LINK),
        )
    return Transparency(tree, "test.example/golden", signer=lambda: SignerKey.generate("x"))


def test_the_tree_store_answers_the_published_roots_and_proofs(golden_tree: Transparency) -> None:
    """What the API and the CLI serve: roots and proofs read from the stored tree."""
    for size in range(0, 9):
        assert golden_tree.root_hash(size) == ROOTS[size]
    for index, size, proof in INCLUSION:
        inclusion = golden_tree.inclusion_proof(index, size)
        assert (inclusion.leaf_hash, inclusion.root_hash) == (LEAVES[index], ROOTS[size])
        assert list(inclusion.proof) == proof
        inclusion.verify()
    for first, second, proof in CONSISTENCY:
        consistency = golden_tree.consistency_proof(first, second)
        assert (consistency.first_root, consistency.second_root) == (ROOTS[first], ROOTS[second])
        assert list(consistency.proof) == proof
        consistency.verify()


def test_stored_perfect_subtrees_match_the_published_node_hashes() -> None:
    assert NODES[(1, 2)].hex() == "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
    assert NODES[(2, 1)].hex() == "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
    assert NODES[(3, 0)] == ROOTS[8]
    assert ROOTS[0] == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_from_stored_subtrees_are_the_published_ones(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert hashes_of_ranges(inclusion_ranges(index, size), fetch) == proof
    verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_proofs_from_stored_subtrees_are_the_published_ones(
    first: int, second: int, proof: list[bytes]
) -> None:
    assert hashes_of_ranges(consistency_ranges(first, second), fetch) == proof
    verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def test_every_proof_of_the_eight_leaf_tree_verifies() -> None:
    for size in range(1, 9):
        for index in range(size):
            proof = hashes_of_ranges(inclusion_ranges(index, size), fetch)
            verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])
        for first in range(1, size + 1):
            proof = hashes_of_ranges(consistency_ranges(first, size), fetch)
            verify_consistency(first, size, ROOTS[first], ROOTS[size], proof)


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    bad = list(proof)
    bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
    return bad


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in INCLUSION if v[2]])
def test_a_corrupted_inclusion_proof_fails_naming_expected_and_computed_root(
    index: int, size: int, proof: list[bytes]
) -> None:
    leaf, root = LEAVES[index], ROOTS[size]
    probes = [
        (index, size, leaf, _flip(proof, 0), root),
        (index, size, leaf, proof[:-1], root),
        (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [root, *proof], root),
        (index, size, leaf_hash(b"wrong leaf"), proof, root),
        (index, size, leaf, proof, EMPTY_ROOT),
        (index ^ 1, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size, leaf, [b"\x00" * 31, *proof[1:]], root),
    ]
    for probe in probes:
        with pytest.raises(InclusionProofFailed) as failure:
            verify_inclusion(*probe)
        assert failure.value.expected and failure.value.computed


def test_a_wrong_root_is_reported_with_both_roots() -> None:
    index, size, proof = INCLUSION[1]
    with pytest.raises(InclusionProofFailed) as failure:
        verify_inclusion(index, size, LEAVES[index], proof, ROOTS[7])
    assert failure.value.expected == f"root {ROOTS[7].hex()}"
    assert failure.value.computed == f"root {ROOTS[8].hex()}"


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY if v[2]])
def test_a_corrupted_consistency_proof_fails(first: int, second: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[first], ROOTS[second]
    probes = [
        (first, second, r1, r2, _flip(proof, len(proof) - 1)),
        (first, second, r1, r2, proof[:-1]),
        (first, second, r1, r2, []),
        (first, second, r2, r1, proof),
        (first, second, r1, r2, [*proof, r1]),
        (first, second, r1, r2, [r2, *proof]),
        (first - 1 or 2, second, r1, r2, proof),
        (first, second * 2, r1, r2, proof),
        (second, first, r1, r2, proof),
    ]
    for probe in probes:
        with pytest.raises(ConsistencyProofFailed):
            verify_consistency(*probe)


def test_proofs_for_leaves_or_sizes_outside_the_tree_are_refused() -> None:
    with pytest.raises(ProofRequestInvalid):
        inclusion_ranges(8, 8)
    with pytest.raises(ProofRequestInvalid):
        consistency_ranges(5, 4)
    with pytest.raises(ProofRequestInvalid):
        consistency_ranges(0, 4)


def test_right_edge_ranges_are_folded_from_perfect_subtrees() -> None:
    assert perfect_cover(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert hashes_of_ranges([(0, 7)], fetch) == [ROOTS[7]]
    with pytest.raises(ValueError, match="not a node"):
        perfect_cover(1, 3)


# -- signed notes (golang.org/x/mod/sumdb/note example) --------------------------------------

GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signing_reproduces_the_reference_signed_note_and_keys() -> None:
    signer = SignerKey.parse(GO_SIGNER)
    assert str(signer.verifier) == GO_VERIFIER
    assert signer.serialise().strip() == GO_SIGNER
    assert sign_note(GO_TEXT, signer) == GO_NOTE
    assert VerifierKey.parse(GO_VERIFIER).key_id.hex() == "c74f20a3"


def test_the_c2sp_spec_example_key_parses() -> None:
    key = VerifierKey.parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
    assert key.name == "example.com/foo"


def _checkpoint_note(signer: SignerKey, size: int = 8) -> str:
    return sign_note(Checkpoint("example.org/log", size, ROOTS[size]).body(), signer)


def test_a_signed_checkpoint_opens_with_its_key_and_gives_size_and_root() -> None:
    signer = SignerKey.generate("example.org/log")
    note = _checkpoint_note(signer)
    root = base64.b64encode(ROOTS[8]).decode()
    assert note.startswith(f"example.org/log\n8\n{root}\n\n\u2014 example.org/log ")
    opened = open_checkpoint(note, [signer.verifier])
    assert opened.checkpoint == Checkpoint("example.org/log", 8, ROOTS[8])


def test_an_altered_checkpoint_fails_its_signature() -> None:
    signer = SignerKey.generate("example.org/log")
    note = _checkpoint_note(signer).replace("\n8\n", "\n9\n", 1)
    with pytest.raises(SignatureInvalid):
        open_checkpoint(note, [signer.verifier])


def test_a_checkpoint_by_an_unknown_key_is_refused() -> None:
    note = _checkpoint_note(SignerKey.generate("example.org/log"))
    with pytest.raises(UnknownSigner):
        open_checkpoint(note, [SignerKey.generate("example.org/log").verifier])


def test_a_note_that_is_not_a_checkpoint_is_malformed() -> None:
    signer = SignerKey.parse(GO_SIGNER)
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(GO_NOTE, [signer.verifier])
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint("no signature\n", [signer.verifier])


def test_a_signature_line_that_is_not_base64_is_malformed() -> None:
    """A badly padded signature is the note's fault, said as such (``MalformedCheckpoint``),
    not a bare ``ValueError`` that a caller would not expect."""
    signer = SignerKey.parse(GO_SIGNER)
    body = "example.com/origin\n1\n" + "A" * 43 + "=\n"
    with pytest.raises(MalformedCheckpoint, match="signature line"):
        open_checkpoint(body + "\n— example.com abcde\n", [signer.verifier])
