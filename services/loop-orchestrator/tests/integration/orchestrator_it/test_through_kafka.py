"""The orchestrator as it runs, against the real broker: its consumer takes responses from the
responses topic, its relay publishes the opened cases on the cases topic, and its SLA watcher,
with the clock moved past the deadline, publishes each breach once; its silence watcher, with
the clock moved past the silence window, the lack-of-response case of a key contact who did not
answer. Topics of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer

from closeloop_common.clock import FixedClock
from closeloop_common.events import (
    CaseOpenedV1,
    CaseSlaAlertV1,
    Customer,
    InvitationSentV1,
    NoResponseCaseOpenedV1,
    Topic,
    decode_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app

from .support import NOW, H, answer, event_of, runtime_of


@contextlib.asynccontextmanager
async def own_topics() -> AsyncIterator[OrchestratorSettings]:
    base = OrchestratorSettings()
    settings = OrchestratorSettings(
        kafka_topic_prefix=f"{base.kafka_topic_prefix}-{uuid.uuid4().hex[:6]}",
        orchestrator_watch_interval_seconds=0.05,
    )
    await ensure_topics(settings)
    try:
        yield settings
    finally:
        await delete_topics(settings)


async def read_until(
    consumer: AIOKafkaConsumer, seen: list[Any], done: Any, timeout: float = 30
) -> None:
    """Collect the cases topic's events into `seen` until `done(seen)` or the timeout."""
    async with asyncio.timeout(timeout):
        while not done(seen):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                seen.extend(decode_event(r.value) for r in records)


async def test_responses_from_kafka_open_cases_and_breaches_are_published_once(
    tenant: str,
) -> None:
    clock = FixedClock(NOW)
    async with own_topics() as settings:
        app = create_orchestrator_app(settings, clock=clock)
        runtime = runtime_of(app)
        cases_topic = Topic.CASES.address(settings.kafka_topic_prefix)
        consumer = AIOKafkaConsumer(
            cases_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        await runtime.start()
        try:
            producer = EventProducer(settings.kafka_bootstrap_servers, client_id="orch-it")
            await producer.start()
            events = [event_of(tenant, answer(f"r-{i}", score=i), clock) for i in range(5)]
            await producer.send_batch(
                [
                    OutboundRecord(
                        Topic.RESPONSES.address(settings.kafka_topic_prefix),
                        e.partitionkey,
                        e.encode(),
                    )
                    for e in events
                ]
            )
            await producer.stop()
            seen: list[Any] = []

            def mine(kind: type[Any]) -> list[Any]:
                return [e.data for e in seen if e.tenantid == tenant and isinstance(e.data, kind)]

            await read_until(consumer, seen, lambda _: len(mine(CaseOpenedV1)) == 5)
            clock.set(NOW + 48 * H)
            await read_until(
                consumer,
                seen,
                lambda _: len([a for a in mine(CaseSlaAlertV1) if a.kind == "breach"]) == 5,
            )
            await asyncio.sleep(1)  # a second firing would be published by now
            await read_until(consumer, seen, lambda _: True)
        finally:
            await runtime.stop()
            await consumer.stop()
            await runtime.engine.dispose()
            await runtime.worker_engine.dispose()

    breaches = [a for a in mine(CaseSlaAlertV1) if a.kind == "breach"]
    assert sorted(a.response_id for a in breaches) == [f"r-{i}" for i in range(5)]
    assert {a.deadline for a in breaches} == {NOW + 48 * H}
    warnings = [a for a in mine(CaseSlaAlertV1) if a.kind == "warning"]
    assert len(warnings) == 5


async def test_a_silent_key_contact_from_kafka_opens_one_lack_of_response_case(
    tenant: str,
) -> None:
    """Invitations and an answer from the responses topic; the clock moved past the silence
    window; the lack-of-response case published once, for the contact who did not answer."""
    clock = FixedClock(NOW)
    async with own_topics() as base:
        settings = base.model_copy(
            update={
                "orchestrator_key_accounts": frozenset({"acc-key"}),
                "orchestrator_silence_interval_seconds": 0.05,
            }
        )
        app = create_orchestrator_app(settings, clock=clock)
        runtime = runtime_of(app)
        consumer = AIOKafkaConsumer(
            Topic.CASES.address(settings.kafka_topic_prefix),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        await runtime.start()
        try:
            invited = [
                InvitationSentV1(
                    invitation_id=f"inv-{who}",
                    survey_id="relationship-2026",
                    customer=Customer(id=f"cust-{who}"),
                    account_id="acc-key",
                    channel="email",
                    invited_at=NOW - H,
                    attributes={"key_contact": "true"},
                )
                for who in ("silent", "answering")
            ]
            reply = answer("answering", score=9, account_id="acc-key")
            assert reply.customer.id == "cust-answering"
            producer = EventProducer(settings.kafka_bootstrap_servers, client_id="orch-it")
            await producer.start()
            await producer.send_batch(
                [
                    OutboundRecord(
                        Topic.RESPONSES.address(settings.kafka_topic_prefix),
                        e.partitionkey,
                        e.encode(),
                    )
                    for e in (
                        *(event_of(tenant, i, clock) for i in invited),
                        event_of(tenant, reply, clock),
                    )
                ]
            )
            await producer.stop()
            seen: list[Any] = []

            def mine(kind: type[Any]) -> list[Any]:
                return [e.data for e in seen if e.tenantid == tenant and isinstance(e.data, kind)]

            await read_until(consumer, seen, lambda _: len(mine(CaseOpenedV1)) == 1)
            clock.set(NOW + 14 * 24 * H)
            await read_until(consumer, seen, lambda _: len(mine(NoResponseCaseOpenedV1)) == 1)
            await asyncio.sleep(1)  # a second case would be published by now
            await read_until(consumer, seen, lambda _: True)
        finally:
            await runtime.stop()
            await consumer.stop()
            await runtime.engine.dispose()
            await runtime.worker_engine.dispose()

    [opened] = mine(NoResponseCaseOpenedV1)
    assert (opened.invitation_id, opened.customer.id) == ("inv-silent", "cust-silent")
    assert opened.opened_at == NOW + 14 * 24 * H
