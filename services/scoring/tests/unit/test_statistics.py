"""NPS intervals and comparisons: worked examples to 4 decimals and properties.

The expected figures were computed apart from the module: exact fractions for the shares,
40-digit decimal square roots, and the 97.5 % normal quantile found by bisecting erf."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import METHODS, Method, compare, estimate, z_for


def test_z_is_the_exact_normal_quantile() -> None:
    assert z_for(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_for(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            z_for(bad)


@pytest.mark.parametrize(
    ("counts", "method", "se", "moe", "low", "high"),
    [
        ((50, 30, 20), "wald", 7.8102, 15.3078, 14.6922, 45.3078),
        ((50, 30, 20), "adjusted-wald", 7.6915, 15.0751, 14.0511, 44.2013),
        # Nine promoters of ten: Wald's interval runs past 100 and is clipped.
        ((9, 1, 0), "wald", 9.4868, 18.5939, 71.4061, 100.0),
        ((9, 1, 0), "adjusted-wald", 15.8939, 31.1515, 38.0792, 100.0),
        ((0, 1, 9), "wald", 9.4868, 18.5939, -100.0, -71.4061),
        ((3, 2, 5), "wald", 27.5681, 54.0325, -74.0325, 34.0325),
        ((3, 2, 5), "adjusted-wald", 23.3222, 45.7106, -61.0952, 30.326),
    ],
)
def test_worked_examples(
    counts: tuple[int, int, int], method: Method, se: float, moe: float, low: float, high: float
) -> None:
    found = estimate(NpsCounts(*counts), method=method)
    assert found.standard_error == pytest.approx(se, abs=5e-5)
    assert found.margin_of_error == pytest.approx(moe, abs=5e-5)
    assert found.ci_low == pytest.approx(low, abs=5e-5)
    assert found.ci_high == pytest.approx(high, abs=5e-5)
    assert found.n == sum(counts)
    assert found.method == method
    assert found.confidence == 0.95


def test_the_reported_nps_is_the_observed_one_whatever_the_method() -> None:
    counts = NpsCounts(9, 1, 0)
    assert estimate(counts, method="wald").nps == 90.0
    assert estimate(counts, method="adjusted-wald").nps == 90.0


def test_no_answer_is_no_data_never_zero() -> None:
    found = estimate(NpsCounts())
    assert (found.n, found.nps, found.standard_error, found.ci_low, found.ci_high) == (
        0,
        None,
        None,
        None,
        None,
    )
    assert found.insufficient
    assert compare(NpsCounts(), NpsCounts(1, 0, 0)) is None


def test_a_small_sample_is_flagged_insufficient() -> None:
    assert estimate(NpsCounts(10, 5, 5), min_n=30).insufficient
    assert not estimate(NpsCounts(20, 5, 5), min_n=30).insufficient


def test_wald_and_adjusted_wald_can_disagree_on_significance() -> None:
    """Eight promoters of eight against four, two and two: Wald sees no variation in the first
    sample and calls the gap significant; the adjusted-Wald test does not."""
    a, b = NpsCounts(8, 0, 0), NpsCounts(4, 2, 2)
    wald = compare(a, b, method="wald")
    adjusted = compare(a, b, method="adjusted-wald")
    assert wald is not None
    assert adjusted is not None
    assert (wald.difference, wald.standard_error) == pytest.approx((75.0, 29.3151), abs=5e-5)
    assert (wald.z, wald.p_value) == pytest.approx((2.5584, 0.0105), abs=5e-5)
    assert wald.significant
    assert (adjusted.difference, adjusted.standard_error) == pytest.approx(
        (54.5455, 29.9009), abs=5e-5
    )
    assert (adjusted.z, adjusted.p_value) == pytest.approx((1.8242, 0.0681), abs=5e-5)
    assert not adjusted.significant


def test_two_unanimous_samples_compare_without_dividing_by_zero() -> None:
    same = compare(NpsCounts(5, 0, 0), NpsCounts(7, 0, 0), method="wald")
    assert same is not None
    assert (same.difference, same.p_value, same.significant) == (0.0, 1.0, False)
    apart = compare(NpsCounts(5, 0, 0), NpsCounts(0, 0, 7), method="wald")
    assert apart is not None
    assert (apart.z, apart.p_value, apart.significant) == (math.inf, 0.0, True)


counts = st.builds(
    NpsCounts,
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.integers(0, 5000),
)
methods = st.sampled_from(METHODS)
confidences = st.floats(0.5, 0.999)


@given(counts, methods, confidences)
def test_an_interval_stays_in_range_and_holds_its_centre(
    c: NpsCounts, method: Method, confidence: float
) -> None:
    found = estimate(c, method=method, confidence=confidence)
    if c.responses == 0:
        assert found.nps is None
        return
    assert found.ci_low is not None
    assert found.ci_high is not None
    assert found.nps is not None
    assert -100.0 <= found.ci_low <= found.ci_high <= 100.0
    if method == "wald":
        assert found.ci_low <= found.nps + 1e-9
        assert found.nps - 1e-9 <= found.ci_high


@given(counts, methods)
def test_more_confidence_never_narrows_the_interval(c: NpsCounts, method: Method) -> None:
    narrow = estimate(c, method=method, confidence=0.9)
    wide = estimate(c, method=method, confidence=0.99)
    if c.responses == 0:
        return
    assert narrow.margin_of_error is not None
    assert wide.margin_of_error is not None
    assert wide.margin_of_error >= narrow.margin_of_error


@given(counts, counts, methods)
def test_comparison_is_antisymmetric_and_its_p_value_a_probability(
    a: NpsCounts, b: NpsCounts, method: Method
) -> None:
    forward, backward = compare(a, b, method=method), compare(b, a, method=method)
    if a.responses == 0 or b.responses == 0:
        assert forward is None
        assert backward is None
        return
    assert forward is not None
    assert backward is not None
    assert forward.difference == pytest.approx(-backward.difference)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0.0 <= forward.p_value <= 1.0
    assert forward.significant == (forward.p_value < 1 - forward.confidence)


@given(counts, methods)
def test_a_sample_against_itself_is_no_difference(c: NpsCounts, method: Method) -> None:
    same = compare(c, c, method=method)
    if c.responses == 0:
        assert same is None
        return
    assert same is not None
    assert same.difference == 0.0
    assert not same.significant
