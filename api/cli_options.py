"""Options shared by several CLI modules, in a module that imports no other CLI module."""

from __future__ import annotations

from typing import Annotated

import typer

IdempotencyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="a key you choose (e.g. a UUID); running the same command again with it writes "
        "nothing twice. Keys are kept at least 24 hours.",
        show_default=False,
    ),
]
