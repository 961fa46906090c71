"""Counting a response into its segments (the `response.received` handler). Reads: `views.py`."""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.events import (
    CloudEvent,
    NpsUpdatedV1,
    ResponseReceivedV1,
    SegmentScore,
)
from closeloop_common.handlers import HandlerContext
from closeloop_scoring.adapters.tables import CATEGORY_TOTALS
from closeloop_scoring.adapters.tables import segment_daily as t
from closeloop_scoring.domain.nps import NpsCounts, segment_keys


async def count_response(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
    """Add one response to each of its segments' day and publish the segments' new totals."""
    session = ctx.session
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
            sa.select(t.c.dimension, t.c.segment, *CATEGORY_TOTALS)
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
    await ctx.emit(update, subject=response.response_id)
