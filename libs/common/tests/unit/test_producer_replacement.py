"""A producer out of step with the broker is replaced, so the outbox relay does not stall.

Found by the fault run (`make test-faults`): after the broker was stopped and started under
load, ingest's relay failed every batch with `OutOfOrderSequenceNumber` for good (aiokafka cannot
recover an idempotent producer whose sequence numbers the broker no longer accepts), and nothing
accepted since reached Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from closeloop_common.kafka import producer as producer_module
from closeloop_common.kafka.producer import EventProducer, OutboundRecord


class FakeAIOKafkaProducer:
    """Stands in for aiokafka's producer: the first one made refuses every send as out of
    step with the broker; the ones made after it accept."""

    made: ClassVar[list[FakeAIOKafkaProducer]] = []

    def __init__(self, **_config: Any) -> None:
        self.out_of_step = not FakeAIOKafkaProducer.made
        self.sent: list[bytes] = []
        self.stopped = False
        FakeAIOKafkaProducer.made.append(self)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.out_of_step:
            acknowledged.set_exception(OutOfOrderSequenceNumber())
        else:
            self.sent.append(value)
            acknowledged.set_result(None)
        return acknowledged


async def test_a_producer_out_of_step_with_the_broker_is_replaced_and_the_resend_goes_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeAIOKafkaProducer.made.clear()
    monkeypatch.setattr(producer_module, "AIOKafkaProducer", FakeAIOKafkaProducer)
    producer = EventProducer("127.0.0.1:1", client_id="test")
    await producer.start()
    record = OutboundRecord(topic="t.responses", key="tenant:c1", value=b"event")

    with pytest.raises(OutOfOrderSequenceNumber):
        await producer.send_batch([record])
    first, second = FakeAIOKafkaProducer.made
    assert first.stopped
    assert not second.stopped

    await producer.send_batch([record])  # the caller's retry
    assert second.sent == [b"event"]
    assert first.sent == []
    assert len(FakeAIOKafkaProducer.made) == 2
