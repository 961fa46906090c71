"""The loop's impact as Prometheus gauges: every tenant's cases opened in the last 90 days,
recounted every `ORCHESTRATOR_IMPACT_INTERVAL_SECONDS` (the figures of `impact.py`; nothing is
asked of scoring: the worker holds no user token). Labels are `loop`, `percentile` and `priority`,
closed sets; there is no tenant label."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.statistics import DEFAULT_CONFIDENCE
from closeloop_orchestrator.domain.case_commands import Priority
from closeloop_orchestrator.domain.impact import QUANTILES
from closeloop_orchestrator.metrics import (
    LOOP_CASES,
    LOOP_FIRST_CONTACT_WITHIN_SLA_RATIO,
    LOOP_RESPONSE_RATE_DIFFERENCE_P_VALUE,
    LOOP_RESURVEY_INVITATIONS,
    LOOP_RESURVEY_RESPONSE_RATIO,
    LOOP_RESURVEY_RESPONSES,
    LOOP_SCORE_CHANGE_DIFFERENCE_P_VALUE,
    LOOP_SCORE_CHANGE_MEAN,
    LOOP_TIME_TO_FIRST_CONTACT,
)
from closeloop_orchestrator.service_layer.impact import ImpactFigures, Scope, figures

WINDOW = timedelta(days=90)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


async def recount_gauges(runtime: ServiceRuntime) -> ImpactFigures:
    """Set the loop's gauges from every tenant's cases opened in the last 90 days (figures that
    are undefined, e.g. a rate without invitations, are NaN rather than a stale value)."""
    now = runtime.clock.now()
    scope = Scope(tenant_id=None, opened_from=now - WINDOW, opened_before=None, now=now)
    async with runtime.worker_sessions() as session:
        found = await figures(session, scope, DEFAULT_CONFIDENCE)
    impact = found.loop
    for loop, group in (("closed", impact.closed), ("not_closed", impact.not_closed)):
        LOOP_CASES.labels(loop=loop).set(group.cases)
        LOOP_RESURVEY_INVITATIONS.labels(loop=loop).set(group.response_rate.n)
        LOOP_RESURVEY_RESPONSES.labels(loop=loop).set(group.response_rate.successes)
        LOOP_RESURVEY_RESPONSE_RATIO.labels(loop=loop).set(_or_nan(group.response_rate.value))
        LOOP_SCORE_CHANGE_MEAN.labels(loop=loop).set(_or_nan(group.score_change.value))
    rates, changes = impact.response_rate_difference, impact.score_change_difference
    LOOP_RESPONSE_RATE_DIFFERENCE_P_VALUE.set(math.nan if rates is None else rates.p_value)
    LOOP_SCORE_CHANGE_DIFFERENCE_P_VALUE.set(math.nan if changes is None else changes.p_value)
    quantiles = found.delays.quantiles
    for i, q in enumerate(QUANTILES):
        LOOP_TIME_TO_FIRST_CONTACT.labels(percentile=f"{q * 100:g}").set(
            math.nan if quantiles is None else quantiles[i]
        )
    for priority in Priority:
        share = found.sla.share(DEFAULT_CONFIDENCE, priority=priority.value)
        LOOP_FIRST_CONTACT_WITHIN_SLA_RATIO.labels(priority=priority.value).set(
            _or_nan(share.value)
        )
    return found


async def run_gauges(runtime: ServiceRuntime, interval: float) -> None:
    async def step() -> bool:
        await recount_gauges(runtime)
        return False

    await repeat(step, wake=asyncio.Event(), idle=interval, name="loop-impact-gauges")
