"""Topic bootstrap against the real broker: idempotent, and loud when the broker refuses."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from closeloop_common.kafka.topics import TopicBootstrapError, ensure_topics, topic_addresses
from closeloop_common.settings import CommonSettings


async def test_second_bootstrap_finds_every_topic_existing(infra: dict[str, str]) -> None:
    settings = CommonSettings()
    outcome = await ensure_topics(settings)
    assert outcome == dict.fromkeys(topic_addresses(settings.kafka_topic_prefix), "exists")


async def test_a_replication_factor_the_cluster_cannot_meet_is_an_error(
    infra: dict[str, str],
) -> None:
    settings = CommonSettings(
        kafka_topic_prefix=f"rf-{uuid.uuid4().hex[:8]}", kafka_replication_factor=3
    )
    with pytest.raises(TopicBootstrapError, match="replication factor of 3"):
        await ensure_topics(settings)


async def topic_config(
    admin: AIOKafkaAdminClient, names: list[str], key: str
) -> dict[str, tuple[str, int]]:
    """`key`'s value and source for each topic, once the broker describes every one of them (a
    topic just created may not be known to the metadata the broker answers from yet)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, {key: None}) for name in names]
    async with asyncio.timeout(20):
        while True:
            found: dict[str, tuple[str, int]] = {}
            for response in await admin.describe_configs(resources):
                for code, _message, _type, name, entries in response.resources:
                    for entry_key, value, _read_only, source, *_rest in entries:
                        if code == 0 and entry_key == key:
                            found[name] = (value, source)
            if len(found) == len(names):
                return found
            await asyncio.sleep(0.2)


async def test_created_topics_carry_min_insync_replicas(infra: dict[str, str]) -> None:
    settings = CommonSettings(kafka_topic_prefix=f"isr-{uuid.uuid4().hex[:8]}")
    names = topic_addresses(settings.kafka_topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_topics(settings)
        found = await topic_config(admin, names, "min.insync.replicas")
        # Set on the topic itself (source 1, DYNAMIC_TOPIC_CONFIG), not inherited from the broker.
        assert found == dict.fromkeys(names, ("1", 1))
    finally:
        await admin.delete_topics(names)
        await admin.close()
