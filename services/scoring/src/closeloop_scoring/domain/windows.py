"""Windows of time an NPS is computed over, in a tenant's time zone. Pure.

Every window is a half-open range of instants [start, end) whose bounds are local midnights in the
time zone, so "March" or "the last 7 days" mean what a manager in Warsaw means, across daylight
saving changes (a local day lasts 23 or 25 hours twice a year). Kinds:
- rolling N days: the N local days up to and including today;
- a calendar month or quarter (the one holding an instant, or a given one);
- any [from, to) of local dates;
and trend buckets of a window by day, ISO week (Monday first) or month, clipped to the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Granularity = Literal["day", "week", "month"]
MAX_BUCKETS = 1000


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end): local midnights as UTC instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period's bounds are aware datetimes")
        if self.end <= self.start:
            raise ValueError("a period ends after it starts")


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant a local day starts, in UTC: Python subtracts and compares two datetimes of
    the same zone by their wall clocks, which is wrong across a daylight saving change."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    if instant.tzinfo is None:
        raise ValueError("an instant is an aware datetime")
    return instant.astimezone(tz).date()


def between(first: date, end: date, tz: ZoneInfo) -> Period:
    """The local days from `first` up to, not including, `end`."""
    if end <= first:
        raise ValueError(f"`to` ({end}) must be after `from` ({first})")
    return Period(midnight(first, tz), midnight(end, tz))


def rolling(days: int, *, now: datetime, tz: ZoneInfo) -> Period:
    """The last `days` local days, today included."""
    if days < 1:
        raise ValueError("a rolling window is at least one day")
    today = local_day(now, tz)
    return between(today - timedelta(days=days - 1), today + timedelta(days=1), tz)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def calendar_month(year: int, month: int, tz: ZoneInfo) -> Period:
    first = date(year, month, 1)
    return between(first, _next_month(first), tz)


def calendar_quarter(year: int, quarter: int, tz: ZoneInfo) -> Period:
    if not 1 <= quarter <= 4:
        raise ValueError(f"a quarter is 1..4, got {quarter}")
    first = date(year, 3 * quarter - 2, 1)
    return between(first, _next_month(_next_month(_next_month(first))), tz)


def month_of(instant: datetime, tz: ZoneInfo) -> Period:
    day = local_day(instant, tz)
    return calendar_month(day.year, day.month, tz)


def quarter_of(instant: datetime, tz: ZoneInfo) -> Period:
    day = local_day(instant, tz)
    return calendar_quarter(day.year, (day.month - 1) // 3 + 1, tz)


def buckets(period: Period, granularity: Granularity, tz: ZoneInfo) -> list[Period]:
    """The trend buckets of `period`: whole local days, ISO weeks or months, the first and last
    clipped to the period."""
    first = local_day(period.start, tz)
    last = local_day(period.end - timedelta(microseconds=1), tz)
    found: list[Period] = []
    day = first
    while day <= last:
        if granularity == "day":
            following = day + timedelta(days=1)
        elif granularity == "week":
            following = day + timedelta(days=7 - day.weekday())
        else:
            following = _next_month(day)
        start, end = max(midnight(day, tz), period.start), min(midnight(following, tz), period.end)
        found.append(Period(start, end))
        if len(found) > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} buckets: choose a coarser granularity")
        day = following
    return found


WindowName = Literal[
    "7d", "30d", "90d", "month", "quarter", "previous-month", "previous-quarter", "all"
]
_ROLLING = {"7d": 7, "30d": 30, "90d": 90}


def local_days(period: Period, tz: ZoneInfo) -> tuple[date, date]:
    """The local days [first, end) of a period whose bounds are local midnights."""
    return local_day(period.start, tz), local_day(period.end, tz)


def resolve(
    name: WindowName | None,
    *,
    days: int | None = None,
    month: tuple[int, int] | None = None,
    quarter: tuple[int, int] | None = None,
    first: date | None = None,
    end: date | None = None,
    now: datetime,
    tz: ZoneInfo,
) -> Period | None:
    """The period one way of naming a window gives; None for all time, and for `first`/`end`
    with a side left open (the caller keeps those as open bounds of local days)."""
    if name in _ROLLING:
        return rolling(_ROLLING[name], now=now, tz=tz)
    if name == "month":
        return month_of(now, tz)
    if name == "quarter":
        return quarter_of(now, tz)
    if name == "previous-month":
        return month_of(month_of(now, tz).start - timedelta(days=1), tz)
    if name == "previous-quarter":
        return quarter_of(quarter_of(now, tz).start - timedelta(days=1), tz)
    if days is not None:
        return rolling(days, now=now, tz=tz)
    if month is not None:
        return calendar_month(*month, tz)
    if quarter is not None:
        return calendar_quarter(*quarter, tz)
    if first is not None and end is not None:
        return between(first, end, tz)
    return None


def truncate(day: date, granularity: Granularity) -> date:
    """The first day of the day's bucket: itself, its ISO week's Monday, or its month's first."""
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)
