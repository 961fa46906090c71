"""Settings the stored aggregates depend on, checked at start-up."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.db import transaction
from closeloop_scoring.adapters.tables import settings_applied

TIME_ZONE = "time_zone"


class RebuildNeeded(RuntimeError):
    """The stored days were made in another time zone than the one configured."""


async def check_time_zone(sessions: async_sessionmaker[AsyncSession], zone: str) -> None:
    """Record the time zone the days are counted in; refuse to start under another one, since
    every stored day would then be read as a day of the wrong zone."""
    async with transaction(sessions) as session:
        await session.execute(
            pg_insert(settings_applied)
            .values(name=TIME_ZONE, value=zone)
            .on_conflict_do_nothing(index_elements=[settings_applied.c.name])
        )
        stored = await session.scalar(
            sa.select(settings_applied.c.value).where(settings_applied.c.name == TIME_ZONE)
        )
    if stored != zone:
        raise RebuildNeeded(
            f"the aggregates count local days of {stored}, but SCORING_TIME_ZONE is {zone}: "
            "set it back, or rebuild them (`closeloop-scoring rebuild`, see the README)"
        )
