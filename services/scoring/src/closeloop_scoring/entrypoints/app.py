"""Scoring's consumer (responses, corrections, suspicions, invitations) and HTTP API."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.clock import Clock
from closeloop_common.events import Dimension, InvitationSentV1
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import AdminTenant, Problem, ReadTenant, create_app
from closeloop_scoring import views
from closeloop_scoring.adapters.tables import account_weights, metadata
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.aggregation import attribute_dimension
from closeloop_scoring.domain.drivers import drivers
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, Method, compare
from closeloop_scoring.domain.themes import ThemeTagger
from closeloop_scoring.domain.whatif import (
    ImpossibleScenario,
    SegmentReachesNps,
    ThemeDetractorsBecomePassives,
    WinBack,
    project,
)
from closeloop_scoring.entrypoints.queries import (
    BREAKDOWN,
    DEFAULT_METHOD,
    AttributeFilters,
    Confidence,
    FilterQuery,
    MethodQuery,
    WindowQuery,
    attribute_pairs,
    breakdown_dimension,
    window_json,
    with_legacy_segment,
)
from closeloop_scoring.reports import Statistics, comparison_json, report, rounded, tally_report
from closeloop_scoring.service_layer.aggregation import RESPONSE_CONTRACTS, Aggregator
from closeloop_scoring.service_layer.headlines import HeadlineWatcher
from closeloop_scoring.service_layer.state import check_time_zone

Filters = Annotated[FilterQuery, Depends()]
Window = Annotated[WindowQuery, Depends()]
Granularity = Literal["day", "week", "month"]


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


class AccountWeight(BaseModel):
    revenue_weight: float = Field(ge=0, le=1e12, description="e.g. annual revenue or its share")


def build_router(runtime: ServiceRuntime, settings: ScoringSettings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["nps"])
    zone = settings.time_zone
    scored = settings.scoring_attributes

    def stats_of(method: Method, confidence: float) -> Statistics:
        return Statistics(method, confidence, settings.scoring_min_responses)

    def days_of(window: WindowQuery, default: windows.WindowName = "all") -> views.Days:
        return window.resolve(now=runtime.clock.now(), zone=zone, default=default)

    @router.get(
        "/nps",
        summary="NPS of the responses matching every filter given, over a window",
        description="Filters combine (`region=PL&product=billing`). Windows: `window` "
        "(7d, 30d, 90d, month, quarter, previous-month, previous-quarter, all), `days`, "
        "`month`, `quarter` or `from`/`to` (local days, `to` exclusive) in the configured "
        "time zone; all time by default. `dimension`/`segment` are the first version's form "
        "of one filter.",
    )
    async def nps(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        dimension: Dimension = "overall",
        segment: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        chosen = with_legacy_segment(filters.filters(scored), dimension, segment)
        days = days_of(window)
        async with runtime.sessions() as session:
            found = await views.tally(session, tenant, chosen, days)
        return {
            "tenant_id": tenant,
            "filters": chosen.given(),
            "window": window_json(days, zone),
            **tally_report(found, stats_of(method, confidence)),
        }

    @router.get(
        "/nps/trend",
        summary="NPS per day, ISO week or month across a window (90 days by default)",
        description="Buckets are local days, weeks (Monday first) or months, the first and last "
        "clipped to the window; a bucket without answers has n = 0 and a null NPS.",
    )
    async def trend(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        granularity: Granularity = "week",
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window, default="90d")
        if days.first is None or days.end is None:
            raise Problem(400, "invalid-window", "Invalid window", "a trend needs a bounded window")
        try:
            buckets = windows.buckets(
                windows.between(days.first, days.end, zone), granularity, zone
            )
        except ValueError as exc:
            raise Problem(400, "invalid-window", "Invalid window", str(exc)) from exc
        async with runtime.sessions() as session:
            found = await views.tallies(
                session, tenant, filters.filters(scored), days, granularity=granularity
            )
        stats = stats_of(method, confidence)
        points = []
        for bucket in buckets:
            first, end = windows.local_days(bucket, zone)
            tally = found.get((windows.truncate(first, granularity),), views.EMPTY)
            points.append({"from": first, "to": end, **tally_report(tally, stats)})
        return {
            "tenant_id": tenant,
            "filters": filters.filters(scored).given(),
            "window": window_json(days, zone),
            "granularity": granularity,
            "points": points,
        }

    @router.get(
        "/nps/compare",
        summary="Whether the NPS differs from a baseline beyond chance",
        description="The compared side is the filters and window given; the baseline is the "
        "same unless `baseline_<filter>` or `baseline_from`/`baseline_to` change it. Answers "
        "both figures and the difference (compared minus baseline) with its standard error, z, "
        "two-sided p-value and significance; `comparison` is null when either side has no "
        "answer. The samples must not overlap for the test to be valid (different windows, or "
        "segments of the same dimension).",
    )
    async def compare_nps(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        dimension: Dimension = "overall",
        segment: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_segment: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_survey: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_account: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_product: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_region: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_channel: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_touchpoint: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        baseline_first: Annotated[date | None, Query(alias="baseline_from")] = None,
        baseline_end: Annotated[date | None, Query(alias="baseline_to")] = None,
        baseline_attribute: AttributeFilters = None,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        chosen = with_legacy_segment(filters.filters(scored), dimension, segment)
        days = days_of(window)
        overrides = {
            "survey": baseline_survey,
            "account": baseline_account,
            "product": baseline_product,
            "region": baseline_region,
            "channel": baseline_channel,
            "touchpoint": baseline_touchpoint,
        }
        if baseline_segment is not None and dimension != "overall":
            overrides[dimension] = baseline_segment
        for name, value in attribute_pairs(baseline_attribute or (), scored):
            overrides[attribute_dimension(name)] = value
        base_filters = views.Filters.of(
            {**chosen.given(), **{k: v for k, v in overrides.items() if v is not None}}
        )
        if baseline_first is None and baseline_end is None:
            base_days = days
        else:
            base_days = WindowQuery(first=baseline_first, end=baseline_end).resolve(
                now=runtime.clock.now(), zone=zone
            )
        if base_filters == chosen and base_days == days:
            raise Problem(
                400,
                "nothing-to-compare",
                "Nothing to compare",
                "give a baseline_<filter> or a baseline_from/baseline_to that differs",
            )
        stats = stats_of(method, confidence)
        async with runtime.sessions() as session:
            compared = await views.tally(session, tenant, chosen, days)
            against = await views.tally(session, tenant, base_filters, base_days)
        found = compare(compared.counts, against.counts, method=method, confidence=confidence)
        return {
            "tenant_id": tenant,
            "dimension": dimension,
            "compared": {
                "filters": chosen.given(),
                "segment": segment or "all",
                "window": window_json(days, zone),
                **tally_report(compared, stats),
            },
            "baseline": {
                "filters": base_filters.given(),
                "segment": baseline_segment or segment or "all",
                "window": window_json(base_days, zone),
                **tally_report(against, stats),
            },
            "comparison": comparison_json(found),
        }

    @router.get(
        "/nps/breakdown",
        summary="NPS of each value of one dimension (`by`), most answers first",
    )
    async def breakdown(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        by: Annotated[
            str,
            Query(
                pattern=BREAKDOWN.pattern,
                description="a filter name, or `attr.<name>` of a scored custom attribute",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window)
        by = breakdown_dimension(by, scored)
        async with runtime.sessions() as session:
            found = await views.tallies(session, tenant, filters.filters(scored), days, by=by)
        stats = stats_of(method, confidence)
        ordered = sorted(found.items(), key=lambda kv: (-kv[1].counts.responses, str(kv[0][0])))
        return {
            "tenant_id": tenant,
            "by": by,
            "filters": filters.filters(scored).given(),
            "window": window_json(days, zone),
            "segments": [
                {"segment": key[0], **tally_report(tally, stats)} for key, tally in ordered[:limit]
            ],
            "truncated": len(ordered) > limit,
        }

    @router.get(
        "/drivers",
        tags=["drivers"],
        summary="Themes of the comments: share among each category and NPS impact",
        description="A theme's impact is how many NPS points the score would rise if the "
        "detractors who mention it were passives, with its interval; themes come from the "
        "configured Polish and English dictionaries (any inflection, with or without "
        "diacritics). 90 days by default.",
    )
    async def get_drivers(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window, default="90d")
        chosen = filters.filters(scored)
        async with runtime.sessions() as session:
            total = await views.tally(session, tenant, chosen, days)
            by_theme = await views.theme_tallies(session, tenant, chosen, days)
        found = drivers(total.counts, by_theme, confidence=confidence)
        return {
            "tenant_id": tenant,
            "filters": chosen.given(),
            "window": window_json(days, zone),
            "n": total.counts.responses,
            "nps": rounded(total.counts.nps),
            "drivers": [
                {
                    "theme": d.theme,
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

    @router.post(
        "/what-if",
        tags=["drivers"],
        summary="The NPS a change would bring, with its interval and the change from today",
    )
    async def what_if(tenant: ReadTenant, request: WhatIfRequest) -> dict[str, Any]:
        chosen = request.filters.filters(scored)
        days = WindowQuery(window=request.window).resolve(now=runtime.clock.now(), zone=zone)
        scenario = request.scenario
        async with runtime.sessions() as session:
            total = (await views.tally(session, tenant, chosen, days)).counts
            if isinstance(scenario, ThemeScenario):
                themes = await views.theme_tallies(session, tenant, chosen, days)
                mentions = themes.get(scenario.theme)
                planned: Any = ThemeDetractorsBecomePassives(mentions.detractors if mentions else 0)
            else:
                given, extra = chosen.given(), scenario.segment.filters(scored).given()
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
            "window": window_json(days, zone),
            "today": {**report(total, stats_of(request.method, request.confidence))},
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

    @router.get("/accounts", tags=["accounts"], summary="NPS per account, optionally weighted")
    async def accounts(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        weighted: bool = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window)
        async with runtime.sessions() as session:
            found = await views.tallies(
                session, tenant, filters.filters(scored), days, by="account"
            )
            weights = {
                row.account_id: row.revenue_weight
                for row in await session.execute(
                    sa.select(account_weights.c.account_id, account_weights.c.revenue_weight).where(
                        account_weights.c.tenant_id == tenant
                    )
                )
            }
        stats = stats_of(method, confidence)
        ordered = sorted(found.items(), key=lambda kv: (-kv[1].counts.responses, str(kv[0][0])))
        body: dict[str, Any] = {
            "tenant_id": tenant,
            "filters": filters.filters(scored).given(),
            "window": window_json(days, zone),
            "accounts": [
                {
                    "account_id": key[0],
                    "revenue_weight": weights.get(key[0]),
                    **tally_report(tally, stats),
                }
                for key, tally in ordered[:limit]
            ],
            "truncated": len(ordered) > limit,
        }
        if weighted:
            body["weighted"] = weighted_nps(
                {key[0]: tally.counts.nps for key, tally in found.items()}, weights
            )
        return body

    @router.get("/accounts/{account_id}/nps", tags=["accounts"], summary="One account's NPS")
    async def account_nps(
        account_id: Annotated[str, Field(min_length=1, max_length=200)],
        tenant: ReadTenant,
        window: Window,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window)
        async with runtime.sessions() as session:
            found = await views.tally(session, tenant, views.Filters(account=account_id), days)
            weight = await session.scalar(
                sa.select(account_weights.c.revenue_weight).where(
                    account_weights.c.tenant_id == tenant,
                    account_weights.c.account_id == account_id,
                )
            )
        return {
            "tenant_id": tenant,
            "account_id": account_id,
            "revenue_weight": weight,
            "window": window_json(days, zone),
            **tally_report(found, stats_of(method, confidence)),
        }

    @router.put(
        "/accounts/{account_id}/weight",
        tags=["accounts"],
        summary="Set an account's revenue weight (as a CRM syncs it)",
    )
    async def put_weight(
        account_id: Annotated[str, Field(min_length=1, max_length=200)],
        tenant: AdminTenant,
        weight: AccountWeight,
    ) -> dict[str, Any]:
        now = runtime.clock.now()
        async with runtime.transaction() as tx:
            stmt = pg_insert(account_weights).values(
                tenant_id=tenant,
                account_id=account_id,
                revenue_weight=weight.revenue_weight,
                updated_at=now,
            )
            await tx.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[account_weights.c.tenant_id, account_weights.c.account_id],
                    set_={"revenue_weight": weight.revenue_weight, "updated_at": now},
                )
            )
        return {
            "account_id": account_id,
            "revenue_weight": weight.revenue_weight,
            "updated_at": now,
        }

    @router.get(
        "/nps/{dimension}",
        summary="NPS of every segment of a dimension (the first version's form of breakdown)",
        deprecated=True,
    )
    async def nps_by_segment(
        dimension: Dimension,
        tenant: ReadTenant,
        window: Window,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = days_of(window)
        by: views.FilterName | None = None if dimension == "overall" else dimension
        async with runtime.sessions() as session:
            found = await views.tallies(session, tenant, views.Filters(), days, by=by)
        stats = stats_of(method, confidence)
        rows = [((k[0] if k else "all"), t) for k, t in found.items()]
        rows.sort(key=lambda kv: (-kv[1].counts.responses, kv[0]))
        return {
            "tenant_id": tenant,
            "dimension": dimension,
            "window": window_json(days, zone),
            "segments": [
                {"segment": name, **tally_report(t, stats)}
                for name, t in rows
                if t.counts.responses or t.suspected or t.invitations
            ],
        }

    return router


def weighted_nps(
    nps_by_account: dict[str, float | None], weights: dict[str, float]
) -> dict[str, Any]:
    """The revenue-weighted mean of the accounts' NPS (accounts with answers and a weight)."""
    pairs = [
        (nps, weights[a]) for a, nps in nps_by_account.items() if nps is not None and a in weights
    ]
    total = sum(w for _, w in pairs)
    return {
        "nps": rounded(sum(n * w for n, w in pairs) / total) if total > 0 else None,
        "accounts": len(pairs),
        "accounts_without_weight": sum(1 for a in nps_by_account if a not in weights),
    }


def create_scoring_app(
    settings: ScoringSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or ScoringSettings()
    runtime = ServiceRuntime(name="scoring", settings=settings, metadata=metadata, clock=clock)
    aggregator = Aggregator(
        sessions=runtime.worker_sessions,
        time_zone=settings.time_zone,
        tagger=ThemeTagger(settings.themes()),
        attributes=settings.scoring_attributes,
    )
    runtime.on_batches(RESPONSE_CONTRACTS, aggregator.responses, idempotent=True)
    runtime.on_batch(InvitationSentV1, aggregator.invitations, idempotent=True)

    async def time_zone_matches() -> None:
        await check_time_zone(runtime.worker_sessions, settings.scoring_time_zone)

    runtime.before_start(time_zone_matches)
    headlines = HeadlineWatcher.configured(runtime, settings)
    if headlines.headlines:
        runtime.add_worker("headlines", headlines.run)
    app = create_app(
        title="Closeloop scoring", runtime=runtime, routers=[build_router(runtime, settings)]
    )
    app.state.aggregator = aggregator
    app.state.headlines = headlines
    return app
