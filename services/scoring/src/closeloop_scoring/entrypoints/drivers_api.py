"""Drivers (themes of the comments and root causes of the cases, with their NPS impact) and
what-if projections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from closeloop_common.openapi import BAD_REQUEST
from closeloop_common.web import Problem, ReadTenant
from closeloop_scoring import views
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.drivers import DriverSource, drivers, source_of
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, Method
from closeloop_scoring.domain.whatif import (
    ImpossibleScenario,
    SegmentReachesNps,
    ThemeDetractorsBecomePassives,
    WinBack,
    project,
)
from closeloop_scoring.entrypoints.queries import (
    DEFAULT_METHOD,
    Confidence,
    FilterQuery,
    WindowQuery,
    window_json,
)
from closeloop_scoring.entrypoints.reading import Filters, Reads, Window
from closeloop_scoring.reports import report, rounded

MAX_THEME_RESPONSES = 10_000


class ThemeScenario(BaseModel):
    kind: Literal["theme-detractors-become-passives"]
    theme: str = Field(min_length=1, max_length=100)


class WinBackScenario(BaseModel):
    kind: Literal["win-back"]
    segment: FilterQuery = FilterQuery()
    share: float = Field(gt=0, le=1, description="share of the segment's detractors won back")
    to: Literal["passive", "promoter"] = "passive"


class TargetScenario(BaseModel):
    kind: Literal["segment-reaches-nps"]
    segment: FilterQuery = FilterQuery()
    target: float = Field(ge=-100, le=100)


class WhatIfRequest(BaseModel):
    """A scenario over the responses the filters and window select (the segment of a scenario is
    narrowed by the request's filters too)."""

    scenario: Annotated[
        ThemeScenario | WinBackScenario | TargetScenario, Field(discriminator="kind")
    ]
    filters: FilterQuery = FilterQuery()
    window: windows.WindowName = "90d"
    method: Method = DEFAULT_METHOD
    confidence: float = Field(DEFAULT_CONFIDENCE, gt=0.5, lt=1.0)


def build_drivers_router(reads: Reads) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["drivers"], responses={**BAD_REQUEST})

    @router.get(
        "/drivers",
        tags=["drivers"],
        summary="Themes of the comments and root causes of the cases: share among each "
        "category and NPS impact",
        description="A theme's impact is how many NPS points the score would rise if the "
        "detractors who mention it were passives, with its interval; themes come from the "
        "configured Polish and English dictionaries (any inflection, with or without "
        "diacritics), `source: comment`. The root causes agents tagged a response's case with "
        "are drivers too, named `rc:<tag>`, `source: root_cause`; `source=` keeps one kind. "
        "90 days by default.",
    )
    async def get_drivers(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        confidence: Confidence = DEFAULT_CONFIDENCE,
        source: Annotated[
            DriverSource | None,
            Query(description="only drivers of this source (both when absent)"),
        ] = None,
    ) -> dict[str, Any]:
        days = reads.days_of(window, default="90d")
        chosen = filters.filters(reads.scored)
        async with reads.runtime.sessions() as session:
            total = await views.tally(session, tenant, chosen, days)
            by_theme = await views.theme_tallies(session, tenant, chosen, days)
        if source is not None:
            by_theme = {t: c for t, c in by_theme.items() if source_of(t) == source}
        found = drivers(total.counts, by_theme, confidence=confidence)
        return {
            "tenant_id": tenant,
            "filters": chosen.given(),
            "window": window_json(days, reads.zone),
            "n": total.counts.responses,
            "nps": rounded(total.counts.nps),
            "drivers": [
                {
                    "theme": d.theme,
                    "source": d.source,
                    "mentions": {
                        "promoters": d.mentions.promoters,
                        "passives": d.mentions.passives,
                        "detractors": d.mentions.detractors,
                    },
                    "share_of_detractors": rounded(d.share_of_detractors, 4),
                    "share_of_passives": rounded(d.share_of_passives, 4),
                    "share_of_promoters": rounded(d.share_of_promoters, 4),
                    "nps_impact": rounded(d.nps_impact),
                    "impact_low": rounded(d.impact_low),
                    "impact_high": rounded(d.impact_high),
                    "confidence": d.confidence,
                }
                for d in found
            ],
        }

    @router.get(
        "/themes/{theme}/responses",
        tags=["drivers"],
        summary="The responses that mention a theme (or whose case has a root cause `rc:<tag>`)",
        description="Response ids of the categories asked for (detractors and passives by "
        "default: those who complained), suspected responses left out, newest day first. A "
        "structural issue made from a theme links the cases and the customers it concerns "
        "from this list. 90 days by default.",
    )
    async def get_theme_responses(
        theme: Annotated[str, Path(min_length=1, max_length=100)],
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        category: Annotated[
            list[Literal["promoter", "passive", "detractor"]] | None, Query(max_length=3)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_THEME_RESPONSES)] = MAX_THEME_RESPONSES,
    ) -> dict[str, Any]:
        days = reads.days_of(window, default="90d")
        chosen = filters.filters(reads.scored)
        categories = sorted(set(category or ("detractor", "passive")))
        async with reads.runtime.sessions() as session:
            found = await views.theme_responses(
                session, tenant, chosen, days, theme=theme, categories=categories,
                limit=limit + 1,
            )  # fmt: skip
        return {
            "tenant_id": tenant,
            "theme": theme,
            "filters": chosen.given(),
            "window": window_json(days, reads.zone),
            "categories": categories,
            "response_ids": found[:limit],
            "truncated": len(found) > limit,
        }

    @router.post(
        "/what-if",
        tags=["drivers"],
        summary="The NPS a change would bring, with its interval and the change from today",
    )
    async def what_if(tenant: ReadTenant, request: WhatIfRequest) -> dict[str, Any]:
        chosen = request.filters.filters(reads.scored)
        days = WindowQuery(window=request.window).resolve(
            now=reads.runtime.clock.now(), zone=reads.zone
        )
        scenario = request.scenario
        async with reads.runtime.sessions() as session:
            total = (await views.tally(session, tenant, chosen, days)).counts
            if isinstance(scenario, ThemeScenario):
                themes = await views.theme_tallies(session, tenant, chosen, days)
                mentions = themes.get(scenario.theme)
                planned: Any = ThemeDetractorsBecomePassives(mentions.detractors if mentions else 0)
            else:
                given, extra = chosen.given(), scenario.segment.filters(reads.scored).given()
                if any(given.get(name, value) != value for name, value in extra.items()):
                    # Outside what the request's filters select: none of the total's answers.
                    segment = NpsCounts()
                else:
                    narrowed = views.Filters.of({**given, **extra})
                    segment = (await views.tally(session, tenant, narrowed, days)).counts
                planned = (
                    WinBack(segment, scenario.share, scenario.to)
                    if isinstance(scenario, WinBackScenario)
                    else SegmentReachesNps(segment, scenario.target)
                )
        try:
            found = project(total, planned, method=request.method, confidence=request.confidence)
        except ImpossibleScenario as exc:
            raise Problem(422, "impossible-scenario", "Impossible scenario", str(exc)) from exc
        return {
            "tenant_id": tenant,
            "filters": chosen.given(),
            "window": window_json(days, reads.zone),
            "today": {**report(total, reads.stats_of(request.method, request.confidence))},
            "projected_nps": rounded(found.projected),
            "change": rounded(found.change),
            "ci_low": rounded(found.ci_low),
            "ci_high": rounded(found.ci_high),
            "confidence": found.confidence,
            "method": found.method,
            "projected_counts": {
                "promoters": round(found.projected_mix.promoters, 2),
                "passives": round(found.projected_mix.passives, 2),
                "detractors": round(found.projected_mix.detractors, 2),
            },
        }

    return router
