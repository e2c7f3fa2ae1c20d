"""The provisional-operation review report for a period (R16, R17), for the Reviewer role.

Computed from the read models only (the review documents, the notification facts of the
history view and the member list), with every fact judged as it stood at the end of the
period: an answer, acknowledgement or decision stamped after the period's last day is not
counted. The same period on the same record (or a replay of it) therefore gives the same
report, and ``report_json`` gives the same bytes.

Confidentiality: no contact detail, indicator or text of an exchange or need is read here.
Per-State figures appear only for participation and freshness; responsiveness, use and
capacity are aggregates.

Every table is ``{"title", "columns", "rows"}`` so it renders as CSV (``report_csv``) or HTML
without knowing what it holds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from typing import Any

from domain.capacity import CAPACITY_CATEGORIES, CapacityNeed, NeedStatus, need_status
from domain.check import CheckResult, ContactResult, judge, state_row
from domain.delivery import FINAL_OUTCOMES, AlertOutcome
from domain.errors import ValidationError
from domain.freshness import LATE_NOTICE_DAYS, confirmed_on_time, days_overdue
from domain.members import RegionalGroup, electoral_group, member_states
from domain.notification import NotificationStatus
from domain.rules import RULES_DOCUMENT
from domain.taxonomy import INCIDENT_TYPES
from projections.history import NOTIFICATION
from projections.queries import ReadableViews
from projections.review import (
    CHECK,
    NEED,
    REVIEW_DAY,
    REVIEW_REACH,
    REVIEW_STATE,
    contact_results,
)

REPORT_TITLE = "Provisional operation of the Points of Contact directory: review report"
#: Where the rules the report cites (R1-R17) are defined: the pocdir repository's own domain
#: document, one anchor per rule (``domain.rules.rule_link``). The HTML page links them; the
#: JSON keeps the shape it had, which the old-record test holds it to.
RULES_NOTE = (
    f"The rules cited by id (R1-R17) are defined, with their sources in the working papers, "
    f"in {RULES_DOCUMENT} in the pocdir repository."
)
CONFIDENTIALITY = (
    "Aggregate figures from the directory's record. No contact detail, indicator of "
    "compromise or text of any exchange appears here; per-State figures are given only for "
    "participation and freshness."
)
#: The longest period one report covers (a review between OEWG sessions spans a year or two).
MAX_PERIOD_DAYS = 3 * 366
#: The days a period may span. The report reads the day after the period and the first day
#: of the month after each month in it, which the calendar (``datetime.date``) has only up
#: to the end of year 9998.
FIRST_DAY = date(MINYEAR, 1, 1)
LAST_DAY = date(MAXYEAR - 1, 12, 31)

HOUR_BUCKETS: tuple[tuple[str, float], ...] = (
    ("up to 1 h", 1),
    ("1-4 h", 4),
    ("4-12 h", 12),
    ("12-24 h", 24),
    ("1-2 days", 48),
    ("2-4 days", 96),
    ("4-7 days", 168),
    ("over 7 days", math.inf),
)
DAY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("up to 7 days", 7),
    ("8-14 days", 14),
    ("15-30 days", 30),
    ("31-60 days", 60),
    ("over 60 days", math.inf),
)
#: Late notices by delay: the first bucket starts the day after R5's limit.
NOTICE_DELAY_BUCKETS: tuple[tuple[str, float], ...] = (
    (f"{LATE_NOTICE_DAYS + 1}-45 days", 45),
    ("46-60 days", 60),
    ("61-90 days", 90),
    ("over 90 days", math.inf),
)


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _p90(values: list[float]) -> float | None:
    """The 90th percentile by the nearest-rank method (a value that occurred)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[math.ceil(0.9 * len(ordered)) - 1], 2)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _bucket(value: float, buckets: tuple[tuple[str, float], ...]) -> str:
    return next(label for label, upper in buckets if value <= upper)


def _distribution(
    values: dict[str, list[float]], buckets: tuple[tuple[str, float], ...]
) -> list[list[Any]]:
    counts = {name: Counter(_bucket(v, buckets) for v in vs) for name, vs in values.items()}
    return [[label, *(counts[name][label] for name in values)] for label, _ in buckets]


def _sample_days(start: date, end: date) -> list[date]:
    """The last day of each month in the period, and the period's last day."""
    days, cursor = [], start
    while cursor <= end:
        following = (cursor.replace(day=1) + timedelta(days=32)).replace(day=1)
        days.append(min(following - timedelta(days=1), end))
        cursor = following
    return days


