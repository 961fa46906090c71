"""Outbox, inbox and dead-letter plumbing, and their lag gauges, against the real Kafka broker
and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from closeloop_common.clock import FixedClock, SystemClock
from closeloop_common.db import make_engine, make_sessionmaker, schema_metadata, transaction
from closeloop_common.events import (
    CloudEvent,
    ResponseReceivedV1,
    Topic,
)
from closeloop_common.handlers import HandlerContext, HandlerRegistry
from closeloop_common.kafka.consumer import EventConsumer
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.outbox import Outbox, OutboxRelay
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import TopicTail
from libs.common.tests.integration.sample_events import response_event

SCHEMA = "common_it"
metadata = schema_metadata(SCHEMA)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),
)
OUTBOX = metadata.tables[f"{SCHEMA}.outbox"]
INBOX = metadata.tables[f"{SCHEMA}.inbox"]


@pytest.fixture(scope="module")
def settings(infra: dict[str, str]) -> CommonSettings:
    return CommonSettings()


@pytest.fixture
async def engine(settings: CommonSettings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings.database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def producer(settings: CommonSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="common-it")
    await producer.start()
    yield producer
    await producer.stop()


async def test_relay_publishes_outbox_rows_in_order_and_marks_them(
    settings: CommonSettings, engine: AsyncEngine, producer: EventProducer
) -> None:
    sessions = make_sessionmaker(engine)
    outbox = Outbox(OUTBOX, topic_prefix=settings.kafka_topic_prefix)
    relay = OutboxRelay(
        sessions=sessions, table=OUTBOX, outbox=outbox, producer=producer, clock=SystemClock()
    )
    events = [response_event(f"order-{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
    async with transaction(sessions) as session:
        for event in events:
            await outbox.add(session, event)

    assert await relay.publish_batch() == 3
    assert await relay.publish_batch() == 0

    ids = [e.id for e in events]
    async with TopicTail(
        settings.kafka_bootstrap_servers, Topic.RESPONSES.address(settings.kafka_topic_prefix)
    ) as tail:
        records = await tail.until(
            lambda rs: sum(1 for r in rs if any(i.encode() in r.value for i in ids)) >= 3
        )
    ours = [r for r in records if any(i.encode() in r.value for i in ids)]
    assert [CloudEvent[ResponseReceivedV1].model_validate_json(r.value).id for r in ours] == ids
    assert {r.key for r in ours} == {b"t-it:c-1"}
    assert dict(ours[0].headers)["content-type"].startswith(b"application/cloudevents+json")
    async with sessions() as session:
        unpublished = await session.scalar(
            sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
        )
    assert unpublished == 0


class CountingProducer(EventProducer):
    """The real producer, counting how many batches it was handed."""

    def __init__(self, inner: EventProducer) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        self.batches.append(len(records))
        await self.inner.send_batch(records)


async def test_the_relay_sends_a_thousand_events_as_one_batch_and_marks_them_in_one_statement(
    settings: CommonSettings, engine: AsyncEngine, producer: EventProducer
) -> None:
    sessions = make_sessionmaker(engine)
    outbox = Outbox(OUTBOX, topic_prefix=settings.kafka_topic_prefix)
    counting = CountingProducer(producer)
    relay = OutboxRelay(
        sessions=sessions, table=OUTBOX, outbox=outbox, producer=counting, clock=SystemClock()
    )
    run = uuid.uuid4().hex[:6]
    async with transaction(sessions) as session:
        await outbox.add_many(
            session, [response_event(f"bulk-{run}-{i}", customer_id=f"c{i}") for i in range(1000)]
        )
    updates: list[str] = []

    def count_updates(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count_updates)
    try:
        assert await relay.publish_batch() == 1000
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count_updates)
    assert counting.batches == [1000]  # one send, acknowledgements awaited together
    assert len(updates) == 1  # marked published with one statement
    async with sessions() as session:
        left = await session.scalar(
            sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
        )
    assert left == 0


async def test_redelivered_event_has_one_effect_and_poison_goes_to_dead_letter(
    settings: CommonSettings, engine: AsyncEngine, producer: EventProducer
) -> None:
    sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
    prefix = settings.kafka_topic_prefix
    topic = Topic.RESPONSES.address(prefix)
    group = f"it-{uuid.uuid4().hex[:8]}"
    good = response_event(f"good-{uuid.uuid4().hex[:6]}")
    failing = response_event("always-fails", customer_id="c-2")  # its handler always raises
    poison = b"{not json"

    async def handler(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
        if event.data.response_id == "always-fails":
            raise ValueError("this handler cannot take it")
        await ctx.session.execute(
            sa.insert(effects).values(event_id=event.id, response_id=event.data.response_id)
        )

    registry = HandlerRegistry()
    registry.on(ResponseReceivedV1, handler)

    def make_consumer() -> EventConsumer:
        return EventConsumer(
            group_id=group,
            topics=[topic],
            registry=registry,
            sessions=sessions,
            inbox=INBOX,
            outbox=Outbox(OUTBOX, topic_prefix=prefix),
            producer=producer,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic_prefix=prefix,
            clock=SystemClock(),
            source="/test",
            max_attempts=2,
        )

    async def effect_rows() -> list[str]:
        """Effects of this test's events (the topic also holds other tests' events)."""
        mine = [good.data.response_id, failing.data.response_id]
        async with sessions() as session:
            found = await session.scalars(
                sa.select(effects.c.response_id).where(effects.c.response_id.in_(mine))
            )
            return list(found.all())

    async def consume_until(consumer: EventConsumer, done: Callable[[], Any]) -> None:
        """Run the consumer until `done()` holds (polled), then stop it like a shutdown would."""
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        try:
            async with asyncio.timeout(30):
                while not await done():
                    await asyncio.sleep(0.2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await consumer.stop()

    # The same event delivered twice (a producer retry or a replay), a poison record, a failing one.
    await producer.send_batch(
        [
            OutboundRecord(topic, good.partitionkey, good.encode()),
            OutboundRecord(topic, good.partitionkey, good.encode()),
            OutboundRecord(topic, "t-it:poison", poison),
            OutboundRecord(topic, failing.partitionkey, failing.encode()),
        ]
    )

    def dead_letters_of_group(records: list[Any]) -> list[Any]:
        return [r for r in records if ("closeloop.dlq.group", group.encode()) in r.headers]

    dlq = TopicTail(settings.kafka_bootstrap_servers, Topic.DEADLETTER.address(prefix))
    await dlq.__aenter__()

    async def first_pass_done() -> bool:
        dead = dead_letters_of_group(await dlq.poll())
        return len(dead) >= 2 and await effect_rows() == [good.data.response_id]

    await consume_until(make_consumer(), first_pass_done)
    assert await effect_rows() == [good.data.response_id]
    dead = dead_letters_of_group(dlq.records)
    assert len(dead) == 2
    assert {dict(r.headers)["closeloop.dlq.reason"] for r in dead} == {
        b"undecodable",
        b"handler_failed",
    }
    assert {r.value for r in dead} == {poison, failing.encode()}

    # A crash before the offsets were committed: the group starts again from the beginning.
    rewind = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await rewind.start()
    partitions = [TopicPartition(topic, p) for p in (rewind.partitions_for_topic(topic) or set())]
    if not partitions:
        await rewind._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p) for p in (rewind.partitions_for_topic(topic) or set())
        ]
    rewind.assign(partitions)
    await rewind.commit({tp: OffsetAndMetadata(0, "") for tp in partitions})
    await rewind.stop()

    second = make_consumer()

    async def second_pass_done() -> bool:
        # Dead-lettering is at least once: the replay sends both bad records again.
        return len(dead_letters_of_group(await dlq.poll())) >= 4

    try:
        await consume_until(second, second_pass_done)
    finally:
        await dlq.__aexit__()
    assert await effect_rows() == [good.data.response_id]


async def test_consumer_lag_rises_while_records_wait_and_falls_to_zero_once_handled(
    settings: CommonSettings, engine: AsyncEngine, producer: EventProducer
) -> None:
    prefix = settings.kafka_topic_prefix
    tag = uuid.uuid4().hex[:8]
    logical = f"lag-it-{tag}"
    topic = f"{prefix}.{logical}"  # a topic of its own: its offsets are this test's alone
    group = f"lag-it-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])

    async def noop(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
        return None

    registry = HandlerRegistry()
    registry.on(ResponseReceivedV1, noop)
    consumer = EventConsumer(
        group_id=group,
        topics=[topic],
        registry=registry,
        sessions=make_sessionmaker(engine),
        inbox=INBOX,
        outbox=Outbox(OUTBOX, topic_prefix=prefix),
        producer=producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=prefix,
        clock=SystemClock(),
        source="/test",
        batch_max_records=2,  # two records per batch: the lag falls in steps
    )

    def lag() -> float | None:
        return REGISTRY.get_sample_value(
            "closeloop_consumer_lag_records",
            {"group": group, "topic": logical, "partition": "0"},
        )

    async def produce(n: int) -> None:
        events = [response_event(f"lag-{tag}-{uuid.uuid4().hex[:6]}") for _ in range(n)]
        await producer.send_batch(
            [OutboundRecord(topic, e.partitionkey, e.encode()) for e in events]
        )

    async def poll_until_records() -> int:
        async with asyncio.timeout(30):  # the first polls join the group
            while not (fetched := await consumer.poll_once()):
                pass
        return fetched

    try:
        await produce(5)  # before the group has consumed anything
        await consumer.start()
        steps = [(await poll_until_records(), lag()) for _ in range(3)]
        assert steps == [(2, 3), (2, 1), (1, 0)]
        assert await consumer.poll_once() == 0
        assert lag() == 0  # an empty fetch reports the caught-up partition too

        await consumer.stop()
        assert lag() is None  # a stopped consumer leaves no series behind
        await produce(3)  # while no consumer of the group runs
        await consumer.start()  # the same group again, from its committed offset
        assert await poll_until_records() == 2
        assert lag() == 1
        assert await poll_until_records() == 1
        assert lag() == 0
    finally:
        await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    assert lag() is None


class RefusingProducer(EventProducer):
    """A broker that refuses every batch."""

    def __init__(self) -> None:
        self.attempts = 0

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        self.attempts += 1
        raise ConnectionError("the broker is down")


async def test_the_outbox_lag_is_the_age_of_the_oldest_unpublished_row_until_it_is_sent(
    settings: CommonSettings, engine: AsyncEngine, producer: EventProducer
) -> None:
    sessions = make_sessionmaker(engine)
    outbox = Outbox(OUTBOX, topic_prefix=settings.kafka_topic_prefix)
    events = [response_event(f"age-{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
    async with transaction(sessions) as session:
        await outbox.add_many(session, events)
    clock = FixedClock(events[0].time + timedelta(seconds=90))

    def age() -> float | None:
        return REGISTRY.get_sample_value("closeloop_outbox_oldest_pending_age_seconds")

    refusing = RefusingProducer()
    stuck = OutboxRelay(
        sessions=sessions, table=OUTBOX, outbox=outbox, producer=refusing, clock=clock
    )
    with pytest.raises(ConnectionError):
        await stuck.publish_batch()
    assert age() == 90
    clock.advance(timedelta(seconds=30))
    with pytest.raises(ConnectionError):
        await stuck.publish_batch()  # the relay's next attempt, the broker still down
    assert age() == 120

    relay = OutboxRelay(
        sessions=sessions, table=OUTBOX, outbox=outbox, producer=producer, clock=clock
    )
    assert await relay.publish_batch() == 2
    assert age() == 0
