"""How figures are reported over HTTP: an estimate with its interval, rounded, and a comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from closeloop_scoring.domain.health import Health, HealthPolicy, assess
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_N,
    Comparison,
    Method,
    estimate,
)
from closeloop_scoring.views import Tally


@dataclass(frozen=True, slots=True)
class Statistics:
    """How a figure's uncertainty is reported: the interval method, confidence and the least
    number of answers below which a figure is flagged insufficient."""

    method: Method = "adjusted-wald"
    confidence: float = DEFAULT_CONFIDENCE
    min_n: int = DEFAULT_MIN_N


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def report(counts: NpsCounts, stats: Statistics = Statistics()) -> dict[str, Any]:
    found = estimate(counts, method=stats.method, confidence=stats.confidence, min_n=stats.min_n)
    return {
        "n": found.n,
        "responses": found.n,
        "promoters": found.promoters,
        "passives": found.passives,
        "detractors": found.detractors,
        "nps": rounded(found.nps),
        "standard_error": rounded(found.standard_error, 4),
        "margin_of_error": rounded(found.margin_of_error),
        "ci_low": rounded(found.ci_low),
        "ci_high": rounded(found.ci_high),
        "confidence": found.confidence,
        "method": found.method,
        "insufficient": found.insufficient,
        # Kept for clients of the first version: the Wald margin at 95 %.
        "margin_of_error_95": rounded(counts.margin_of_error()),
    }


def tally_report(tally: Tally, stats: Statistics = Statistics()) -> dict[str, Any]:
    """`report` plus suspected answers (not counted in the NPS), invitations and the response
    rate (answers over invitations in the same window; null without invitations)."""
    n = tally.counts.responses
    return {
        **report(tally.counts, stats),
        "suspected": tally.suspected,
        "invitations": tally.invitations,
        "response_rate": rounded(n / tally.invitations, 4) if tally.invitations else None,
    }


def health_of(
    tally: Tally, stats: Statistics, revenue_weight: float | None, policy: HealthPolicy
) -> Health:
    """An account's health from its tally, judged on the interval `stats` ask for."""
    found = estimate(
        tally.counts, method=stats.method, confidence=stats.confidence, min_n=stats.min_n
    )
    return assess(
        found, invitations=tally.invitations, revenue_weight=revenue_weight, policy=policy
    )


# The numbers of a reason rounded as the same figures are in `report` and `tally_report`.
_REASON_DIGITS = {"nps": 2, "ci_low": 2, "ci_high": 2, "response_rate": 4}


def health_json(health: Health) -> dict[str, Any]:
    """`{"state", "reasons": [{"code", "text", ...its numbers}]}`."""
    return {
        "state": health.state,
        "reasons": [
            {
                "code": reason.code,
                "text": reason.text,
                **{
                    name: rounded(value, _REASON_DIGITS[name]) if name in _REASON_DIGITS else value
                    for name, value in reason.numbers.items()
                },
            }
            for reason in health.reasons
        ],
    }


def policy_json(policy: HealthPolicy) -> dict[str, Any]:
    return {
        "risk_nps": policy.risk_nps,
        "min_responses": policy.min_responses,
        "min_response_rate": policy.min_response_rate,
        "large_account_weight": policy.large_account_weight,
    }


def comparison_json(found: Comparison | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "difference": round(found.difference, 2),
        "standard_error": round(found.standard_error, 4),
        "z": None if not math.isfinite(found.z) else round(found.z, 4),
        "p_value": round(found.p_value, 6),
        "significant": found.significant,
        "confidence": found.confidence,
        "method": found.method,
    }
