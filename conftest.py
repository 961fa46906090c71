"""Test-wide set-up: a test database and a private topic prefix per run, on the real infra.

Unit tests need none of it. Tests under `integration/` and `e2e/` folders are marked as such and
use the real Kafka broker and PostgreSQL that `make infra-up` started (or DATABASE_URL and
KAFKA_BOOTSTRAP_SERVERS when given). Each run gets its own topic prefix, so tests never read
events of an earlier run or of a `make run` on the same broker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:8]
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://closeloop:closeloop@127.0.0.1:5432/closeloop_test"
)
TEST_ENV = {
    "ENVIRONMENT": "test",
    "DATABASE_URL": TEST_DATABASE_URL,
    "KAFKA_TOPIC_PREFIX": f"test-{RUN_ID}",
    "KAFKA_TOPIC_PARTITIONS": "3",
    "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
    "LOG_FORMAT": "json",
}
os.environ.update(TEST_ENV)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra() -> Iterator[dict[str, str]]:
    """Migrated test database and this run's topics; the topics are deleted afterwards."""
    from closeloop_common.kafka.topics import ensure_topics, topic_addresses
    from closeloop_common.settings import CommonSettings

    bin_dir = Path(sys.executable).parent
    for service in ("ingest", "scoring", "orchestrator", "notifier"):
        result = subprocess.run(
            [str(bin_dir / f"closeloop-{service}"), "migrate"], capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]
    settings = CommonSettings()
    asyncio.run(ensure_topics(settings))
    yield TEST_ENV
    asyncio.run(
        _delete_topics(
            settings.kafka_bootstrap_servers, topic_addresses(settings.kafka_topic_prefix)
        )
    )


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()
