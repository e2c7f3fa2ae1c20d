"""The 193 UN member States (R1), shipped as package data.

Only these may register. The list is loaded once, lazily, so importing the domain touches no
file until a command needs it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from domain.errors import NotAMemberState


@cache
def member_states() -> dict[str, str]:
    """Map ISO 3166-1 alpha-3 code to the State's UN short name, sorted by code."""
    raw = resources.files("domain.data").joinpath("un_member_states.json").read_text("utf-8")
    return {item["code"]: item["name"] for item in json.loads(raw)}


def check_member_state(code: str) -> str:
    """Return the normalised code of a UN member State, or raise ``NotAMemberState``."""
    normalised = code.strip().upper()
    if normalised not in member_states():
        raise NotAMemberState(
            f"{code[:10]!r} is not the ISO 3166-1 alpha-3 code of a UN member State"
        )
    return normalised
