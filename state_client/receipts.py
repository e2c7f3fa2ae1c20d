"""The server's receipts, checked on the official's machine (issue 15, item 2).

A signed write is answered with a receipt (``Pocdir-Receipt``, docs/audit-format.md §15.3):
the statement's digest and each event's position and leaf hash, signed by the server's key.
With it a State can prove its write was accepted, and find it in any checkpointed tree. The
client checks it against the server key the official pinned (the verifier key the operator
publishes for checkpoints, ``pocdir keys public``), so a receipt the server cannot stand by
is noticed at once, not when it is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.errors import ValidationError
from domain.signed_requests import decode_header_json
from domain.signing import RECEIPT_HEADER, ReceiptInvalid, verify_receipt
from domain.statement import SignedStatement, statement_digest

__all__ = ["ReceiptInvalid", "check_receipt", "parse_server_key"]

#: C2SP signed-note: the signature type byte of an Ed25519 verifier key.
_ED25519_TYPE: Final = b"\x01"


def parse_server_key(text: str) -> Ed25519PublicKey:
    """A C2SP signed-note verifier key, ``name+keyid+base64(0x01 || key)``, as
    ``pocdir keys public`` prints it; its key id must match its name and key."""
    name, _, rest = text.strip().partition("+")
    key_id, _, encoded = rest.partition("+")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not name or len(key_id) != 8 or len(raw) != 33 or raw[:1] != _ED25519_TYPE:
        raise ValidationError(
            "the server key must be a verifier key name+keyid+base64key, as `pocdir keys "
            "public` prints it"
        )
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    if key_id.lower() != expected:
        raise ValidationError(
            f"the server key's id {key_id[:8]} does not match its name and key ({expected})"
        )
    return Ed25519PublicKey.from_public_bytes(raw[1:])


def check_receipt(
    header: str | None, signed: SignedStatement, state: str, server_key: Ed25519PublicKey
) -> dict[str, Any]:
    """The receipt's content, once it is the server key's signature over this statement's
    digest, as this State's write; ``ReceiptInvalid`` otherwise (a missing one too)."""
    if header is None:
        raise ReceiptInvalid(f"the server sent no {RECEIPT_HEADER} for a signed write")
    try:
        wire = decode_header_json(header, RECEIPT_HEADER)
    except ValidationError:
        raise ReceiptInvalid(f"{RECEIPT_HEADER} is not a receipt") from None
    if not isinstance(wire, dict):
        raise ReceiptInvalid(f"{RECEIPT_HEADER} is not a receipt")
    content = verify_receipt(wire, server_key)
    if (
        content.get("statement") != statement_digest(signed.statement)
        or content.get("signer") != f"state:{state}"
    ):
        raise ReceiptInvalid("the receipt is for another statement than the one sent")
    if not content.get("events"):
        raise ReceiptInvalid("the receipt names no event")
    return content
