"""Horizontal scale on the real broker: two replicas of each consumer service (scoring, the
orchestrator, the notifier) join one consumer group, share the partitions between them, and
every event has its effect once: while both run, and after one stops mid-stream and the other
takes its partitions over. Topics of the test's own (3 partitions each); effects are read from
the service's own schema.

A consumer group gives each partition to one member, so replicas beyond a topic's partitions
idle: the partitions bound the replicas (docs/architecture.md, "Horizontal scale")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import SystemClock
from closeloop_common.events import (
    CaseOpenedV1,
    Customer,
    Owner,
    Playbook,
    ResponseReceivedV1,
    Topic,
    categorize,
    new_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

EACH = 30  # events per round; two rounds


def response(tenant: str, n: int) -> ResponseReceivedV1:
    at = datetime.now(UTC) - timedelta(minutes=1)
    score = n % 11
    return ResponseReceivedV1(
        response_id=f"r-{n}",
        survey_id="relationship",
        customer=Customer(id=f"c-{tenant}-{n}", email=f"c{n}@klient.example.pl"),
        score=score,
        category=categorize(score),
        comment=None,
        answered_at=at,
        received_at=at,
        source="api",
    )


def case_opened(tenant: str, n: int) -> CaseOpenedV1:
    now = datetime.now(UTC)
    return CaseOpenedV1(
        case_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}:{n}"),
        response_id=f"r-{n}",
        survey_id="relationship",
        customer=Customer(id=f"c-{tenant}-{n}", email=f"c{n}@klient.example.pl", locale="pl"),
        account_id=None,
        score=2,
        category=categorize(2),
        comment="Dostawa się spóźniła.",
        playbook=Playbook.APOLOGY_CALLBACK,
        owner=Owner(id="ewa", name="Ewa", email="ewa@acme.example"),
        key_account=False,
        opened_at=now,
        first_contact_due_at=now + timedelta(hours=48),
    )


@dataclass(frozen=True)
class Service:
    name: str
    make: Callable[[str], FastAPI]
    topic: Topic
    event: Callable[[str, int], Any]
    effect: str  # SQL counting the tenant's effects (`:t`)


def _scoring(prefix: str) -> FastAPI:
    return create_scoring_app(ScoringSettings(kafka_topic_prefix=prefix))


def _orchestrator(prefix: str) -> FastAPI:
    return create_orchestrator_app(OrchestratorSettings(kafka_topic_prefix=prefix))


def _notifier(prefix: str) -> FastAPI:
    # No SMTP server listens on port 9: messages are stored and wait (the production default
    # delays replies anyway); what is counted is that each case got its one message.
    return create_notifier_app(NotifierSettings(kafka_topic_prefix=prefix, notifier_smtp_port=9))


SERVICES = [
    Service(
        "scoring",
        _scoring,
        Topic.RESPONSES,
        response,
        "SELECT count(*) FROM scoring.responses WHERE tenant_id = :t",
    ),
    Service(
        "orchestrator",
        _orchestrator,
        Topic.RESPONSES,
        response,
        "SELECT count(*) FROM orchestrator.cases WHERE tenant_id = :t",
    ),
    Service(
        "notifier",
        _notifier,
        Topic.CASES,
        case_opened,
        "SELECT count(*) FROM notifier.messages WHERE tenant_id = :t AND kind = 'apology'",
    ),
]


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    base = CommonSettings()
    settings = CommonSettings(
        kafka_topic_prefix=f"{base.kafka_topic_prefix}-{uuid.uuid4().hex[:6]}"
    )
    await ensure_topics(settings)
    try:
        yield settings.kafka_topic_prefix
    finally:
        await delete_topics(settings)


def assigned(app: FastAPI, topic: str) -> set[int]:
    consumer = runtime_of(app).consumer
    if consumer is None:
        return set()
    return {tp.partition for tp in consumer.assignment() if tp.topic == topic}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)
    assert await check(), what


async def produce(prefix: str, topic: Topic, tenant: str, data: Sequence[Any]) -> None:
    producer = EventProducer(CommonSettings().kafka_bootstrap_servers, client_id="two-replicas")
    await producer.start()
    try:
        records = []
        for item in data:
            event = new_event(item, tenant_id=tenant, source="/test", clock=SystemClock())
            records.append(
                OutboundRecord(topic.address(prefix), event.partitionkey, event.encode())
            )
        await producer.send_batch(records)
    finally:
        await producer.stop()


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
async def test_two_replicas_share_the_partitions_and_count_every_event_once(
    service: Service, prefix: str
) -> None:
    tenant = f"replicas-{uuid.uuid4().hex[:8]}"
    topic = service.topic.address(prefix)
    partitions = set(range(CommonSettings().kafka_topic_partitions))
    first, second = service.make(prefix), service.make(prefix)
    stopped: list[FastAPI] = []
    try:
        await runtime_of(first).start()
        await runtime_of(second).start()

        async def shared() -> bool:
            a, b = assigned(first, topic), assigned(second, topic)
            return bool(a) and bool(b) and not a & b and a | b == partitions

        await until(shared, "both replicas hold partitions of their own, all of them together")

        async def count() -> int:
            async with runtime_of(first).sessions() as session:
                return int(await session.scalar(sa.text(service.effect), {"t": tenant}) or 0)

        async def counted(expected: int) -> bool:
            return await count() == expected

        await produce(
            prefix, service.topic, tenant, [service.event(tenant, n) for n in range(EACH)]
        )
        await until(lambda: counted(EACH), f"{EACH} effects")

        # One replica stops mid-stream: the other takes its partitions over.
        await runtime_of(second).stop()
        stopped.append(second)
        await produce(
            prefix, service.topic, tenant, [service.event(tenant, n) for n in range(EACH, 2 * EACH)]
        )
        await until(lambda: counted(2 * EACH), f"{2 * EACH} effects")

        async def took_over() -> bool:
            return assigned(first, topic) == partitions

        await until(took_over, "the remaining replica holds every partition")
        # Redelivered events (the stopped replica's uncommitted ones) changed nothing.
        await asyncio.sleep(1.0)
        assert await count() == 2 * EACH
    finally:
        for app in (second, first):
            runtime = runtime_of(app)
            if app not in stopped:
                await runtime.stop()
            await runtime.engine.dispose()
            await runtime.worker_engine.dispose()
