"""Scoring's consumer (`response.received.v1`) and HTTP API (`GET /v1/nps...`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query

from closeloop_common.clock import Clock
from closeloop_common.events import Dimension, ResponseReceivedV1
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import Problem, ReadTenant, create_app
from closeloop_scoring import views
from closeloop_scoring.adapters.tables import metadata
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain.nps import OVERALL_SEGMENT
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, Method, compare
from closeloop_scoring.service_layer.counting import count_response

From = Annotated[date | None, Query(alias="from", description="first answer day (UTC), inclusive")]
To = Annotated[date | None, Query(alias="to", description="last answer day (UTC), inclusive")]
Days = Annotated[int | None, Query(ge=1, le=3660, description="rolling window ending today")]
MethodQuery = Annotated[
    Method,
    Query(description="interval method: adjusted-wald (better coverage for small samples) or wald"),
]
Confidence = Annotated[
    float, Query(gt=0.5, lt=1.0, description="confidence level of the interval and the test")
]


def build_router(runtime: ServiceRuntime, settings: ScoringSettings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["nps"])

    def stats_of(method: Method, confidence: float) -> views.Statistics:
        return views.Statistics(method, confidence, settings.scoring_min_responses)

    def window_of(first_day: date | None, last_day: date | None, days: int | None) -> views.Window:
        try:
            return views.window_from_query(
                first_day, last_day, days, today=runtime.clock.now().date()
            )
        except views.InvalidWindow as exc:
            raise Problem(400, "invalid-window", "Invalid window", str(exc)) from exc

    @router.get("/nps", summary="NPS of one segment (overall by default) over a window")
    async def nps(
        tenant: ReadTenant,
        first_day: From = None,
        last_day: To = None,
        days: Days = None,
        dimension: Dimension = "overall",
        segment: str = OVERALL_SEGMENT,
        method: MethodQuery = "adjusted-wald",
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        window = window_of(first_day, last_day, days)
        async with runtime.sessions() as session:
            return await views.nps_of_segment(
                session=session,
                tenant_id=tenant,
                dimension=dimension,
                segment=segment,
                window=window,
                stats=stats_of(method, confidence),
            )

    @router.get(
        "/nps/compare",
        summary="Whether a segment's NPS over a window differs from a baseline beyond chance",
        description="The baseline is another segment of the same dimension (`baseline_segment`), "
        "another window (`baseline_from`/`baseline_to`), or both; what is left out is the same "
        "as the compared side. Answers both figures and the difference (compared minus "
        "baseline) with its standard error, z, two-sided p-value and significance; `comparison` "
        "is null when either side has no answer.",
    )
    async def compare_nps(
        tenant: ReadTenant,
        first_day: From = None,
        last_day: To = None,
        dimension: Dimension = "overall",
        segment: str = OVERALL_SEGMENT,
        baseline_segment: str | None = None,
        baseline_first_day: Annotated[date | None, Query(alias="baseline_from")] = None,
        baseline_last_day: Annotated[date | None, Query(alias="baseline_to")] = None,
        method: MethodQuery = "adjusted-wald",
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        window = window_of(first_day, last_day, None)
        other_segment = baseline_segment or segment
        if baseline_first_day is None and baseline_last_day is None:
            baseline = window
        else:
            baseline = window_of(baseline_first_day, baseline_last_day, None)
        if other_segment == segment and baseline == window:
            raise Problem(
                400,
                "nothing-to-compare",
                "Nothing to compare",
                "give a baseline_segment or a baseline_from/baseline_to that differs",
            )
        stats = stats_of(method, confidence)
        async with runtime.sessions() as session:
            compared = await views.counts_of_segment(
                session=session,
                tenant_id=tenant,
                dimension=dimension,
                segment=segment,
                window=window,
            )
            against = await views.counts_of_segment(
                session=session,
                tenant_id=tenant,
                dimension=dimension,
                segment=other_segment,
                window=baseline,
            )
        found = compare(compared, against, method=method, confidence=confidence)
        return {
            "tenant_id": tenant,
            "dimension": dimension,
            "compared": {
                "segment": segment,
                "window": window.json(),
                **views.report(compared, stats),
            },
            "baseline": {
                "segment": other_segment,
                "window": baseline.json(),
                **views.report(against, stats),
            },
            "comparison": views.comparison_json(found),
        }

    @router.get(
        "/nps/{dimension}", summary="NPS of every segment of a dimension, most answers first"
    )
    async def nps_by_segment(
        dimension: Dimension,
        tenant: ReadTenant,
        first_day: From = None,
        last_day: To = None,
        days: Days = None,
        method: MethodQuery = "adjusted-wald",
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        window = window_of(first_day, last_day, days)
        async with runtime.sessions() as session:
            return await views.nps_by_segment(
                session=session,
                tenant_id=tenant,
                dimension=dimension,
                window=window,
                stats=stats_of(method, confidence),
            )

    return router


def create_scoring_app(
    settings: ScoringSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or ScoringSettings()
    runtime = ServiceRuntime(name="scoring", settings=settings, metadata=metadata, clock=clock)

    runtime.on(ResponseReceivedV1, count_response)
    return create_app(
        title="Closeloop scoring", runtime=runtime, routers=[build_router(runtime, settings)]
    )
