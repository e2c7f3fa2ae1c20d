"""The exchange envelope (issue 15 item 4): only the States it names can read a notification.

Key generation for ML-KEM-768 + X25519 is cheap, but each test keeps to the few keys it needs.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import InvalidIndicator, TranslationRequired
from domain.values import Text
from state_client.envelope import (
    CONTENT_AAD_PREFIX,
    MAGIC,
    RESPONSE_AAD_PREFIX,
    RESPONSE_MAGIC,
    RESPONSE_WRAP_INFO_PREFIX,
    WRAP_INFO_PREFIX,
    WRAPPED_KEY_LENGTH,
    Content,
    Envelope,
    EnvelopeMalformed,
    EnvelopeNotAddressed,
    EnvelopeUndecryptable,
    _wrap,
    content_aad,
    open_envelope,
    open_response,
    rewrap,
    rewrap_response,
    seal,
    seal_response,
    wrap_info,
)
from state_client.keys import (
    PUBLIC_KEY_LENGTH,
    EncryptionPrivateKey,
    EncryptionPublicKey,
    KeyFormatError,
)

CONTENT: dict[str, Any] = {
    "description": {"language": "fr", "text": "Rançongiciel", "english": "Ransomware"},
    "supporting_information": {
        "indicators": [
            {"kind": "ipv4", "value": "192.0.2.1"},
            {"kind": "domain", "value": "EXAMPLE.com."},
        ],
        "text": None,
    },
}


@pytest.fixture(scope="module")
def keys() -> dict[str, EncryptionPrivateKey]:
    return {state: EncryptionPrivateKey.generate() for state in ("FRA", "DEU", "KEN")}


def _sealed(keys: dict[str, EncryptionPrivateKey], notification: UUID | None = None) -> Envelope:
    return seal(
        CONTENT,
        notification or uuid4(),
        {"FRA": keys["FRA"].public_key(), "DEU": keys["DEU"].public_key()},
    )


def test_recipient_and_sender_read_the_validated_content(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    envelope = Envelope.from_bytes(_sealed(keys).to_bytes())
    assert envelope.addressed == ("DEU", "FRA")
    for state in ("DEU", "FRA"):
        content = open_envelope(envelope, state, keys[state])
        assert content == Content.from_dict(CONTENT)
        # Indicators come back as the domain normalised them before encrypting.
        assert content.supporting_information.indicators[1].value == "example.com"
        assert content.description.english == "Ransomware"


def test_a_state_not_addressed_cannot_read(keys: dict[str, EncryptionPrivateKey]) -> None:
    envelope = _sealed(keys)
    with pytest.raises(EnvelopeNotAddressed) as caught:
        open_envelope(envelope, "KEN", keys["KEN"])
    assert caught.value.addressed == ("DEU", "FRA")


def test_a_wrapped_key_moved_to_another_notification_fails(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    first, second = _sealed(keys), _sealed(keys)
    moved = second.with_wrapped_key("DEU", first.wrapped_key("DEU"))
    with pytest.raises(EnvelopeUndecryptable) as caught:
        open_envelope(moved, "DEU", keys["DEU"])
    assert caught.value.part == "wrapped key"
    # Nor does the content ciphertext open under another notification's id.
    relabelled = Envelope(second.notification, first.nonce, first.ciphertext, first.wrapped_keys)
    with pytest.raises(EnvelopeUndecryptable):
        open_envelope(relabelled, "DEU", keys["DEU"])


def test_a_wrapped_key_moved_to_another_state_fails(keys: dict[str, EncryptionPrivateKey]) -> None:
    """Even a State holding the key pair of both codes cannot open FRA's key as KEN's."""
    envelope = _sealed(keys)
    moved = envelope.with_wrapped_key("KEN", envelope.wrapped_key("FRA"))
    with pytest.raises(EnvelopeUndecryptable, match="wrapped key"):
        open_envelope(moved, "KEN", keys["FRA"])
    # The info really names the State: the same wrap under the FRA label still opens.
    assert open_envelope(moved, "FRA", keys["FRA"]) == Content.from_dict(CONTENT)


def test_tampered_content_or_key_fails_with_a_typed_error(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    envelope = _sealed(keys)
    flipped = bytes([envelope.ciphertext[0] ^ 1]) + envelope.ciphertext[1:]
    tampered = Envelope(envelope.notification, envelope.nonce, flipped, envelope.wrapped_keys)
    with pytest.raises(EnvelopeUndecryptable) as caught:
        open_envelope(tampered, "FRA", keys["FRA"])
    assert (caught.value.part, caught.value.state) == ("content", "FRA")

    wrapped = bytearray(envelope.wrapped_key("FRA"))
    wrapped[-1] ^= 1
    with pytest.raises(EnvelopeUndecryptable, match="wrapped key"):
        open_envelope(envelope.with_wrapped_key("FRA", bytes(wrapped)), "FRA", keys["FRA"])


def test_a_third_state_reads_after_a_rewrap(keys: dict[str, EncryptionPrivateKey]) -> None:
    envelope = _sealed(keys)
    shared = rewrap(envelope, "DEU", keys["DEU"], "KEN", keys["KEN"].public_key())
    assert shared.addressed == ("DEU", "FRA", "KEN")
    assert shared.ciphertext == envelope.ciphertext  # content encrypted once, never again
    assert open_envelope(Envelope.from_bytes(shared.to_bytes()), "KEN", keys["KEN"]) == (
        Content.from_dict(CONTENT)
    )
    # A State that cannot open the envelope cannot share it either.
    with pytest.raises(EnvelopeUndecryptable):
        rewrap(envelope.with_wrapped_key("KEN", envelope.wrapped_key("FRA")), "KEN",
               keys["KEN"], "KEN", keys["KEN"].public_key())  # fmt: skip


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"indicators": [{"kind": "ipv4", "value": "192.0.2.300"}]}, InvalidIndicator, "#1"),
        ({"indicators": [{"kind": "sha256", "value": "abc"}]}, InvalidIndicator, "sha256"),
    ],
)
def test_invalid_indicators_are_refused_before_encrypting(
    keys: dict[str, EncryptionPrivateKey], change: dict[str, Any], error: type, message: str
) -> None:
    content = {**CONTENT, "supporting_information": {**CONTENT["supporting_information"], **change}}
    with pytest.raises(error, match=message):
        seal(content, uuid4(), {"FRA": keys["FRA"].public_key()})


def test_a_text_without_translation_is_refused_before_encrypting(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    content = {**CONTENT, "description": {"language": "fr", "text": "Rançongiciel"}}
    with pytest.raises(TranslationRequired):
        seal(content, uuid4(), {"FRA": keys["FRA"].public_key()})


def test_content_is_validated_again_after_decrypting(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    """Another client could encrypt anything: what it sent is checked like plain input."""
    notification = uuid4()
    key, nonce = AESGCM.generate_key(bit_length=256), b"\x00" * 12
    bad = (
        b'{"description":"x","supporting_information":{"indicators":[{"kind":"md5","value":"zz"}]}}'
    )
    envelope = Envelope(
        notification,
        nonce,
        AESGCM(key).encrypt(nonce, bad, content_aad(notification)),
        (("FRA", _wrap(key, notification, "FRA", keys["FRA"].public_key())),),
    )
    with pytest.raises(InvalidIndicator, match="md5"):
        open_envelope(envelope, "FRA", keys["FRA"])


def test_the_envelope_bytes_are_as_documented(keys: dict[str, EncryptionPrivateKey]) -> None:
    """docs/e2e.md: header, content, count, then (code, length, wrapped key) in code order."""
    notification = UUID("00000000-0000-4000-8000-000000000001")
    envelope = _sealed(keys, notification)
    data = envelope.to_bytes()
    assert data[:4] == MAGIC == b"PDE1"
    assert struct.unpack(">HHH", data[4:10]) == (0x647A, 0x0001, 0x0002)
    assert data[10:26] == notification.bytes
    assert data[26:38] == envelope.nonce
    (length,) = struct.unpack(">I", data[38:42])
    assert data[42 : 42 + length] == envelope.ciphertext
    offset = 42 + length
    assert struct.unpack(">H", data[offset : offset + 2]) == (2,)
    offset += 2
    for state in ("DEU", "FRA"):
        assert data[offset : offset + 3] == state.encode()
        assert struct.unpack(">H", data[offset + 3 : offset + 5]) == (WRAPPED_KEY_LENGTH,)
        assert data[offset + 5 : offset + 5 + WRAPPED_KEY_LENGTH] == envelope.wrapped_key(state)
        offset += 5 + WRAPPED_KEY_LENGTH
    assert offset == len(data)
    assert WRAPPED_KEY_LENGTH == 1120 + 32 + 16
    assert wrap_info(notification, "FRA") == WRAP_INFO_PREFIX + notification.bytes + b"FRA"
    assert CONTENT_AAD_PREFIX == b"pocdir envelope v1 content\n"


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:20],
        lambda d: b"PDE2" + d[4:],
        lambda d: d + b"\x00",
        lambda d: d[:-1],
        lambda d: d.replace(b"DEU", b"deu", 1),
    ],
    ids=["short", "magic", "trailing", "cut", "code"],
)
def test_damaged_envelope_bytes_are_refused(keys: dict[str, EncryptionPrivateKey], damage) -> None:
    data = _sealed(keys, UUID("00000000-0000-4000-8000-000000000001")).to_bytes()
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(damage(data))


def test_public_keys_round_trip_as_serialize_public_key(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    public = keys["FRA"].public_key()
    data = public.to_bytes()
    assert len(data) == PUBLIC_KEY_LENGTH == 1184 + 32
    assert data[1184:] == public.x25519.public_bytes_raw()
    assert EncryptionPublicKey.from_bytes(data) == public
    assert EncryptionPublicKey.from_bytes(data).fingerprint() == public.fingerprint()
    with pytest.raises(KeyFormatError, match="1216 bytes"):
        EncryptionPublicKey.from_bytes(data[:-1])


def test_private_keys_round_trip_under_a_passphrase(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    pem = keys["FRA"].to_pem(b"correct horse")
    assert pem.count(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") == 2
    loaded = EncryptionPrivateKey.from_pem(pem, b"correct horse")
    assert loaded == keys["FRA"]
    # The loaded key opens what was sealed to the original's public key.
    assert open_envelope(_sealed(keys), "FRA", loaded) == Content.from_dict(CONTENT)
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        EncryptionPrivateKey.from_pem(pem, b"wrong")
    with pytest.raises(KeyFormatError, match="two ENCRYPTED PRIVATE KEY blocks"):
        EncryptionPrivateKey.from_pem(pem[: len(pem) // 2], b"correct horse")
    end = b"-----END ENCRYPTED PRIVATE KEY-----\n"
    first, second = (block + end for block in pem.split(end)[:2])
    with pytest.raises(KeyFormatError, match="ML-KEM-768 key then an X25519 key"):
        EncryptionPrivateKey.from_pem(second + first, b"correct horse")
    with pytest.raises(KeyFormatError):
        EncryptionPrivateKey.from_pem(first + first, b"correct horse")
    with pytest.raises(KeyFormatError, match="passphrase"):
        keys["FRA"].to_pem(b"")


def test_docs_e2e_states_the_constants_of_the_code() -> None:
    """docs/e2e.md is the format for other clients: its constants are the code's."""
    doc = (Path(__file__).parent.parent / "docs" / "e2e.md").read_text("utf-8")
    for text in (
        '"pocdir envelope v1 content\\n"',
        '"pocdir envelope v1 key\\n"',
        "`PDE1`",
        "`PDR1`",
        '"pocdir envelope v1 response\\n"',
        '"pocdir envelope v1 response key\\n"',
        "0x647a",
        "| 1168 |",
        "1216 bytes",
        "(1184 bytes)",
    ):
        assert text in doc, text
    assert CONTENT_AAD_PREFIX == b"pocdir envelope v1 content\n"
    assert WRAP_INFO_PREFIX == b"pocdir envelope v1 key\n"
    assert WRAPPED_KEY_LENGTH == 1168 and PUBLIC_KEY_LENGTH == 1216


