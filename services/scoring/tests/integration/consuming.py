"""Scoring's real consumer in a test: topics of its own, events produced to them (responses and
invitations to the responses topic, case events to the cases topic), a consumer of a chosen
consumer group run until that group has committed everything produced, and every stored
aggregate of some tenants read in a form that does not depend on cell ids."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.events import CloudEvent, EventData, new_event
from closeloop_common.kafka.consumer import EventConsumer
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.settings import CommonSettings
from closeloop_scoring.service_layer.rebuild import TOPICS

from .support import CLOCK, runtime_of

INGEST = "/closeloop/ingest"


def event(data: EventData, tenant: str) -> CloudEvent[Any]:
    """`data` as ingest publishes it: a new envelope (id, time, partition key)."""
    return new_event(data, tenant_id=tenant, source=INGEST, clock=CLOCK)


@contextlib.asynccontextmanager
async def own_topics() -> AsyncIterator[CommonSettings]:
    """Settings of a topic prefix of its own (this run's prefix and a suffix), whose topics are
    created now and deleted afterwards, so a consumer from offset 0 reads only this test's events."""
    base = CommonSettings()
    settings = CommonSettings(
        kafka_topic_prefix=f"{base.kafka_topic_prefix}-{uuid.uuid4().hex[:6]}"
    )
    await ensure_topics(settings)
    try:
        yield settings
    finally:
        await delete_topics(settings)


def records(settings: CommonSettings, events: Sequence[CloudEvent[Any]]) -> list[OutboundRecord]:
    """Each event to its contract's topic, keyed by its partition key."""
    prefix = settings.kafka_topic_prefix
    return [
        OutboundRecord(e.data.TOPIC.address(prefix), e.partitionkey, e.encode()) for e in events
    ]


async def produce(settings: CommonSettings, outbound: Sequence[OutboundRecord]) -> None:
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="scoring-it")
    await producer.start()
    try:
        await producer.send_batch(outbound)
    finally:
        await producer.stop()


async def publish(settings: CommonSettings, events: Sequence[CloudEvent[Any]]) -> None:
    """Produce `events` to their topics, in order, keyed by their partition key."""
    await produce(settings, records(settings, events))


def consumer_of(app: FastAPI, group_id: str) -> EventConsumer:
    """The consumer the app's runtime makes, in group `group_id`."""
    return runtime_of(app).make_consumer(group_id)


async def partitions(settings: CommonSettings) -> list[TopicPartition]:
    """The partitions of the topics scoring consumes (responses and cases)."""
    names = [topic.address(settings.kafka_topic_prefix) for topic in TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    found = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]
    assert {tp.topic for tp in found} == set(names), f"no partitions of some of {names}"
    return found


