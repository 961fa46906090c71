"""Migration 0002 re-keys the opt-outs an older version stored (the address lower-cased as given)
by the normalised address, so they keep suppressing every spelling of their address.

It migrates the test database's notifier schema down to 0001 and back up to head.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import closeloop_notifier
from closeloop_common.db import alembic_config, transaction, upgrade
from closeloop_notifier.adapters.tables import SCHEMA, opt_outs
from closeloop_notifier.config import NotifierSettings

MIGRATIONS = Path(closeloop_notifier.__file__).parent / "migrations"


async def test_upgrade_to_0002_keys_old_opt_outs_by_their_normalised_address(
    settings: NotifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tenant = f"it-notifier-{uuid.uuid4().hex[:12]}"
    config = alembic_config(MIGRATIONS, settings.database_url, SCHEMA)
    await asyncio.to_thread(command.downgrade, config, "0001")
    try:
        async with transaction(sessions) as session:
            await session.execute(
                sa.insert(opt_outs),
                [
                    {"tenant_id": tenant, "email": email, "created_at": datetime.now(UTC)}
                    for email in (
                        "anna@żółw.pl",  # what the old API stored for Anna@ŻÓŁW.pl
                        "jan@example.com",
                        "jan@ｅｘａｍｐｌｅ.com",  # noqa: RUF001 (full-width: the same address)
                        "old@[broken",  # not an address: kept as it was
                    )
                ],
            )
    finally:
        await asyncio.to_thread(upgrade, MIGRATIONS, settings.database_url, SCHEMA)

    async with sessions() as session:
        keys = await session.scalars(
            sa.select(opt_outs.c.email).where(opt_outs.c.tenant_id == tenant)
        )
        assert sorted(keys.all()) == ["anna@xn--w-uga1v8h.pl", "jan@example.com", "old@[broken"]
