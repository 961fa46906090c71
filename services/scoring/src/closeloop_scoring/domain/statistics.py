"""Honest NPS statistics over counts: intervals and the comparison of two samples. Pure.

Each answer is a trinomial variable: +1 (promoter), 0 (passive), -1 (detractor). With p and d the
promoter and detractor shares of n answers, NPS = 100 (p - d), the variance of one answer is
p + d - (p - d)^2, and the standard error of the NPS is 100 sqrt(variance / n).

Two methods (`Method`):
- `wald`: that standard error around the observed NPS.
- `adjusted-wald` (Lewis and Sauro, MeasuringU; Rocks, "Interval Estimation for the Net Promoter
  Score", The American Statistician 70(4), 2016): add 3/4 to the promoters and to the detractors
  and 3 to n, compute the shares, the NPS and the standard error from those, and centre the interval
  on that adjusted NPS. Its coverage holds for small samples, where Wald's does not; the reported
  `nps` stays the observed one.

z is the exact normal quantile of the confidence (1.959964 for 95 %, not 1.96; `z_for` and the
normal p-value come from `closeloop_common.statistics`, shared with the orchestrator). Intervals are
clipped to [-100, 100]. n = 0 is "no data": every figure is None, never 0. Below `min_n` answers a
figure is flagged `insufficient` (still computed: the interval says how little it means).

Comparing two samples (two windows, two segments): the difference of the NPS (adjusted ones for
`adjusted-wald`, where each sample gets its own 3/4, 3/4 and 3), its standard error
sqrt(se_a^2 + se_b^2), z = difference / se, the two-sided p-value 2 (1 - Phi(|z|)), and
whether p < 1 - confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from closeloop_common.statistics import DEFAULT_CONFIDENCE as DEFAULT_CONFIDENCE
from closeloop_common.statistics import normal_p_value
from closeloop_common.statistics import z_for as z_for
from closeloop_scoring.domain.nps import NpsCounts

Method = Literal["wald", "adjusted-wald"]
METHODS: tuple[Method, ...] = ("wald", "adjusted-wald")
DEFAULT_MIN_N = 30


@dataclass(frozen=True, slots=True)
class _Shares:
    """The quantities one method works with: shares, NPS and standard error, in NPS points."""

    nps: float
    standard_error: float


def _shares(counts: NpsCounts, method: Method) -> _Shares | None:
    return shares_of(counts.promoters, counts.passives, counts.detractors, method)


def shares_of(
    promoters: float, passives: float, detractors: float, method: Method
) -> _Shares | None:
    """The NPS and its standard error by `method`, from counts that may be fractional (a what-if
    projection moves parts of answers); None when there is no answer."""
    n = promoters + passives + detractors
    if n <= 0:
        return None
    if method == "adjusted-wald":
        promoters, detractors, n = promoters + 0.75, detractors + 0.75, n + 3
    p, d = promoters / n, detractors / n
    variance = max(0.0, p + d - (p - d) ** 2)
    return _Shares(nps=100.0 * (p - d), standard_error=100.0 * math.sqrt(variance / n))


def interval(shares: _Shares, confidence: float) -> tuple[float, float]:
    """The interval around the method's NPS at `confidence`, clipped to [-100, 100]."""
    margin = z_for(confidence) * shares.standard_error
    return max(-100.0, shares.nps - margin), min(100.0, shares.nps + margin)


@dataclass(frozen=True, slots=True)
class NpsEstimate:
    n: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None
    standard_error: float | None
    margin_of_error: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    method: Method
    insufficient: bool


def estimate(
    counts: NpsCounts,
    *,
    method: Method = "adjusted-wald",
    confidence: float = DEFAULT_CONFIDENCE,
    min_n: int = DEFAULT_MIN_N,
) -> NpsEstimate:
    """The NPS of `counts` with its standard error and interval by `method`."""
    shares = _shares(counts, method)
    margin = None if shares is None else z_for(confidence) * shares.standard_error
    low, high = (None, None) if shares is None else interval(shares, confidence)
    return NpsEstimate(
        n=counts.responses,
        promoters=counts.promoters,
        passives=counts.passives,
        detractors=counts.detractors,
        nps=counts.nps,
        standard_error=None if shares is None else shares.standard_error,
        margin_of_error=margin,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        method=method,
        insufficient=counts.responses < min_n,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """`a` minus `b`."""

    difference: float
    standard_error: float
    z: float
    p_value: float
    significant: bool
    confidence: float
    method: Method


def compare(
    a: NpsCounts,
    b: NpsCounts,
    *,
    method: Method = "adjusted-wald",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Comparison | None:
    """Whether `a`'s NPS differs from `b`'s beyond chance; None when either has no answer."""
    alpha = 1.0 - confidence
    z_for(confidence)  # validates the confidence
    first, second = _shares(a, method), _shares(b, method)
    if first is None or second is None:
        return None
    difference = first.nps - second.nps
    standard_error = math.hypot(first.standard_error, second.standard_error)
    if standard_error == 0.0:
        # Both samples unanimous: no sampling variation to speak of (possible only with Wald).
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    else:
        z = difference / standard_error
    p_value = normal_p_value(z)
    return Comparison(
        difference=difference,
        standard_error=standard_error,
        z=z,
        p_value=p_value,
        significant=p_value < alpha,
        confidence=confidence,
        method=method,
    )
