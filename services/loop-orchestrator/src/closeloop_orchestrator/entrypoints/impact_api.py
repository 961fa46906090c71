"""`GET /v1/loop/impact` (scope `read`): what closing the loop changes, for dashboards.

The window is of case openings, UTC days [`from`, `to`) (`to` exclusive, as scoring's windows),
the last 90 days today included by default. The figures come from the orchestrator's own tables
(`service_layer/impact.py`); the done issues' NPS before and after come from scoring, asked with
the caller's token: scoring down marks those issues `unavailable`, the answer still comes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from closeloop_common.openapi import BAD_REQUEST
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.statistics import DEFAULT_CONFIDENCE
from closeloop_common.web import Problem, ReadTenant
from closeloop_orchestrator import impact_views
from closeloop_orchestrator.adapters.scoring_client import ScoringClient
from closeloop_orchestrator.service_layer import impact, impact_issues

DEFAULT_DAYS = 90
CaseType = Literal["detractor", "passive", "promoter", "no_response"]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def window_of(first: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """[first, end) of the query: `end` defaults to tomorrow (today included), `first` to
    `DEFAULT_DAYS` days before `end`; a window whose end is not after its start is a 400."""
    end = end or today + timedelta(days=1)
    first = first or end - timedelta(days=DEFAULT_DAYS)
    if end <= first:
        raise Problem(400, "invalid-window", "Invalid window", "`to` must be after `from`")
    return first, end


def build_impact_router(runtime: ServiceRuntime, scoring: ScoringClient) -> APIRouter:
    router = APIRouter(prefix="/v1/loop", tags=["the loop's impact"], responses={**BAD_REQUEST})

    @router.get(
        "/impact",
        summary="The loop's impact: re-survey figures of closed versus not closed loops, "
        "first-contact SLA and delays, and done issues' NPS before and after",
    )
    async def loop_impact(
        tenant: ReadTenant,
        request: Request,
        first: Annotated[
            date | None, Query(alias="from", description="first UTC day of openings, inclusive")
        ] = None,
        end: Annotated[
            date | None, Query(alias="to", description="UTC day the openings end before")
        ] = None,
        survey_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        case_type: CaseType | None = None,
        days: Annotated[
            int,
            Query(ge=1, le=366, description="days before and after a done issue's decision"),
        ] = DEFAULT_DAYS,
        confidence: Annotated[
            float, Query(gt=0.5, lt=1.0, description="confidence of intervals and tests")
        ] = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        now = runtime.clock.now()
        today = now.astimezone(UTC).date()
        first, end = window_of(first, end, today=today)
        scope = impact.Scope(
            tenant_id=tenant,
            opened_from=_midnight(first),
            opened_before=_midnight(end),
            now=now,
            survey_id=survey_id,
            case_type=case_type,
        )
        async with runtime.sessions() as session:
            found = await impact.figures(session, scope, confidence)
            issues = await impact_issues.done_issues(
                session,
                tenant_id=tenant,
                decided_from=scope.opened_from,
                decided_before=_midnight(end),
            )
        compared = await impact_issues.compare_issues(
            scoring,
            issues,
            authorization=request.headers.get("authorization", ""),
            days=days,
            today=today,
            confidence=confidence,
        )
        return {
            "tenant_id": tenant,
            "window": {"from": first, "to": end, "time_zone": "UTC"},
            "filters": {"survey_id": survey_id, "case_type": case_type},
            "confidence": confidence,
            **impact_views.figures_json(found, confidence),
            "issues": [impact_views.issue_json(issue) for issue in compared],
        }

    return router
