"""Freshness of an entry (R5, docs/domain.md#r5): the one place where it is judged.

R5: States update their contact information at least once a year, and notify any change no
later than 30 days after it occurred. The directory view, ``pocdir pending`` / ``GET /pending``,
the review view and the review report all call these functions; none restates a rule or a
constant of R5. Everything here is pure and works on dates, so a view, a query and a report
judge a State the same way.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

#: R5: a change is notified no later than this many days after it occurred.
LATE_NOTICE_DAYS = 30
#: An entry is shown as *due* from this many days before its next due date (pocdir's choice,
#: so that a State hears of its deadline in time to meet it).
DUE_WINDOW_DAYS = 30


class Freshness(StrEnum):
    """Where an entry stands against its annual update (R5)."""

    CURRENT = "current"
    DUE = "due"
    OVERDUE = "overdue"


def add_year(day: date) -> date:
    """The same day a year later (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


def next_due_on(last_update_on: date) -> date:
    """R5: the next update or confirmation is due one year after the last one."""
    return add_year(last_update_on)


def days_overdue(last_update_on: date, today: date) -> int:
    """Days past the due date on ``today`` (0 while the entry is not overdue)."""
    return max((today - next_due_on(last_update_on)).days, 0)


def freshness(last_update_on: date, today: date) -> Freshness:
    """R5 on ``today`` for an entry last updated or confirmed on ``last_update_on``: overdue
    after its due date, due within ``DUE_WINDOW_DAYS`` of it, current before that."""
    due = next_due_on(last_update_on)
    if today > due:
        return Freshness.OVERDUE
    if (due - today).days <= DUE_WINDOW_DAYS:
        return Freshness.DUE
    return Freshness.CURRENT


def confirmed_on_time(previous_update_on: date | None, confirmed_on: date) -> bool:
    """An annual confirmation is on time unless the entry was already overdue that day (a
    first confirmation, with no update before it, is on time)."""
    return previous_update_on is None or confirmed_on <= next_due_on(previous_update_on)


def notice_delay_days(effective_on: date, reported_at: datetime | date) -> int:
    """Days from the day a change occurred to the day it was reported."""
    reported_on = reported_at.date() if isinstance(reported_at, datetime) else reported_at
    return (reported_on - effective_on).days


def late_notice_delay(effective_on: date, reported_at: datetime | date) -> int | None:
    """R5: the delay in days of a change notified more than ``LATE_NOTICE_DAYS`` after it
    occurred, or None for a change notified in time."""
    delay = notice_delay_days(effective_on, reported_at)
    return delay if delay > LATE_NOTICE_DAYS else None
