"""Business-time deadlines: worked examples in Warsaw (weekends, a holiday, both daylight saving
changes) and properties that hold for any calendar, start and duration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_orchestrator.domain.business_time import (
    BusinessCalendar,
    DaysOff,
    Hours,
    WallTime,
    calendar_of,
    warning_at,
)

WARSAW = ZoneInfo("Europe/Warsaw")
OFFICE = calendar_of(
    time_zone="Europe/Warsaw",
    hours={d: ["08:00-16:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    days_off=DaysOff(country="PL"),
)
H = timedelta(hours=1)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW)


def test_six_business_hours_from_friday_afternoon_end_on_monday() -> None:
    # Friday 20 November 2026, 15:00 in Warsaw: one hour on Friday, five on Monday.
    due = OFFICE.add(local(2026, 11, 20, 15, 0), 6 * H)
    assert due == local(2026, 11, 23, 13, 0)
    assert due.tzinfo == UTC


def test_a_start_outside_working_hours_waits_for_the_next_morning() -> None:
    assert OFFICE.add(local(2026, 11, 24, 19, 30), 2 * H) == local(2026, 11, 25, 10, 0)
    assert OFFICE.add(local(2026, 11, 24, 6, 0), 2 * H) == local(2026, 11, 24, 10, 0)


def test_a_public_holiday_is_skipped() -> None:
    # Wednesday 11 November 2026 is Independence Day in Poland.
    assert OFFICE.add(local(2026, 11, 10, 15, 0), 2 * H) == local(2026, 11, 12, 9, 0)
    assert date(2026, 11, 11) in OFFICE.days_off
    assert date(2026, 11, 12) not in OFFICE.days_off


def test_a_team_day_off_is_skipped_too() -> None:
    calendar = calendar_of(
        time_zone="Europe/Warsaw",
        hours={"mon": ["08:00-16:00"], "tue": ["08:00-16:00"]},
        days_off=DaysOff(extra=frozenset({date(2026, 11, 24)})),
    )
    # Monday 16:00 + 1 h: Tuesday is off, Wednesday to Sunday have no hours: next Monday 9:00.
    assert calendar.add(local(2026, 11, 23, 16, 0), H) == local(2026, 11, 30, 9, 0)


def test_working_days_across_the_daylight_saving_changes_last_their_hours() -> None:
    # Clocks go forward on Sunday 29 March 2026 and back on Sunday 25 October 2026.
    assert OFFICE.add(local(2026, 3, 27, 15, 0), 3 * H) == local(2026, 3, 30, 10, 0)
    assert OFFICE.elapsed(local(2026, 3, 27, 8, 0), local(2026, 3, 31, 8, 0)) == 16 * H
    assert OFFICE.add(local(2026, 10, 23, 15, 0), 3 * H) == local(2026, 10, 26, 10, 0)
    assert OFFICE.elapsed(local(2026, 10, 23, 8, 0), local(2026, 10, 27, 8, 0)) == 16 * H


def test_a_day_with_two_intervals_and_a_night_shift_to_midnight() -> None:
    calendar = calendar_of(
        time_zone="UTC",
        hours={"mon": ["08:00-12:00", "13:00-17:00"], "tue": ["20:00-24:00"]},
    )
    monday = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert calendar.add(monday, 2 * H) == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert calendar.add(monday, 7 * H) == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert calendar.add(monday, 11 * H) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_wall_time_counts_every_hour() -> None:
    start = local(2026, 3, 28, 12, 0)
    assert WallTime().add(start, 24 * H) == local(2026, 3, 29, 13, 0)  # the night lost an hour
    assert WallTime().elapsed(start, local(2026, 3, 29, 13, 0)) == 24 * H


def test_the_warning_comes_at_its_share_of_the_deadline() -> None:
    start = local(2026, 11, 20, 15, 0)
    assert warning_at(OFFICE, start, 8 * H, 0.75) == local(2026, 11, 23, 13, 0)
    assert warning_at(WallTime(), start, 48 * H, 0.75) == start + 36 * H
    with pytest.raises(ValueError, match="fraction"):
        warning_at(OFFICE, start, 8 * H, 0)


def test_bad_calendars_are_refused() -> None:
    with pytest.raises(ValueError, match="working hours on some day"):
        calendar_of(time_zone="UTC", hours={})
    with pytest.raises(ValueError, match="unknown weekdays"):
        calendar_of(time_zone="UTC", hours={"monday": ["08:00-16:00"]})
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        Hours.parse("8-16")
    with pytest.raises(ValueError, match="end after they start"):
        Hours.parse("16:00-08:00")
    with pytest.raises(ValueError, match="overlap"):
        calendar_of(time_zone="UTC", hours={"mon": ["08:00-12:00", "11:00-13:00"]})
    with pytest.raises(NotImplementedError):
        DaysOff(country="XX")
    with pytest.raises(ValueError, match="aware"):
        OFFICE.add(datetime(2026, 1, 1), H)


calendars = st.builds(
    lambda zone, days, first_hour, length: BusinessCalendar(
        ZoneInfo(zone),
        tuple(
            (Hours.parse(f"{first_hour:02d}:00-{first_hour + length:02d}:00"),) if on else ()
            for on in days
        ),
        DaysOff(country="PL"),
    ),
    st.sampled_from(["Europe/Warsaw", "UTC", "America/New_York", "Asia/Kolkata"]),
    st.lists(st.booleans(), min_size=7, max_size=7).filter(any),
    st.integers(0, 12),
    st.integers(1, 12),
)
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=120))


@given(calendars, instants, durations)
def test_the_time_counted_up_to_a_deadline_is_its_duration(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = calendar.add(start, duration)
    assert due >= start
    assert calendar.elapsed(start, due) == duration


@given(calendars, instants, durations, durations)
def test_a_longer_duration_never_ends_sooner(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    shorter, longer = sorted((a, b))
    assert calendar.add(start, shorter) <= calendar.add(start, longer)


@given(instants, durations)
def test_a_calendar_open_all_week_is_wall_time(start: datetime, duration: timedelta) -> None:
    always = calendar_of(
        time_zone="UTC",
        hours={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    )
    assert always.add(start, duration) == WallTime().add(start, duration)
