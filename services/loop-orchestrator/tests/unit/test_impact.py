"""The loop's impact statistics with known answers: Wilson intervals, the two-proportion z-test
with Newcombe's interval, Welch's t-test (Wikipedia's first example: t -2.46, df 25.0, p 0.021),
the t interval of a mean and the histogram of first-contact delays. Expected values were
computed apart, with mpmath at 30 digits and exact fractions."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_orchestrator.domain.impact import (
    Bucket,
    LoopGroup,
    Moments,
    before_and_after,
    histogram,
    loop_impact,
    mean_interval,
    moments_of,
    two_proportions,
    welch,
    wilson,
)

A = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
B = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.49016247, 0.94331785),
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
        (30, 50, 0.46181438, 0.7239161),
    ],
)
def test_wilson_intervals(successes: int, n: int, low: float, high: float) -> None:
    found = wilson(successes, n, 0.95)
    assert found.value == successes / n
    assert found.ci_low == pytest.approx(low, abs=1e-7)
    assert found.ci_high == pytest.approx(high, abs=1e-7)


def test_a_share_of_nothing_is_unknown_not_zero() -> None:
    found = wilson(0, 0, 0.95)
    assert (found.value, found.ci_low, found.ci_high) == (None, None, None)
    with pytest.raises(ValueError, match="successes"):
        wilson(3, 2, 0.95)


def test_two_proportions_30_of_50_against_15_of_50() -> None:
    found = two_proportions(wilson(30, 50, 0.95), wilson(15, 50, 0.95), 0.95)
    assert found is not None
    assert found.value == pytest.approx(0.3, abs=1e-12)
    # Pooled 45 %: se = sqrt(0.45 * 0.55 * 2/50) = 0.0994987, z = 3.0151.
    assert found.z == pytest.approx(3.0151134457776362, abs=1e-9)
    assert found.p_value == pytest.approx(0.0025688315270227, abs=1e-9)
    assert found.significant is True
    # Newcombe: 0.3 - hypot(0.6 - 0.46181, 0.43750 - 0.3), 0.3 + hypot(0.72392 - 0.6, 0.3 - 0.19104)
    assert found.ci_low == pytest.approx(0.10505775198304448, abs=1e-9)
    assert found.ci_high == pytest.approx(0.46501046978460957, abs=1e-9)


def test_equal_shares_are_not_significant_and_nothing_against_nothing_is_no_test() -> None:
    same = two_proportions(wilson(5, 10, 0.95), wilson(10, 20, 0.95), 0.95)
    assert same is not None
    assert (same.value, same.z, same.p_value, same.significant) == (0.0, 0.0, 1.0, False)
    assert two_proportions(wilson(5, 10, 0.95), wilson(0, 0, 0.95), 0.95) is None
    # All answered on both sides: no spread, and no difference.
    unanimous = two_proportions(wilson(4, 4, 0.95), wilson(7, 7, 0.95), 0.95)
    assert unanimous is not None
    assert (unanimous.z, unanimous.p_value) == (0.0, 1.0)


def test_welch_on_wikipedias_first_example() -> None:
    found = welch(moments_of(A), moments_of(B), 0.95)
    assert found is not None
    assert found.value == pytest.approx(-2.1666666666666667, abs=1e-9)
    assert found.standard_error == pytest.approx(0.8824245100137552, abs=1e-9)
    assert found.t == pytest.approx(-2.455356398286005, abs=1e-9)
    assert found.df == pytest.approx(24.988529290231414, abs=1e-9)
    assert found.p_value == pytest.approx(0.021378001462867, abs=1e-9)
    assert found.significant is True
    assert found.ci_low == pytest.approx(-3.984096267140928, abs=1e-8)
    assert found.ci_high == pytest.approx(-0.3492370661924056, abs=1e-8)
    assert welch(moments_of(A), moments_of(B), 0.99).significant is False  # type: ignore[union-attr]


def test_welch_needs_two_values_a_side_and_handles_no_spread() -> None:
    assert welch(moments_of([1.0]), moments_of(A), 0.95) is None
    flat = welch(moments_of([2.0, 2.0, 2.0]), moments_of([5.0, 5.0]), 0.95)
    assert flat is not None
    assert (flat.value, flat.df, flat.t, flat.p_value, flat.significant) == (
        -3.0, 3.0, -math.inf, 0.0, True,
    )  # fmt: skip
    same = welch(moments_of([2.0, 2.0]), moments_of([2.0, 2.0]), 0.95)
    assert same is not None
    assert (same.t, same.p_value, same.significant) == (0.0, 1.0, False)


def test_the_t_interval_of_a_mean() -> None:
    found = mean_interval(moments_of([1, 2, 3, 4, 5]), 0.95)
    assert (found.n, found.value) == (5, 3.0)
    assert found.standard_deviation == pytest.approx(math.sqrt(2.5), abs=1e-12)
    # 3 +- t(0.975, 4) sqrt(2.5 / 5) = 3 +- 2.776445 * 0.707107
    assert found.ci_low == pytest.approx(1.0367568385224429, abs=1e-9)
    assert found.ci_high == pytest.approx(4.9632431614775571, abs=1e-9)
    one = mean_interval(moments_of([4]), 0.95)
    assert (one.n, one.value, one.standard_deviation, one.ci_low) == (1, 4.0, None, None)
    assert mean_interval(Moments(), 0.95).value is None


def test_loop_impact_puts_the_figures_and_the_differences_together() -> None:
    closed = LoopGroup(cases=60, invited=50, responded=30, score_change=moments_of(A))
    not_closed = LoopGroup(cases=70, invited=50, responded=15, score_change=moments_of(B))
    found = loop_impact(closed, not_closed, 0.95)
    assert found.closed.cases == 60
    assert (found.closed.response_rate.successes, found.closed.response_rate.n) == (30, 50)
    assert found.not_closed.response_rate.value == 0.3
    assert found.response_rate_difference is not None
    assert found.response_rate_difference.p_value == pytest.approx(0.0025688315, abs=1e-9)
    assert found.score_change_difference is not None
    assert found.score_change_difference.t == pytest.approx(-2.4553563983, abs=1e-9)
    empty = loop_impact(LoopGroup(), not_closed, 0.95)
    assert empty.closed.response_rate.value is None
    assert (empty.response_rate_difference, empty.score_change_difference) == (None, None)


def test_the_histogram_is_per_bucket_from_cumulative_counts() -> None:
    # Delays 0.5 h, 1 h (on the bound: first bucket), 5 h, 30 h, 30 h, 200 h.
    found = histogram([2, 3, 3, 5, 5, 5], total=6)
    assert found == [
        Bucket(0, 1, 2),
        Bucket(1, 6, 1),
        Bucket(6, 24, 0),
        Bucket(24, 48, 2),
        Bucket(48, 72, 0),
        Bucket(72, 168, 0),
        Bucket(168, None, 1),
    ]
    with pytest.raises(ValueError, match="never decrease"):
        histogram([2, 1, 3, 5, 5, 5], total=6)


@given(st.lists(st.integers(-10, 10), min_size=2, max_size=200))
def test_moments_give_the_textbook_variance(values: list[int]) -> None:
    found = moments_of([float(v) for v in values])
    mean = sum(values) / len(values)
    expected = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert found.variance == pytest.approx(expected, abs=1e-9)


@given(st.integers(0, 500), st.integers(0, 500), st.floats(0.51, 0.999))
def test_wilson_holds_the_share(successes: int, extra: int, confidence: float) -> None:
    n = successes + extra
    found = wilson(successes, n, confidence)
    if n == 0:
        assert found.value is None
        return
    assert found.ci_low is not None
    assert found.ci_high is not None
    assert 0.0 <= found.ci_low <= successes / n <= found.ci_high <= 1.0


def test_before_and_after_leave_out_the_day_of_the_decision_and_stop_at_today() -> None:
    decided, today = date(2026, 10, 11), date(2026, 11, 10)
    assert before_and_after(decided, days=90, today=today) == (
        (date(2026, 7, 13), date(2026, 10, 11)),
        (date(2026, 10, 12), date(2026, 11, 11)),
    )
    assert before_and_after(decided, days=7, today=today) == (
        (date(2026, 10, 4), date(2026, 10, 11)),
        (date(2026, 10, 12), date(2026, 10, 19)),
    )
    # Decided yesterday: today is the one day after; decided today: nothing after it yet.
    assert before_and_after(today - timedelta(days=1), days=30, today=today)[1] == (
        today,
        today + timedelta(days=1),
    )
    assert before_and_after(today, days=30, today=today) == ()
