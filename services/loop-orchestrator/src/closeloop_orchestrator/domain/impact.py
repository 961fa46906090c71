"""The loop's own impact: what closing the loop changes, with intervals and tests. Pure.

The service layer counts in SQL (`service_layer/impact.py`, over the orchestrator's own tables)
and hands the counts here; ratios, means, intervals and tests are computed on read.

Definitions (the service layer's queries implement them; `docs/orchestrator.md` repeats them):

- **Cases counted**: the tenant's cases opened in the window. The loop figures leave out
  lack-of-response cases (`no_response`: no answer, so no score to change) and *pending* cases,
  whose outcome is not known yet: a case counts once the customer was reached
  (`first_contacted_at` set), its first-contact deadline has passed (`first_contact_due_at` <=
  now), or it was resolved or closed. Fresh cases therefore do not dilute the "not closed" group.
- **Closed loop**: the customer was reached (`first_contacted_at` set) *and* the case was
  resolved or closed. **Not closed**: every other counted case (never reached, reached but not
  resolved yet, resolved as unreachable).
- **Re-survey**: the first invitation (`invitations`) to the same customer, of *any* survey (a
  re-survey may use a follow-up survey of its own), sent after the case was opened and not after
  now. One reference time for both groups: a case that was not closed has no closing time. Two
  cases of one customer may share their re-survey. **Responded**: that invitation was answered.
  **Score change**: the score of that answer (the orchestrator's copy of the response, its
  latest version) minus the case's score; an answer whose copy the orchestrator lacks counts as
  a response but has no score change.
- **Per group**: response rate = responded / invited, with its Wilson score interval; the mean
  score change with its Student t interval (n - 1 degrees of freedom; none below two changes).
- **Closed minus not closed**: the response-rate difference with the two-proportion z-test
  (pooled standard error; two-sided p-value) and Newcombe's hybrid score interval (method 10,
  built from the two Wilson intervals: sound for small groups, where Wald's is not); the mean
  score change difference with Welch's t-test (unequal variances; Welch-Satterthwaite degrees of
  freedom; the exact t distribution, `closeloop_common.statistics`) and its t interval.
  Significant: p < 1 - confidence.
- **First contact within SLA**: among the cases opened in the window that were reached or whose
  first-contact deadline has passed (lack-of-response cases included), the share reached by the
  deadline (`first_contacted_at <= first_contact_due_at`), with its Wilson interval; overall, by
  priority and by case type (closed sets).
- **Time to first contact**: `first_contacted_at - opened_at` of the cases opened in the window
  that were reached. Quantiles interpolate linearly between the closest ranks (PostgreSQL's
  `percentile_cont`, Hyndman and Fan's type 7, numpy's default: the p-quantile of n sorted values
  is x[h] + (h - floor h)(x[h + 1] - x[h]) with h = (n - 1) p, 0-based); the histogram's buckets
  are (previous bound, bound], of `HISTOGRAM_HOURS` and one open-ended bucket.
- **A done issue's before and after** (`before_and_after`): the N days after the day of its
  decision (clipped at today) against the N days before that day; the day itself is on neither
  side. Days are UTC dates here; scoring reads them as its own time zone's local days.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from closeloop_common.statistics import normal_p_value, t_for, t_p_value, z_for

HISTOGRAM_HOURS: Final = (1, 6, 24, 48, 72, 168)
QUANTILES: Final = (0.5, 0.75, 0.9, 0.95)


@dataclass(frozen=True, slots=True)
class Share:
    """`successes` of `n`, the share and its Wilson interval (all None without any)."""

    successes: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def wilson(successes: int, n: int, confidence: float) -> Share:
    """The share with its Wilson score interval: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) /
    (1 + z^2/n); within [0, 1] by construction, and sound at 0 or n successes."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    z = z_for(confidence)
    if n == 0:
        return Share(successes, n, None, None, None)
    return Share(successes, n, *_wilson_bounds(successes, n, z))