async def end_offsets(settings: CommonSettings) -> dict[TopicPartition, int]:
    """The end offset of every partition of the topics scoring consumes now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: dict[TopicPartition, int] = await consumer.end_offsets(await partitions(settings))
        return found
    finally:
        await consumer.stop()


async def committed(settings: CommonSettings, group_id: str) -> dict[TopicPartition, int]:
    """The offsets `group_id` committed (partitions it never committed are left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def until_committed(
    settings: CommonSettings,
    group_id: str,
    *,
    running: asyncio.Task[None] | None = None,
    timeout: float = 60.0,
) -> None:
    """Wait until `group_id` committed every record produced so far (so their effects are
    committed too: the consumer commits offsets after its transaction)."""
    ends = await end_offsets(settings)
    async with asyncio.timeout(timeout):
        while True:
            if running is not None and running.done():
                running.result()
                raise AssertionError(f"the consumer of {group_id} stopped")
            done = await committed(settings, group_id)
            if all(done.get(tp, 0) >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.1)


@dataclass
class Consuming:
    settings: CommonSettings
    consumer: EventConsumer
    task: asyncio.Task[None]

    async def caught_up(self, timeout: float = 60.0) -> None:
        await until_committed(
            self.settings, self.consumer.group_id, running=self.task, timeout=timeout
        )


@contextlib.asynccontextmanager
async def consuming(app: FastAPI, group_id: str) -> AsyncIterator[Consuming]:
    """The app's consumer, in `group_id`, running (with the producer it dead-letters through)."""
    runtime = runtime_of(app)
    await runtime.producer.start()
    consumer = consumer_of(app, group_id)
    await consumer.start()
    task = asyncio.create_task(consumer.run(), name=f"consumer:{group_id}")
    try:
        yield Consuming(runtime.settings, consumer, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await runtime.producer.stop()


async def consume_all(app: FastAPI, group_id: str, timeout: float = 60.0) -> None:
    """Run the app's consumer in `group_id` until it committed everything produced so far."""
    async with consuming(app, group_id) as running:
        await running.caught_up(timeout)


# Every table of counts and versions, its cells spelled out: two runs that numbered their cells
# differently compare equal when they counted the same.
_CELL = "c.survey_id, c.product, c.region, c.channel, c.touchpoint"
_JOIN = "JOIN scoring.cells c ON c.cell_id = x.cell_id AND c.tenant_id = x.tenant_id"
SNAPSHOT = {
    "cell_daily": f"SELECT x.tenant_id, {_CELL}, x.day, x.promoters, x.passives, x.detractors, "
    f"x.suspected, x.invitations FROM scoring.cell_daily x {_JOIN}",
    "segment_daily": "SELECT x.tenant_id, x.dimension, x.segment, x.day, x.promoters, "
    "x.passives, x.detractors, x.suspected, x.invitations FROM scoring.segment_daily x",
    "theme_daily": f"SELECT x.tenant_id, {_CELL}, x.day, x.theme, x.promoters, x.passives, "
    f"x.detractors FROM scoring.theme_daily x {_JOIN}",
    "responses": f"SELECT x.tenant_id, x.response_id, x.version, {_CELL}, x.day, x.category, "
    f"x.account_id, x.themes, x.suspected FROM scoring.responses x {_JOIN}",
    "root_causes": "SELECT x.tenant_id, x.response_id, x.case_version, x.tags "
    "FROM scoring.root_causes x",
    "invitations": f"SELECT x.tenant_id, x.invitation_id, {_CELL}, x.day, x.account_id "
    f"FROM scoring.invitations x {_JOIN}",
    "cells": f"SELECT x.tenant_id, {_CELL} FROM scoring.cells x "
    "JOIN scoring.cells c ON c.cell_id = x.cell_id",
}
# Tables holding a tenant's rows, in the order they are emptied.
TABLES = (
    "responses",
    "root_causes",
    "invitations",
    "cell_daily",
    "segment_daily",
    "theme_daily",
    "cells",
)

Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(engine: AsyncEngine, tenants: Sequence[str]) -> Snapshot:
    """Every row of `tenants` in scoring's tables, cells by their attributes, sorted."""
    found: Snapshot = {}
    async with engine.connect() as conn:
        for table, query in SNAPSHOT.items():
            rows = await conn.execute(
                sa.text(f"{query} WHERE x.tenant_id = ANY(:tenants)"), {"tenants": list(tenants)}
            )
            found[table] = sorted(
                (
                    tuple(tuple(sorted(v)) if isinstance(v, list) else v for v in row)
                    for row in rows
                ),
                key=repr,
            )
    return found


async def forget_tenants(engine: AsyncEngine, tenants: Sequence[str]) -> None:
    """Delete every row of `tenants` from scoring's tables (other tests share the database, so
    this is the rebuild's emptying, per tenant)."""
    async with engine.begin() as conn:
        for table in TABLES:
            await conn.execute(
                sa.text(f"DELETE FROM scoring.{table} WHERE tenant_id = ANY(:tenants)"),
                {"tenants": list(tenants)},
            )