def _months(start: date, end: date) -> list[str]:
    months, cursor = [], start.replace(day=1)
    while cursor <= end:
        months.append(cursor.isoformat()[:7])
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


def _snapshot(state: dict[str, Any], day: date) -> dict[str, Any] | None:
    """The State's participation as recorded at the end of ``day``, or None before it
    registered."""
    found = None
    for snapshot in state["timeline"]:
        if snapshot["on"] > day.isoformat():
            break
        found = snapshot
    return found


def check_period(start: date, end: date) -> None:
    """Refuse a period no report covers (``ValidationError``), before any record is read."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise ValidationError("the period needs a first and a last day")
    if start < FIRST_DAY or end > LAST_DAY:
        raise ValidationError(
            f"a period lies between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"
        )
    if start > end:
        raise ValidationError("the period's start is after its end")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ValidationError(f"a report covers at most {MAX_PERIOD_DAYS} days")


def build_report(view: ReadableViews, start: date, end: date) -> dict[str, Any]:
    """The review report for the days ``start``..``end`` inclusive, as a JSON-able dict."""
    check_period(start, end)
    period_end = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    states = view.all(REVIEW_STATE)
    return {
        "title": REPORT_TITLE,
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "member_states": len(member_states()),
        "confidentiality": CONFIDENTIALITY,
        "participation": _participation(states, start, end),
        "freshness": _freshness(states, start, end),
        "responsiveness": _responsiveness(view, start, end, period_end),
        "use": _use(view, start, end, period_end),
        "capacity": _capacity(view, start, end, period_end),
    }


# -- participation ----------------------------------------------------------------------------


def _participation(states: list[dict[str, Any]], start: date, end: date) -> dict[str, Any]:
    members = len(member_states())
    over_time = []
    for day in _sample_days(start, end):
        snaps = [s for st in states if (s := _snapshot(st, day)) is not None and s["active"]]
        over_time.append(
            [
                day.isoformat(),
                len(snaps),
                sum(1 for s in snaps if s["diplomatic"]),
                sum(1 for s in snaps if s["technical"]),
                sum(1 for s in snaps if s["diplomatic"] and s["technical"]),
                len({t for s in snaps for t in s["incident_types"]}),
            ]
        )
    at_end = {st["code"]: _snapshot(st, end) for st in states}
    active = {code: s for code, s in at_end.items() if s is not None and s["active"]}
    coverage = [
        [t, sum(1 for s in active.values() if t in s["incident_types"])] for t in INCIDENT_TYPES
    ]
    per_state = [
        [
            st["code"],
            st["name"],
            st["registered_on"],
            "taking part" if snap["active"] else "withdrawn",
            "yes" if snap["diplomatic"] else "no",
            "yes" if snap["technical"] else "no",
            len(snap["incident_types"]),
        ]
        for st in states
        if (snap := at_end[st["code"]]) is not None
    ]
    registered = len(active)
    withdrawn_in_period = sum(
        1
        for st in states
        for snap in st["timeline"]
        if start.isoformat() <= snap["on"] <= end.isoformat() and not snap["active"]
    )
    return {
        "summary": {
            "registered_at_end": registered,
            "share_of_member_states": _share(registered, members),
            "with_diplomatic_contact": sum(1 for s in active.values() if s["diplomatic"]),
            "with_technical_contact": sum(1 for s in active.values() if s["technical"]),
            "with_both_levels": sum(
                1 for s in active.values() if s["diplomatic"] and s["technical"]
            ),
            "incident_types_covered": sum(1 for _, n in coverage if n),
            "incident_types_in_taxonomy": len(INCIDENT_TYPES),
            "withdrawals_in_period": withdrawn_in_period,
            "never_registered_by_end": members - len(per_state),
        },
        "tables": {
            "over_time": _table(
                "States taking part, at the end of each month",
                ("date", "registered", "diplomatic", "technical", "both", "incident_types"),
                over_time,
            ),
            "incident_type_coverage": _table(
                "States with a contact for each incident type, at the end of the period",
                ("incident_type", "states"),
                coverage,
            ),
            "states": _table(
                "Participation of each State at the end of the period",
                (
                    "state",
                    "name",
                    "registered_on",
                    "status",
                    "diplomatic",
                    "technical",
                    "incident_types",
                ),
                per_state,
            ),
        },
    }


# -- freshness --------------------------------------------------------------------------------


def _freshness(states: list[dict[str, Any]], start: date, end: date) -> dict[str, Any]:
    s, e = start.isoformat(), end.isoformat()
    rows, delays = [], []
    totals: Counter[str] = Counter()
    for st in states:
        snap = _snapshot(st, end)
        if snap is None:
            continue
        updates = [date.fromisoformat(u) for u in st["updates"] if u <= e]
        on_time = late = 0
        for confirmed in st["confirmations"]:
            if not s <= confirmed <= e:
                continue
            day = date.fromisoformat(confirmed)
            previous = max((u for u in updates if u < day), default=None)
            if confirmed_on_time(previous, day):
                on_time += 1
            else:
                late += 1
        overdue_days = days_overdue(updates[-1], end) if snap["active"] else 0
        notices = [n["delay_days"] for n in st["late_notices"] if s <= n["reported_on"] <= e]
        delays.extend(notices)
        totals.update(
            on_time=on_time,
            late=late,
            overdue=1 if overdue_days else 0,
            active=1 if snap["active"] else 0,
        )
        rows.append(
            [
                st["code"],
                on_time,
                late,
                "yes" if overdue_days else "no",
                overdue_days,
                len(notices),
                max(notices, default=0),
            ]
        )
    return {
        "summary": {
            "annual_confirmations_on_time": totals["on_time"],
            "annual_confirmations_late": totals["late"],
            "states_overdue_at_end": totals["overdue"],
            "share_current_at_end": _share(totals["active"] - totals["overdue"], totals["active"]),
            "late_change_notices": len(delays),
            "late_notice_delay_days_median": _median([float(d) for d in delays]),
            "late_notice_delay_days_max": max(delays, default=None),
        },
        "tables": {
            "annual_updates": _table(
                "Annual confirmations in the period, and States overdue at its end (R5)",
                ("outcome", "count"),
                [
                    ["confirmed on time", totals["on_time"]],
                    ["confirmed late", totals["late"]],
                    ["overdue at end", totals["overdue"]],
                ],
            ),
            "late_notice_delays": _table(
                f"Changes notified more than {LATE_NOTICE_DAYS} days after they occurred, "
                "by delay (R5)",
                ("delay", "notices"),
                _distribution({"notices": [float(d) for d in delays]}, NOTICE_DELAY_BUCKETS),
            ),
            "states": _table(
                "Freshness of each State's entry in the period (R5)",
                (
                    "state",
                    "confirmations_on_time",
                    "confirmations_late",
                    "overdue_at_end",
                    "days_overdue_at_end",
                    "late_change_notices",
                    "longest_notice_delay_days",
                ),
                rows,
            ),
        },
    }


# -- responsiveness ---------------------------------------------------------------------------


def _in_period(at: str, start: date, end: date) -> bool:
    return start.isoformat() <= at[:10] <= end.isoformat()


def _notifications(view: ReadableViews, start: date, end: date) -> list[dict[str, Any]]:
    return sorted(
        (n for n in view.all(NOTIFICATION) if _in_period(n["sent_at"], start, end)),
        key=lambda n: (n["sent_at"], n["id"]),
    )


def _hours_if_by(later: str | None, earlier: str, period_end: datetime) -> float | None:
    if later is None or _parse(later) >= period_end:
        return None
    return round((_parse(later) - _parse(earlier)).total_seconds() / 3600, 2)


def _responsiveness(
    view: ReadableViews, start: date, end: date, period_end: datetime
) -> dict[str, Any]:
    check_rows, answer_hours = [], []
    challenged: list[dict[str, Any]] = []  # each challenged contact's row (issue 17)
    totals: Counter[str] = Counter()
    checks = sorted(
        (c for c in view.all(CHECK) if _in_period(c["launched_at"], start, end)),
        key=lambda c: (c["launched_at"], c["id"]),
    )
    for number, check in enumerate(checks, start=1):
        launched, deadline = _parse(check["launched_at"]), _parse(check["deadline"])
        judged_at = period_end - timedelta(microseconds=1)
        if check["closed_at"] is not None:
            judged_at = min(judged_at, _parse(check["closed_at"]))
        counts: Counter[str] = Counter()
        hours = []
        if check.get("contacts"):
            rows = contact_results(check, judged_at)
            challenged.extend(rows)
            for code in check["states"]:
                closed = check["closed_at"] is not None and _parse(check["closed_at"]) <= judged_at
                own = state_row(code, [r for r in rows if r["state"] == code], closed=closed)
                counts[own["result"]] += 1
                if own["hours_to_answer"] is not None:
                    hours.append(own["hours_to_answer"])
        for code in [] if check.get("contacts") else check["states"]:
            raw = check["answers"].get(code)
            answered = _parse(raw) if raw is not None else None
            result = judge(answered, deadline, judged_at)
            counts[str(result)] += 1
            if answered is not None and answered <= judged_at:
                hours.append(round((answered - launched).total_seconds() / 3600, 2))
        answer_hours.extend(hours)
        totals.update(counts)
        answered_count = counts[CheckResult.IN_TIME] + counts[CheckResult.LATE]
        check_rows.append(
            [
                f"check {number}",
                check["launched_at"][:10],
                check["level"],
                round((deadline - launched).total_seconds() / 3600, 2),
                len(check["states"]),
                counts[CheckResult.IN_TIME],
                counts[CheckResult.LATE],
                counts[CheckResult.NO_ANSWER],
                counts[CheckResult.AWAITING],
                _share(answered_count, len(check["states"])),
                _median(hours),
                _p90(hours),
            ]
        )
    pings = sum(totals.values())
    notifications = _notifications(view, start, end)
    ack = [
        h
        for n in notifications
        if (h := _hours_if_by(n["acknowledged_at"], n["sent_at"], period_end)) is not None
    ]
    resp = [
        h
        for n in notifications
        if (h := _hours_if_by(n["first_response_at"], n["sent_at"], period_end)) is not None
    ]
    shaped: dict[str, Any] = {
        "summary": {
            "checks_launched": len(checks),
            "states_pinged": pings,
            "answered_in_time": totals[CheckResult.IN_TIME],
            "answered_late": totals[CheckResult.LATE],
            "no_answer": totals[CheckResult.NO_ANSWER],
            "awaiting_at_end": totals[CheckResult.AWAITING],
            "answer_rate": _share(totals[CheckResult.IN_TIME] + totals[CheckResult.LATE], pings),
            "answered_in_time_rate": _share(totals[CheckResult.IN_TIME], pings),
            "check_answer_hours_median": _median(answer_hours),
            "check_answer_hours_p90": _p90(answer_hours),
            "notifications_sent": len(notifications),
            "notifications_acknowledged": len(ack),
            "acknowledgement_hours_median": _median(ack),
            "acknowledgement_hours_p90": _p90(ack),
            "notifications_responded": len(resp),
            "first_response_hours_median": _median(resp),
            "first_response_hours_p90": _p90(resp),
        },
        "tables": {
            "checks": _table(
                "Communication checks launched in the period (aggregate results)",
                (
                    "check",
                    "launched_on",
                    "level",
                    "deadline_hours",
                    "states",
                    "answered_in_time",
                    "answered_late",
                    "no_answer",
                    "awaiting",
                    "answer_rate",
                    "answer_hours_median",
                    "answer_hours_p90",
                ),
                check_rows,
            ),
            "check_answer_times": _table(
                "Time to answer a communication check",
                ("time", "answers"),
                _distribution({"answers": answer_hours}, HOUR_BUCKETS),
            ),
            "notification_times": _table(
                "Time from a notification to its acknowledgement and first response",
                ("time", "acknowledged", "first_response"),
                _distribution({"acknowledged": ack, "first_response": resp}, HOUR_BUCKETS),
            ),
        },
    }
    if challenged:  # a period without challenged checks keeps the report it had
        shaped["tables"].update(_contact_tables(challenged))
    reach = _reach_table(view, start, end)
    if reach is not None:  # nor does a period without alerts
        shaped["tables"]["alerts_by_group"] = reach
    return shaped


def _reach_table(view: ReadableViews, start: date, end: date) -> dict[str, Any] | None:
    """Reachability: alerts' final outcomes in the period per regional group (each State in
    its electoral group), and the share that reached their contact."""
    stop = (end + timedelta(days=1)).isoformat()
    docs = view.key_range(REVIEW_REACH, start.isoformat(), stop)
    if not docs:
        return None
    outcomes = sorted(FINAL_OUTCOMES, key=list(AlertOutcome).index)
    groups: dict[str, Counter[str]] = {g.value: Counter() for g in RegionalGroup}
    groups["none"] = Counter()
    for doc in docs:
        group = electoral_group(doc["state"])
        counts = groups[group.value if group is not None else "none"]
        for outcome in outcomes:
            counts[str(outcome)] += doc.get(str(outcome), 0)
    rows = []
    for name, counts in groups.items():
        total = sum(counts.values())
        if total:
            sent = counts[str(AlertOutcome.SENT)]
            rows.append([name, total, *(counts[str(o)] for o in outcomes), _share(sent, total)])
    return _table(
        "Alerts in the period by final outcome, by regional group (each State in its "
        "electoral group); refused means at SMTP time, later bounces are not read",
        ("regional_group", "alerts", *(str(o).replace(" ", "_") for o in outcomes), "sent_rate"),
        rows,
    )


#: The columns of the per-contact tables: each result, in ``ContactResult``'s order.
_CONTACT_COLUMNS = tuple(str(r).replace(" ", "_") for r in ContactResult)


def _contact_tables(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Challenged contacts' results per contact level and per regional group (each State
    counted once, in its electoral group; ``domain.members``), as of the period's end."""

    def line(name: str, chosen: list[dict[str, Any]]) -> list[Any]:
        counts = Counter(r["result"] for r in chosen)
        confirmed = counts[ContactResult.IN_TIME] + counts[ContactResult.LATE]
        return [
            name,
            len(chosen),
            *(counts[r] for r in ContactResult),
            _share(confirmed, len(chosen)),
        ]

    columns = ("contacts", *_CONTACT_COLUMNS, "confirmed_rate")
    levels = sorted({r["level"] for r in rows})
    groups: dict[str, list[dict[str, Any]]] = {g.value: [] for g in RegionalGroup}
    groups["none"] = []
    for r in rows:
        group = electoral_group(r["state"])
        groups[group.value if group is not None else "none"].append(r)
    return {
        "check_contacts_by_level": _table(
            "Challenged contacts of communication checks in the period, by contact level",
            ("level", *columns),
            [line(level, [r for r in rows if r["level"] == level]) for level in levels],
        ),
        "check_contacts_by_group": _table(
            "Challenged contacts of communication checks in the period, by regional group "
            "(each State in its electoral group)",
            ("regional_group", *columns),
            [line(g, chosen) for g, chosen in groups.items() if chosen],
        ),
    }


