"""Async SQLAlchemy helpers, schema ownership and Alembic wiring shared by the services.

Each service owns exactly one PostgreSQL schema (ingest, scoring, orchestrator, notifier), its
tables and its Alembic history (the version table lives in that schema too). No service reads
another's schema; they meet only on Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, MetaData, Table, text
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from closeloop_common.messaging_tables import inbox_table, outbox_table

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    """The MetaData of one service's schema, holding its outbox and inbox tables already."""
    metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    outbox_table(metadata)
    inbox_table(metadata)
    return metadata


def make_engine(
    url: str, *, pool_size: int = 10, application_name: str = "closeloop"
) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # DATABASE_POOL_SIZE is the real cap per process
        # No pre-ping: it costs a round trip per checkout; a connection that died with a database
        # restart fails once, is invalidated, and consumers retry it as a transient error.
        pool_pre_ping=False,
        # Errors and logs show statements, never their values: those are emails and comments.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on any exception."""
    async with sessions() as session, session.begin():
        yield session


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call `callback` once the session's current transaction commits (not if it rolls back)."""
    sa_event.listen(session.sync_session, "after_commit", lambda _s: callback(), once=True)


async def delete_in_chunks(
    sessions: async_sessionmaker[AsyncSession],
    table: Table,
    *,
    key: Sequence[ColumnElement[Any]],
    where: ColumnElement[bool],
    chunk: int = 5000,
) -> int:
    """Delete the rows of `table` matching `where`, `chunk` rows per transaction, so a large
    clean-up never holds its locks for long; returns how many rows it deleted."""
    doomed = sa.select(*key).where(where).limit(chunk)
    target = key[0].in_(doomed) if len(key) == 1 else sa.tuple_(*key).in_(doomed)
    total = 0
    while True:
        async with transaction(sessions) as session:
            result = await session.execute(sa.delete(table).where(target))
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += deleted
        if deleted < chunk:
            return total


async def ping(engine: AsyncEngine, timeout: float = 2.0) -> None:
    async def _ping() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    await asyncio.wait_for(_ping(), timeout)


def alembic_config(migrations_dir: Path, database_url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade(migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Apply a service's migrations up to `revision` (idempotent)."""
    command.upgrade(alembic_config(migrations_dir, database_url, schema), revision)