def _wilson_bounds(successes: int, n: int, z: float) -> tuple[float, float, float]:
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # The interval always holds p (it ends at exactly 0 or 1 for none or all): keep it so when
    # rounding says otherwise.
    return p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Moments:
    """A sample kept as counts: how many values, their sum and the sum of their squares."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    @property
    def mean(self) -> float | None:
        return None if self.n == 0 else self.total / self.n

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator); None below two values."""
        if self.n < 2:
            return None
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def moments_of(values: Sequence[float]) -> Moments:
    return Moments(len(values), float(sum(values)), float(sum(v * v for v in values)))


@dataclass(frozen=True, slots=True)
class Mean:
    """A sample's mean with its standard deviation and t interval (None where undefined)."""

    n: int
    value: float | None
    standard_deviation: float | None
    ci_low: float | None
    ci_high: float | None


def mean_interval(sample: Moments, confidence: float) -> Mean:
    """The mean with its Student t interval, mean +- t(n - 1) s / sqrt(n); the interval needs
    two values (and is the mean itself when they are all equal)."""
    variance = sample.variance
    if variance is None:
        t_for(confidence, 1)  # refuses a confidence out of range all the same
        return Mean(sample.n, sample.mean, None, None, None)
    mean = sample.total / sample.n
    half = t_for(confidence, sample.n - 1) * math.sqrt(variance / sample.n)
    return Mean(sample.n, mean, math.sqrt(variance), mean - half, mean + half)


@dataclass(frozen=True, slots=True)
class ProportionDifference:
    """`a` minus `b` of two shares: the two-proportion z-test and Newcombe's interval."""

    value: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    significant: bool


def two_proportions(a: Share, b: Share, confidence: float) -> ProportionDifference | None:
    """Whether two shares differ beyond chance; None when either has no trial.

    z = (p_a - p_b) / sqrt(p (1 - p) (1/n_a + 1/n_b)), p the pooled share; the interval is
    Newcombe's: d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2), d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)
    with (l, u) the Wilson intervals at the same confidence."""
    z_level = z_for(confidence)
    if a.n == 0 or b.n == 0:
        return None
    p_a, low_a, high_a = _wilson_bounds(a.successes, a.n, z_level)
    p_b, low_b, high_b = _wilson_bounds(b.successes, b.n, z_level)
    difference = p_a - p_b
    pooled = (a.successes + b.successes) / (a.n + b.n)
    error = math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n))
    z = _ratio(difference, error)
    p_value = normal_p_value(z)
    return ProportionDifference(
        value=difference,
        ci_low=difference - math.hypot(p_a - low_a, high_b - p_b),
        ci_high=difference + math.hypot(high_a - p_a, p_b - low_b),
        z=z,
        p_value=p_value,
        significant=p_value < 1 - confidence,
    )


@dataclass(frozen=True, slots=True)
class MeanDifference:
    """`a` minus `b` of two means: Welch's t-test and its interval."""

    value: float
    ci_low: float
    ci_high: float
    standard_error: float
    t: float
    df: float
    p_value: float
    significant: bool


def welch(a: Moments, b: Moments, confidence: float) -> MeanDifference | None:
    """Whether two means differ beyond chance, not assuming equal variances; None unless both
    samples have two values.

    se = sqrt(s_a^2/n_a + s_b^2/n_b), t = (mean_a - mean_b) / se, and the Welch-Satterthwaite
    df = se^4 / ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1)); the interval is
    difference +- t(df) se. Both samples without any spread: df is n_a + n_b - 2 and the test
    is decided by the difference alone (p 1 when equal, 0 when not)."""
    var_a, var_b = a.variance, b.variance
    if var_a is None or var_b is None:
        t_for(confidence, 1)
        return None
    difference = a.total / a.n - b.total / b.n
    part_a, part_b = var_a / a.n, var_b / b.n
    error = math.sqrt(part_a + part_b)
    if error == 0.0:
        df = float(a.n + b.n - 2)
    else:
        df = (part_a + part_b) ** 2 / (part_a**2 / (a.n - 1) + part_b**2 / (b.n - 1))
    t = _ratio(difference, error)
    p_value = t_p_value(t, df)
    half = t_for(confidence, df) * error
    return MeanDifference(
        value=difference,
        ci_low=difference - half,
        ci_high=difference + half,
        standard_error=error,
        t=t,
        df=df,
        p_value=p_value,
        significant=p_value < 1 - confidence,
    )


