"""The one Kafka producer of a service: idempotent, acks from all in-sync replicas.

A service must not need the broker to start: `connect` keeps trying until the broker answers
(ingest goes on accepting responses into its outbox meanwhile), and every send waits until the
producer is connected.

An idempotent producer whose sequence numbers no longer match the broker's (after a broker
restart, a batch the client gave up on leaves a gap: `OutOfOrderSequenceNumber`) or whose id the
broker no longer knows cannot recover in aiokafka: every later send fails the same way. Such a
producer is replaced by a new one (a new producer id, sequences from 0) and the send fails, so
its caller sends again (the relay re-publishes; consumers' inboxes drop any copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from closeloop_common.events import STRUCTURED_CONTENT_TYPE
from closeloop_common.loop import until_connected


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(
        default=(("content-type", STRUCTURED_CONTENT_TYPE.encode()),)
    )


YIELD_EVERY = 100
# The producer's idempotence state is out of step with the broker's: only a new producer helps.
OUT_OF_STEP = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)

log = logging.getLogger(__name__)


class EventProducer:
    def __init__(self, bootstrap_servers: str, *, client_id: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._started: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._replacing = asyncio.Lock()

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._started is None:
            raise RuntimeError("EventProducer used before start()")
        return self._started

    async def connect(self) -> None:
        """Start, retrying with backoff for as long as the broker cannot be reached."""
        if self._started is None:
            await until_connected(self.start, what=f"producer {self._client_id}")

    async def start(self) -> None:
        """Connect once; raises if the broker cannot be reached."""
        # aiokafka binds to the running loop, so the client is made here, not in __init__.
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            enable_idempotence=True,  # implies acks="all"; no duplicates from producer retries
            acks="all",
            linger_ms=2,
            request_timeout_ms=15_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._started = producer
        self._connected.set()

    async def stop(self) -> None:
        if self._started is not None:
            self._connected.clear()
            await self._started.stop()
            self._started = None

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        """Send records in order and return once the broker acknowledged every one (the sends
        are queued together and their acknowledgements awaited together)."""
        await self._connected.wait()
        producer = self._producer
        pending = []
        try:
            for n, r in enumerate(records, start=1):
                pending.append(
                    await producer.send(
                        r.topic, r.value, key=r.key.encode(), headers=list(r.headers)
                    )
                )
                if n % YIELD_EVERY == 0:
                    # Queuing a record rarely waits, so a long batch would hold the event loop
                    # for tens of milliseconds: let the process's HTTP requests through.
                    await asyncio.sleep(0)
            await asyncio.gather(*pending)
        except OUT_OF_STEP as exc:
            await self._replace(producer, exc)
            raise

    async def _replace(self, broken: AIOKafkaProducer, error: Exception) -> None:
        """Stop `broken` and connect a new producer (once, however many sends saw it fail)."""
        async with self._replacing:
            if self._started is None or self._started is not broken:
                return  # another send replaced it already
            log.warning(
                "the producer is out of step with the broker; replacing it",
                extra={"client_id": self._client_id, "error": type(error).__name__},
            )
            self._connected.clear()
            self._started = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broken.stop(), 10)
            await self.connect()

    async def send(self, record: OutboundRecord) -> None:
        await self.send_batch([record])

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise unless a broker answers a metadata request within `timeout` seconds."""
        if self._started is None:
            raise ConnectionError("not connected to the broker yet")
        await asyncio.wait_for(self._started.client.fetch_all_metadata(), timeout)
