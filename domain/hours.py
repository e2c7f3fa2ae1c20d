"""A contact's hours (R3): when, in its own time zone, a person answers on its channels.

A contact's ``hours`` are ``24/7`` or ``[days ]HH:MM-HH:MM`` in local time, the days a list of
days or ranges (``Mon-Fri``, ``Sun-Thu``, ``Mon,Wed,Fri``), all days when none are given
(``domain.values.Contact`` validates the form). An end before the start runs past midnight
(``22:00-06:00``); ``24:00`` is the end of the day.

Decided here only: whom an urgent escalation reaches now (``covers``) and when a check's
challenge may be sent (``next_opening``) both ask this module, so that no time zone is always
woken at night.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from domain.errors import ValidationError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALWAYS = "24/7"
_FORM = re.compile(r"^(?:(?P<days>[A-Za-z,-]+) )?(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$")


@dataclass(frozen=True)
class Hours:
    """Parsed hours: the weekdays (0 = Monday) on which a shift starts, and its start and
    length in minutes (a shift may run past midnight into the next day)."""

    days: frozenset[int]
    start: int
    length: int

    @property
    def always(self) -> bool:
        return self.length >= 24 * 60 and len(self.days) == 7


@cache
def parse_hours(hours: str) -> Hours:
    """``hours`` in the form the module docstring gives; ``ValidationError`` otherwise."""
    if hours == ALWAYS:
        return Hours(frozenset(range(7)), 0, 24 * 60)
    match = _FORM.match(hours)
    if match is None:
        raise ValidationError("hours must be '24/7' or like 'Mon-Fri 08:00-18:00' (local time)")
    start, end = _minutes(match["start"]), _minutes(match["end"])
    length = end - start if end > start else end + 24 * 60 - start
    days = _days(match["days"]) if match["days"] else frozenset(range(7))
    return Hours(days, start, length)


def _minutes(hhmm: str) -> int:
    h, m = int(hhmm[:2]), int(hhmm[3:])
    if h > 24 or m > 59 or (h == 24 and m):
        raise ValidationError(f"hours: {hhmm} is not a time of day")
    return h * 60 + m


def _days(spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValidationError(f"hours: {part[:10]!r} is not a day or range like Mon-Fri")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        days.update((a + i) % 7 for i in range(((b - a) % 7) + 1))
    return frozenset(days)


def covers(hours: str, time_zone: str, at: datetime) -> bool:
    """Whether ``at`` (aware) lies within ``hours`` in ``time_zone``."""
    parsed = parse_hours(hours)
    if parsed.always:
        return True
    local = at.astimezone(ZoneInfo(time_zone))
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if today in parsed.days and parsed.start <= minute < parsed.start + parsed.length:
        return True
    # A shift that started yesterday and runs past midnight.
    overflow = parsed.start + parsed.length - 24 * 60
    return overflow > 0 and yesterday in parsed.days and minute < overflow


def next_opening(hours: str, time_zone: str, at: datetime) -> datetime:
    """``at`` if it lies within ``hours``, else the next start of a shift (aware, in UTC's
    offset of ``at``). Local times that a clock change skips are taken as the zone gives them."""
    if covers(hours, time_zone, at):
        return at
    parsed = parse_hours(hours)
    zone = ZoneInfo(time_zone)
    local = at.astimezone(zone)
    for offset in range(8):
        day = (local + timedelta(days=offset)).date()
        if day.weekday() not in parsed.days:
            continue
        start = datetime.combine(
            day, time(parsed.start // 60, parsed.start % 60), tzinfo=zone
        ).astimezone(at.tzinfo)
        if start > at:
            return start
    raise ValidationError(f"hours {hours[:40]!r} name no day")  # unreachable for valid hours
