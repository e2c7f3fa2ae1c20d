"""The rules decided once in ``domain/`` (R5 freshness, R11 consent and who sees an exchange,
the notification and need lifecycles): pure functions, tested without a record.

The views, the queries, the report and the routers call these functions; the tests of those
(test_projections, test_review, test_http, test_access_matrix) show that they do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from api.review_html import cited, render_html
from domain.capacity import CapacityNeed, NeedStatus, need_status, need_status_after
from domain.consent import (
    ConsentStatus,
    ExchangeAccess,
    consent_status,
    exchange_access,
    may_see_consent,
    shares_with,
)
from domain.errors import NotFound, NotPermitted
from domain.freshness import (
    DUE_WINDOW_DAYS,
    LATE_NOTICE_DAYS,
    Freshness,
    add_year,
    confirmed_on_time,
    days_overdue,
    freshness,
    late_notice_delay,
    next_due_on,
    notice_delay_days,
)
from domain.notification import Notification, NotificationStatus, status_after
from domain.routing import route_contacts
from domain.rules import rule_link
from domain.values import Principal, Role
from projections.review_report import build_report

# -- R5 ---------------------------------------------------------------------------------------


def test_r5_limits_are_thirty_days() -> None:
    assert LATE_NOTICE_DAYS == 30 and DUE_WINDOW_DAYS == 30


def test_the_next_update_is_due_a_year_after_the_last_29_february_included() -> None:
    assert next_due_on(date(2025, 3, 10)) == date(2026, 3, 10)
    assert add_year(date(2024, 2, 29)) == date(2025, 2, 28)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2025, 6, 1), Freshness.CURRENT),
        (date(2026, 2, 7), Freshness.CURRENT),  # 31 days before the due date
        (date(2026, 2, 8), Freshness.DUE),  # 30 days before
        (date(2026, 3, 10), Freshness.DUE),  # the due date itself
        (date(2026, 3, 11), Freshness.OVERDUE),
    ],
)
def test_an_entry_is_current_then_due_within_30_days_then_overdue(
    today: date, expected: Freshness
) -> None:
    assert freshness(date(2025, 3, 10), today) is expected


def test_days_overdue_count_from_the_due_date_and_are_never_negative() -> None:
    last = date(2025, 3, 10)
    assert days_overdue(last, date(2026, 3, 10)) == 0
    assert days_overdue(last, date(2025, 4, 1)) == 0
    assert days_overdue(last, date(2026, 3, 15)) == 5


def test_a_confirmation_is_on_time_unless_the_entry_was_already_overdue() -> None:
    assert confirmed_on_time(None, date(2030, 1, 1))
    assert confirmed_on_time(date(2025, 3, 10), date(2026, 3, 10))
    assert not confirmed_on_time(date(2025, 3, 10), date(2026, 3, 11))


def test_a_change_is_a_late_notice_only_more_than_30_days_after_it_occurred() -> None:
    occurred = date(2025, 1, 1)
    assert late_notice_delay(occurred, date(2025, 1, 31)) is None  # 30 days: in time
    assert late_notice_delay(occurred, date(2025, 2, 1)) == 31
    reported = datetime(2025, 3, 2, 23, 59, tzinfo=UTC)  # judged on the day it was reported
    assert notice_delay_days(occurred, reported) == 60
    assert late_notice_delay(occurred, reported) == 60


# -- R11 --------------------------------------------------------------------------------------

PARTIES = ("FRA", "DEU")


def test_a_consent_is_effective_once_every_party_granted_and_denial_or_revocation_is_final() -> (
    None
):
    assert consent_status(PARTIES, ["FRA"]) is ConsentStatus.PENDING
    assert consent_status(PARTIES, ["DEU", "FRA"]) is ConsentStatus.EFFECTIVE
    assert consent_status(PARTIES, ["FRA"], denied_by="DEU") is ConsentStatus.DENIED
    assert consent_status(PARTIES, PARTIES, revoked_by="FRA") is ConsentStatus.REVOKED


def test_a_consent_shares_only_with_its_third_state_and_only_while_effective() -> None:
    assert shares_with("ITA", "effective", "ITA")
    assert not shares_with("ITA", "pending", "ITA")
    assert not shares_with("ITA", "revoked", "ITA")
    assert not shares_with("ITA", "effective", "ESP")
    assert not shares_with("ITA", "effective", None)


def test_the_third_state_knows_of_a_consent_only_while_it_is_effective() -> None:
    assert may_see_consent("FRA", PARTIES, "ITA", "pending")
    assert not may_see_consent("ITA", PARTIES, "ITA", "pending")
    assert may_see_consent("ITA", PARTIES, "ITA", "effective")
    assert not may_see_consent("ESP", PARTIES, "ITA", "effective")


def test_parties_see_an_exchanges_content_the_secretariat_its_metadata_others_need_consent() -> (
    None
):
    def state(code: str) -> Principal:
        return Principal("p", Role.STATE, code)

    assert exchange_access(state("FRA"), PARTIES) is ExchangeAccess.CONTENT
    assert exchange_access(state("ITA"), PARTIES) is ExchangeAccess.THROUGH_CONSENT
    assert exchange_access(Principal("p", Role.SECRETARIAT), PARTIES) is ExchangeAccess.METADATA
    for role in (Role.AUDITOR, Role.REVIEWER):
        with pytest.raises(NotPermitted, match="only States and the Secretariat"):
            exchange_access(Principal("p", role), PARTIES)


# -- lifecycles -------------------------------------------------------------------------------


def test_a_notifications_status_after_each_of_its_events() -> None:
    assert status_after(Notification.Sent) is NotificationStatus.SENT
    assert status_after(Notification.Acknowledged) is NotificationStatus.ACKNOWLEDGED
    assert status_after(Notification.Responded) is NotificationStatus.RESPONDED
    assert status_after(Notification.Closed) is NotificationStatus.CLOSED
    assert status_after(Notification.Withdrawn) is NotificationStatus.WITHDRAWN


def test_a_needs_status_after_its_events_an_offer_changes_nothing() -> None:
    assert need_status([CapacityNeed.Recorded]) is NeedStatus.OPEN
    assert need_status_after(NeedStatus.OPEN, CapacityNeed.AssistanceOffered) is NeedStatus.OPEN
    assert need_status([CapacityNeed.OfferAccepted]) is NeedStatus.MATCHED
    assert need_status([CapacityNeed.OfferAccepted, CapacityNeed.Fulfilled]) is NeedStatus.FULFILLED
    assert need_status([CapacityNeed.OfferAccepted, CapacityNeed.Withdrawn]) is NeedStatus.WITHDRAWN
    assert need_status([CapacityNeed.Withdrawn]) is NeedStatus.WITHDRAWN


# -- the review report cites the rules' definitions -------------------------------------------


class _EmptyView:
    """A view with no document: enough for a report's structure and its texts."""

    def all(self, kind: str) -> list[dict[str, Any]]:
        return []

    def key_range(self, kind: str, start: str, stop: str) -> list[dict[str, Any]]:
        return []


