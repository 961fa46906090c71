"""Migration 0004 turns the case messages an older version stored into messages of a kind, keyed
as the code keys them, so a redelivered `case.opened` still finds its message; going back keeps
the case messages and drops only what the old schema cannot hold.

It migrates the test database's notifier schema down to 0003 and back up to head.
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
from closeloop_notifier.adapters.tables import SCHEMA, messages
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.kinds import Kind, case_key

MIGRATIONS = Path(closeloop_notifier.__file__).parent / "migrations"

OLD_INSERT = sa.text(
    "INSERT INTO notifier.messages (tenant_id, message_id, case_id, response_id, customer_id, "
    "template, locale, channel, recipient, subject, body, status, attempts, created_at) "
    "VALUES (:tenant, :id, :case, 'r-1', 'c-1', 'apology', 'pl', 'email', "
    "'Anna@Example.PL', 'Przepraszamy', 'Treść', 'sent', 1, :now)"
)


async def test_upgrade_to_0004_keys_old_case_messages_and_downgrade_keeps_them(
    settings: NotifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tenant = f"it-notifier-{uuid.uuid4().hex[:12]}"
    case_id, message_id = uuid.uuid4(), uuid.uuid4()
    config = alembic_config(MIGRATIONS, settings.database_url, SCHEMA)
    await asyncio.to_thread(command.downgrade, config, "0003")
    try:
        async with transaction(sessions) as session:
            await session.execute(
                OLD_INSERT,
                {"tenant": tenant, "id": message_id, "case": case_id, "now": datetime.now(UTC)},
            )
    finally:
        await asyncio.to_thread(upgrade, MIGRATIONS, settings.database_url, SCHEMA)

    async with sessions() as session:
        row = (
            await session.execute(sa.select(messages).where(messages.c.tenant_id == tenant))
        ).one()
    assert row.message_id == message_id
    assert (row.kind, row.audience, row.status) == ("apology", "customer", "sent")
    assert row.dedup_key == case_key(case_id, Kind.APOLOGY)
    assert row.recipient_key == "anna@example.pl"

    # A message the old schema cannot hold (no case) is dropped by the downgrade; the case's
    # message is kept, under its old column name.
    async with transaction(sessions) as session:
        await session.execute(
            sa.insert(messages).values(
                tenant_id=tenant,
                message_id=uuid.uuid4(),
                dedup_key=f"campaign:{uuid.uuid4()}:anna@example.pl",
                kind="change_summary",
                audience="customer",
                campaign_id=uuid.uuid4(),
                locale="pl",
                channel="email",
                subject="Zmieniliśmy",
                body="Treść",
                status="pending",
                created_at=datetime.now(UTC),
            )
        )
    await asyncio.to_thread(command.downgrade, config, "0003")
    try:
        async with sessions() as session:
            kept = (
                await session.execute(
                    sa.text(
                        "SELECT message_id, template FROM notifier.messages WHERE tenant_id = :t"
                    ),
                    {"t": tenant},
                )
            ).all()
        assert [(r.message_id, r.template) for r in kept] == [(message_id, "apology")]
    finally:
        await asyncio.to_thread(upgrade, MIGRATIONS, settings.database_url, SCHEMA)
