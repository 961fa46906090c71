"""Reads a Kafka topic from its beginning, for tests that check what was published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

Records = list[ConsumerRecord[bytes, bytes]]


class TopicTail:
    """Every record of a topic seen so far (no consumer group, nothing committed)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: Records = []

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> Records:
        """Fetch what arrived since the last call (waiting up to 200 ms); returns all records."""
        for batch in (await self._consumer.getmany(timeout_ms=200)).values():
            self.records.extend(batch)
        return self.records

    async def until(self, done: Callable[[Records], bool], timeout: float = 20) -> Records:
        """Poll until `done(records)` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not done(self.records):
                await self.poll()
        return self.records
