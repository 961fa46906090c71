"""Account health (B2B): safe, at risk or unknown, from an account's NPS, its interval, its
response rate and its revenue weight, with the reasons. Pure.

`assess` judges one account's figures against a `HealthPolicy`, as a decision list:
1. no answers, or fewer than `min_responses`: **unknown** (`no_answers`, `too_few_answers`);
   too few answers are not judged, so of the other findings only a low response rate is listed;
2. the point NPS below `risk_nps` (`nps_below_threshold`), or the whole interval below it
   (`interval_below_threshold`): **at risk**;
3. the response rate below `min_response_rate`, judged only when invitations are known (some
   were counted in the window): **at risk** (`low_response_rate`): in B2B an account that stops
   answering is a signal, not an absence of one;
4. the interval's lower bound at or above `risk_nps`: **safe** (`clearly_above_threshold`);
5. otherwise the interval spans the threshold (`interval_spans_threshold`): **unknown**, unless
   the account's revenue weight is known and at or above `large_account_weight` (when that is
   set): then **at risk** (`large_account_uncertain`): an account this large is at risk unless
   clearly above.

Every finding that applies is a reason, the deciding one first, then the others in the order
of `REASON_CODES`; an account with enough answers has exactly one finding about where its
interval lies (`interval_below_threshold`, `clearly_above_threshold` or
`interval_spans_threshold`). At a threshold exactly, the account is on the good side: an NPS
equal to `risk_nps` is not below it, a lower bound equal to it is clearly above, a rate equal
to the minimum is fine, a weight equal to `large_account_weight` is large.

Each reason has a stable machine `code`, the numbers it is about (named like the fields of the
NPS reports: `n`, `nps`, `ci_low`, `ci_high`, `confidence`, `invitations`, `response_rate`,
`revenue_weight`, and the policy's names), so a user interface can word it in its own language,
and an English sentence with those numbers (`text`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from closeloop_scoring.domain.statistics import NpsEstimate

HealthState = Literal["safe", "at_risk", "unknown"]
ReasonCode = Literal[
    "no_answers",
    "too_few_answers",
    "nps_below_threshold",
    "interval_below_threshold",
    "low_response_rate",
    "large_account_uncertain",
    "clearly_above_threshold",
    "interval_spans_threshold",
]
REASON_CODES: tuple[ReasonCode, ...] = (
    "no_answers",
    "too_few_answers",
    "nps_below_threshold",
    "interval_below_threshold",
    "low_response_rate",
    "large_account_uncertain",
    "clearly_above_threshold",
    "interval_spans_threshold",
)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When an account is judged safe or at risk.

    `risk_nps`: an NPS below this is a risk. `min_responses`: fewer answers than this are too few
    to judge. `min_response_rate`: answers over invitations below this is a risk (0: never).
    `large_account_weight`: from this revenue weight up, an uncertain NPS is a risk (None: off).
    """

    risk_nps: float = 0.0
    min_responses: int = 5
    min_response_rate: float = 0.2
    large_account_weight: float | None = None

    def __post_init__(self) -> None:
        if not -100.0 <= self.risk_nps <= 100.0:
            raise ValueError(f"risk_nps is an NPS in [-100, 100], got {self.risk_nps}")
        if self.min_responses < 1:
            raise ValueError(f"min_responses is at least 1, got {self.min_responses}")
        if not 0.0 <= self.min_response_rate <= 1.0:
            raise ValueError(f"min_response_rate is in [0, 1], got {self.min_response_rate}")
        weight = self.large_account_weight
        if weight is not None and not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"large_account_weight is positive, got {weight}")


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an account is in its state: a stable `code`, the `numbers` it is about, and `text`,
    an English sentence with those numbers."""

    code: ReasonCode
    text: str
    numbers: Mapping[str, float | int]


@dataclass(frozen=True, slots=True)
class Health:
    state: HealthState
    reasons: tuple[Reason, ...]

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        return tuple(r.code for r in self.reasons)


def assess(
    found: NpsEstimate,
    *,
    invitations: int,
    revenue_weight: float | None,
    policy: HealthPolicy = HealthPolicy(),
) -> Health:
    """The health of an account whose answers give `found`, with `invitations` sent in the same
    window and its revenue weight (None: not known)."""
    low_rate = _low_response_rate(found.n, invitations, policy)
    if found.n == 0 or found.nps is None or found.ci_low is None or found.ci_high is None:
        return Health("unknown", _listed(_no_answers(), low_rate))
    if found.n < policy.min_responses:
        return Health("unknown", _listed(_too_few(found.n, policy), low_rate))

    interval = _Interval(found.nps, found.ci_low, found.ci_high, found.confidence, policy.risk_nps)
    below = _nps_below(interval) if found.nps < policy.risk_nps else None
    below_throughout = _interval_below(interval) if found.ci_high < policy.risk_nps else None
    above = _clearly_above(interval) if found.ci_low >= policy.risk_nps else None
    spans = _spans(interval) if below_throughout is None and above is None else None
    large = None
    large_from = policy.large_account_weight
    if (
        spans is not None
        and revenue_weight is not None
        and large_from is not None
        and revenue_weight >= large_from
    ):
        large = _large(revenue_weight, large_from, interval)
    findings = _listed(below, below_throughout, low_rate, large, above, spans)

    deciding: Reason
    if below is not None or below_throughout is not None:
        state: HealthState = "at_risk"
        deciding = findings[0]
    elif low_rate is not None:
        state, deciding = "at_risk", low_rate
    elif above is not None:
        state, deciding = "safe", above
    elif large is not None:
        state, deciding = "at_risk", large
    else:
        assert spans is not None  # neither above nor below throughout
        state, deciding = "unknown", spans
    return Health(state, (deciding, *(r for r in findings if r is not deciding)))


def _listed(*reasons: Reason | None) -> tuple[Reason, ...]:
    return tuple(r for r in reasons if r is not None)


def _low_response_rate(n: int, invitations: int, policy: HealthPolicy) -> Reason | None:
    if invitations <= 0 or n / invitations >= policy.min_response_rate:
        return None
    rate = n / invitations
    answers = "answer" if n == 1 else "answers"
    sent = "invitation" if invitations == 1 else "invitations"
    return Reason(
        "low_response_rate",
        f"{n} {answers} to {invitations} {sent} ({_percent(rate)}) is below the minimum "
        f"response rate of {_percent(policy.min_response_rate)}",
        {
            "n": n,
            "invitations": invitations,
            "response_rate": rate,
            "min_response_rate": policy.min_response_rate,
        },
    )


def _no_answers() -> Reason:
    return Reason("no_answers", "No answers in this window", {"n": 0})


def _too_few(n: int, policy: HealthPolicy) -> Reason:
    answers = "answer" if n == 1 else "answers"
    return Reason(
        "too_few_answers",
        f"{n} {answers}, fewer than the {policy.min_responses} needed to judge the account",
        {"n": n, "min_responses": policy.min_responses},
    )


@dataclass(frozen=True, slots=True)
class _Interval:
    nps: float
    ci_low: float
    ci_high: float
    confidence: float
    risk_nps: float

    @property
    def numbers(self) -> dict[str, float | int]:
        return {
            "nps": self.nps,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "risk_nps": self.risk_nps,
        }

    @property
    def described(self) -> str:
        """ "NPS -12 (95% interval -40 to 16)"."""
        return (
            f"NPS {_number(self.nps)} ({_percent(self.confidence)} interval "
            f"{_number(self.ci_low)} to {_number(self.ci_high)})"
        )


def _nps_below(interval: _Interval) -> Reason:
    return Reason(
        "nps_below_threshold",
        f"{interval.described} is below the risk threshold {_number(interval.risk_nps)}",
        interval.numbers,
    )


def _interval_below(interval: _Interval) -> Reason:
    return Reason(
        "interval_below_threshold",
        f"{interval.described} is below the risk threshold {_number(interval.risk_nps)} "
        "across its whole interval",
        interval.numbers,
    )


def _clearly_above(interval: _Interval) -> Reason:
    return Reason(
        "clearly_above_threshold",
        f"{interval.described} is clearly above the risk threshold {_number(interval.risk_nps)}",
        interval.numbers,
    )


def _spans(interval: _Interval) -> Reason:
    return Reason(
        "interval_spans_threshold",
        f"{interval.described} spans the risk threshold {_number(interval.risk_nps)}: "
        "not clearly above or below it",
        interval.numbers,
    )


def _large(weight: float, large_from: float, interval: _Interval) -> Reason:
    return Reason(
        "large_account_uncertain",
        f"An account this large (revenue weight {_number(weight)}, large from "
        f"{_number(large_from)}) is at risk unless clearly above the risk threshold "
        f"{_number(interval.risk_nps)}",
        {
            "revenue_weight": weight,
            "large_account_weight": large_from,
            "ci_low": interval.ci_low,
            "ci_high": interval.ci_high,
            "confidence": interval.confidence,
            "risk_nps": interval.risk_nps,
        },
    )


def _number(value: float) -> str:
    """One decimal at most (-11.8, 16, 1000), two significant digits below 1 in size (0.04), so
    a figure just below a threshold never reads as equal to it."""
    if value == 0:
        return "0"
    if abs(value) < 1:
        return f"{value:.2g}"
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def _percent(share: float) -> str:
    return f"{_number(100.0 * share)}%"
