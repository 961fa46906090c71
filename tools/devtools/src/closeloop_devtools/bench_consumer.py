"""`make bench-consumer`: events/s of the exactly-once consumer, per record and in batches.

On the real broker and PostgreSQL: pre-fills a topic (own prefix, 6 partitions) with 200,000
`response.received.v1` events, then consumes them with a minimal handler — one counter row
updated per event, plus the inbox row that makes the effect exactly once — twice, in two consumer
groups of one run:
1. per-record mode: one transaction per event (as the foundation did), for a bounded time, since
   at that rate the whole topic would take minutes;
2. batch mode: one transaction per partition batch, the inbox inserted with one statement and the
   counters upserted with one statement, over the whole topic.
Both results are checked (every counted event once, no more) before the table is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.clock import SystemClock
from closeloop_common.db import make_engine, make_sessionmaker, schema_metadata
from closeloop_common.events import (
    CloudEvent,
    Customer,
    ResponseReceivedV1,
    Segments,
    Topic,
    categorize,
    new_event,
)
from closeloop_common.handlers import HandlerContext, HandlerRegistry, Transaction
from closeloop_common.kafka.consumer import EventConsumer
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.outbox import Outbox
from closeloop_common.runtime import tune_garbage_collector
from closeloop_common.settings import CommonSettings
from closeloop_devtools.report import write_report

SCHEMA = "bench_consumer"
KEYS = 1000  # distinct counter rows

metadata = schema_metadata(SCHEMA)
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("mode", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)


def counter_key(event: CloudEvent[ResponseReceivedV1]) -> str:
    return f"{event.tenantid}:{event.data.segments.region}:{event.data.category.value}"


async def prefill(settings: CommonSettings, topic: str, count: int) -> float:
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="bench-consumer")
    await producer.start()
    clock = SystemClock()
    started = time.perf_counter()
    try:
        chunk: list[OutboundRecord] = []
        for n in range(count):
            now = clock.now()
            data = ResponseReceivedV1(
                response_id=f"r{n}",
                survey_id="bench",
                customer=Customer(id=f"c{n % 50_000}", email=f"c{n}@bench.example.com"),
                account_id=f"a{n % 500}",
                score=n % 11,
                category=categorize(n % 11),
                comment="Delivery was late again.",
                answered_at=now,
                received_at=now,
                segments=Segments(region=f"r{n % (KEYS // 3)}"),
                source="bench",
            )
            event = new_event(data, tenant_id="bench", source="/bench", clock=clock)
            chunk.append(OutboundRecord(topic, event.partitionkey, event.encode()))
            if len(chunk) == 10_000:
                await producer.send_batch(chunk)
                chunk = []
        await producer.send_batch(chunk)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def per_record(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
    await ctx.session.execute(
        pg_insert(counters)
        .values(mode="record", key=counter_key(event), n=1)
        .on_conflict_do_update(index_elements=["mode", "key"], set_={"n": counters.c.n + 1})
    )


async def per_batch(tx: Transaction, events: Sequence[CloudEvent[ResponseReceivedV1]]) -> None:
    counts = Counter(counter_key(e) for e in events)
    statement = sa.text(
        f"INSERT INTO {SCHEMA}.counters (mode, key, n) "
        "SELECT 'batch', k, n FROM unnest(CAST(:keys AS text[]), CAST(:ns AS bigint[])) AS u(k, n) "
        "ON CONFLICT (mode, key) DO UPDATE SET n = counters.n + excluded.n"
    )
    await tx.session.execute(statement, {"keys": list(counts), "ns": list(counts.values())})


async def consume(
    settings: CommonSettings,
    topic: str,
    *,
    mode: str,
    target: int,
    time_limit: float,
) -> tuple[int, float]:
    """Consume in `mode` until `target` events are counted or `time_limit` s pass."""
    engine = make_engine(settings.database_url, pool_size=2, application_name=f"bench-{mode}")
    sessions = make_sessionmaker(engine)
    registry = HandlerRegistry()
    if mode == "batch":
        registry.on_batch(ResponseReceivedV1, per_batch)
    else:
        registry.on(ResponseReceivedV1, per_record)
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id=f"bench-{mode}")
    await producer.start()
    consumer = EventConsumer(
        group_id=f"{settings.kafka_topic_prefix}.bench-{mode}",
        topics=[topic],
        registry=registry,
        sessions=sessions,
        inbox=metadata.tables[f"{SCHEMA}.inbox"],
        outbox=Outbox(
            metadata.tables[f"{SCHEMA}.outbox"], topic_prefix=settings.kafka_topic_prefix
        ),
        producer=producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.kafka_topic_prefix,
        clock=SystemClock(),
        source="/bench",
        batch_max_records=settings.consumer_batch_max_records,
        batch_mode=mode == "batch",
    )
    await consumer.start()
    tune_garbage_collector()  # as a service does when it starts
    counted = 0
    started = time.perf_counter()
    running = asyncio.create_task(consumer.run())
    try:
        while counted < target and time.perf_counter() - started < time_limit:
            await asyncio.sleep(0.1)
            if running.done():
                running.result()  # a consumer that died: say why
            async with engine.connect() as conn:
                counted = int(
                    await conn.scalar(
                        sa.select(sa.func.coalesce(sa.func.sum(counters.c.n), 0)).where(
                            counters.c.mode == mode
                        )
                    )
                    or 0
                )
        elapsed = time.perf_counter() - started
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        async with engine.connect() as conn:
            total = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(counters.c.n), 0)).where(
                    counters.c.mode == mode
                )
            )
            inbox = metadata.tables[f"{SCHEMA}.inbox"]
            handled = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(inbox)
                .where(inbox.c.consumer_group == consumer.group_id)
            )
        if handled != total:
            raise AssertionError(f"{mode}: {total} counted but {handled} inbox rows")
        return counted, elapsed
    finally:
        await consumer.stop()
        await producer.stop()
        await engine.dispose()


async def prepare_schema(settings: CommonSettings) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


async def bench(events: int, record_seconds: float) -> list[tuple[str, str]]:
    prefix = f"bench-consumer-{uuid.uuid4().hex[:8]}"
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    os.environ.setdefault("KAFKA_TOPIC_PARTITIONS", "6")
    settings = CommonSettings()
    await ensure_topics(settings)
    topic = Topic.RESPONSES.address(prefix)
    try:
        await prepare_schema(settings)
        fill_seconds = await prefill(settings, topic, events)
        record_count, record_seconds_used = await consume(
            settings, topic, mode="record", target=events, time_limit=record_seconds
        )
        batch_count, batch_seconds = await consume(
            settings, topic, mode="batch", target=events, time_limit=600
        )
    finally:
        await delete_topics(settings)
    if batch_count != events:
        raise AssertionError(f"batch mode counted {batch_count} of {events} events")
    record_rate = record_count / record_seconds_used
    batch_rate = batch_count / batch_seconds
    return [
        ("events in the topic (6 partitions)", f"{events:,} (pre-filled in {fill_seconds:.1f} s)"),
        (
            "per-record mode: one transaction per event",
            f"{record_rate:,.0f} events/s ({record_count:,} events in {record_seconds_used:.1f} s)",
        ),
        (
            f"batch mode: up to {settings.consumer_batch_max_records:,} events per transaction",
            f"{batch_rate:,.0f} events/s ({batch_count:,} events in {batch_seconds:.1f} s)",
        ),
        ("batch / per-record", f"{batch_rate / record_rate:.1f}x"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-bench-consumer", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--record-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("bench/consumer.md"))
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args.events, args.record_seconds))
    write_report(
        args.out,
        title="Consumer benchmark",
        setup="real Kafka 4.1.1 (KRaft, 1 node) and PostgreSQL on 127.0.0.1, both on the same "
        "machine as the consumer. Handler: one counter row updated per event, plus the inbox row "
        "(exactly-once effect); offsets committed after each transaction.",
        rows=rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
