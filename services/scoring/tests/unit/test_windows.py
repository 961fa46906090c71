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
    between,
    buckets,
    calendar_month,
    calendar_quarter,
    month_of,
    quarter_of,
    rolling,
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
