"""What every service's Alembic `env.py` does, once: online async migrations into its own schema.

A service's env.py is just `run_migrations(metadata)`; its first revision calls
`create_messaging_tables(schema)` for the outbox and inbox that `closeloop_common` relies on.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from closeloop_common.db import NAMING_CONVENTION
from closeloop_common.messaging_tables import inbox_table, outbox_table


def run_migrations(target_metadata: MetaData) -> None:
    config = context.config
    schema = config.attributes.get("schema") or target_metadata.schema
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    assert schema is not None

    def _run(connection: Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def _main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                # One migrator at a time per schema, however many replicas start together.
                await connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema}
                )
                await connection.run_sync(_run)
        finally:
            await engine.dispose()

    asyncio.run(_main())


def create_messaging_tables(schema: str) -> None:
    """Create the outbox (events waiting for Kafka) and inbox (events already handled) of a schema."""
    metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    outbox_table(metadata)
    inbox_table(metadata)
    metadata.create_all(op.get_bind())