# -- use --------------------------------------------------------------------------------------


def _day_counts(view: ReadableViews, start: date, end: date) -> Counter[str]:
    totals: Counter[str] = Counter()
    stop = (end + timedelta(days=1)).isoformat()
    for doc in view.key_range(REVIEW_DAY, start.isoformat(), stop):
        totals.update({k: v for k, v in doc.items() if k != "day"})
    return totals


def _use(view: ReadableViews, start: date, end: date, period_end: datetime) -> dict[str, Any]:
    notifications = _notifications(view, start, end)
    months = _months(start, end)
    per_month: dict[str, Counter[str]] = {m: Counter() for m in months}
    for n in notifications:
        per_month[n["sent_at"][:7]][n["incident_type"]] += 1
    acknowledged = sum(
        1
        for n in notifications
        if n["acknowledged_at"] is not None and _parse(n["acknowledged_at"]) < period_end
    )
    withdrawn = sum(1 for n in notifications if n["status"] == NotificationStatus.WITHDRAWN)
    days = _day_counts(view, start, end)
    decisions = ("requested", "granted", "denied", "revoked")
    return {
        "summary": {
            "notifications_sent": len(notifications),
            "notifications_acknowledged": acknowledged,
            "share_acknowledged": _share(acknowledged, len(notifications)),
            "notifications_withdrawn_by_sender": withdrawn,
            **{f"consents_{d}": days[f"consents_{d}"] for d in decisions},
        },
        "tables": {
            "notifications_per_month": _table(
                "Notifications sent each month, by incident type",
                ("month", *INCIDENT_TYPES, "total"),
                [
                    [m, *(per_month[m][t] for t in INCIDENT_TYPES), sum(per_month[m].values())]
                    for m in months
                ],
            ),
            "consents": _table(
                "Consents to share with a third State (R11): decisions in the period",
                ("decision", "count"),
                [[d, days[f"consents_{d}"]] for d in decisions],
            ),
        },
    }


