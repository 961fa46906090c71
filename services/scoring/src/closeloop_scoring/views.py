"""Scoring's read side: NPS of segments over a window of answer days, as the API answers it.

Counts are summed over the window's days and NPS, margin of error and rounding are computed here,
on read (the tables keep counts only). No writes happen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import Dimension
from closeloop_scoring.adapters.tables import CATEGORY_TOTALS
from closeloop_scoring.adapters.tables import segment_daily as t
from closeloop_scoring.domain.nps import NpsCounts


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


def report(counts: NpsCounts) -> dict[str, Any]:
    nps, moe = counts.nps, counts.margin_of_error()
    return {
        "responses": counts.responses,
        "promoters": counts.promoters,
        "passives": counts.passives,
        "detractors": counts.detractors,
        "nps": None if nps is None else round(nps, 2),
        "margin_of_error_95": None if moe is None else round(moe, 2),
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


async def nps_of_segment(
    *, session: AsyncSession, tenant_id: str, dimension: Dimension, segment: str, window: Window
) -> dict[str, Any]:
    """One segment's NPS over the window; a segment without answers reports zero responses."""
    found = await segment_counts(
        session=session, tenant_id=tenant_id, dimension=dimension, window=window, segment=segment
    )
    return {
        "tenant_id": tenant_id,
        "dimension": dimension,
        "segment": segment,
        "window": window.json(),
        **report(found.get(segment, NpsCounts())),
    }


async def nps_by_segment(
    *, session: AsyncSession, tenant_id: str, dimension: Dimension, window: Window
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
        "segments": [{"segment": name, **report(counts)} for name, counts in segments],
    }
