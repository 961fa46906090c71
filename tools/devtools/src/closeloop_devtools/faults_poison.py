"""Poison records for every consumed topic, and the dead letters they must (and must not) make.

Per topic four records, each on a partition the stream's good records also flow through:
- `not_json`: bytes that are not JSON (nor UTF-8);
- `wrong_shape`: valid JSON with the topic's event type and data of the wrong shape;
- `unknown_type`: a well-formed CloudEvent of a type no build knows: skipped, *not*
  dead-lettered (docs/architecture.md section 1: producers roll a new version out first);
- `oversized`: an otherwise valid `response.received.v1` whose comment is 900 kB (the contract
  allows 10,000 characters), close to the broker's 1 MB record limit.
Every group that consumes the topic dead-letters each of the three undecodable ones once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from closeloop_common.events import (
    CaseOpenedV1,
    ChangeSummaryV1,
    ResponseReceivedV1,
    Topic,
    schema_urn,
)

# Which service's consumer group reads which topic (their handlers' contracts' topics).
SUBSCRIBERS: dict[Topic, tuple[str, ...]] = {
    Topic.RESPONSES: ("scoring", "orchestrator", "notifier"),
    Topic.CASES: ("scoring", "notifier"),
    Topic.CHANGES: ("notifier",),
}
TOPIC_TYPE = {
    Topic.RESPONSES: ResponseReceivedV1.EVENT_TYPE,
    Topic.CASES: CaseOpenedV1.EVENT_TYPE,
    Topic.CHANGES: ChangeSummaryV1.EVENT_TYPE,
}
OVERSIZED_COMMENT = 900_000


@dataclass(frozen=True)
class Poison:
    kind: str
    topic: Topic
    partition: int
    offset: int

    @property
    def dead_lettered(self) -> bool:
        return self.kind != "unknown_type"


def _envelope(event_type: str, tenant: str, key: str, data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/closeloop/faults",
        "type": event_type,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": schema_urn(event_type),
        "tenantid": tenant,
        "partitionkey": key,
        "data": data,
    }


def poison_values(topic: Topic, tenant: str, key: str) -> dict[str, bytes]:
    now = datetime.now(UTC).isoformat()
    oversized = {
        "response_id": f"poison-{uuid.uuid4().hex[:8]}",
        "survey_id": "faults",
        "customer": {"id": "poison", "email": "poison@faults.example.com"},
        "score": 3,
        "category": "detractor",
        "comment": "x" * OVERSIZED_COMMENT,
        "answered_at": now,
        "received_at": now,
        "source": "api",
    }
    return {
        "not_json": b"\xff\xfe this is not JSON {",
        "wrong_shape": json.dumps(
            _envelope(TOPIC_TYPE[topic], tenant, key, {"score": "eleven", "case": []})
        ).encode(),
        "unknown_type": json.dumps(
            _envelope("dev.closeloop.faults.unknown.v9", tenant, key, {"anything": 1})
        ).encode(),
        "oversized": json.dumps(
            _envelope(ResponseReceivedV1.EVENT_TYPE, tenant, key, oversized)
        ).encode(),
    }


async def feed_poison(*, bootstrap: str, prefix: str, tenant: str, partitions: int) -> list[Poison]:
    """Send the poison records (acks=all) and return where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    fed: list[Poison] = []
    try:
        for topic in SUBSCRIBERS:
            key = f"{tenant}:poison"
            for i, (kind, value) in enumerate(poison_values(topic, tenant, key).items()):
                meta = await producer.send_and_wait(
                    topic.address(prefix), value, key=key.encode(), partition=i % partitions
                )
                fed.append(Poison(kind, topic, meta.partition, meta.offset))
    finally:
        await producer.stop()
    return fed


def expected_dead_letters(fed: list[Poison], prefix: str) -> set[tuple[str, int, int, str]]:
    """(original topic, partition, offset, consumer group) of every dead letter due."""
    return {
        (p.topic.address(prefix), p.partition, p.offset, f"{prefix}.{group}")
        for p in fed
        if p.dead_lettered
        for group in SUBSCRIBERS[p.topic]
    }
