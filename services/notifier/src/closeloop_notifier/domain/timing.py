"""When a message may go out: retry backoff, the human delay, quiet hours and the recipient's zone.

Pure functions over plain data: randomness comes from an injected `random.Random`, time from the
instant the caller passes in.

- `backoff`: exponential with "equal jitter": the wait for the n-th retry is drawn uniformly from
  [d/2, d], where d = min(cap, first * 2^(n-1)). Half the delay is kept, so a retry never comes
  back almost at once (as "full jitter", uniform in [0, d], allows); the other half is random, so
  the messages that failed together in one outage do not come back together either.
- `human_delay`: a uniform random wait, so an automatic reply reads as written by a person.
- `QuietHours`: a local-time window (it may wrap midnight) in which customers get nothing; a
  message due inside it is deferred to the window's end, never dropped.
- `recipient_zone`: the recipient's time zone from the territory of their locale, when that
  territory has exactly one zone in CLDR (Babel's data); else the caller's default (the tenant's).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.core import Locale, UnknownLocaleError, get_global

# Enough doublings to pass any sensible cap; bounds the float maths for huge attempt counts.
_MAX_DOUBLINGS = 64


def backoff(attempts: int, first: timedelta, cap: timedelta, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failure: uniform in [d/2, d], d = min(cap, first *
    2^(attempts-1)) (see the module docstring). `attempts` below 1 counts as 1."""
    if first <= timedelta(0) or cap <= timedelta(0):
        raise ValueError("first and cap must be positive")
    doublings = min(max(attempts, 1) - 1, _MAX_DOUBLINGS)
    # In float seconds: `first * 2**n` as a timedelta overflows long before n reaches 64.
    ceiling = min(cap.total_seconds(), first.total_seconds() * 2.0**doublings)
    return timedelta(seconds=rng.uniform(ceiling / 2, ceiling))


def human_delay(rng: random.Random, minimum: timedelta, maximum: timedelta) -> timedelta:
    """A random wait in [minimum, maximum] before an automatic reply goes out."""
    if minimum < timedelta(0) or maximum < minimum:
        raise ValueError("need 0 <= minimum <= maximum")
    return timedelta(seconds=rng.uniform(minimum.total_seconds(), maximum.total_seconds()))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local times [start, end) in which nothing is sent; wraps midnight when start > end
    (22:00-08:00), and is empty when start == end."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times, without a time zone")

    def contains(self, local: time) -> bool:
        """Whether the wall-clock time `local` falls in the quiet period."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """`instant` itself when it is outside quiet hours in `zone`, else the first instant
        after it at which the wall clock in `zone` shows a time outside quiet hours (in UTC).

        Correct across DST changes: an end that falls in a spring-forward gap ends the period
        at the jump; an end that occurs twice on a fall-back night ends it at the first
        occurrence after `instant`."""
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        at = instant
        # Twice at most: a jump over the end can land in the next period (a period that wraps
        # all but a few minutes of the day), which then ends at its own end.
        for _ in range(3):
            local = at.astimezone(zone)
            if not self.contains(local.time()):
                return at
            end_day = local.date()
            if self.start > self.end and local.time() >= self.start:
                end_day += timedelta(days=1)  # the evening part of a period that wraps midnight
            at = _first_instant_at_or_after(end_day, self.end, zone, after=at)
        return at


def _first_instant_at_or_after(
    day: date, wall: time, zone: ZoneInfo, *, after: datetime
) -> datetime:
    """The first instant later than `after` whose wall-clock time in `zone` is at or past
    `day` `wall`, in UTC."""
    target = datetime.combine(day, wall)
    earlier = target.replace(tzinfo=zone).astimezone(UTC)  # fold=0
    later = target.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if earlier > later:
        # A spring-forward gap: `wall` never shows on the clock that day. `later` (the
        # post-transition offset) is still before the jump and `earlier` after it; the
        # period ends at the jump, found by bisection to the second.
        before, past = later, earlier
        while past - before > timedelta(seconds=1):
            middle = before + timedelta(seconds=(past - before).total_seconds() // 2)
            if middle.astimezone(zone).replace(tzinfo=None) >= target:
                past = middle
            else:
                before = middle
        return past
    # Once or twice (a fall-back night repeats an hour): the first occurrence after `after`.
    for candidate in (earlier, later):
        if candidate > after:
            return candidate
    return later


def recipient_zone(locale: str | None, default: str) -> ZoneInfo:
    """The zone of `locale`'s territory (`pl-PL` -> Europe/Warsaw) when CLDR knows exactly one
    zone for it; else `default` (`en-US`, a locale without a territory, or one not understood)."""
    if locale:
        try:
            territory = Locale.parse(locale.replace("-", "_")).territory
        except (ValueError, TypeError, UnknownLocaleError):
            territory = None
        if territory:
            zones: list[str] = get_global("territory_zones").get(territory, [])
            if len(zones) == 1:
                return ZoneInfo(zones[0])
    return ZoneInfo(default)
