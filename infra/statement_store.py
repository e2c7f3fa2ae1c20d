"""Signed statements beside the events, in the events' own transaction (issue 15, item 2).

One row per signed write: the positions of the events it produced, who signed (``state:XXX``,
``secretariat`` or ``server``), the key's fingerprint and raw public key, the statement's
canonical text and the signature, all in the clear, so that anyone with the database or an
audit bundle checks every signature without any server key. The commitments' salts are the
one confidential column (``sealed``): encrypted under the server's cipher key when the record
is encrypted, so erasing them later leaves the signatures intact (docs/audit-format.md,
"Signed writes").

The row is written by the chained recorders' ``insert_events`` (``infra.store``), in the
transaction that inserts the events and their links: a write is stored with its statement or
not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from domain.signing import SignedWrite

STATEMENTS_TABLE: Final = "signed_statements"


class Cursor(Protocol):
    def execute(self, statement: Any, params: Any = ...) -> Any: ...


def create_statements_table(table: str, blob: str) -> str:
    """DDL of the statements table; ``blob`` is the backend's binary type."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "first_position BIGINT PRIMARY KEY, "
        "last_position BIGINT NOT NULL, "
        "signer TEXT NOT NULL, "
        "key TEXT NOT NULL, "
        "public_key TEXT NOT NULL, "
        "statement TEXT NOT NULL, "
        "signature TEXT NOT NULL, "
        f"sealed {blob})"
    )


@dataclass(frozen=True)
class StatementRow:
    """One stored statement, as a verifier reads it (``sealed`` is never read back here)."""

    first_position: int
    last_position: int
    signer: str
    key: str
    public_key: str
    statement: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        return {
            "first_position": self.first_position,
            "last_position": self.last_position,
            "signer": self.signer,
            "key": self.key,
            "public_key": self.public_key,
            "statement": self.statement,
            "signature": self.signature,
        }


STATEMENT_COLUMNS: Final = (
    "first_position, last_position, signer, key, public_key, statement, signature"
)


def insert_statement(
    c: Cursor,
    table: str,
    placeholder: str,
    write: SignedWrite,
    links: Sequence[tuple[int, int, bytes, bytes]],
) -> None:
    """Store ``write`` for the events whose link rows are ``links`` (position, previous
    position, leaf hash, link), and give it their leaf hashes for the receipt."""
    signed = write.signed
    marks = ", ".join([placeholder] * 8)
    c.execute(
        f"INSERT INTO {table} ({STATEMENT_COLUMNS}, sealed) VALUES ({marks})",
        (
            links[0][0],
            links[-1][0],
            write.signer,
            signed.key,
            write.public_key.hex(),
            signed.statement.canonical_bytes().decode("utf-8"),
            signed.signature.hex(),
            write.sealed,
        ),
    )
    write.leaves[:] = [(position, leaf) for position, _, leaf, _ in links]


def row_from(values: Sequence[Any]) -> StatementRow:
    return StatementRow(
        int(values[0]),
        int(values[1]),
        str(values[2]),
        str(values[3]),
        str(values[4]),
        str(values[5]),
        str(values[6]),
    )


#: Where the record's first key binding is: from there on every State signs (item 7).
FIRST_BINDING_SQL: Final = (
    "SELECT MIN(first_position) FROM {table} WHERE signer = 'secretariat' "
    'AND statement LIKE \'%"command":"secretariat.state_keys.keys_bound"%\''
)