def test_every_rule_the_report_cites_links_to_its_anchor_in_docs_domain_md() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "domain.md").read_text(encoding="utf-8")
    for n in range(1, 18):
        assert f'<a id="r{n}"></a>R{n} ' in doc
    assert rule_link(11) == "docs/domain.md#r11"
    assert cited("Use of the directory (R7-R11) & more") == (
        'Use of the directory (<a href="docs/domain.md#r7">R7</a>-'
        '<a href="docs/domain.md#r11">R11</a>) &amp; more'
    )
    report = build_report(_EmptyView(), date(2025, 1, 1), date(2025, 12, 31))  # type: ignore[arg-type]
    page = render_html(report)
    assert '<a href="docs/domain.md">docs/domain.md</a> in the pocdir repository' in page
    assert '<h2>Freshness of entries (<a href="docs/domain.md#r5">R5</a>)</h2>' in page
    assert '(<a href="docs/domain.md#r11">R11</a>): decisions in the period' in page


# -- R4 ---------------------------------------------------------------------------------------


def _contact(cid: str, level: str = "technical", *types: str) -> dict[str, Any]:
    return {
        "contact_id": cid,
        "level": level,
        "incident_types": list(types or ("malware",)),
        "channels": [{"kind": "email"}, {"kind": "phone"}],
    }


def test_a_route_puts_the_preferred_channel_then_the_coordination_contact_first() -> None:
    contacts = {c["contact_id"]: c for c in (_contact("a"), _contact("b"), _contact("c"))}
    ordered, fell_back = route_contacts(
        "FRA", contacts, "malware", "technical", "b", {"contact_id": "c", "channel": "phone"}
    )
    assert [c["contact_id"] for c in ordered] == ["c", "b", "a"] and not fell_back
    assert ordered[0]["preferred_channel"] == "phone"
    assert [ch["kind"] for ch in ordered[0]["channels"]] == ["phone", "email"]


def test_a_route_falls_back_to_the_coordination_contact_or_finds_none() -> None:
    contacts = {"d": _contact("d", "diplomatic", "phishing")}
    ordered, fell_back = route_contacts("FRA", contacts, "malware", "technical", "d", None)
    assert [c["contact_id"] for c in ordered] == ["d"] and fell_back
    with pytest.raises(NotFound, match="no coordination contact"):
        route_contacts("FRA", contacts, "malware", "technical", None, None)
