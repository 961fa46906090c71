"""Topic bootstrap against the real broker: idempotent, and loud when the broker refuses."""

from __future__ import annotations

import uuid

import pytest

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
