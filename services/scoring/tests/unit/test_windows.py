"""Windows in a time zone: local midnights, daylight saving, calendar months and quarters,
trend buckets."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_scoring.domain.windows import (
    Granularity,
    Period,
    WindowName,
    between,
    buckets,
    calendar_month,
    calendar_quarter,
    local_day,
    local_days,
    month_of,
    quarter_of,
    resolve,
    rolling,
    truncate,
)

WARSAW = ZoneInfo("Europe/Warsaw")


def test_rolling_days_end_at_tonight_s_local_midnight() -> None:
    # 23:30 UTC on 2 November is 00:30 on 3 November in Warsaw (UTC+1): "today" is the 3rd.
    now = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
    week = rolling(7, now=now, tz=WARSAW)
    assert week.start == datetime(2026, 10, 27, 23, 0, tzinfo=UTC)
    assert week.end == datetime(2026, 11, 3, 23, 0, tzinfo=UTC)


def test_a_window_across_a_daylight_saving_change_keeps_local_midnights() -> None:
    march = calendar_month(2026, 3, WARSAW)
    assert march.start == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)  # UTC+1
    assert march.end == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # UTC+2 after the 29th
    days = buckets(march, "day", WARSAW)
    assert len(days) == 31
    lengths = {d.start.astimezone(WARSAW).day: d.end - d.start for d in days}
    assert lengths[29] == timedelta(hours=23)
    assert lengths[28] == timedelta(hours=24)
    october = buckets(calendar_month(2026, 10, WARSAW), "day", WARSAW)
    assert [d.end - d.start for d in october][24] == timedelta(hours=25)


def test_calendar_quarters_and_the_ones_holding_an_instant() -> None:
    q4 = calendar_quarter(2026, 4, WARSAW)
    assert (q4.start.astimezone(WARSAW).date(), q4.end.astimezone(WARSAW).date()) == (
        date(2026, 10, 1),
        date(2027, 1, 1),
    )
    new_year_in_warsaw = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert quarter_of(new_year_in_warsaw, WARSAW) == calendar_quarter(2027, 1, WARSAW)
    assert month_of(new_year_in_warsaw, WARSAW) == calendar_month(2027, 1, WARSAW)
    with pytest.raises(ValueError, match="quarter"):
        calendar_quarter(2026, 5, WARSAW)


def test_weeks_start_on_monday_and_the_ends_are_clipped() -> None:
    period = between(date(2026, 11, 4), date(2026, 11, 20), WARSAW)  # a Wednesday to a Friday
    weeks = buckets(period, "week", WARSAW)
    local = [(w.start.astimezone(WARSAW).date(), w.end.astimezone(WARSAW).date()) for w in weeks]
    assert local == [
        (date(2026, 11, 4), date(2026, 11, 9)),
        (date(2026, 11, 9), date(2026, 11, 16)),
        (date(2026, 11, 16), date(2026, 11, 20)),
    ]
    months = buckets(between(date(2026, 1, 15), date(2026, 4, 1), WARSAW), "month", WARSAW)
    assert len(months) == 3


def test_a_window_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="after"):
        between(date(2026, 5, 2), date(2026, 5, 2), WARSAW)
    with pytest.raises(ValueError, match="one day"):
        rolling(0, now=datetime.now(UTC), tz=WARSAW)


@given(
    st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    st.integers(1, 400),
    st.sampled_from(["day", "week", "month"]),
    st.sampled_from(["Europe/Warsaw", "UTC", "America/New_York", "Asia/Kolkata"]),
)
def test_buckets_tile_their_window_without_gap_or_overlap(
    first: date, length: int, granularity: str, zone: str
) -> None:
    tz = ZoneInfo(zone)
    period = between(first, first + timedelta(days=length), tz)
    found = buckets(period, granularity, tz)  # type: ignore[arg-type]
    assert found[0].start == period.start
    assert found[-1].end == period.end
    assert all(a.end == b.start for a, b in itertools.pairwise(found))


# --- resolve: every way of naming a window ----------------------------------------------------

# Wednesday 15 April 2026, 12:00 in Warsaw (UTC+2 since the change on 29 March).
NOW = datetime(2026, 4, 15, 10, 0, tzinfo=UTC)


def local(period: Period | None, tz: ZoneInfo = WARSAW) -> tuple[date, date] | None:
    return None if period is None else local_days(period, tz)


@pytest.mark.parametrize(
    ("name", "first", "end"),
    [
        ("7d", date(2026, 4, 9), date(2026, 4, 16)),
        ("30d", date(2026, 3, 17), date(2026, 4, 16)),
        ("90d", date(2026, 1, 16), date(2026, 4, 16)),
        ("month", date(2026, 4, 1), date(2026, 5, 1)),
        ("quarter", date(2026, 4, 1), date(2026, 7, 1)),
        ("previous-month", date(2026, 3, 1), date(2026, 4, 1)),
        ("previous-quarter", date(2026, 1, 1), date(2026, 4, 1)),
    ],
)
def test_each_named_window_is_its_local_days(name: WindowName, first: date, end: date) -> None:
    period = resolve(name, now=NOW, tz=WARSAW)
    assert local(period) == (first, end)
    assert period is not None
    assert period.start == datetime.combine(first, datetime.min.time(), WARSAW).astimezone(UTC)


def test_all_time_and_no_window_at_all_are_unbounded() -> None:
    assert resolve("all", now=NOW, tz=WARSAW) is None
    assert resolve(None, now=NOW, tz=WARSAW) is None
    # One side of from/to alone is left to the caller (an open range of days).
    assert resolve(None, first=date(2026, 4, 1), now=NOW, tz=WARSAW) is None
    assert resolve(None, end=date(2026, 4, 1), now=NOW, tz=WARSAW) is None


def test_days_months_quarters_and_from_to_given_explicitly() -> None:
    assert local(resolve(None, days=1, now=NOW, tz=WARSAW)) == (
        date(2026, 4, 15),
        date(2026, 4, 16),
    )
    assert local(resolve(None, days=8, now=NOW, tz=WARSAW)) == (date(2026, 4, 8), date(2026, 4, 16))
    assert local(resolve(None, month=(2026, 12), now=NOW, tz=WARSAW)) == (
        date(2026, 12, 1),
        date(2027, 1, 1),
    )
    assert local(resolve(None, quarter=(2025, 4), now=NOW, tz=WARSAW)) == (
        date(2025, 10, 1),
        date(2026, 1, 1),
    )
    found = resolve(None, first=date(2026, 3, 28), end=date(2026, 3, 30), now=NOW, tz=WARSAW)
    assert local(found) == (date(2026, 3, 28), date(2026, 3, 30))
    assert found is not None
    assert found.end - found.start == timedelta(hours=47)  # 29 March lasts 23 hours


def test_the_previous_month_and_quarter_across_a_year_boundary() -> None:
    january = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    assert local(resolve("previous-month", now=january, tz=WARSAW)) == (
        date(2025, 12, 1),
        date(2026, 1, 1),
    )
    assert local(resolve("previous-quarter", now=january, tz=WARSAW)) == (
        date(2025, 10, 1),
        date(2026, 1, 1),
    )
    # 23:30 UTC on 31 December is already 1 January in Warsaw: December is the previous month.
    new_year = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert local(resolve("month", now=new_year, tz=WARSAW)) == (date(2026, 1, 1), date(2026, 2, 1))
    assert local(resolve("previous-month", now=new_year, tz=WARSAW)) == (
        date(2025, 12, 1),
        date(2026, 1, 1),
    )
    # ... and in UTC it is still December, whose previous month is November.
    utc = ZoneInfo("UTC")
    assert local(resolve("previous-month", now=new_year, tz=utc), utc) == (
        date(2025, 11, 1),
        date(2025, 12, 1),
    )


def test_windows_in_warsaw_follow_its_daylight_saving_changes() -> None:
    # 23:30 UTC on 31 March is 01:30 on 1 April in Warsaw (UTC+2): today is the 1st.
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert local_day(late, WARSAW) == date(2026, 4, 1)
    assert local(resolve("month", now=late, tz=WARSAW)) == (date(2026, 4, 1), date(2026, 5, 1))
    assert local(resolve("previous-month", now=late, tz=WARSAW)) == (
        date(2026, 3, 1),
        date(2026, 4, 1),
    )
    week = resolve("7d", now=late, tz=WARSAW)
    assert week == Period(
        datetime(2026, 3, 25, 23, 0, tzinfo=UTC),  # midnight of the 26th, still UTC+1
        datetime(2026, 4, 1, 22, 0, tzinfo=UTC),  # midnight of the 2nd, UTC+2
    )
    assert week.end - week.start == timedelta(days=7, hours=-1)
    october = resolve(None, month=(2026, 10), now=late, tz=WARSAW)
    assert october == Period(
        datetime(2026, 9, 30, 22, 0, tzinfo=UTC), datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    )


def test_a_window_that_cannot_be_is_refused() -> None:
    with pytest.raises(ValueError, match="one day"):
        resolve(None, days=0, now=NOW, tz=WARSAW)
    with pytest.raises(ValueError, match="quarter"):
        resolve(None, quarter=(2026, 5), now=NOW, tz=WARSAW)
    with pytest.raises(ValueError, match="month"):
        resolve(None, month=(2026, 13), now=NOW, tz=WARSAW)
    with pytest.raises(ValueError, match="after"):
        resolve(None, first=date(2026, 4, 2), end=date(2026, 4, 1), now=NOW, tz=WARSAW)


# --- truncate: the bucket a day is counted in --------------------------------------------------


@pytest.mark.parametrize(
    ("day", "granularity", "first"),
    [
        (date(2026, 4, 15), "day", date(2026, 4, 15)),
        (date(2026, 4, 15), "week", date(2026, 4, 13)),  # a Wednesday: that week's Monday
        (date(2026, 4, 13), "week", date(2026, 4, 13)),  # a Monday is its own week's start
        (date(2026, 4, 19), "week", date(2026, 4, 13)),  # a Sunday ends that week
        (date(2027, 1, 1), "week", date(2026, 12, 28)),  # a week across the new year
        (date(2026, 4, 15), "month", date(2026, 4, 1)),
        (date(2026, 12, 31), "month", date(2026, 12, 1)),
    ],
)
def test_a_day_truncates_to_its_bucket_s_first_day(
    day: date, granularity: Granularity, first: date
) -> None:
    assert truncate(day, granularity) == first


@given(
    st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    st.integers(1, 200),
    st.sampled_from(["day", "week", "month"]),
)
def test_every_day_of_a_bucket_truncates_to_the_same_day_as_its_first(
    first: date, length: int, granularity: Granularity
) -> None:
    """The trend reads a bucket's counts by the truncated first day of the bucket (clipped to the
    window), and the database groups days by their truncated day: the two must meet."""
    period = between(first, first + timedelta(days=length), WARSAW)
    seen: set[date] = set()
    for bucket in buckets(period, granularity, WARSAW):
        start, end = local_days(bucket, WARSAW)
        key = truncate(start, granularity)
        assert key not in seen
        seen.add(key)
        day = start
        while day < end:
            assert truncate(day, granularity) == key
            day += timedelta(days=1)
