"""Trace context through the real broker and database: an event is worked on in its own trace,
what it emits is stored and published in that trace, statements are spans of that work, and a
dead letter keeps the context. Spans are recorded in memory (`closeloop_devtools.tracesink`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common import tracing
from closeloop_common.db import make_engine, schema_metadata
from closeloop_common.events import (
    CloudEvent,
    NpsUpdatedV1,
    ResponseReceivedV1,
    Topic,
    decode_event,
)
from closeloop_common.handlers import HandlerContext
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import TopicTail
from closeloop_devtools.tracesink import recording
from libs.common.tests.integration.sample_events import response_event

SCHEMA = "common_trace_it"
metadata = schema_metadata(SCHEMA)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),
)
OUTBOX = metadata.tables[f"{SCHEMA}.outbox"]


@pytest.fixture
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def hex16(value: int) -> str:
    return format(value, "016x")


def traced(event: CloudEvent[Any]) -> CloudEvent[Any]:
    """`event` as a producer that traces wrote it: in the current span's context."""
    carrier = tracing.carrier_of()
    assert carrier is not None
    return event.model_copy(update={"traceparent": carrier[0]})


def of_event(spans: Sequence[ReadableSpan], name: str, event_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.name == name and (s.attributes or {}).get("cloudevents.event_id") == event_id
    ]


async def test_an_event_is_worked_on_in_its_trace_and_what_it_emits_is_published_in_it(
    engine: AsyncEngine,
) -> None:
    settings = CommonSettings()
    run = uuid.uuid4().hex[:8]
    responses_topic = Topic.RESPONSES.address(settings.kafka_topic_prefix)
    with recording() as spans:
        with tracing.span("POST /v1/responses", kind=SpanKind.SERVER) as request:
            good = traced(response_event(f"good-{run}", tenant="t-trace"))
            failing = traced(response_event(f"boom-{run}", tenant="t-trace"))
        plain = response_event(f"plain-{run}", tenant="t-trace")
        runtime = ServiceRuntime(
            name=f"trace-{run}",
            settings=CommonSettings(consumer_max_attempts=1),
            metadata=metadata,
        )

        async def on_response(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
            if event.data.response_id == failing.data.response_id:
                raise ValueError("this handler refuses it")
            await ctx.session.execute(
                sa.insert(effects).values(event_id=event.id, response_id=event.data.response_id)
            )
            await ctx.emit(
                NpsUpdatedV1(
                    response_id=event.data.response_id,
                    customer_id=event.data.customer.id,
                    category=event.data.category,
                    answered_at=event.data.answered_at,
                    scores=(),
                )
            )

        runtime.on(ResponseReceivedV1, on_response)
        producer = EventProducer(settings.kafka_bootstrap_servers, client_id="trace-it")
        await producer.start()
        try:
            await producer.send_batch(
                [
                    OutboundRecord(responses_topic, e.partitionkey, e.encode())
                    for e in (good, failing, plain)
                ]
            )
        finally:
            await producer.stop()

        ours = [good.data.response_id, plain.data.response_id]

        async def handled_and_published() -> bool:
            async with engine.connect() as conn:
                published = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.published_at.is_not(None))
                    .where(OUTBOX.c.key.like("t-trace:%"))
                )
                done = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(effects)
                    .where(effects.c.response_id.in_(ours))
                )
            return done == 2 and (published or 0) >= 2

        async with TopicTail(
            settings.kafka_bootstrap_servers, Topic.DEADLETTER.address(settings.kafka_topic_prefix)
        ) as dlq:
            await runtime.start()
            try:
                async with asyncio.timeout(90):
                    while not await handled_and_published():
                        await asyncio.sleep(0.2)
                dead = await dlq.until(
                    lambda records: any(r.value == failing.encode() for r in records)
                )
            finally:
                await runtime.stop()
        async with engine.connect() as conn:
            stored = {
                decode_event(payload).data.response_id: decode_event(payload)
                for payload in (
                    await conn.scalars(
                        sa.select(OUTBOX.c.payload).where(OUTBOX.c.key.like("t-trace:%"))
                    )
                ).all()
            }
        recorded = spans.get_finished_spans()

    request_context = request.get_span_context()
    trace_id = format(request_context.trace_id, "032x")
    # The event's work is a child of the span that emitted it, in its trace.
    processes = of_event(recorded, "process response.received.v1", good.id)
    assert processes
    for process in processes:
        assert process.parent is not None
        assert hex16(process.parent.span_id) == hex16(request_context.span_id)
        assert process.context.trace_id == request_context.trace_id
        assert process.kind is SpanKind.CONSUMER
    # What it emitted continues from that work (the attempt that committed).
    emitted = stored[good.data.response_id]
    _, emitted_trace, emitted_parent, _ = (emitted.traceparent or "").split("-")
    assert emitted_trace == trace_id
    committed = next(p for p in processes if hex16(p.context.span_id) == emitted_parent)
    # Its statement is a span of that work: text only, no parameters.
    (insert,) = [
        s
        for s in recorded
        if s.parent is not None
        and s.parent.span_id == committed.context.span_id
        and s.name == "INSERT"
        and "effects" in str((s.attributes or {}).get("db.query.text"))
    ]
    assert insert.kind is SpanKind.CLIENT
    assert dict(insert.attributes or {})["db.system.name"] == "postgresql"
    assert good.data.response_id not in str(insert.attributes)
    # The batch it came in links to it; the relay's send links to what it emitted.
    batches = [s for s in recorded if s.name == f"process {responses_topic}"]
    assert any(link.context.span_id == request_context.span_id for b in batches for link in b.links)
    assert any(
        link.context.span_id == committed.context.span_id
        for s in recorded
        if s.name == f"publish {Topic.NPS.address(settings.kafka_topic_prefix)}"
        for link in s.links
    )
    # An event that came without context is worked on under its batch, a trace of its own.
    (plain_process,) = of_event(recorded, "process response.received.v1", plain.id)
    assert plain_process.context.trace_id != request_context.trace_id
    # The dead letter is the record as it came, its trace context in it.
    (letter,) = [r for r in dead if r.value == failing.encode()]
    assert decode_event(letter.value or b"").traceparent == failing.traceparent
    assert failing.traceparent is not None
    assert tracing.encoded_context(letter.value or b"") is not None
