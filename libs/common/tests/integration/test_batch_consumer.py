"""The batched consumer, the worker pool and retention, against the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.db import make_engine, schema_metadata, transaction
from closeloop_common.events import (
    CloudEvent,
    NpsUpdatedV1,
    ResponseReceivedV1,
    Topic,
)
from closeloop_common.handlers import HandlerContext, Transaction
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from libs.common.tests.integration.sample_events import response_event

SCHEMA = "common_batch_it"
metadata = schema_metadata(SCHEMA)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),
    sa.Column("txid", sa.BigInteger, nullable=False),
)
OUTBOX = metadata.tables[f"{SCHEMA}.outbox"]
INBOX = metadata.tables[f"{SCHEMA}.inbox"]


@pytest.fixture
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def a_runtime(name: str, **overrides: Any) -> ServiceRuntime:
    settings = CommonSettings(**overrides)
    return ServiceRuntime(name=name, settings=settings, metadata=metadata)


async def publish(events: Sequence[CloudEvent[Any]], *, copies: int = 1) -> None:
    settings = CommonSettings()
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="batch-it")
    await producer.start()
    try:
        topic = Topic.RESPONSES.address(settings.kafka_topic_prefix)
        await producer.send_batch(
            [
                OutboundRecord(topic, e.partitionkey, e.encode())
                for e in events
                for _ in range(copies)
            ]
        )
    finally:
        await producer.stop()


async def effect_rows(engine: AsyncEngine, response_ids: Sequence[str]) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(effects.c.response_id, effects.c.txid).where(
                        effects.c.response_id.in_(response_ids)
                    )
                )
            ).all()
        )


async def run_until(runtime: ServiceRuntime, done: Any, timeout: float = 60) -> None:
    await runtime.start()
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                await asyncio.sleep(0.2)
    finally:
        await runtime.stop()


async def test_a_batch_is_handled_in_few_transactions_exactly_once_and_emits_in_them(
    engine: AsyncEngine,
) -> None:
    run = uuid.uuid4().hex[:8]
    events = [
        response_event(f"b-{run}-{n}", customer_id=f"c{n % 7}", tenant="t-batch")
        for n in range(600)
    ]
    await publish(events, copies=2)  # every event delivered twice
    runtime = a_runtime(f"batch-{run}")

    async def on_responses(
        tx: Transaction, batch: Sequence[CloudEvent[ResponseReceivedV1]]
    ) -> None:
        txid = await tx.session.scalar(sa.select(sa.func.txid_current()))
        await tx.session.execute(
            sa.insert(effects),
            [{"event_id": e.id, "response_id": e.data.response_id, "txid": txid} for e in batch],
        )
        for e in batch:
            await tx.emit(
                NpsUpdatedV1(
                    response_id=e.data.response_id,
                    customer_id=e.data.customer.id,
                    category=e.data.category,
                    answered_at=e.data.answered_at,
                    scores=(),
                ),
                tenant_id=e.tenantid,
                subject=e.data.response_id,
            )

    runtime.on_batch(ResponseReceivedV1, on_responses)
    ids = [e.data.response_id for e in events]

    async def all_handled() -> bool:
        return len(await effect_rows(engine, ids)) >= len(ids)

    await run_until(runtime, all_handled)
    rows = await effect_rows(engine, ids)
    assert sorted(r.response_id for r in rows) == sorted(ids)  # once each, duplicates skipped
    # 600 events over 3 partitions: a handful of transactions, not one per event.
    assert len({r.txid for r in rows}) <= 30
    async with engine.connect() as conn:
        emitted = await conn.scalar(
            sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.key.like("t-batch:%"))
        )
    assert emitted == len(ids)


async def test_the_consumer_works_while_http_requests_hold_every_pooled_connection(
    engine: AsyncEngine,
) -> None:
    run = uuid.uuid4().hex[:8]
    events = [response_event(f"p-{run}-{n}", tenant="t-batch") for n in range(20)]
    await publish(events)
    runtime = a_runtime(f"pool-{run}", database_pool_size=1)

    async def on_response(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
        await ctx.session.execute(
            sa.insert(effects).values(event_id=event.id, response_id=event.data.response_id, txid=0)
        )

    runtime.on(ResponseReceivedV1, on_response)
    ids = [e.data.response_id for e in events]

    async def all_handled() -> bool:
        return len(await effect_rows(engine, ids)) == len(ids)

    # A slow HTTP request holds the only connection of the HTTP pool for the whole test.
    async with runtime.engine.connect() as held:
        await held.execute(sa.text("SELECT 1"))
        await run_until(runtime, all_handled, timeout=45)
    assert len(await effect_rows(engine, ids)) == len(ids)


async def test_retention_deletes_old_published_outbox_rows_and_old_inbox_rows_only(
    engine: AsyncEngine,
) -> None:
    runtime = a_runtime("retention", outbox_retention_hours=24, inbox_retention_days=30)
    now = datetime.now(UTC)
    async with transaction(runtime.worker_sessions) as session:
        for name, created, published in (
            ("old-published", now - timedelta(days=3), now - timedelta(days=2)),
            ("new-published", now - timedelta(hours=2), now - timedelta(hours=1)),
            ("old-unpublished", now - timedelta(days=3), None),
        ):
            await session.execute(
                sa.insert(OUTBOX).values(
                    event_id=name,
                    tenant_id="t",
                    topic="x",
                    event_type="y",
                    key="k",
                    payload=b"{}",
                    created_at=created,
                    published_at=published,
                )
            )
        for name, processed in (
            ("old", now - timedelta(days=31)),
            ("new", now - timedelta(days=29)),
        ):
            await session.execute(
                sa.insert(INBOX).values(
                    consumer_group="g",
                    event_id=name,
                    tenant_id="t",
                    event_type="y",
                    topic="x",
                    partition=0,
                    offset=0,
                    processed_at=processed,
                )
            )
    try:
        assert await runtime.prune() == (1, 1)
    finally:
        await runtime.engine.dispose()
        await runtime.worker_engine.dispose()
    async with engine.connect() as conn:
        outbox = set((await conn.scalars(sa.select(OUTBOX.c.event_id))).all())
        inbox = set((await conn.scalars(sa.select(INBOX.c.event_id))).all())
    assert outbox == {"new-published", "old-unpublished"}
    assert inbox == {"new"}


effect_log = sa.Table(
    "effect_log",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),  # not unique: a second effect would show
)


async def test_replicas_joining_and_leaving_mid_stream_leave_exactly_one_effect_per_event(
    engine: AsyncEngine,
) -> None:
    """Two replicas of a service in one group: the second joins while the first is busy, then
    the first leaves. Every rebalance moves partitions with batches in flight; no event may be
    lost or take effect twice."""
    run = uuid.uuid4().hex[:8]

    async def on_responses(
        tx: Transaction, batch: Sequence[CloudEvent[ResponseReceivedV1]]
    ) -> None:
        await tx.session.execute(
            sa.insert(effect_log), [{"response_id": e.data.response_id} for e in batch]
        )
        await asyncio.sleep(0.05)  # a slow handler: rebalances land while batches are open

    def replica() -> ServiceRuntime:
        runtime = a_runtime(f"replicas-{run}", consumer_batch_max_records=100)
        runtime.on_batch(ResponseReceivedV1, on_responses)
        return runtime

    ids = [f"rep-{run}-{n}" for n in range(1500)]

    async def counts() -> dict[str, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(effect_log.c.response_id, sa.func.count())
                .where(effect_log.c.response_id.like(f"rep-{run}-%"))
                .group_by(effect_log.c.response_id)
            )
            return {r[0]: r[1] for r in rows}

    first, second = replica(), replica()
    await first.start()
    try:
        await publish([response_event(i, customer_id=i, tenant="t-batch") for i in ids[:500]])
        await asyncio.sleep(1)
        await second.start()  # joins: the group rebalances while the first is handling
        await publish([response_event(i, customer_id=i, tenant="t-batch") for i in ids[500:1000]])
        await asyncio.sleep(2)
    finally:
        await first.stop()  # leaves: its partitions move to the second, mid-stream
    try:
        await publish([response_event(i, customer_id=i, tenant="t-batch") for i in ids[1000:]])
        async with asyncio.timeout(90):
            while len(await counts()) < len(ids):
                await asyncio.sleep(0.5)
    finally:
        await second.stop()
    handled = await counts()
    assert sorted(handled) == sorted(ids)
    assert {n for n in handled.values()} == {1}
