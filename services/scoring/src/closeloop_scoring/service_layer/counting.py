"""Counting a response into its segments and reading NPS over a window of days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.events import (
    CloudEvent,
    NpsUpdatedV1,
    ResponseReceivedV1,
    SegmentScore,
    new_event,
)
from closeloop_common.outbox import Outbox
from closeloop_scoring.adapters.tables import segment_daily as t
from closeloop_scoring.domain.nps import Dimension, NpsCounts, segment_keys

_SUMS = (
    sa.func.coalesce(sa.func.sum(t.c.promoters), 0).label("promoters"),
    sa.func.coalesce(sa.func.sum(t.c.passives), 0).label("passives"),
    sa.func.coalesce(sa.func.sum(t.c.detractors), 0).label("detractors"),
)


async def count_response(
    *,
    session: AsyncSession,
    outbox: Outbox,
    clock: Clock,
    source: str,
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    """Add one response to each of its segments' day and publish the segments' new totals."""
    response = event.data
    tenant = event.tenantid
    day = response.answered_at.astimezone(UTC).date()
    column = {"promoter": "promoters", "passive": "passives", "detractor": "detractors"}[
        response.category.value
    ]
    keys = segment_keys(response)
    for dimension, segment in keys:
        stmt = pg_insert(t).values(
            tenant_id=tenant, dimension=dimension, segment=segment, day=day, **{column: 1}
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.tenant_id, t.c.dimension, t.c.segment, t.c.day],
                set_={column: getattr(t.c, column) + 1},
            )
        )
    totals = (
        await session.execute(
            sa.select(t.c.dimension, t.c.segment, *_SUMS)
            .where(t.c.tenant_id == tenant, sa.tuple_(t.c.dimension, t.c.segment).in_(keys))
            .group_by(t.c.dimension, t.c.segment)
        )
    ).all()
    scores = []
    for row in sorted(totals, key=lambda r: keys.index((r.dimension, r.segment))):
        counts = NpsCounts(row.promoters, row.passives, row.detractors)
        scores.append(
            SegmentScore(
                dimension=row.dimension,
                segment=row.segment,
                promoters=counts.promoters,
                passives=counts.passives,
                detractors=counts.detractors,
                nps=counts.nps or 0.0,
            )
        )
    update = NpsUpdatedV1(
        response_id=response.response_id,
        customer_id=response.customer.id,
        category=response.category,
        answered_at=response.answered_at,
        scores=tuple(scores),
    )
    await outbox.add(
        session,
        new_event(
            update, tenant_id=tenant, source=source, clock=clock, subject=response.response_id
        ),
    )


@dataclass(frozen=True, slots=True)
class Window:
    """Inclusive range of answer days; None on a side means unbounded."""

    first_day: date | None = None
    last_day: date | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.first_day is not None:
            clauses.append(t.c.day >= self.first_day)
        if self.last_day is not None:
            clauses.append(t.c.day <= self.last_day)
        return clauses


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
        sa.select(t.c.segment, *_SUMS)
        .where(t.c.tenant_id == tenant_id, t.c.dimension == dimension, *window.where())
        .group_by(t.c.segment)
    )
    if segment is not None:
        query = query.where(t.c.segment == segment)
    rows = (await session.execute(query)).all()
    return {r.segment: NpsCounts(r.promoters, r.passives, r.detractors) for r in rows}
