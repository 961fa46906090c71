"""Topic settings: min.insync.replicas follows the replication factor unless set, and never exceeds it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from closeloop_common.kafka.topics import min_insync_replicas, planned_topics
from closeloop_common.settings import CommonSettings


@pytest.mark.parametrize(("replication_factor", "expected"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_insync_replicas_derives_from_the_replication_factor(
    replication_factor: int, expected: int
) -> None:
    settings = CommonSettings(kafka_replication_factor=replication_factor)
    assert min_insync_replicas(settings) == expected


def test_min_insync_replicas_can_be_set_up_to_the_replication_factor() -> None:
    settings = CommonSettings(kafka_replication_factor=3, kafka_min_insync_replicas=3)
    assert min_insync_replicas(settings) == 3


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_MIN_INSYNC_REPLICAS"):
        CommonSettings(kafka_replication_factor=1, kafka_min_insync_replicas=2)


def test_every_planned_topic_carries_min_insync_replicas() -> None:
    settings = CommonSettings(kafka_replication_factor=3)
    topics = planned_topics(settings)
    assert topics
    for topic in topics:
        assert topic.replication_factor == 3
        assert topic.topic_configs["min.insync.replicas"] == "2"
