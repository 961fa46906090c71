"""The distributions every service's statistics use: the normal and Student's t. Pure, the
standard library only (no scipy).

- `z_for(confidence)`: the exact two-sided normal quantile (1.959964 for 95 %, not 1.96).
- `normal_p_value(z)`: the two-sided p-value 2 (1 - Phi(|z|)) of a z statistic.
- `t_cdf(t, df)`, `t_p_value(t, df)`, `t_for(confidence, df)`: Student's t distribution with any
  positive (also fractional, as Welch-Satterthwaite gives) degrees of freedom, through the
  regularized incomplete beta function: P(|T| > |t|) = I_x(df / 2, 1 / 2) with
  x = df / (df + t^2). I_x is evaluated by its continued fraction (modified Lentz, as in Numerical
  Recipes' `betacf`), to about 1e-12; the quantile is found by bisection on that p-value. Above
  10^8 degrees of freedom the normal distribution is used (it differs from t by less than 10^-7
  there, less than what `lgamma`'s rounding costs the beta's front factor).
"""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.95
_STANDARD_NORMAL = NormalDist()
_EPSILON = 1e-15
_TINY = 1e-300
_MAX_TERMS = 1000
_NORMAL_ABOVE_DF = 1e8


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is between 0 and 1 (exclusive), got {confidence}")


def z_for(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (0.95 -> 1.959964)."""
    _check_confidence(confidence)
    return _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2)


def normal_p_value(z: float) -> float:
    """The two-sided p-value of a standard normal statistic (0 for an infinite one)."""
    if math.isnan(z):
        raise ValueError("z is not a number")
    return 2.0 * _STANDARD_NORMAL.cdf(-abs(z)) if math.isfinite(z) else 0.0


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and x in [0, 1]."""
    if a <= 0.0 or b <= 0.0:
        raise ValueError(f"a and b are positive, got {a} and {b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x is in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast for x below the mean of the beta; above it, use the symmetry
    # I_x(a, b) = 1 - I_(1-x)(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""

    def bounded(value: float) -> float:
        return value if abs(value) >= _TINY else _TINY

    c = 1.0
    d = 1.0 / bounded(1.0 - (a + b) * x / (a + 1.0))
    fraction = d
    for m in range(1, _MAX_TERMS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 / bounded(1.0 + numerator * d)
            c = bounded(1.0 + numerator / c)
            step = c * d
            fraction *= step
        if abs(step - 1.0) < _EPSILON:
            return fraction
    raise ArithmeticError(f"the incomplete beta fraction did not converge for x={x}, a={a}, b={b}")


def _check_df(df: float) -> None:
    if not df > 0.0:
        raise ValueError(f"degrees of freedom are positive, got {df}")


def t_p_value(t: float, df: float) -> float:
    """The two-sided p-value P(|T| >= |t|) of Student's t with `df` degrees of freedom."""
    _check_df(df)
    if math.isnan(t):
        raise ValueError("t is not a number")
    if df > _NORMAL_ABOVE_DF:
        return normal_p_value(t)
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = t_p_value(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


def t_for(confidence: float, df: float) -> float:
    """The two-sided quantile of Student's t: P(|T| <= t) = `confidence` (95 %, 10 df: 2.2281)."""
    _check_confidence(confidence)
    _check_df(df)
    if df > _NORMAL_ABOVE_DF:
        return z_for(confidence)
    alpha = 1.0 - confidence
    low, high = 0.0, max(1.0, 2.0 * z_for(confidence))
    while t_p_value(high, df) > alpha:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_p_value(middle, df) > alpha:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2.0
