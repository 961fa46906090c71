"""The message list reads a tenant's newest messages from an index.

Found by `make soak`: `GET /v1/messages` sorted every message of the tenant for each page, so
its p99 doubled in 30 minutes as the table grew (34 → 69 ms)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_notifier.views import message_list_query


async def test_the_newest_messages_of_a_tenant_come_from_an_index_without_a_sort(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    statement = message_list_query(tenant_id=tenant, limit=50)
    sql = str(statement.compile(compile_kwargs={"literal_binds": True}))
    async with sessions() as session, session.begin():
        # Whatever the table's size here: refuse the plans a large table would not get.
        await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        await session.execute(sa.text("SET LOCAL enable_sort = off"))
        plan = "\n".join(row[0] for row in await session.execute(sa.text("EXPLAIN " + sql)))
    assert "ix_messages_tenant_created" in plan, plan
    assert "Sort" not in plan, plan
