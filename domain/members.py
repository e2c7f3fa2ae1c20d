"""The 193 UN member States (R1) and their UN regional groups, shipped as package data.

Only these may register. The lists are loaded once, lazily, so importing the domain touches no
file until a command needs it.

The regional groups (issue 16) are dated data, not code: they are informal arrangements among
States that change by agreement, so ``un_regional_groups.json`` carries the page it was read
from and the date (``regional_groups_source()``), and is checked on load to cover exactly the
193 States of ``un_member_states.json``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources

from domain.errors import NotAMemberState, PocdirError, ValidationError


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


class RegionalGroup(StrEnum):
    """The five UN regional groups, by the short codes used in UN practice.

    The groups are informal arrangements among member States, used above all to share out
    elective posts by equitable geographical distribution. pocdir records them so that
    participation can be read per region (issue 16); they grant and refuse nothing.
    """

    AFRICAN = "AG"
    ASIA_PACIFIC = "APG"
    EASTERN_EUROPEAN = "EEG"
    LATIN_AMERICAN_AND_CARIBBEAN = "GRULAC"
    WESTERN_EUROPEAN_AND_OTHER = "WEOG"

    @property
    def full_name(self) -> str:
        """The group's name as the source spells it, e.g. "Asia-Pacific States"."""
        return _regional_groups().names[self]


class RegionalGroupsDataError(PocdirError):
    """The shipped regional-group data contradicts itself or the member list.

    Only a broken or hand-edited package file raises this; it carries what the file should
    have held and what it held, so the fix is plain.
    """

    def __init__(self, reason: str, *, expected: object, computed: object) -> None:
        super().__init__(f"{reason}: expected {expected!r}, found {computed!r}")
        self.reason = reason
        self.expected = expected
        self.computed = computed


@dataclass(frozen=True, slots=True)
class RegionalGroupsSource:
    """Where the regional-group data comes from, and the date it describes.

    Group membership changes by agreement among States and the source page shows no version
    or date, so the data carries the page it was read from and when; a reader can check it
    against the page.
    """

    title: str
    publisher: str
    url: str
    as_of: date


@dataclass(frozen=True, slots=True)
class RegionalAssignment:
    """One member State's place in the regional groups, as the source gives it.

    Three facts are kept apart because the source keeps them apart: the groups a State takes
    part in fully (Türkiye: two), the groups it attends only as an observer (the United
    States: WEOG), and the one group it is counted in for electoral purposes (for both of
    these, WEOG). A State in no group has none of the three.
    """

    code: str
    member_of: tuple[RegionalGroup, ...]
    observer_in: tuple[RegionalGroup, ...]
    electoral_group: RegionalGroup | None
    note: str | None


@dataclass(frozen=True, slots=True)
class RegionalGroups:
    """Every member State's regional assignment, checked against the member list."""

    source: RegionalGroupsSource
    names: Mapping[RegionalGroup, str]
    assignments: Mapping[str, RegionalAssignment]

    @classmethod
    def from_json(cls, raw: str, member_codes: Collection[str]) -> RegionalGroups:
        """Parse the package file's text, refusing data that does not cover the member list
        exactly or that counts a State in a group it takes no part in."""
        document = json.loads(raw)
        src = document["source"]
        source = RegionalGroupsSource(
            title=src["title"],
            publisher=src["publisher"],
            url=src["url"],
            as_of=date.fromisoformat(src["as_of"]),
        )
        names = {_group(g["code"], "groups"): g["name"] for g in document["groups"]}
        if set(names) != set(RegionalGroup):
            raise RegionalGroupsDataError(
                "the file does not name the five groups",
                expected=sorted(RegionalGroup),
                computed=sorted(names),
            )
        assignments: dict[str, RegionalAssignment] = {}
        for item in document["states"]:
            code = item["code"]
            electoral = item["electoral_group"]
            assignment = RegionalAssignment(
                code=code,
                member_of=tuple(_group(g, code) for g in item["member_of"]),
                observer_in=tuple(_group(g, code) for g in item["observer_in"]),
                electoral_group=None if electoral is None else _group(electoral, code),
                note=item.get("note"),
            )
            _check_assignment(assignment)
            if assignment.code in assignments:
                raise RegionalGroupsDataError(
                    "a State has two records", expected=1, computed=assignment.code
                )
            assignments[assignment.code] = assignment
        if set(assignments) != set(member_codes):
            raise RegionalGroupsDataError(
                "the States with a record are not the member States",
                expected=sorted(set(member_codes) - set(assignments)),
                computed=sorted(set(assignments) - set(member_codes)),
            )
        return cls(source, names, dict(sorted(assignments.items())))

    def members_of(self, group: RegionalGroup) -> tuple[str, ...]:
        """Codes of the States taking part fully in ``group`` (observers excluded)."""
        return tuple(c for c, a in self.assignments.items() if group in a.member_of)

    def observers_of(self, group: RegionalGroup) -> tuple[str, ...]:
        """Codes of the States attending ``group`` as observers."""
        return tuple(c for c, a in self.assignments.items() if group in a.observer_in)

    def counted_in(self, group: RegionalGroup) -> tuple[str, ...]:
        """Codes of the States counted in ``group`` for electoral purposes: each State in at
        most one group, so these partition the States that have a group."""
        return tuple(c for c, a in self.assignments.items() if a.electoral_group is group)

    def in_no_group(self) -> tuple[str, ...]:
        """Codes of the States that neither belong to, attend, nor count in any group."""
        return tuple(
            c
            for c, a in self.assignments.items()
            if not a.member_of and not a.observer_in and a.electoral_group is None
        )


