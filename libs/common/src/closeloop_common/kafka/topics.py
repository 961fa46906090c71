"""Topic bootstrap: every topic is created explicitly with a documented partition count.

Partitions: `KAFKA_TOPIC_PARTITIONS` (default 6). Record keys are `<tenant>:<customer id>`, so a
customer's events stay ordered on one partition while customers spread across partitions.
Durability: `KAFKA_REPLICATION_FACTOR` replicas, and `min.insync.replicas` on every topic
(`KAFKA_MIN_INSYNC_REPLICAS`, else 1 below three replicas and 2 from three on), so an `acks=all`
write is acknowledged only once that many replicas have it: with three replicas a write survives
the loss of any one broker, and one broker may be down without stopping writes.
Topics that already exist are left as they are (`exists`); change their settings with Kafka's
own tools (`kafka-configs.sh --alter --entity-type topics`).
Auto-creation is off on the broker; `closeloop-topics create` is run by `make infra-up`,
the compose `bootstrap` service and the Kubernetes Job of deploy/k8s/components/topics-job; on
Kubernetes with Strimzi, `python -m closeloop_devtools.k8s_topics` writes the same topics as
`KafkaTopic` resources.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from closeloop_common.events import Topic
from closeloop_common.settings import CommonSettings


class TopicBootstrapError(RuntimeError):
    """The broker refused to create a topic (say, a replication factor it cannot meet)."""


RETENTION_MS = {
    Topic.DEADLETTER: 30 * 24 * 3600 * 1000,  # a month to inspect and replay poison messages
    # Kept forever: the record of every response, from which scoring rebuilds its aggregates.
    Topic.RESPONSES: -1,
    # Kept forever too: the history of every case, whose root causes scoring rebuilds its
    # root-cause drivers from (a rebuild after 14 days would lose them otherwise).
    Topic.CASES: -1,
    # Kept forever: the record of what was done or refused and why (few events).
    Topic.CHANGES: -1,
}
DEFAULT_RETENTION_MS = 14 * 24 * 3600 * 1000


def topic_addresses(prefix: str) -> list[str]:
    return [t.address(prefix) for t in Topic]


def min_insync_replicas(settings: CommonSettings) -> int:
    """`KAFKA_MIN_INSYNC_REPLICAS`, else 1 below a replication factor of 3 and 2 from 3 on."""
    if settings.kafka_min_insync_replicas is not None:
        return settings.kafka_min_insync_replicas
    return 1 if settings.kafka_replication_factor < 3 else 2


def planned_topics(settings: CommonSettings) -> list[NewTopic]:
    """Every topic as `ensure_topics` creates it."""
    return [
        NewTopic(
            name=t.address(settings.kafka_topic_prefix),
            num_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            topic_configs={
                "retention.ms": str(RETENTION_MS.get(t, DEFAULT_RETENTION_MS)),
                "min.insync.replicas": str(min_insync_replicas(settings)),
            },
        )
        for t in Topic
    ]


async def ensure_topics(settings: CommonSettings) -> dict[str, str]:
    """Create missing topics (idempotent); returns topic -> "created" | "exists"."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        outcome: dict[str, str] = {}
        existing = set(await admin.list_topics())
        wanted = planned_topics(settings)
        missing = [nt for nt in wanted if nt.name not in existing]
        for nt in wanted:
            outcome[nt.name] = "exists" if nt.name in existing else "created"
        if missing:
            response = await admin.create_topics(missing)
            # Per-topic errors come back in the response, not as exceptions.
            failed = []
            for name, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):  # 36: a concurrent bootstrap won
                    failed.append(f"{name}: error {code} {message[0] if message else ''}".strip())
            if failed:
                raise TopicBootstrapError("could not create topics: " + "; ".join(failed))
        return outcome
    finally:
        await admin.close()


async def delete_topics(settings: CommonSettings) -> None:
    """Delete every topic of `KAFKA_TOPIC_PREFIX` (tests and benchmarks clean up their own)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(topic_addresses(settings.kafka_topic_prefix))
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-topics", description=__doc__)
    parser.add_argument("command", choices=["create", "list"])
    args = parser.parse_args(argv)
    settings = CommonSettings()
    if args.command == "list":
        for name in topic_addresses(settings.kafka_topic_prefix):
            print(name)
        return 0
    try:
        outcome = asyncio.run(ensure_topics(settings))
    except TopicBootstrapError as exc:
        print(f"closeloop-topics: {exc}", file=sys.stderr)
        return 1
    for name, state in outcome.items():
        print(
            f"{name}: {state} ({settings.kafka_topic_partitions} partitions, "
            f"replication factor {settings.kafka_replication_factor}, "
            f"min.insync.replicas {min_insync_replicas(settings)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
