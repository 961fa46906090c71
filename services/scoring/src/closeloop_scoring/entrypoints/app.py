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
from closeloop_scoring.service_layer.counting import count_response

From = Annotated[date | None, Query(alias="from", description="first answer day (UTC), inclusive")]
To = Annotated[date | None, Query(alias="to", description="last answer day (UTC), inclusive")]
Days = Annotated[int | None, Query(ge=1, le=3660, description="rolling window ending today")]


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["nps"])

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
    ) -> dict[str, Any]:
        window = window_of(first_day, last_day, days)
        async with runtime.sessions() as session:
            return await views.nps_of_segment(
                session=session,
                tenant_id=tenant,
                dimension=dimension,
                segment=segment,
                window=window,
            )

    @router.get(
        "/nps/{dimension}", summary="NPS of every segment of a dimension, most answers first"
    )
    async def nps_by_segment(
        dimension: Dimension,
        tenant: ReadTenant,
        first_day: From = None,
        last_day: To = None,
        days: Days = None,
    ) -> dict[str, Any]:
        window = window_of(first_day, last_day, days)
        async with runtime.sessions() as session:
            return await views.nps_by_segment(
                session=session, tenant_id=tenant, dimension=dimension, window=window
            )

    return router


def create_scoring_app(
    settings: ScoringSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    runtime = ServiceRuntime(
        name="scoring", settings=settings or ScoringSettings(), metadata=metadata, clock=clock
    )

    runtime.on(ResponseReceivedV1, count_response)
    return create_app(title="Closeloop scoring", runtime=runtime, routers=[build_router(runtime)])