def _group(value: str, where: str) -> RegionalGroup:
    """A group code from the file, or the data error that names the record holding it."""
    try:
        return RegionalGroup(value)
    except ValueError:
        raise RegionalGroupsDataError(
            f"{where} names an unknown group",
            expected=[g.value for g in RegionalGroup],
            computed=value,
        ) from None


def _check_assignment(a: RegionalAssignment) -> None:
    """Refuse a record the source's terms cannot describe."""
    if a.electoral_group is None:
        if a.member_of or a.observer_in:
            raise RegionalGroupsDataError(
                f"{a.code} takes part in a group but is counted in none",
                expected="an electoral group",
                computed=None,
            )
        return
    if a.electoral_group not in a.member_of + a.observer_in:
        raise RegionalGroupsDataError(
            f"{a.code} is counted in a group it takes no part in",
            expected=[*a.member_of, *a.observer_in],
            computed=a.electoral_group,
        )
    if set(a.member_of) & set(a.observer_in):
        raise RegionalGroupsDataError(
            f"{a.code} is both member and observer of a group",
            expected="disjoint",
            computed=sorted(set(a.member_of) & set(a.observer_in)),
        )


@cache
def _regional_groups() -> RegionalGroups:
    """Load the shipped file once, lazily, like the member list."""
    raw = resources.files("domain.data").joinpath("un_regional_groups.json").read_text("utf-8")
    return RegionalGroups.from_json(raw, member_states())


def regional_groups_source() -> RegionalGroupsSource:
    """The page the regional-group data was read from, and its date."""
    return _regional_groups().source


def regional_assignment(code: str) -> RegionalAssignment:
    """The whole record for one member State; ``NotAMemberState`` for any other code."""
    return _regional_groups().assignments[check_member_state(code)]


def electoral_group(code: str) -> RegionalGroup | None:
    """The one group a member State is counted in for electoral purposes, or ``None`` if it
    is in no group. This is the group to use when counting each State once per region:
    Türkiye and the United States both count in WEOG."""
    return regional_assignment(code).electoral_group


def groups_of(code: str) -> tuple[RegionalGroup, ...]:
    """The groups a member State takes part in fully: none for the United States (an
    observer), two for Türkiye, one for the others."""
    return regional_assignment(code).member_of


def members_of(group: RegionalGroup | str) -> tuple[str, ...]:
    """Codes of the States taking part fully in the group, sorted."""
    return _regional_groups().members_of(check_regional_group(group))


def observers_of(group: RegionalGroup | str) -> tuple[str, ...]:
    """Codes of the States attending the group as observers, sorted."""
    return _regional_groups().observers_of(check_regional_group(group))


def counted_in(group: RegionalGroup | str) -> tuple[str, ...]:
    """Codes of the States counted in the group for electoral purposes, sorted."""
    return _regional_groups().counted_in(check_regional_group(group))


def check_regional_group(group: RegionalGroup | str) -> RegionalGroup:
    """Return the group for a code such as ``"weog"``, or raise ``ValidationError``."""
    if isinstance(group, RegionalGroup):
        return group
    try:
        return RegionalGroup(group.strip().upper())
    except ValueError:
        raise ValidationError(
            f"{group[:10]!r} is not a UN regional group; use one of "
            + ", ".join(g.value for g in RegionalGroup)
        ) from None
