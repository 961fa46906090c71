"""Scoring's read side: NPS of segments over a window of answer days, as the API answers it.

Counts are summed over the window's days and NPS, margin of error and rounding are computed here,
on read (the tables keep counts only). No writes happen here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import Dimension
from closeloop_scoring.adapters.tables import CATEGORY_TOTALS
from closeloop_scoring.adapters.tables import segment_daily as t
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_N,
    Comparison,
    Method,
    estimate,
)


class InvalidWindow(ValueError):
    """The query names no consistent window of days."""


@dataclass(frozen=True, slots=True)
class Window:
    """Inclusive range of answer days (UTC); None on a side means unbounded."""

    first_day: date | None = None
    last_day: date | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.first_day is not None:
            clauses.append(t.c.day >= self.first_day)
        if self.last_day is not None:
            clauses.append(t.c.day <= self.last_day)
        return clauses

    def json(self) -> dict[str, Any]:
        return {"from": self.first_day, "to": self.last_day}


def window_from_query(
    first_day: date | None, last_day: date | None, days: int | None, *, today: date
) -> Window:
    """`days` (a rolling window ending today) or `from`/`to`, not both; unbounded if neither."""
    if days is not None:
        if first_day is not None or last_day is not None:
            raise InvalidWindow("give either days or from/to, not both")
        return Window(today - timedelta(days=days - 1), today)
    if first_day and last_day and first_day > last_day:
        raise InvalidWindow("from is after to")
    return Window(first_day, last_day)


@dataclass(frozen=True, slots=True)
class Statistics:
    """How a figure's uncertainty is reported: the interval method, confidence and the least
    number of answers below which a figure is flagged insufficient."""

    method: Method = "adjusted-wald"
    confidence: float = DEFAULT_CONFIDENCE
    min_n: int = DEFAULT_MIN_N


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def report(counts: NpsCounts, stats: Statistics = Statistics()) -> dict[str, Any]:
    found = estimate(counts, method=stats.method, confidence=stats.confidence, min_n=stats.min_n)
    wald_95 = counts.margin_of_error()
    return {
        "n": found.n,
        "responses": found.n,
        "promoters": found.promoters,
        "passives": found.passives,
        "detractors": found.detractors,
        "nps": _rounded(found.nps),
        "standard_error": _rounded(found.standard_error, 4),
        "margin_of_error": _rounded(found.margin_of_error),
        "ci_low": _rounded(found.ci_low),
        "ci_high": _rounded(found.ci_high),
        "confidence": found.confidence,
        "method": found.method,
        "insufficient": found.insufficient,
        # Kept for clients of the first version: the Wald margin at 95 %.
        "margin_of_error_95": _rounded(wald_95),
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


async def segment_counts(
    *,
    session: AsyncSession,
    tenant_id: str,
    dimension: Dimension,
    window: Window,
    segment: str | None = None,
) -> dict[str, NpsCounts]:
    """Counts per segment of a dimension over the window (one segment if given)."""
    query = (
        sa.select(t.c.segment, *CATEGORY_TOTALS)
        .where(t.c.tenant_id == tenant_id, t.c.dimension == dimension, *window.where())
        .group_by(t.c.segment)
    )
    if segment is not None:
        query = query.where(t.c.segment == segment)
    rows = (await session.execute(query)).all()
    return {r.segment: NpsCounts(r.promoters, r.passives, r.detractors) for r in rows}


async def counts_of_segment(
    *, session: AsyncSession, tenant_id: str, dimension: Dimension, segment: str, window: Window
) -> NpsCounts:
    found = await segment_counts(
        session=session, tenant_id=tenant_id, dimension=dimension, window=window, segment=segment
    )
    return found.get(segment, NpsCounts())


async def nps_of_segment(
    *,
    session: AsyncSession,
    tenant_id: str,
    dimension: Dimension,
    segment: str,
    window: Window,
    stats: Statistics = Statistics(),
) -> dict[str, Any]:
    """One segment's NPS over the window; a segment without answers reports n = 0 and no NPS."""
    counts = await counts_of_segment(
        session=session, tenant_id=tenant_id, dimension=dimension, segment=segment, window=window
    )
    return {
        "tenant_id": tenant_id,
        "dimension": dimension,
        "segment": segment,
        "window": window.json(),
        **report(counts, stats),
    }


async def nps_by_segment(
    *,
    session: AsyncSession,
    tenant_id: str,
    dimension: Dimension,
    window: Window,
    stats: Statistics = Statistics(),
) -> dict[str, Any]:
    """Every segment of a dimension with answers in the window, most answers first."""
    found = await segment_counts(
        session=session, tenant_id=tenant_id, dimension=dimension, window=window
    )
    segments = sorted(found.items(), key=lambda kv: (-kv[1].responses, kv[0]))
    return {
        "tenant_id": tenant_id,
        "dimension": dimension,
        "window": window.json(),
        "segments": [{"segment": name, **report(counts, stats)} for name, counts in segments],
    }
