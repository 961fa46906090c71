"""The normal and Student t distributions against printed tables and values computed apart
(mpmath's `betainc` at 30 digits), to 1e-9 unless said otherwise."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.statistics import (
    normal_p_value,
    regularized_incomplete_beta,
    t_cdf,
    t_for,
    t_p_value,
    z_for,
)


def test_z_is_the_exact_normal_quantile() -> None:
    assert z_for(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            z_for(bad)


def test_the_normal_p_value_is_two_sided() -> None:
    assert normal_p_value(1.959963984540054) == pytest.approx(0.05, abs=1e-12)
    assert normal_p_value(-3.0151134457776362) == pytest.approx(0.0025688315270227, abs=1e-12)
    assert normal_p_value(0.0) == 1.0
    assert normal_p_value(math.inf) == 0.0


@pytest.mark.parametrize(
    ("confidence", "df", "expected"),
    [
        # Student's table: two-sided 95 % with 1, 4 and 10 df, 99 % with 30, 90 % with 5.
        (0.95, 1, 12.706204736174693),
        (0.95, 4, 2.7764451051977935),
        (0.95, 10, 2.2281388519862742),
        (0.99, 30, 2.7499956535672250),
        (0.90, 5, 2.0150483733330244),
        # Welch-Satterthwaite gives fractional degrees of freedom.
        (0.99, 2.5, 7.163728138948786),
    ],
)
def test_t_quantiles_match_the_table(confidence: float, df: float, expected: float) -> None:
    assert t_for(confidence, df) == pytest.approx(expected, abs=1e-9)


def test_t_cdf_and_p_value() -> None:
    assert t_cdf(2.0, 5) == pytest.approx(0.9490302605850708, abs=1e-12)
    assert t_cdf(-1.0, 3) == pytest.approx(0.19550110947788532, abs=1e-12)
    assert t_cdf(0.0, 7) == 0.5
    assert t_p_value(-2.455356398286005, 24.988529290231414) == pytest.approx(
        0.021378001462867, abs=1e-12
    )
    assert t_p_value(math.inf, 3) == 0.0


def test_many_degrees_of_freedom_are_the_normal() -> None:
    assert t_for(0.95, 1e6) == pytest.approx(z_for(0.95), abs=1e-5)
    assert t_for(0.95, 1e9) == z_for(0.95)
    assert t_p_value(1.96, 1e9) == normal_p_value(1.96)


def test_the_incomplete_beta_at_known_points() -> None:
    # I_x(1, 1) = x; I_x(2, 3) = P(at least 2 successes of 4) = 6x^2 - 8x^3 + 3x^4.
    assert regularized_incomplete_beta(0.3, 1, 1) == pytest.approx(0.3, abs=1e-14)
    x = 0.4
    assert regularized_incomplete_beta(x, 2, 3) == pytest.approx(
        6 * x**2 - 8 * x**3 + 3 * x**4, abs=1e-14
    )
    assert regularized_incomplete_beta(0.0, 2, 3) == 0.0
    assert regularized_incomplete_beta(1.0, 2, 3) == 1.0
    with pytest.raises(ValueError, match="positive"):
        regularized_incomplete_beta(0.5, 0, 1)


@given(
    t=st.floats(-50, 50, allow_nan=False),
    df=st.floats(0.5, 1e6, allow_nan=False),
)
def test_the_t_cdf_is_symmetric_and_a_probability(t: float, df: float) -> None:
    low, high = t_cdf(-t, df), t_cdf(t, df)
    assert 0.0 <= high <= 1.0
    assert low + high == pytest.approx(1.0, abs=1e-12)


@given(
    confidence=st.floats(0.51, 0.999),
    df=st.floats(1.0, 1e5, allow_nan=False),
)
def test_the_t_quantile_inverts_the_p_value(confidence: float, df: float) -> None:
    assert t_p_value(t_for(confidence, df), df) == pytest.approx(1 - confidence, abs=1e-9)
    assert t_for(confidence, df) >= z_for(confidence) - 1e-9
