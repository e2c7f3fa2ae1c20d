"""The worked example of ``docs/audit-format.md``, read out of the document: its fenced
blocks and its events."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from infra import chain

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit-format.md"


# -- reading the document ---------------------------------------------------------------------


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced_block_after(heading: str, info: str) -> str:
    """The body of the first fenced block with info string ``info`` after ``heading``."""
    pattern = (
        rf"^#+ {re.escape(heading)}[ \t]*$"  # the heading line
        rf".*?^```{re.escape(info)}[ \t]*\n"  # the first such fence after it
        r"(.*?)^```[ \t]*$"  # up to the closing fence
    )
    match = re.search(pattern, doc_text(), re.MULTILINE | re.DOTALL)
    assert match, f"no ```{info} block after the heading {heading!r} in {DOC.name}"
    return match.group(1)


@dataclass(frozen=True)
class ExampleEvent:
    position: int
    prev_position: int
    originator_id: str
    sqlite_originator_id: str
    originator_version: int
    topic: str
    state: bytes
    state_text: str
    record: bytes | None
    leaf_hash: bytes
    link: bytes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExampleEvent:
        return cls(
            position=data["position"],
            prev_position=data["prev_position"],
            originator_id=data["originator_id"],
            sqlite_originator_id=data["sqlite_originator_id"],
            originator_version=data["originator_version"],
            topic=data["topic"],
            state=bytes.fromhex(data["state_hex"]),
            state_text=data["state"],
            record=bytes.fromhex(data["record_hex"]) if "record_hex" in data else None,
            leaf_hash=bytes.fromhex(data["leaf_hash"]),
            link=bytes.fromhex(data["link"]),
        )

    def stored_row(self, *, state: bytes | None = None) -> chain.StoredRow:
        return chain.StoredRow(
            self.position,
            self.originator_id,
            self.originator_version,
            self.topic,
            self.state if state is None else state,
            self.prev_position,
            self.leaf_hash,
            self.link,
        )


@cache
def example() -> tuple[ExampleEvent, ...]:
    data = json.loads(fenced_block_after("Worked example data", "json"))
    return tuple(ExampleEvent.from_json(item) for item in data)
