"""What every service's Alembic `env.py` does, once: online async migrations into its own schema.

A service's env.py is just `run_migrations(metadata)`; its first revision calls
`create_messaging_tables(schema)` for the outbox and inbox that `closeloop_common` relies on, and a
later one `add_messaging_retention_indexes(schema)`. These helpers are history: once released,
what they create never changes (a change is a new helper called by a new revision).
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


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
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", postgresql.BYTEA, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        schema=schema,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer_group", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "event_id", name="pk_inbox"),
        schema=schema,
    )


def add_messaging_retention_indexes(schema: str) -> None:
    """Indexes that make deleting old outbox and inbox rows by age cheap: BRIN, since rows arrive
    in time order, so the consumer's inserts barely pay for them. `IF NOT EXISTS`: development
    databases of the branch that introduced them met them under another revision number."""
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        schema=schema,
        postgresql_using="brin",
        if_not_exists=True,
    )
    op.create_index(
        "ix_inbox_processed_at",
        "inbox",
        ["processed_at"],
        schema=schema,
        postgresql_using="brin",
        if_not_exists=True,
    )


def drop_messaging_retention_indexes(schema: str) -> None:
    op.drop_index("ix_inbox_processed_at", "inbox", schema=schema)
    op.drop_index("ix_outbox_published_at", "outbox", schema=schema)
