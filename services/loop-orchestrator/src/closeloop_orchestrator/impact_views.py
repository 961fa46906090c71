"""The loop's impact as the API answers it (`GET /v1/loop/impact`): figures rounded, intervals as
`ci_low`/`ci_high` and sizes as `n`, in scoring's manner. Shares and their intervals have 4
decimals, score changes 3, z and t 4, degrees of freedom 2, p-values 6, hours 3; what cannot be
computed (no invitation, fewer than two score changes) is null, never 0."""

from __future__ import annotations

import math
from typing import Any

from closeloop_orchestrator.adapters.scoring_client import NpsFigure
from closeloop_orchestrator.domain.case_commands import Priority
from closeloop_orchestrator.domain.impact import (
    QUANTILES,
    GroupFigures,
    LoopImpact,
    Mean,
    MeanDifference,
    ProportionDifference,
    Share,
)
from closeloop_orchestrator.service_layer.impact import (
    CASE_TYPES,
    ContactDelays,
    ImpactFigures,
    SlaCounts,
)
from closeloop_orchestrator.service_layer.impact_issues import IssueBeforeAfter


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _interval(low: float | None, high: float | None, digits: int) -> dict[str, float | None]:
    return {"ci_low": _round(low, digits), "ci_high": _round(high, digits)}


def _mean(found: Mean) -> dict[str, Any]:
    return {
        "n": found.n,
        "mean": _round(found.value, 3),
        "standard_deviation": _round(found.standard_deviation, 3),
        **_interval(found.ci_low, found.ci_high, 3),
    }


def _group(found: GroupFigures) -> dict[str, Any]:
    rate = found.response_rate
    return {
        "cases": found.cases,
        "resurvey": {
            "invited": rate.n,
            "responded": rate.successes,
            "response_rate": _round(rate.value, 4),
            **_interval(rate.ci_low, rate.ci_high, 4),
        },
        "score_change": _mean(found.score_change),
    }


def _rates(found: ProportionDifference | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "value": round(found.value, 4),
        **_interval(found.ci_low, found.ci_high, 4),
        "z": _finite(found.z, 4),
        "p_value": round(found.p_value, 6),
        "significant": found.significant,
    }


def _means(found: MeanDifference | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "value": round(found.value, 3),
        **_interval(found.ci_low, found.ci_high, 3),
        "standard_error": round(found.standard_error, 4),
        "t": _finite(found.t, 4),
        "df": round(found.df, 2),
        "p_value": round(found.p_value, 6),
        "significant": found.significant,
    }


def loop_json(found: LoopImpact) -> dict[str, Any]:
    return {
        "closed": _group(found.closed),
        "not_closed": _group(found.not_closed),
        "difference": {
            "response_rate": _rates(found.response_rate_difference),
            "score_change": _means(found.score_change_difference),
        },
    }


def _within(found: Share) -> dict[str, Any]:
    return {
        "cases": found.n,
        "within": found.successes,
        "share": _round(found.value, 4),
        **_interval(found.ci_low, found.ci_high, 4),
    }


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 3)


def _delays(found: ContactDelays) -> dict[str, Any]:
    quantiles = {
        f"p{round(q * 100)}_hours": None if found.quantiles is None else _hours(found.quantiles[i])
        for i, q in enumerate(QUANTILES)
    }
    return {
        "count": found.count,
        **quantiles,
        "histogram": [
            {"from_hours": b.from_hours, "to_hours": b.to_hours, "count": b.count}
            for b in found.buckets
        ],
    }


def first_contact_json(sla: SlaCounts, delays: ContactDelays, confidence: float) -> dict[str, Any]:
    return {
        "within_sla": _within(sla.share(confidence)),
        "by_priority": {
            p.value: _within(sla.share(confidence, priority=p.value)) for p in Priority
        },
        "by_case_type": {t: _within(sla.share(confidence, case_type=t)) for t in CASE_TYPES},
        "time_to_first_contact": _delays(delays),
    }


def figures_json(found: ImpactFigures, confidence: float) -> dict[str, Any]:
    return {
        "loop": loop_json(found.loop),
        "first_contact": first_contact_json(found.sla, found.delays, confidence),
    }


def _side(found: NpsFigure) -> dict[str, Any]:
    return {
        "n": found.n,
        "nps": found.nps,
        "ci_low": found.ci_low,
        "ci_high": found.ci_high,
        "window": dict(found.window),
    }


def issue_json(found: IssueBeforeAfter) -> dict[str, Any]:
    issue, comparison = found.issue, found.comparison
    difference = None
    if comparison is not None and comparison.difference is not None:
        difference = {
            "value": comparison.difference,
            "p_value": comparison.p_value,
            "significant": comparison.significant,
        }
    return {
        "issue_id": issue.issue_id,
        "title": issue.title,
        "decided_at": issue.decided_at,
        "filters": dict(issue.filters),
        "before": None if comparison is None else _side(comparison.baseline),
        "after": None if comparison is None else _side(comparison.compared),
        "difference": difference,
        "method": None if comparison is None else comparison.method,
        "unavailable": found.unavailable,
        "detail": found.detail,
    }
