"""`closeloop-scoring rebuild`: recount every aggregate from the topics' first offset.

With scoring stopped (the command refuses while the consumer group has members): the group's
offsets are moved back to the start of each partition of the responses and cases topics, then
scoring's tables of counts, versions and root causes are emptied. The next start replays both
topics (kept forever for this, see `closeloop_common.kafka.topics`) and counts everything again,
whatever order the two topics' events come back in (a case event before its response keeps its
root causes for the response); the handlers are idempotent by version, so a rebuild interrupted
at any point is simply run again.
"""

from __future__ import annotations

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from closeloop_common.db import make_engine
from closeloop_common.events import Topic
from closeloop_common.settings import CommonSettings
from closeloop_scoring.adapters.tables import (
    AGGREGATES,
    cells,
    invitations,
    responses,
    root_causes,
    settings_applied,
)
from closeloop_scoring.service_layer.aggregation import CONTRACTS

EMPTIED = (responses, root_causes, invitations, *AGGREGATES, cells, settings_applied)
TOPICS: tuple[Topic, ...] = tuple(dict.fromkeys(c.TOPIC for c in CONTRACTS))
"""The topics scoring consumes (responses and cases), in the order of `CONTRACTS`."""


class GroupActive(RuntimeError):
    """Scoring is still running: a rebuild needs it stopped."""


async def rewind_group(settings: CommonSettings, group_id: str) -> dict[str, int]:
    """Commit the first offset of every partition of scoring's topics for `group_id`;
    partitions rewound per topic."""
    addresses = [topic.address(settings.kafka_topic_prefix) for topic in TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group_id])
        # A consumer that has not subscribed knows no topic's partitions: ask the admin API.
        topics = await admin.describe_topics(addresses)
    finally:
        await admin.close()
    for response in described:
        for found in response.groups:  # (error, group id, state, protocol type, protocol, ...)
            if found[2] not in ("Empty", "Dead", ""):
                raise GroupActive(f"consumer group {group_id} is {found[2]}: stop scoring first")
    partitions: list[TopicPartition] = []
    for topic in topics:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise LookupError(f"topic {topic['topic']} not found (error {topic['error_code']})")
        for p in sorted(p["partition"] for p in topic["partitions"]):
            partitions.append(TopicPartition(topic["topic"], p))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        first = await consumer.beginning_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in first.items()})
    finally:
        await consumer.stop()
    counted: dict[str, int] = {}
    for tp in partitions:
        counted[tp.topic] = counted.get(tp.topic, 0) + 1
    return counted


async def empty_tables(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, application_name="scoring-rebuild")
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f"{t.schema}.{t.name}" for t in EMPTIED)
            await conn.execute(sa.text(f"TRUNCATE {tables}"))
    finally:
        await engine.dispose()


async def rebuild(settings: CommonSettings, group_id: str) -> dict[str, int]:
    rewound = await rewind_group(settings, group_id)
    await empty_tables(settings.database_url)
    return rewound
