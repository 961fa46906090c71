"""When a message may go out: backoff with jitter, the human delay, quiet hours across DST, and
the recipient's zone from their locale."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_notifier.domain.timing import QuietHours, backoff, human_delay, recipient_zone

WARSAW = ZoneInfo("Europe/Warsaw")
FIRST = timedelta(seconds=30)
CAP = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [
        (1, timedelta(seconds=15), timedelta(seconds=30)),
        (2, timedelta(seconds=30), timedelta(seconds=60)),
        (4, timedelta(seconds=120), timedelta(seconds=240)),
        (8, CAP / 2, CAP),  # 30 s * 2^7 = 64 min: capped
    ],
)
def test_backoff_doubles_per_attempt_and_keeps_half_of_the_delay(
    attempts: int, low: timedelta, high: timedelta
) -> None:
    rng = random.Random(7)
    waits = [backoff(attempts, FIRST, CAP, rng) for _ in range(200)]
    assert all(low <= w <= high for w in waits)


def test_backoff_is_jittered_so_messages_failed_together_do_not_return_together() -> None:
    rng = random.Random(1)
    waits = {backoff(3, FIRST, CAP, rng) for _ in range(50)}
    assert len(waits) > 40


@given(
    attempts=st.integers(min_value=-10, max_value=10**12),
    first_s=st.floats(min_value=0.001, max_value=86_400),
    cap_s=st.floats(min_value=0.001, max_value=86_400 * 30),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_bounded_by_the_cap_for_any_attempt_count(
    attempts: int, first_s: float, cap_s: float, seed: int
) -> None:
    first, cap = timedelta(seconds=first_s), timedelta(seconds=cap_s)
    wait = backoff(attempts, first, cap, random.Random(seed))
    tolerance = timedelta(microseconds=1)  # timedelta rounds to microseconds
    assert wait <= cap + tolerance
    assert wait >= min(first, cap) / 2 - tolerance


def test_backoff_refuses_a_non_positive_base_or_cap() -> None:
    with pytest.raises(ValueError, match="positive"):
        backoff(1, timedelta(0), CAP, random.Random())
    with pytest.raises(ValueError, match="positive"):
        backoff(1, FIRST, timedelta(0), random.Random())


# -- human delay -------------------------------------------------------------------------------


def test_human_delay_stays_between_its_bounds_and_varies() -> None:
    rng = random.Random(3)
    low, high = timedelta(minutes=5), timedelta(minutes=30)
    delays = [human_delay(rng, low, high) for _ in range(500)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > timedelta(minutes=20)


def test_human_delay_with_equal_bounds_is_that_delay() -> None:
    assert human_delay(random.Random(), timedelta(minutes=5), timedelta(minutes=5)) == timedelta(
        minutes=5
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [(timedelta(minutes=10), timedelta(minutes=5)), (timedelta(seconds=-1), timedelta(0))],
)
def test_human_delay_refuses_bounds_out_of_order_or_negative(
    low: timedelta, high: timedelta
) -> None:
    with pytest.raises(ValueError, match="minimum"):
        human_delay(random.Random(), low, high)


# -- quiet hours -------------------------------------------------------------------------------

NIGHT = QuietHours(time(21), time(8))


@pytest.mark.parametrize(
    ("quiet", "local", "inside"),
    [
        (NIGHT, time(20, 59), False),
        (NIGHT, time(21), True),
        (NIGHT, time(0), True),
        (NIGHT, time(7, 59), True),
        (NIGHT, time(8), False),
        (QuietHours(time(13), time(15)), time(14), True),
        (QuietHours(time(13), time(15)), time(15), False),
        (QuietHours(time(13), time(15)), time(12, 59), False),
        (QuietHours(time(9), time(9)), time(9), False),  # empty
    ],
)
def test_quiet_hours_contain_their_start_but_not_their_end(
    quiet: QuietHours, local: time, inside: bool
) -> None:
    assert quiet.contains(local) is inside


def test_instant_outside_quiet_hours_is_allowed_as_it_is() -> None:
    noon = utc(2026, 6, 10, 10)  # 12:00 in Warsaw (CEST)
    assert NIGHT.next_allowed(noon, WARSAW) is noon


def test_evening_in_quiet_hours_is_deferred_to_the_next_local_morning() -> None:
    evening = utc(2026, 6, 10, 20)  # 22:00 CEST
    assert NIGHT.next_allowed(evening, WARSAW) == utc(2026, 6, 11, 6)  # 08:00 CEST


def test_early_morning_in_quiet_hours_is_deferred_to_the_same_local_morning() -> None:
    early = utc(2026, 1, 15, 1)  # 02:00 CET
    assert NIGHT.next_allowed(early, WARSAW) == utc(2026, 1, 15, 7)  # 08:00 CET


def test_utc_evening_that_is_already_the_next_local_day_uses_the_local_date() -> None:
    # 23:30 UTC on 31 Dec is 00:30 CET on 1 Jan: quiet hours end on 1 Jan, not on 2 Jan.
    assert NIGHT.next_allowed(utc(2026, 12, 31, 23, 30), WARSAW) == utc(2027, 1, 1, 7)


def test_quiet_hours_across_the_spring_forward_night_end_at_the_new_offset() -> None:
    # Warsaw, 29 March 2026: 02:00 CET jumps to 03:00 CEST. 08:00 that morning is 06:00 UTC.
    evening = utc(2026, 3, 28, 22)  # 23:00 CET
    assert NIGHT.next_allowed(evening, WARSAW) == utc(2026, 3, 29, 6)


def test_quiet_hours_ending_inside_the_spring_forward_gap_end_at_the_jump() -> None:
    # 02:30 does not exist on 29 March 2026 in Warsaw; the clock shows 03:00 CEST at 01:00 UTC.
    quiet = QuietHours(time(22), time(2, 30))
    assert quiet.next_allowed(utc(2026, 3, 28, 22), WARSAW) == utc(2026, 3, 29, 1)


def test_quiet_hours_across_the_fall_back_night_end_at_the_old_offset() -> None:
    # Warsaw, 25 October 2026: 03:00 CEST goes back to 02:00 CET. 08:00 CET is 07:00 UTC.
    evening = utc(2026, 10, 24, 21)  # 23:00 CEST
    assert NIGHT.next_allowed(evening, WARSAW) == utc(2026, 10, 25, 7)


def test_quiet_hours_ending_in_the_repeated_hour_end_at_its_first_occurrence() -> None:
    quiet = QuietHours(time(22), time(2, 30))
    # 02:30 CEST (00:30 UTC) comes first; 02:30 CET (01:30 UTC) an hour later.
    assert quiet.next_allowed(utc(2026, 10, 24, 21), WARSAW) == utc(2026, 10, 25, 0, 30)
    # Once the clock went back, 02:10 CET is quiet again until 02:30 CET.
    assert quiet.next_allowed(utc(2026, 10, 25, 1, 10), WARSAW) == utc(2026, 10, 25, 1, 30)


def test_quiet_hours_need_an_aware_instant_and_wall_clock_bounds() -> None:
    with pytest.raises(ValueError, match="aware"):
        NIGHT.next_allowed(datetime(2026, 1, 1, 1), WARSAW)
    with pytest.raises(ValueError, match="wall-clock"):
        QuietHours(time(21, tzinfo=UTC), time(8))


ZONES = [
    WARSAW,
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    ZoneInfo("Pacific/Chatham"),  # UTC+12:45 / +13:45
    ZoneInfo("UTC"),
]
minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1).map(
    lambda m: time(m // 60, m % 60)
)


# Days around the DST changes of these zones in 2026, and an ordinary one.
AROUND = [
    utc(2026, 3, 29, 1),  # Warsaw, spring forward
    utc(2026, 10, 25, 1),  # Warsaw, fall back
    utc(2026, 3, 8, 7),  # New York, spring forward
    utc(2026, 11, 1, 6),  # New York, fall back
    utc(2026, 4, 4, 15),  # Lord Howe, back 30 minutes
    utc(2026, 10, 3, 15, 30),  # Lord Howe, forward 30 minutes
    utc(2026, 4, 4, 14),  # Chatham, back
    utc(2026, 9, 26, 14),  # Chatham, forward
    utc(2026, 7, 1),
]


@given(
    start=minutes_of_day,
    end=minutes_of_day,
    around=st.sampled_from(AROUND),
    minute=st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60),
    zone=st.sampled_from(ZONES),
)
def test_next_allowed_is_the_first_instant_outside_quiet_hours(
    start: time, end: time, around: datetime, minute: int, zone: ZoneInfo
) -> None:
    quiet = QuietHours(start, end)
    instant = around + timedelta(minutes=minute)

    allowed = quiet.next_allowed(instant, zone)

    assert allowed >= instant
    assert not quiet.contains(allowed.astimezone(zone).time())
    if allowed > instant:
        # Nothing earlier would do: a second before, the wall clock was still in quiet hours.
        assert quiet.contains((allowed - timedelta(seconds=1)).astimezone(zone).time())
        assert allowed - instant <= timedelta(days=2)


# -- the recipient's zone ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "zone"),
    [
        ("pl-PL", "Europe/Warsaw"),
        ("pl_PL", "Europe/Warsaw"),
        ("en-GB", "Europe/London"),
        ("en-IE", "Europe/Dublin"),
        ("en-US", "Europe/Berlin"),  # many zones: the default
        ("pl", "Europe/Berlin"),  # no territory
        ("xx-??", "Europe/Berlin"),  # not a locale
        ("", "Europe/Berlin"),
        (None, "Europe/Berlin"),
    ],
)
def test_recipient_zone_comes_from_a_territory_with_one_zone_else_the_default(
    locale: str | None, zone: str
) -> None:
    assert recipient_zone(locale, "Europe/Berlin") == ZoneInfo(zone)
