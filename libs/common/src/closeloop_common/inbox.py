"""The inbox: which events a consumer group has handled, written in the transaction of the effect.

`record_new` inserts the ids of a whole batch with one statement (`unnest` arrays, `ON CONFLICT DO
NOTHING RETURNING`) and answers which of them are new: only those are handled. A redelivered event
(a replay, a rebalance, a crash before the offset commit) finds its row and changes nothing.

Rows are deleted after a retention period by `prune_inbox`. The retention must outlast the topics'
retention (14 days by default): an event can only come again while the broker still holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.db import delete_in_chunks


@dataclass(frozen=True, slots=True)
class Deliveries:
    """Events as they arrived, column by column (one list per column, in the same order): their
    ids, tenants and types, and where they were read."""

    event_ids: list[str]
    tenant_ids: list[str]
    event_types: list[str]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]


def _insert_statement(table: sa.Table) -> sa.TextClause:
    return sa.text(
        f'INSERT INTO "{table.schema}"."{table.name}" '
        '(consumer_group, event_id, tenant_id, event_type, topic, "partition", "offset", '
        "processed_at) "
        "SELECT :group_id, e, t, y, tp, p, o, :now FROM unnest("
        "CAST(:ids AS text[]), CAST(:tenants AS text[]), CAST(:types AS text[]), "
        "CAST(:topics AS text[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[])"
        ") AS u(e, t, y, tp, p, o) "
        "ON CONFLICT DO NOTHING RETURNING event_id"
    )


async def record_new(
    session: AsyncSession,
    table: sa.Table,
    *,
    group_id: str,
    deliveries: Deliveries,
    now: datetime,
) -> set[str]:
    """Insert the deliveries' ids for `group_id`; the ids that were not there before."""
    if not deliveries.event_ids:
        return set()
    result = await session.execute(
        _insert_statement(table),
        {
            "group_id": group_id,
            "now": now,
            "ids": deliveries.event_ids,
            "tenants": deliveries.tenant_ids,
            "types": deliveries.event_types,
            "topics": deliveries.topics,
            "partitions": deliveries.partitions,
            "offsets": deliveries.offsets,
        },
    )
    return set(result.scalars().all())


async def prune_inbox(
    sessions: async_sessionmaker[AsyncSession], table: sa.Table, *, before: datetime
) -> int:
    """Delete rows of events handled before `before`."""
    return await delete_in_chunks(
        sessions,
        table,
        key=[table.c.consumer_group, table.c.event_id],
        where=table.c.processed_at < before,
    )
