"""The verifier's witness policy (issue 16, item 3): the file an auditor or a State holds,
never read from the record, decides how many witnesses must have cosigned a checkpoint.

Cosignatures here are made by the independent C2SP implementation of
``tests/test_cosignature.py`` (``spec_cosign``), so the policy is checked against the spec,
not against pocdir's own signer.
"""

from __future__ import annotations

import hashlib

import pytest

from infra.cosignature import CosignatureInvalid
from infra.note import Checkpoint, SignerKey, UnknownSigner, sign_note
from infra.witness_policy import Policy, PolicyInvalid, QuorumNotMet
from tests.test_cosignature import spec_cosign, spec_public_key, spec_vkey

ORIGIN = "pocdir.example/record"
LOG = SignerKey(ORIGIN, hashlib.sha256(b"pocdir witness policy test log").digest())
BODY = Checkpoint(ORIGIN, 42, hashlib.sha256(b"root").digest()).body()
NOTE = sign_note(BODY, LOG)
TIME = 1_767_000_000


def _seed(name: str) -> bytes:
    return hashlib.sha256(f"witness seed {name}".encode()).digest()


#: Witnesses by regional group: two in WEOG, one in GRULAC, one in the African Group.
WITNESSES = {
    "w-fra": "WEOG",
    "w-deu": "WEOG",
    "w-bra": "GRULAC",
    "w-zaf": "AG",
}


def vkey(name: str) -> str:
    return spec_vkey(f"{name}.example", spec_public_key(_seed(name)))


def cosigned(note: str, *names: str, body: str = BODY) -> str:
    return note + "".join(
        spec_cosign(body, TIME + i, f"{n}.example", _seed(n)) for i, n in enumerate(names)
    )


def policy(quorum: str, *extra: str) -> Policy:
    lines = [f"log {LOG.verifier}"]
    lines += [f"witness {n} {vkey(n)} http://127.0.0.1:1/{n}" for n in WITNESSES]
    lines += list(extra)
    lines.append(f"quorum {quorum}")
    return Policy.parse("\n".join(lines) + "\n")


EACH_REGION = (
    "group WEOG any w-fra w-deu",
    "group GRULAC any w-bra",
    "group AG any w-zaf",
    "group regions all WEOG GRULAC AG",
)


def test_one_witness_from_each_regional_group_is_needed_and_the_missing_group_is_named() -> None:
    rule = policy("regions", *EACH_REGION)
    accepted = rule.check(cosigned(NOTE, "w-deu", "w-bra", "w-zaf"))
    assert sorted(accepted.cosigned_by) == ["w-bra", "w-deu", "w-zaf"]
    assert accepted.tree_size == 42
    with pytest.raises(QuorumNotMet) as refused:
        rule.check(cosigned(NOTE, "w-fra", "w-deu", "w-bra"))
    assert refused.value.missing == ("w-zaf",)
    assert "w-zaf" in str(refused.value) and "AG" in refused.value.expected


def test_k_of_n_counts_distinct_witnesses() -> None:
    rule = policy("three", "group three 3 w-fra w-deu w-bra w-zaf")
    assert len(rule.check(cosigned(NOTE, "w-fra", "w-bra", "w-zaf")).cosigned_by) == 3
    with pytest.raises(QuorumNotMet) as refused:
        rule.check(cosigned(NOTE, "w-fra", "w-bra"))
    assert refused.value.missing == ("w-deu", "w-zaf")


def test_a_checkpoint_no_witness_cosigned_passes_only_an_explicit_no_witness_policy() -> None:
    assert policy("none").check(NOTE).cosigned_by == {}
    for quorum in ("w-fra", "any1"):
        rule = policy(quorum, "group any1 any w-fra w-deu w-bra w-zaf")
        with pytest.raises(QuorumNotMet) as refused:
            rule.check(NOTE)
        assert refused.value.computed == "cosigned by no witness"


def test_a_cosignature_of_another_checkpoint_or_by_an_unknown_key_does_not_count() -> None:
    other = Checkpoint(ORIGIN, 43, hashlib.sha256(b"other").digest()).body()
    rule = policy("w-fra")
    # A line the witness made for another tree head, pasted under this one, does not verify.
    with pytest.raises(CosignatureInvalid):
        rule.check(cosigned(NOTE, "w-fra", body=other))
    # A witness the policy does not list is ignored, however valid its line.
    stranger = NOTE + spec_cosign(BODY, TIME, "w-xxx.example", _seed("w-xxx"))
    with pytest.raises(QuorumNotMet):
        rule.check(stranger)


def test_the_log_key_comes_from_the_policy_not_from_the_note() -> None:
    impostor = SignerKey.generate(ORIGIN)
    with pytest.raises(UnknownSigner):
        policy("none").check(sign_note(BODY, impostor))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("quorum none\n", "at least one log key"),
        (f"log {LOG.verifier}\n", "ends with its quorum line"),
        (f"log {LOG.verifier}\ngroup g any w-fra\nquorum g\n", "line 2: 'w-fra' is not defined"),
        (f"log {LOG.verifier}\nquorum none\nlog {LOG.verifier}\n", "line 3: nothing may follow"),
        (f"log {LOG.verifier}\nwitness w {LOG.verifier}\nquorum none\n", "line 2: witness key"),
        (f"log {vkey('w-fra')}\nquorum none\n", "line 1: log key"),
        (f"log {LOG.verifier}\nwitness a {vkey('w-fra')}\ngroup g 2 a\nquorum g\n", "1 to 1"),
        (f"log {LOG.verifier}\nwitness a {vkey('w-fra')}\nwitness a {vkey('w-deu')}\n", "twice"),
        (f"log {LOG.verifier}\nwitness a {vkey('w-fra')}\nwitness b {vkey('w-fra')}\n", "twice"),
        (f"log {LOG.verifier}\nthreshold 3\nquorum none\n", "unknown keyword 'threshold'"),
        (f"log {LOG.verifier}\nquorum nobody\n", "'nobody' is not defined"),
    ],
)
def test_a_malformed_policy_is_refused_naming_its_line(text: str, says: str) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        Policy.parse(text)
    assert says in str(refused.value)


def test_comments_urls_and_the_quorum_witnesses_are_read() -> None:
    rule = Policy.parse(
        f"# the delegation's policy\nlog {LOG.verifier}   # the log\n"
        f"witness a {vkey('w-fra')} https://w.example/fra\nwitness b {vkey('w-deu')}\n"
        "group g any a b\nquorum g\n"
    )
    assert rule.witnesses["a"].url == "https://w.example/fra"
    assert rule.witnesses["b"].url is None
    assert rule.quorum_witnesses() == ["a", "b"]
    assert rule.describe() == "g: 1 of (a, b)"
