"""Where the rules R1-R17 are defined for a reader: docs/domain.md, one anchor per rule.

Errors (``api/errors.py``) and the review report (``projections/review_report.py``) link a rule
they cite to its section; the link is built here once, so both point at the same anchors. The
anchors are explicit (``<a id="r5"></a>`` in each rule's heading) rather than heading slugs, so
renaming a rule's heading breaks no link.
"""

from __future__ import annotations

import re

#: The project's own account of the rules, relative to the repository's root.
RULES_DOCUMENT = "docs/domain.md"

#: The rules' numbers: R1 to R17.
RULE_NUMBERS = range(1, 18)

#: A rule cited by id in a text (``R5``, ``R11``); group 1 is its number.
RULE_CITED = re.compile(r"\bR(1[0-7]|[1-9])\b")


def rule_anchor(number: int) -> str:
    """The anchor of rule ``number``'s section in docs/domain.md (``r5`` for R5)."""
    if number not in RULE_NUMBERS:
        raise ValueError(f"there is no rule R{number}: the rules are R1-R17")
    return f"r{number}"


def rule_link(number: int) -> str:
    """The repository link to rule ``number``'s definition, e.g. ``docs/domain.md#r5``."""
    return f"{RULES_DOCUMENT}#{rule_anchor(number)}"


def first_rule_cited(text: str) -> int | None:
    """The number of the first rule ``text`` cites as ``R5``, ``R11``..., or None."""
    found = RULE_CITED.search(text)
    return int(found.group(1)) if found else None