# -- capacity ---------------------------------------------------------------------------------


#: The times the review view keeps of a need's lifecycle events, in lifecycle order.
_NEED_EVENTS: tuple[tuple[str, type[CapacityNeed.Event]], ...] = (
    ("matched_at", CapacityNeed.OfferAccepted),
    ("fulfilled_at", CapacityNeed.Fulfilled),
    ("withdrawn_at", CapacityNeed.Withdrawn),
)


def _need_status(need: dict[str, Any], period_end: datetime) -> NeedStatus:
    """The need's status at the end of the period: the domain's lifecycle (``need_status``)
    over the events recorded before then, in the order they happened."""
    happened = sorted(
        (_parse(need[key]), order, event_class)
        for order, (key, event_class) in enumerate(_NEED_EVENTS)
        if need[key] is not None and _parse(need[key]) < period_end
    )
    return need_status(event_class for _, _, event_class in happened)


def _capacity(view: ReadableViews, start: date, end: date, period_end: datetime) -> dict[str, Any]:
    needs = sorted(
        (n for n in view.all(NEED) if _in_period(n["recorded_at"], start, end)),
        key=lambda n: (n["recorded_at"], n["id"]),
    )
    by_category: dict[str, Counter[str]] = {c: Counter() for c in CAPACITY_CATEGORIES}
    for need in needs:
        by_category[need["category"]][str(_need_status(need, period_end))] += 1
    offers = [
        (need, offer)
        for need in view.all(NEED)
        for offer in need["offers"]
        if _in_period(offer["at"], start, end)
    ]
    to_match = [
        round((_parse(n["matched_at"]) - _parse(n["recorded_at"])).total_seconds() / 86400, 2)
        for n in view.all(NEED)
        if n["matched_at"] is not None and _in_period(n["matched_at"], start, end)
    ]
    statuses = [str(s) for s in NeedStatus]
    days = _day_counts(view, start, end)
    return {
        "summary": {
            "needs_recorded": len(needs),
            **{
                f"needs_{s}_at_end": sum(by_category[c][s] for c in CAPACITY_CATEGORIES)
                for s in statuses
            },
            "needs_citing_a_notification": sum(1 for n in needs if n["cites_notification"]),
            "responses_asking_assistance": days["responses_asking_assistance"],
            "offers_made": len(offers),
            "offering_states": len({o["state"] for _, o in offers}),
            "needs_with_an_offer": sum(1 for n in needs if n["offers"]),
            "needs_matched_in_period": len(to_match),
            "days_to_match_median": _median(to_match),
            "days_to_match_p90": _p90(to_match),
        },
        "tables": {
            "needs_by_category": _table(
                "Capacity-building needs recorded in the period, by category and status at "
                "its end (R16)",
                ("category", *statuses, "total"),
                [
                    [c, *(by_category[c][s] for s in statuses), sum(by_category[c].values())]
                    for c in CAPACITY_CATEGORIES
                ],
            ),
            "time_to_match": _table(
                "Time from a need's recording to an accepted offer",
                ("time", "needs"),
                _distribution({"needs": to_match}, DAY_BUCKETS),
            ),
        },
    }