def _ratio(difference: float, error: float) -> float:
    if error == 0.0:  # no spread at all: any difference is certain, none is none
        return 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    return difference / error


@dataclass(frozen=True, slots=True)
class LoopGroup:
    """The counts of one group of cases (closed loops, or not closed)."""

    cases: int = 0
    invited: int = 0
    responded: int = 0
    score_change: Moments = Moments()


@dataclass(frozen=True, slots=True)
class GroupFigures:
    cases: int
    response_rate: Share  # responded of invited
    score_change: Mean


@dataclass(frozen=True, slots=True)
class LoopImpact:
    closed: GroupFigures
    not_closed: GroupFigures
    response_rate_difference: ProportionDifference | None
    score_change_difference: MeanDifference | None


def _figures(group: LoopGroup, confidence: float) -> GroupFigures:
    return GroupFigures(
        cases=group.cases,
        response_rate=wilson(group.responded, group.invited, confidence),
        score_change=mean_interval(group.score_change, confidence),
    )


def loop_impact(closed: LoopGroup, not_closed: LoopGroup, confidence: float) -> LoopImpact:
    """Each group's re-survey response rate and score change, and closed minus not closed."""
    done, undone = _figures(closed, confidence), _figures(not_closed, confidence)
    return LoopImpact(
        closed=done,
        not_closed=undone,
        response_rate_difference=two_proportions(
            done.response_rate, undone.response_rate, confidence
        ),
        score_change_difference=welch(closed.score_change, not_closed.score_change, confidence),
    )


@dataclass(frozen=True, slots=True)
class Bucket:
    """Cases whose first contact took more than `from_hours` and at most `to_hours` (None: no
    upper bound)."""

    from_hours: float
    to_hours: float | None
    count: int


def histogram(at_most: Sequence[int], total: int) -> list[Bucket]:
    """The buckets of `HISTOGRAM_HOURS` from cumulative counts (`at_most[i]`: contacts within
    `HISTOGRAM_HOURS[i]` hours) and the total: each bucket's own count, the last open-ended."""
    if len(at_most) != len(HISTOGRAM_HOURS):
        raise ValueError(f"one cumulative count per bound, got {len(at_most)}")
    bounds = (0, *HISTOGRAM_HOURS)
    cumulative = (0, *at_most, total)
    if any(later < earlier for earlier, later in itertools.pairwise(cumulative)):
        raise ValueError("cumulative counts never decrease")
    return [
        Bucket(
            from_hours=bounds[i],
            to_hours=HISTOGRAM_HOURS[i] if i < len(HISTOGRAM_HOURS) else None,
            count=cumulative[i + 1] - cumulative[i],
        )
        for i in range(len(HISTOGRAM_HOURS) + 1)
    ]


def before_and_after(decided: date, *, days: int, today: date) -> tuple[tuple[date, date], ...]:
    """A done issue's (before, after) as local days [first, end): the `days` days before the day
    of its decision and the `days` days after that day, clipped at today (included); () when no
    day after it has begun. The day of the decision is on neither side: it mixes both."""
    if days < 1:
        raise ValueError(f"days is at least 1, got {days}")
    after_first = decided + timedelta(days=1)
    if after_first > today:
        return ()
    before = (decided - timedelta(days=days), decided)
    after = (after_first, min(after_first + timedelta(days=days), today + timedelta(days=1)))
    return before, after
