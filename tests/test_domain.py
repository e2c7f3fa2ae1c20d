"""Domain rules, on the aggregates alone (no database)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from uuid import uuid4

import pytest

from domain.consent import ConsentStatus, SharingConsent
from domain.errors import (
    AlreadyExists,
    InvalidTransition,
    NotAMemberState,
    NotPermitted,
    TranslationRequired,
    ValidationError,
)
from domain.notification import (
    ACKNOWLEDGEMENT_IS_NOT_CONCURRENCE,
    NO_IMPLIED_RESPONSIBILITY,
    Notification,
    NotificationStatus,
    SupportingInformation,
)
from domain.state_entry import StateEntry, state_entry_id
from domain.taxonomy import INCIDENT_TYPES
from domain.values import Contact, Principal, Role, Text
from tests.support.builders import contact_data, state

AT = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
SECRETARIAT = Principal("sec-1", Role.SECRETARIAT)


def test_the_shipped_member_list_has_193_unique_codes_with_names() -> None:
    raw = resources.files("domain.data").joinpath("un_member_states.json").read_text("utf-8")
    items = json.loads(raw)
    codes = [i["code"] for i in items]
    assert len(items) == 193
    assert len(set(codes)) == 193
    assert all(len(c) == 3 and c.isupper() for c in codes)
    assert all(i["name"].strip() for i in items)


def test_taxonomy_doc_lists_every_incident_type() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "taxonomy.md").read_text("utf-8")
    for code in INCIDENT_TYPES:
        assert f"`{code}`" in doc


def registered(code: str = "FRA") -> StateEntry:
    entry = StateEntry.register(code, state(code), AT)
    entry.collect_events()
    return entry


def test_only_un_member_states_can_register() -> None:
    with pytest.raises(NotAMemberState):
        StateEntry.register("TWN", Principal("x", Role.STATE, "TWN"), AT)
    with pytest.raises(NotAMemberState):
        StateEntry.register("VAT", Principal("x", Role.STATE, "VAT"), AT)


def test_entry_id_is_derived_from_the_alpha3_code() -> None:
    assert registered("KEN").id == state_entry_id("KEN") == state_entry_id("ken")


def test_a_state_cannot_register_or_change_another_states_entry() -> None:
    with pytest.raises(NotPermitted):
        StateEntry.register("FRA", state("DEU"), AT)
    entry = registered("FRA")
    with pytest.raises(NotPermitted):
        entry.add_contact(Contact.from_dict(contact_data()), state("DEU"), AT, AT.date())
    with pytest.raises(NotPermitted):
        entry.withdraw(SECRETARIAT, AT, AT.date())


def test_every_event_records_the_acting_principal_and_the_time() -> None:
    entry = StateEntry.register("FRA", state("FRA"), AT)
    later = AT + timedelta(hours=3)
    entry.add_contact(Contact.from_dict(contact_data()), state("FRA"), later, later.date())
    events = entry.collect_events()
    assert [e.actor for e in events] == ["state:FRA/p-fra", "state:FRA/p-fra"]  # type: ignore[attr-defined]
    assert [e.timestamp for e in events] == [AT, later]


def test_changes_carry_the_date_they_occurred_which_cannot_be_in_the_future() -> None:
    entry = registered()
    contact = Contact.from_dict(contact_data())
    entry.add_contact(contact, state("FRA"), AT, date(2025, 3, 1))
    (event,) = entry.collect_events()
    assert event.effective_on == date(2025, 3, 1)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="after today"):
        entry.remove_contact("cert", state("FRA"), AT, AT.date() + timedelta(days=1))


def test_text_in_a_un_language_other_than_english_needs_a_translation() -> None:
    with pytest.raises(TranslationRequired):
        Text.parse("fr", "Agence nationale")
    assert Text.parse("fr", "Agence", "Agency").in_english == "Agency"
    assert Text.parse("en", "Agency").english is None
    with pytest.raises(ValidationError, match="not an official UN language"):
        Text.parse("de", "Behörde", "Agency")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"level": "ministerial"}, "diplomatic"),
        ({"channels": []}, "at least one channel"),
        ({"channels": [{"kind": "email", "address": "not-an-address"}]}, "e-mail"),
        ({"channels": [{"kind": "phone", "address": "12345"}]}, "E.164"),
        ({"channels": [{"kind": "secure", "address": "xmpp:a@b.example"}]}, "fingerprint"),
        ({"time_zone": "Mars/Olympus"}, "IANA"),
        ({"hours": "always"}, "24/7"),
        ({"incident_types": ["espionage"]}, "unknown incident type"),
        ({"agency": {"language": "ru", "text": "Агентство"}}, "English translation"),
    ],
)
def test_malformed_contacts_are_rejected_with_what_to_fix(override: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Contact.from_dict(contact_data(**override))


def test_coordination_contact_and_preferred_channel_are_marked_and_guarded() -> None:
    entry = registered()
    fra = state("FRA")
    entry.add_contact(Contact.from_dict(contact_data("cert")), fra, AT, AT.date())
    entry.set_coordination_contact("cert", fra, AT, AT.date())
    entry.set_preferred_channel("cert", "phone", fra, AT, AT.date())
    assert entry.coordination_contact_id == "cert"
    with pytest.raises(InvalidTransition, match="no secure channel"):
        entry.set_preferred_channel("cert", "secure", fra, AT, AT.date())
    with pytest.raises(InvalidTransition, match="coordination contact"):
        entry.remove_contact("cert", fra, AT, AT.date())


def test_annual_confirmation_without_change_is_an_event_of_its_own() -> None:
    entry = registered()
    fra = state("FRA")
    entry.add_contact(Contact.from_dict(contact_data()), fra, AT, AT.date())
    entry.collect_events()
    entry.confirm(fra, AT + timedelta(days=300))
    (event,) = entry.collect_events()
    assert isinstance(event, StateEntry.AnnuallyConfirmed)


def test_a_withdrawn_entry_accepts_no_change_until_the_state_rejoins() -> None:
    entry = registered()
    fra = state("FRA")
    entry.withdraw(fra, AT, AT.date())
    with pytest.raises(InvalidTransition, match="withdrawn"):
        entry.add_contact(Contact.from_dict(contact_data()), fra, AT, AT.date())
    entry.rejoin(fra, AT, AT.date())
    entry.add_contact(Contact.from_dict(contact_data()), fra, AT, AT.date())


def test_adding_a_contact_twice_is_rejected() -> None:
    entry = registered()
    contact = Contact.from_dict(contact_data())
    entry.add_contact(contact, state("FRA"), AT, AT.date())
    with pytest.raises(AlreadyExists):
        entry.add_contact(contact, state("FRA"), AT, AT.date())


# -- notifications ----------------------------------------------------------------------------


def sent(sender: str = "FRA", recipient: str = "DEU") -> Notification:
    return Notification.send(
        uuid4(),
        state(sender),
        AT,
        recipient,
        "malware",
        Text.english_only("Botnet C2 traffic from your networks"),
        SupportingInformation.parse([{"kind": "ipv4", "value": "192.0.2.7"}]),
        good_faith_attested=True,
    )


def test_notification_records_good_faith_and_the_r8_statement() -> None:
    n = sent()
    (event,) = n.collect_events()
    assert event.good_faith_attested is True  # type: ignore[attr-defined]
    assert event.statement == NO_IMPLIED_RESPONSIBILITY  # type: ignore[attr-defined]


def test_notification_requires_attestation_supporting_information_and_a_known_type() -> None:
    info = SupportingInformation.parse([{"kind": "domain", "value": "c2.example.net"}])
    text = Text.english_only("x")
    with pytest.raises(ValidationError, match="good faith"):
        Notification.send(uuid4(), state("FRA"), AT, "DEU", "malware", text, info, False)
    with pytest.raises(ValidationError, match="incident type"):
        Notification.send(uuid4(), state("FRA"), AT, "DEU", "gossip", text, info, True)
    with pytest.raises(ValidationError, match="supporting information"):
        SupportingInformation.parse([])
    with pytest.raises(ValidationError, match="itself"):
        Notification.send(uuid4(), state("FRA"), AT, "FRA", "malware", text, info, True)


def test_acknowledging_twice_is_rejected_and_acknowledgement_records_r9() -> None:
    n = sent()
    n.acknowledge(state("DEU"), AT)
    assert n.collect_events()[-1].statement == ACKNOWLEDGEMENT_IS_NOT_CONCURRENCE  # type: ignore[attr-defined]
    with pytest.raises(InvalidTransition):
        n.acknowledge(state("DEU"), AT)


def test_only_the_recipient_acknowledges_and_responds() -> None:
    n = sent()
    with pytest.raises(NotPermitted):
        n.acknowledge(state("FRA"), AT)
    with pytest.raises(NotPermitted):
        n.acknowledge(state("ITA"), AT)
    n.acknowledge(state("DEU"), AT)
    with pytest.raises(NotPermitted):
        n.respond(state("FRA"), AT, Text.english_only("x"))


def test_responding_before_acknowledging_is_rejected_and_responses_repeat() -> None:
    n = sent()
    with pytest.raises(InvalidTransition, match="acknowledge it first"):
        n.respond(state("DEU"), AT, Text.english_only("x"))
    n.acknowledge(state("DEU"), AT)
    n.respond(state("DEU"), AT, Text.english_only("investigating"))
    n.respond(state("DEU"), AT, Text.english_only("need help"), assistance_requested=True)
    assert n.status is NotificationStatus.RESPONDED
    assert n.responses == 2 and n.assistance_requested


def test_only_the_sender_closes_and_only_after_acknowledgement() -> None:
    n = sent()
    with pytest.raises(InvalidTransition, match="withdraw it instead"):
        n.close(state("FRA"), AT)
    n.acknowledge(state("DEU"), AT)
    with pytest.raises(NotPermitted):
        n.close(state("DEU"), AT)
    n.close(state("FRA"), AT)
    with pytest.raises(InvalidTransition):
        n.respond(state("DEU"), AT, Text.english_only("late"))


def test_the_sender_may_withdraw_only_before_acknowledgement() -> None:
    n = sent()
    n.withdraw(state("FRA"), AT)
    assert n.status is NotificationStatus.WITHDRAWN
    with pytest.raises(InvalidTransition):
        n.acknowledge(state("DEU"), AT)
    m = sent()
    m.acknowledge(state("DEU"), AT)
    with pytest.raises(InvalidTransition, match="before acknowledgement"):
        m.withdraw(state("FRA"), AT)


# -- consent ----------------------------------------------------------------------------------


def consent_request() -> SharingConsent:
    return SharingConsent.request(uuid4(), state("FRA"), AT, uuid4(), ("FRA", "DEU"), "ITA")


def test_consent_is_effective_only_once_every_party_has_granted() -> None:
    c = consent_request()
    assert c.status is ConsentStatus.PENDING
    c.grant(state("DEU"), AT)
    assert c.is_effective


def test_denial_of_consent_is_final() -> None:
    c = consent_request()
    c.deny(state("DEU"), AT)
    assert c.status is ConsentStatus.DENIED
    with pytest.raises(InvalidTransition, match="final"):
        c.grant(state("DEU"), AT)


def test_revoking_a_grant_ends_an_effective_consent() -> None:
    c = consent_request()
    c.grant(state("DEU"), AT)
    c.revoke(state("FRA"), AT)
    assert c.status is ConsentStatus.REVOKED and not c.is_effective


def test_only_parties_decide_on_consent_and_the_third_state_is_not_a_party() -> None:
    c = consent_request()
    with pytest.raises(NotPermitted):
        c.grant(state("ITA"), AT)
    with pytest.raises(ValidationError):
        SharingConsent.request(uuid4(), state("FRA"), AT, uuid4(), ("FRA", "DEU"), "DEU")
    with pytest.raises(NotPermitted):
        SharingConsent.request(uuid4(), state("ITA"), AT, uuid4(), ("FRA", "DEU"), "ESP")
