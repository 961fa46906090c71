"""Deadlines in business time: only a team's working hours count, in its time zone. Pure.

A team with business hours (say Monday to Friday, 8:00-16:00 in Europe/Warsaw, Polish public
holidays off) gets deadlines that skip nights, weekends and holidays: 6 business hours from Friday
15:00 end on Monday at 13:00. A team without business hours counts wall time (`WallTime`): 48 hours
are 48 hours.

Both kinds answer two questions, on UTC instants (aware datetimes; never compare two local times
of one zone, which Python does by wall clock across a daylight saving change):
- `add(start, duration)`: the instant `duration` of counted time after `start`;
- `elapsed(start, end)`: how much counted time lies between them.
so that `elapsed(start, add(start, d)) == d` for any start and duration (a property test checks
it). A working interval is a local time range of a weekday; on the days the clocks change, its
bounds are converted through the zone, so a Monday 8:00-16:00 lasts 8 hours on either side of the
change (a local time the change skips maps to the instant after it).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Protocol
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar whose working time is further away than this is refused rather than searched for.
MAX_SEARCH_DAYS = 3 * 366
_DAYS_CACHED = 4 * 366  # days a calendar keeps worked out (about 100 bytes each)
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Clockwork(Protocol):
    """How a case's deadlines count time."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("an instant is an aware datetime")
    return instant.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class WallTime:
    """Every hour counts."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        if duration < timedelta(0):
            raise ValueError("a duration is not negative")
        return _utc(start) + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return max(timedelta(0), _utc(end) - _utc(start))


@dataclass(frozen=True, slots=True)
class Hours:
    """One working interval of a day, local time [start, end); `end` may be 24:00 (midnight)."""

    start: time
    end: time | None  # None: the end of the day (24:00)

    def __post_init__(self) -> None:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"working hours end after they start: {self}")

    @classmethod
    def parse(cls, text: str) -> Hours:
        """`"08:00-16:00"` (`"00:00-24:00"` for the whole day)."""
        found = _RANGE.match(text.strip())
        if found is None:
            raise ValueError(f"working hours are HH:MM-HH:MM, got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h2 == 24 and m2 != 0:
            raise ValueError(f"working hours end at 24:00 at the latest, got {text!r}")
        return cls(time(h1, m1), None if h2 == 24 else time(h2, m2))


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday (Monday first), days off, and the zone they are read in."""

    zone: ZoneInfo
    week: tuple[tuple[Hours, ...], ...]
    days_off: Container[date] = field(default_factory=frozenset)
    # Each day's working intervals once worked out: every case opened in a batch asks about the
    # same few days, and a day's intervals cost a holiday lookup and zone conversions.
    _days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a week has seven days of working hours (Monday first)")
        if not any(self.week):
            raise ValueError("a business calendar needs working hours on some day")
        for day in self.week:
            ordered = sorted(day, key=lambda h: h.start)
            for before, after in pairwise(ordered):
                if before.end is None or before.end > after.start:
                    raise ValueError(f"working hours overlap: {before} and {after}")

    def _intervals(self, first: date, days: int) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals as UTC instants, from local day `first` on, in order."""
        for offset in range(days):
            yield from self._working(first + timedelta(days=offset))

    def _working(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The local day's working intervals as UTC instants, in order (none on a day off)."""
        found = self._days.get(day)
        if found is not None:
            return found
        intervals = []
        if day not in self.days_off:
            for hours in sorted(self.week[day.weekday()], key=lambda h: h.start):
                start = datetime.combine(day, hours.start, tzinfo=self.zone)
                if hours.end is None:
                    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=self.zone)
                else:
                    end = datetime.combine(day, hours.end, tzinfo=self.zone)
                intervals.append((start.astimezone(UTC), end.astimezone(UTC)))
        if len(self._days) < _DAYS_CACHED:
            self._days[day] = tuple(intervals)
        return tuple(intervals)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        if duration < timedelta(0):
            raise ValueError("a duration is not negative")
        cursor = _utc(start)
        remaining = duration
        first = cursor.astimezone(self.zone).date() - timedelta(days=1)
        for begin, end in self._intervals(first, MAX_SEARCH_DAYS):
            if end <= cursor:
                continue
            begin = max(begin, cursor)
            if remaining <= end - begin:
                return begin + remaining
            remaining -= end - begin
            cursor = end
        raise ValueError(f"no working time within {MAX_SEARCH_DAYS} days of {start.isoformat()}")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        begin, finish = _utc(start), _utc(end)
        if finish <= begin:
            return timedelta(0)
        first = begin.astimezone(self.zone).date() - timedelta(days=1)
        days = (finish.astimezone(self.zone).date() - first).days + 2
        total = timedelta(0)
        for low, high in self._intervals(first, days):
            overlap = min(high, finish) - max(low, begin)
            if overlap > timedelta(0):
                total += overlap
        return total


def calendar_of(
    *,
    time_zone: str,
    hours: Mapping[str, Sequence[str]],
    days_off: Container[date] = frozenset(),
) -> BusinessCalendar:
    """A calendar from configuration: `{"mon": ["08:00-16:00"], ...}` (a missing day is off)."""
    unknown = set(hours) - set(WEEKDAYS)
    if unknown:
        raise ValueError(f"unknown weekdays {sorted(unknown)}: use {', '.join(WEEKDAYS)}")
    week = tuple(tuple(Hours.parse(text) for text in hours.get(day, ())) for day in WEEKDAYS)
    return BusinessCalendar(ZoneInfo(time_zone), week, days_off)


def warning_at(clock: Clockwork, start: datetime, duration: timedelta, fraction: float) -> datetime:
    """When a deadline of `duration` from `start` is `fraction` used up (0 < fraction <= 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a warning fraction is in (0, 1], got {fraction}")
    return clock.add(start, duration * fraction)


@dataclass(frozen=True)
class DaysOff:
    """A country's public holidays (the maintained `holidays` package, any year on demand)
    and a team's own days off."""

    country: str | None = None
    subdivision: str | None = None
    extra: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if self.country is not None:
            holidays.country_holidays(self.country, subdiv=self.subdivision)  # unknown: raises

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        if day in self.extra:
            return True
        return self.country is not None and day in _public_holidays(
            self.country, self.subdivision, day.year
        )


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))
