"""The demo data looks right to each delegation (issue 14, item 10): every State's contacts
have phone numbers of its own region, time zones of its own territory, and texts in a
language that R6 allows and the State uses. Checked with the libraries' own data (phone
metadata, the tz database, CLDR), not with the simulator's helpers."""

from __future__ import annotations

from collections import defaultdict
from importlib import resources
from typing import Any

import phonenumbers
import pycountry
import pytest
from babel.languages import get_official_languages

from domain.clock import SimulatedClock
from domain.members import member_states
from domain.taxonomy import UN_LANGUAGES
from domain.values import ChannelKind, Contact, Text
from infra.wiring import build_application
from simulation.simulator import DEFAULT_START, Simulator, seeded_ids
from tests.support.db import Backend

#: Slow (a simulated month of all 193 States): `make check` leaves it out.
pytestmark = pytest.mark.slow


def _tz_zones() -> dict[str, set[str]]:
    """Each country's zones in the tz database (zone.tab, as the tzdata package ships it)."""
    zones: dict[str, set[str]] = defaultdict(set)
    table = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    for line in table.splitlines():
        if line and not line.startswith("#"):
            region, _, zone = line.split("\t")[:3]
            zones[region].add(zone)
    return zones


def _alpha2(code: str) -> str:
    country = pycountry.countries.get(alpha_3=code)
    assert country is not None, code
    return str(country.alpha_2)


def _texts(value: Any) -> list[Text]:
    """Every free text in an event's attribute (a contact holds two)."""
    if isinstance(value, Text):
        return [value]
    if isinstance(value, Contact):
        return [value.agency, value.function]
    return []


def test_every_state_has_phones_zones_and_texts_of_its_own(sqlite_backend: Backend) -> None:
    clock = SimulatedClock(DEFAULT_START)
    app = build_application(sqlite_backend.settings, clock=clock, new_id=seeded_ids(1))
    try:
        Simulator(app, clock, states=193, days=30, seed=1).run()
        zones = _tz_zones()
        region = {code: _alpha2(code) for code in member_states()}
        # R6 allows the six UN languages; a State's own are those of them it has as official
        # languages (CLDR), and English is allowed and understood everywhere.
        fits = {
            code: ({"en"} | set(get_official_languages(r, de_facto=True))) & set(UN_LANGUAGES)
            for code, r in region.items()
        }
        contacts = 0
        for code in member_states():
            entry = app.get_entry(code)
            assert entry.contacts, code
            for contact in entry.contacts.values():
                contacts += 1
                phones = [c.address for c in contact.channels if c.kind is ChannelKind.PHONE]
                assert phones, (code, contact.contact_id)
                for phone in phones:
                    number = phonenumbers.parse(phone)
                    assert phonenumbers.is_valid_number_for_region(number, region[code]), (
                        code,
                        phone,
                    )
                assert contact.time_zone in zones[region[code]], (code, contact.time_zone)
                assert "en" in contact.languages, code
        assert contacts >= 193

        # Every text in the record, by the State that wrote it (each event names its actor).
        texts_by_state: dict[str, list[Text]] = defaultdict(list)
        kinds: set[str] = set()
        for record in app.recorder.select_notifications(0, 10**7):
            event = app.mapper.to_domain_event(record)
            kinds.add(type(event).__qualname__)
            actor: str = event.actor  # type: ignore[attr-defined]
            if actor.startswith("state:"):
                code = actor.removeprefix("state:").split("/")[0]
                for value in vars(event).values():
                    texts_by_state[code].extend(_texts(value))
        assert {"Notification.Sent", "Notification.Responded"} <= kinds
        assert set(texts_by_state) == set(member_states())
        for code, texts in texts_by_state.items():
            for text in texts:
                assert text.language in fits[code], (code, text)
                assert text.language == "en" or text.english, (code, text)  # R6

        # As a delegation sees its own entry:
        expected = {
            "DEU": ("en", "+49", {"Europe/Berlin", "Europe/Busingen"}),
            "FRA": ("fr", "+33", {"Europe/Paris"}),
            "EGY": ("ar", "+20", {"Africa/Cairo"}),
            "CHN": ("zh", "+86", {"Asia/Shanghai", "Asia/Urumqi"}),
            "ARG": ("es", "+54", zones["AR"]),
            "RUS": ("ru", "+7", zones["RU"]),
        }
        for code, (language, calling_code, own_zones) in expected.items():
            for contact in app.get_entry(code).contacts.values():
                assert contact.agency.language == language, (code, contact.agency)
                assert all(
                    c.address.startswith(calling_code)
                    for c in contact.channels
                    if c.kind is ChannelKind.PHONE
                ), code
                assert contact.time_zone in own_zones, (code, contact.time_zone)
    finally:
        app.close()