# -- outputs ----------------------------------------------------------------------------------

SECTIONS = ("participation", "freshness", "responsiveness", "use", "capacity")


def report_json(report: dict[str, Any]) -> str:
    """Canonical JSON: the same report is always the same bytes."""
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def report_tables(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every table of the report, named ``section-table``, in report order."""
    return {
        f"{section}-{name}".replace("_", "-"): table
        for section in SECTIONS
        for name, table in report[section]["tables"].items()
    }


def table_csv(table: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table["columns"])
    writer.writerows(["" if v is None else v for v in row] for row in table["rows"])
    return buffer.getvalue()


def csv_tables(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every table the report is given as CSV, by name: each table of ``report_tables``,
    then ``summary``, the headline figures (section, figure, value). The CLI writes each as
    ``name.csv``; HTTP serves one by ``?table=name``, so both offer the same tables."""
    tables = dict(report_tables(report))
    tables["summary"] = _table(
        "Headline figures",
        ("section", "figure", "value"),
        [[s, k, v] for s in SECTIONS for k, v in report[s]["summary"].items()],
    )
    return tables


def report_csv(report: dict[str, Any]) -> dict[str, str]:
    """One CSV file per table (``name.csv`` -> content), ``summary.csv`` among them."""
    return {f"{name}.csv": table_csv(t) for name, t in csv_tables(report).items()}
