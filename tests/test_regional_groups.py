"""UN regional groups of the member States (issue 16): the shipped, dated data and its
accessors. The counts and special cases are those of the source the data names
(``regional_groups_source()``); when the source changes, the data and these tests change
together."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from domain.errors import NotAMemberState, ValidationError
from domain.members import (
    RegionalGroup,
    RegionalGroups,
    RegionalGroupsDataError,
    counted_in,
    electoral_group,
    groups_of,
    member_states,
    members_of,
    observers_of,
    regional_assignment,
    regional_groups_source,
)

AG = RegionalGroup.AFRICAN
APG = RegionalGroup.ASIA_PACIFIC
EEG = RegionalGroup.EASTERN_EUROPEAN
GRULAC = RegionalGroup.LATIN_AMERICAN_AND_CARIBBEAN
WEOG = RegionalGroup.WESTERN_EUROPEAN_AND_OTHER


def shipped_document() -> dict[str, Any]:
    raw = resources.files("domain.data").joinpath("un_regional_groups.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(raw)
    return document


def parsed(document: dict[str, Any]) -> RegionalGroups:
    return RegionalGroups.from_json(json.dumps(document), member_states())


def test_every_member_state_has_exactly_one_regional_record() -> None:
    records = shipped_document()["states"]
    codes = [r["code"] for r in records]
    assert len(records) == 193
    assert sorted(codes) == sorted(member_states())
    for code in member_states():
        assert regional_assignment(code).code == code


def test_group_sizes_are_those_of_the_source() -> None:
    """Full participants per group: Türkiye is in two lists and the United States in none,
    so these add up to 193 + 1 - 1."""
    sizes = {g: len(members_of(g)) for g in RegionalGroup}
    assert sizes == {AG: 54, APG: 55, EEG: 23, GRULAC: 33, WEOG: 28}


def test_electoral_counting_puts_every_state_in_exactly_one_group() -> None:
    sizes = {g: len(counted_in(g)) for g in RegionalGroup}
    assert sizes == {AG: 54, APG: 54, EEG: 23, GRULAC: 33, WEOG: 29}
    counted = [c for g in RegionalGroup for c in counted_in(g)]
    assert sorted(counted) == sorted(member_states())


def test_turkiye_takes_part_in_two_groups_and_counts_in_weog_only() -> None:
    assert groups_of("TUR") == (APG, WEOG)
    assert electoral_group("TUR") is WEOG
    assert "TUR" in members_of(APG) and "TUR" not in counted_in(APG)
    assert "TUR" in members_of(WEOG) and "TUR" in counted_in(WEOG)


def test_the_united_states_observes_weog_and_counts_there_for_elections() -> None:
    usa = regional_assignment("USA")
    assert usa.member_of == ()
    assert usa.observer_in == (WEOG,)
    assert usa.electoral_group is WEOG
    assert "USA" not in members_of(WEOG)
    assert observers_of(WEOG) == ("USA",)
    assert all(observers_of(g) == () for g in RegionalGroup if g is not WEOG)


def test_israel_is_a_full_member_of_weog() -> None:
    assert groups_of("ISR") == (WEOG,)
    assert electoral_group("ISR") is WEOG
    assert regional_assignment("ISR").observer_in == ()


def test_kiribati_is_listed_in_asia_pacific_and_no_state_is_in_none() -> None:
    """The source lists Kiribati among the Asia-Pacific States; older descriptions had it in
    no group, and the record says so."""
    kiribati = regional_assignment("KIR")
    assert kiribati.member_of == (APG,)
    assert kiribati.electoral_group is APG
    assert kiribati.note is not None and "no regional group" in kiribati.note
    assert parsed(shipped_document()).in_no_group() == ()


def test_a_state_in_no_group_is_represented() -> None:
    """The data model holds a State in no group (as the source once put Kiribati): no
    membership, no observer seat, counted nowhere, and still a record."""
    document = shipped_document()
    for record in document["states"]:
        if record["code"] == "KIR":
            record.update(member_of=[], observer_in=[], electoral_group=None)
    groups = parsed(document)
    assert groups.in_no_group() == ("KIR",)
    assert groups.assignments["KIR"].electoral_group is None
    assert "KIR" not in groups.members_of(APG)
    assert len(groups.counted_in(APG)) == 53
    assert sum(len(groups.counted_in(g)) for g in RegionalGroup) == 192


def test_codes_are_normalised_and_unknown_codes_are_refused() -> None:
    assert electoral_group(" fra ") is WEOG
    for code in ("TWN", "PSE", "VAT", "XX"):
        with pytest.raises(NotAMemberState):
            electoral_group(code)
        with pytest.raises(NotAMemberState):
            groups_of(code)
        with pytest.raises(NotAMemberState):
            regional_assignment(code)
    assert members_of("grulac") == members_of(GRULAC)
    with pytest.raises(ValidationError, match="AG, APG, EEG, GRULAC, WEOG"):
        members_of("EU")


def test_data_that_misses_a_state_is_refused_naming_it() -> None:
    document = shipped_document()
    document["states"] = [r for r in document["states"] if r["code"] != "FRA"]
    with pytest.raises(RegionalGroupsDataError) as caught:
        parsed(document)
    assert caught.value.expected == ["FRA"]
    assert caught.value.computed == []


def test_data_that_counts_a_state_in_a_group_it_is_not_in_is_refused() -> None:
    document = shipped_document()
    for record in document["states"]:
        if record["code"] == "USA":
            record["electoral_group"] = "APG"
    with pytest.raises(RegionalGroupsDataError) as caught:
        parsed(document)
    assert caught.value.expected == [WEOG]
    assert caught.value.computed is APG


def test_data_with_an_unknown_group_is_refused() -> None:
    document = shipped_document()
    document["states"][0]["member_of"] = ["EU"]
    with pytest.raises(RegionalGroupsDataError, match="unknown group"):
        parsed(document)


def test_the_source_is_named_dated_and_cited_in_the_domain_doc() -> None:
    source = regional_groups_source()
    assert source.url == "https://www.un.org/dgacm/en/content/regional-groups"
    assert source.title == "Regional groups of Member States"
    assert WEOG.full_name == "Western European and other States"
    doc = (Path(__file__).parents[1] / "docs" / "domain.md").read_text("utf-8")
    section = doc[doc.index("## Regional groups") :]
    assert source.url in section
    assert source.as_of.isoformat() in section
