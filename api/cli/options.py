"""Options shared by several commands, each with a help text and a metavar a person reads
(``TEXT``, ``DATE``), never a Python type."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

IdempotencyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        metavar="KEY",
        help="a key you choose (e.g. a UUID); running the same command again with it writes "
        "nothing twice. Keys are kept at least 24 hours.",
        show_default=False,
    ),
]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    Format,
    typer.Option("--format", metavar="table|json", help="table for people, json for machines"),
]

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="as the directory stood at the end of this date (YYYY-MM-DD)",
    ),
]

AtPositionOption = Annotated[
    int | None,
    typer.Option(
        "--at-position", metavar="POSITION", help="as it stood after this record position"
    ),
]

ByOption = Annotated[
    str,
    typer.Option(
        "--by", metavar="OFFICIAL", help="id of the Secretariat official acting (recorded)"
    ),
]

KeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--key",
        metavar="VERIFIER_KEY",
        help="a trusted verifier key (name+keyid+base64key); repeat for several",
    ),
]
