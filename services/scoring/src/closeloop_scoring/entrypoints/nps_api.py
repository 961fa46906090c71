"""Scoring's NPS routes: one figure, a trend, a comparison and a breakdown, for any filters and window."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from closeloop_common.events import Dimension
from closeloop_common.openapi import BAD_REQUEST
from closeloop_common.web import Problem, ReadTenant
from closeloop_scoring import views
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.aggregation import attribute_dimension
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, compare
from closeloop_scoring.entrypoints.queries import (
    BREAKDOWN,
    DEFAULT_METHOD,
    AttributeFilters,
    Confidence,
    MethodQuery,
    WindowQuery,
    attribute_pairs,
    breakdown_dimension,
    window_json,
    with_legacy_segment,
)
from closeloop_scoring.entrypoints.reading import Filters, Granularity, Reads, Window
from closeloop_scoring.reports import comparison_json, tally_report


def build_nps_router(reads: Reads) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["nps"], responses={**BAD_REQUEST})

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
        chosen = with_legacy_segment(filters.filters(reads.scored), dimension, segment)
        days = reads.days_of(window)
        async with reads.runtime.sessions() as session:
            found = await views.tally(session, tenant, chosen, days)
        return {
            "tenant_id": tenant,
            "filters": chosen.given(),
            "window": window_json(days, reads.zone),
            **tally_report(found, reads.stats_of(method, confidence)),
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
        days = reads.days_of(window, default="90d")
        if days.first is None or days.end is None:
            raise Problem(400, "invalid-window", "Invalid window", "a trend needs a bounded window")
        try:
            buckets = windows.buckets(
                windows.between(days.first, days.end, reads.zone), granularity, reads.zone
            )
        except ValueError as exc:
            raise Problem(400, "invalid-window", "Invalid window", str(exc)) from exc
        async with reads.runtime.sessions() as session:
            found = await views.tallies(
                session, tenant, filters.filters(reads.scored), days, granularity=granularity
            )
        stats = reads.stats_of(method, confidence)
        points = []
        for bucket in buckets:
            first, end = windows.local_days(bucket, reads.zone)
            tally = found.get((windows.truncate(first, granularity),), views.EMPTY)
            points.append({"from": first, "to": end, **tally_report(tally, stats)})
        return {
            "tenant_id": tenant,
            "filters": filters.filters(reads.scored).given(),
            "window": window_json(days, reads.zone),
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
        chosen = with_legacy_segment(filters.filters(reads.scored), dimension, segment)
        days = reads.days_of(window)
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
        for name, value in attribute_pairs(baseline_attribute or (), reads.scored):
            overrides[attribute_dimension(name)] = value
        base_filters = views.Filters.of(
            {**chosen.given(), **{k: v for k, v in overrides.items() if v is not None}}
        )
        if baseline_first is None and baseline_end is None:
            base_days = days
        else:
            base_days = WindowQuery(first=baseline_first, end=baseline_end).resolve(
                now=reads.runtime.clock.now(), zone=reads.zone
            )
        if base_filters == chosen and base_days == days:
            raise Problem(
                400,
                "nothing-to-compare",
                "Nothing to compare",
                "give a baseline_<filter> or a baseline_from/baseline_to that differs",
            )
        stats = reads.stats_of(method, confidence)
        async with reads.runtime.sessions() as session:
            compared = await views.tally(session, tenant, chosen, days)
            against = await views.tally(session, tenant, base_filters, base_days)
        found = compare(compared.counts, against.counts, method=method, confidence=confidence)
        return {
            "tenant_id": tenant,
            "dimension": dimension,
            "compared": {
                "filters": chosen.given(),
                "segment": segment or "all",
                "window": window_json(days, reads.zone),
                **tally_report(compared, stats),
            },
            "baseline": {
                "filters": base_filters.given(),
                "segment": baseline_segment or segment or "all",
                "window": window_json(base_days, reads.zone),
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
        days = reads.days_of(window)
        by = breakdown_dimension(by, reads.scored)
        async with reads.runtime.sessions() as session:
            found = await views.tallies(session, tenant, filters.filters(reads.scored), days, by=by)
        stats = reads.stats_of(method, confidence)
        ordered = views.most_answered(found)
        return {
            "tenant_id": tenant,
            "by": by,
            "filters": filters.filters(reads.scored).given(),
            "window": window_json(days, reads.zone),
            "segments": [
                {"segment": value, **tally_report(tally, stats)} for value, tally in ordered[:limit]
            ],
            "truncated": len(ordered) > limit,
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
        days = reads.days_of(window)
        by: views.FilterName | None = None if dimension == "overall" else dimension
        async with reads.runtime.sessions() as session:
            found = await views.tallies(session, tenant, views.Filters(), days, by=by)
        stats = reads.stats_of(method, confidence)
        rows = [((k[0] if k else "all"), t) for k, t in found.items()]
        rows.sort(key=lambda kv: (-kv[1].counts.responses, kv[0]))
        return {
            "tenant_id": tenant,
            "dimension": dimension,
            "window": window_json(days, reads.zone),
            "segments": [
                {"segment": name, **tally_report(t, stats)}
                for name, t in rows
                if t.counts.responses or t.suspected or t.invitations
            ],
        }

    return router