def test_an_envelope_out_of_format_cannot_be_built(keys: dict[str, EncryptionPrivateKey]) -> None:
    """Packing would otherwise pad or cut a field silently (a short nonce, a long code)."""
    envelope = _sealed(keys)
    with pytest.raises(EnvelopeMalformed, match="nonce"):
        Envelope(envelope.notification, b"\x00" * 11, envelope.ciphertext, envelope.wrapped_keys)
    with pytest.raises(EnvelopeMalformed, match="code order"):
        Envelope(
            envelope.notification,
            envelope.nonce,
            envelope.ciphertext,
            tuple(reversed(envelope.wrapped_keys)),
        )
    with pytest.raises(EnvelopeMalformed, match="member State"):
        envelope.with_wrapped_key("FRAN", envelope.wrapped_key("FRA"))
    with pytest.raises(EnvelopeMalformed, match="1168 bytes"):
        envelope.with_wrapped_key("KEN", envelope.wrapped_key("FRA")[:-1])


def _response(keys: dict[str, EncryptionPrivateKey], notification: UUID, index: int) -> Envelope:
    parties = {"FRA": keys["FRA"].public_key(), "DEU": keys["DEU"].public_key()}
    return seal_response(notification, index, "Contained; forensics under way", parties)


def test_a_response_opens_for_both_parties_and_a_third_state_after_a_rewrap(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    notification = uuid4()
    envelope = Envelope.from_bytes(_response(keys, notification, 2).to_bytes())
    assert (envelope.response, envelope.addressed) == (2, ("DEU", "FRA"))
    expected = Text.english_only("Contained; forensics under way")
    for state in ("DEU", "FRA"):
        assert open_response(envelope, state, keys[state]) == expected
    shared = rewrap_response(envelope, "DEU", keys["DEU"], "KEN", keys["KEN"].public_key())
    # The third State is served the parties' envelope and the key shared with it, apart.
    assert open_response(envelope, "KEN", keys["KEN"], shared_key=shared.wrapped_key("KEN")) == (
        expected
    )
    with pytest.raises(EnvelopeNotAddressed):
        open_response(envelope, "KEN", keys["KEN"])


def test_a_response_cannot_be_moved_to_another_place_or_passed_off_as_content(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    notification = uuid4()
    envelope = _response(keys, notification, 0)
    for moved in (
        Envelope(
            envelope.notification, envelope.nonce, envelope.ciphertext, envelope.wrapped_keys, 1
        ),
        Envelope(uuid4(), envelope.nonce, envelope.ciphertext, envelope.wrapped_keys, 0),
    ):
        with pytest.raises(EnvelopeUndecryptable) as caught:
            open_response(moved, "DEU", keys["DEU"])
        assert caught.value.part == "wrapped key"
    as_content = Envelope(notification, envelope.nonce, envelope.ciphertext, envelope.wrapped_keys)
    with pytest.raises(EnvelopeUndecryptable):
        open_envelope(as_content, "DEU", keys["DEU"])
    with pytest.raises(EnvelopeMalformed, match="not a response"):
        open_response(_sealed(keys, notification), "DEU", keys["DEU"])


def test_a_response_envelopes_bytes_are_as_documented(
    keys: dict[str, EncryptionPrivateKey],
) -> None:
    """docs/e2e.md: a ``PDR1`` envelope has the response's index (u32) after the id."""
    notification = UUID("00000000-0000-4000-8000-000000000001")
    envelope = _response(keys, notification, 7)
    data = envelope.to_bytes()
    assert data[:4] == RESPONSE_MAGIC == b"PDR1"
    assert data[10:26] == notification.bytes
    assert struct.unpack(">I", data[26:30]) == (7,)
    assert data[30:42] == envelope.nonce
    assert envelope.aad == RESPONSE_AAD_PREFIX + notification.bytes + struct.pack(">I", 7)
    assert envelope.info("FRA") == (
        RESPONSE_WRAP_INFO_PREFIX + notification.bytes + struct.pack(">I", 7) + b"FRA"
    )
    assert RESPONSE_AAD_PREFIX == b"pocdir envelope v1 response\n"
    assert RESPONSE_WRAP_INFO_PREFIX == b"pocdir envelope v1 response key\n"
    with pytest.raises(EnvelopeMalformed):
        Envelope.from_bytes(data[:28])


def test_a_response_is_validated_before_sealing() -> None:
    with pytest.raises(TranslationRequired):
        seal_response(uuid4(), 0, {"language": "fr", "text": "Bonjour"}, {})


def test_the_library_writes_enc_then_ciphertext_as_docs_e2e_says() -> None:
    """RFC 9180 A.1.1 (X25519, HKDF-SHA256, AES-128-GCM, base mode), first message: the
    recipient opens ``enc || ct``, so a wrapped key's layout in docs/e2e.md is the library's.
    Single-shot ``Suite.decrypt`` takes no AAD, so the library's AAD variant is used here."""
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

    recipient = x25519.X25519PrivateKey.from_private_bytes(
        bytes.fromhex("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
    )
    enc = bytes.fromhex("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
    ct = bytes.fromhex(
        "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a"
    )
    plaintext = rust_openssl.hpke._decrypt_with_aad(
        Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM),
        enc + ct,
        recipient,
        info=bytes.fromhex("4f6465206f6e2061204772656369616e2055726e"),
        aad=b"Count-0",
    )
    assert plaintext == b"Beauty is truth, truth beauty"
