"""C2SP tlog-cosignature (cosignature/v1): pocdir's witnesses sign and verify it as the spec says.

The ``spec_*`` helpers below are an independent implementation written from the text of
https://c2sp.org/tlog-cosignature (sections "Format" and "Ed25519 signed message") with
hashlib, base64 and cryptography only; they never call ``infra.cosignature``, so a mistake
there cannot be mirrored here. They check cosignatures made by pocdir, and pocdir checks theirs.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from infra.cosignature import (
    Cosignature,
    CosignatureInvalid,
    CosignatureMissing,
    MalformedCosignature,
    WitnessKey,
    WitnessVerifierKey,
    cosign,
    verify_cosignature,
)
from infra.note import KeyFormatError, MalformedCheckpoint, SignerKey, sign_note

# The spec's example checkpoint body and the timestamp of its example cosignature.
BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
OTHER_BODY = "example.com/behind-the-sofa\n20852164\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
TIME = 1679315147
# The spec's example witness line: its key is not published, but its bytes show the layout.
SPEC_EXAMPLE_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)

# Golden vector. Seed = SHA-256(b"pocdir tlog-cosignature golden vector"), name
# "witness.example.org/fra", body BODY, timestamp TIME. Computed once by this file's spec_*
# code (spec_vkey and spec_cosign; Ed25519 is deterministic, RFC 8032), and written here so a
# change to either implementation shows as a changed line.
GOLDEN_SEED = hashlib.sha256(b"pocdir tlog-cosignature golden vector").digest()
GOLDEN_NAME = "witness.example.org/fra"
GOLDEN_VKEY = "witness.example.org/fra+efc6dcdb+BFyLaXtn2hPamMa9XdHHc0H+C2qbsxRW76UjG7RxsSeq"
GOLDEN_LINE = (
    "— witness.example.org/fra 78bc2wAAAABkGFDLpnljdvlUtAPn1yGbQU5quJ5yiy4bXidLamLiSQT+TODz/XWR"
    "M0UPtp3qbCHkZG8cHA9AGCD0kMo08JrUaLw7Cg==\n"
)


# -- the independent implementation, from the spec's text ------------------------------------


def spec_public_key(seed: bytes) -> bytes:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def spec_key_id(name: str, public_key: bytes) -> bytes:
    # "SHA-256(<name> || "\n" || 0x04 || 32-byte Ed25519 cosigner public key)[:4]"
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x04" + public_key).digest()[:4]


def spec_vkey(name: str, public_key: bytes) -> str:
    # signed-note vkey with "signature type 0x04 and the 32-byte Ed25519 cosigner public key"
    key_id = spec_key_id(name, public_key).hex()
    encoded = base64.b64encode(b"\x04" + public_key).decode()
    return f"{name}+{key_id}+{encoded}"


def spec_message(body: str, timestamp: int) -> bytes:
    # "two newline terminated lines (one header line and one timestamp line) followed by the
    # whole note body"; header "cosignature/v1"; "time", one space, decimal, no leading zeroes.
    return b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + body.encode()


def spec_cosign(body: str, timestamp: int, name: str, seed: bytes) -> str:
    # "— <key name> base64(32-bit key ID || signature)", signature = timestamped_signature:
    # u64 timestamp, big-endian (RFC 8446 §3.3), then the 64-byte Ed25519 signature.
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(spec_message(body, timestamp))
    raw = spec_key_id(name, spec_public_key(seed)) + timestamp.to_bytes(8, "big") + signature
    return f"\u2014 {name} {base64.b64encode(raw).decode()}\n"


def spec_verify(note: str, name: str, public_key: bytes) -> int:
    """The timestamp of ``name``'s valid cosignature on ``note``; AssertionError otherwise."""
    body, _, signatures = note.rpartition("\n\n")
    body += "\n"
    wanted = spec_key_id(name, public_key)
    for line in signatures.splitlines():
        signer, encoded = line.removeprefix("\u2014 ").split(" ")
        raw = base64.b64decode(encoded, validate=True)
        if signer != name or raw[:4] != wanted:
            continue
        assert len(raw) == 4 + 8 + 64
        timestamp = int.from_bytes(raw[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                raw[12:], spec_message(body, timestamp)
            )
        except InvalidSignature:
            raise AssertionError("the cosignature does not verify") from None
        return timestamp
    raise AssertionError(f"no cosignature by {name}")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def log_key() -> SignerKey:
    return SignerKey.generate("example.com/behind-the-sofa")


@pytest.fixture
def witness() -> WitnessKey:
    return WitnessKey.generate("witness.example.org/fra")


def cosigned(log_key: SignerKey, witness: WitnessKey, body: str = BODY, t: int = TIME) -> str:
    return sign_note(body, log_key) + cosign(body, t, witness)


# -- tests -------------------------------------------------------------------------------------


def test_a_cosignature_round_trips_and_names_its_time(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    note = cosigned(log_key, witness)
    assert verify_cosignature(note, witness.verifier) == TIME
    vkey = WitnessVerifierKey.parse(str(witness.verifier))
    assert vkey == witness.verifier
    assert verify_cosignature(note, vkey) == TIME


def test_the_golden_vector_matches_the_spec_computation() -> None:
    key = WitnessKey(GOLDEN_NAME, GOLDEN_SEED)
    assert spec_vkey(GOLDEN_NAME, spec_public_key(GOLDEN_SEED)) == GOLDEN_VKEY
    assert spec_cosign(BODY, TIME, GOLDEN_NAME, GOLDEN_SEED) == GOLDEN_LINE
    assert str(key.verifier) == GOLDEN_VKEY
    assert cosign(BODY, TIME, key) == GOLDEN_LINE
    assert (
        verify_cosignature(BODY + "\n" + GOLDEN_LINE, WitnessVerifierKey.parse(GOLDEN_VKEY)) == TIME
    )


def test_the_independent_code_verifies_what_pocdir_cosigns(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    note = cosigned(log_key, witness, t=1_700_000_123)
    assert spec_verify(note, witness.name, witness.verifier.public_key) == 1_700_000_123


def test_pocdir_verifies_what_the_independent_code_cosigns(log_key: SignerKey) -> None:
    seed = hashlib.sha256(b"another witness").digest()
    name = "witness.example.net/grulac"
    note = sign_note(BODY, log_key) + spec_cosign(BODY, 1_234_567_890, name, seed)
    vkey = WitnessVerifierKey.parse(spec_vkey(name, spec_public_key(seed)))
    assert verify_cosignature(note, vkey) == 1_234_567_890


def test_the_spec_example_line_decodes_to_its_key_id_and_time() -> None:
    parsed = Cosignature.parse(SPEC_EXAMPLE_LINE)
    assert parsed.name == "witness.example.com/w1"
    assert parsed.key_id.hex() == "8d66cf3f"
    assert parsed.timestamp == TIME
    assert parsed.line() == SPEC_EXAMPLE_LINE + "\n"


def test_extension_lines_are_part_of_the_signed_message(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    body = BODY + "an extension line\n"
    note = cosigned(log_key, witness, body=body)
    assert verify_cosignature(note, witness.verifier) == TIME
    assert spec_verify(note, witness.name, witness.verifier.public_key) == TIME
    stripped = sign_note(BODY, log_key) + cosign(body, TIME, witness)
    with pytest.raises(CosignatureInvalid):
        verify_cosignature(stripped, witness.verifier)


def test_a_cosignature_over_another_checkpoint_is_refused(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    note = sign_note(OTHER_BODY, log_key) + cosign(BODY, TIME, witness)
    with pytest.raises(CosignatureInvalid) as refused:
        verify_cosignature(note, witness.verifier)
    assert str(witness.verifier) in refused.value.expected


def test_a_cosignature_by_another_key_is_refused(log_key: SignerKey, witness: WitnessKey) -> None:
    impostor = WitnessKey.generate(witness.name)
    note = cosigned(log_key, impostor)
    with pytest.raises(CosignatureMissing) as missing:
        verify_cosignature(note, witness.verifier)
    assert witness.verifier.key_id.hex() in missing.value.expected
    assert impostor.verifier.key_id.hex() in missing.value.computed


def test_a_forged_line_under_the_witness_key_id_is_refused(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    impostor = WitnessKey.generate("someone")
    forged = Cosignature.parse(cosign(BODY, TIME, impostor))
    line = Cosignature(witness.name, witness.verifier.key_id, TIME, forged.signature).line()
    with pytest.raises(CosignatureInvalid):
        verify_cosignature(sign_note(BODY, log_key) + line, witness.verifier)


def test_a_changed_timestamp_is_refused(log_key: SignerKey, witness: WitnessKey) -> None:
    original = Cosignature.parse(cosign(BODY, TIME, witness))
    moved = Cosignature(original.name, original.key_id, TIME + 1, original.signature)
    with pytest.raises(CosignatureInvalid):
        verify_cosignature(sign_note(BODY, log_key) + moved.line(), witness.verifier)


def test_a_log_signature_is_not_taken_for_a_cosignature(witness: WitnessKey) -> None:
    same_key_as_log = SignerKey(witness.name, witness.seed)
    note = sign_note(BODY, same_key_as_log)
    with pytest.raises(CosignatureMissing):
        verify_cosignature(note, witness.verifier)


def test_a_truncated_cosignature_is_refused(log_key: SignerKey, witness: WitnessKey) -> None:
    raw = base64.b64decode(cosign(BODY, TIME, witness).split(" ")[2])
    line = f"— {witness.name} {base64.b64encode(raw[:-1]).decode()}\n"
    with pytest.raises(MalformedCosignature) as malformed:
        verify_cosignature(sign_note(BODY, log_key) + line, witness.verifier)
    assert malformed.value.computed == "71 bytes"


def test_a_timestamp_above_the_spec_bound_is_refused(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    original = Cosignature.parse(cosign(BODY, TIME, witness))
    raw = original.key_id + (2**63).to_bytes(8, "big") + original.signature
    line = f"— {witness.name} {base64.b64encode(raw).decode()}\n"
    with pytest.raises(MalformedCosignature):
        verify_cosignature(sign_note(BODY, log_key) + line, witness.verifier)


def test_two_cosignatures_by_one_witness_are_refused(
    log_key: SignerKey, witness: WitnessKey
) -> None:
    note = cosigned(log_key, witness) + cosign(BODY, TIME + 5, witness)
    with pytest.raises(MalformedCosignature):
        verify_cosignature(note, witness.verifier)


def test_a_malformed_note_or_line_is_refused(witness: WitnessKey) -> None:
    with pytest.raises(MalformedCheckpoint):
        verify_cosignature(BODY, witness.verifier)
    with pytest.raises(MalformedCheckpoint):
        verify_cosignature("not a checkpoint\n\n" + cosign(BODY, TIME, witness), witness.verifier)
    with pytest.raises(MalformedCheckpoint):
        verify_cosignature(BODY + "\n— witness.example.org/fra abcde\n", witness.verifier)
    with pytest.raises(MalformedCosignature):
        Cosignature.parse("— witness.example.org/fra !!!")
    with pytest.raises(MalformedCosignature):
        Cosignature.parse("— witness.example.org/fra abcde")


def test_cosign_refuses_what_no_verifier_could_read(witness: WitnessKey) -> None:
    with pytest.raises(ValueError, match="between 0 and 2"):
        cosign(BODY, -1, witness)
    with pytest.raises(ValueError, match="between 0 and 2"):
        cosign(BODY, 2**63, witness)
    with pytest.raises(MalformedCheckpoint):
        cosign("no tree size\n", TIME, witness)
    with pytest.raises(ValueError, match="blank line"):
        cosign(BODY + "\nextension\n", TIME, witness)


def test_a_witness_vkey_must_be_type_4_with_a_matching_id(witness: WitnessKey) -> None:
    log_vkey = str(SignerKey(witness.name, witness.seed).verifier)
    with pytest.raises(KeyFormatError, match="type 0x04"):
        WitnessVerifierKey.parse(log_vkey)
    name, _, key = str(witness.verifier).split("+", 2)
    with pytest.raises(KeyFormatError, match="does not match"):
        WitnessVerifierKey.parse(f"{name}+00000000+{key}")
