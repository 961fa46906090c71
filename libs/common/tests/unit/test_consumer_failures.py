"""How the consumer treats failures: outages are waited out, poison and bugs are dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from closeloop_common.clock import SystemClock
from closeloop_common.errors import describe_error, is_transient
from closeloop_common.events import (
    Customer,
    ResponseReceivedV1,
    UndecodableEvent,
    categorize,
    decode_event,
    new_event,
)
from closeloop_common.handlers import HandlerRegistry
from closeloop_common.kafka import consumer as consumer_module
from closeloop_common.kafka.consumer import Decoded, EventConsumer
from closeloop_common.kafka.producer import OutboundRecord


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        ConnectionRefusedError(111, "Connection refused"),
        # A burst of HTTP reads holding every pooled connection: the process is busy, not the
        # message bad.
        sa.exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.LockNotAvailableError("could not obtain lock on row"),
        sa.exc.DBAPIError("UPDATE", None, asyncpg.exceptions.LockNotAvailableError("lock timeout")),
        sa.exc.DBAPIError(
            "SELECT 1", None, asyncpg.exceptions.CannotConnectNowError("starting up")
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_infrastructure_errors_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a handler bug"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        sa.exc.DBAPIError("INSERT", None, asyncpg.exceptions.NotNullViolationError("null value")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_the_message_or_code_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"type": ' + b"9" * 5000 + b"}", b"\xff\xfe", b"{"],
    ids=["deep-nesting", "huge-integer", "bad-utf8", "truncated"],
)
def test_any_unparseable_value_is_undecodable_not_a_crash(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode_event(raw)


class ScriptedConsumer(EventConsumer):
    """The consumer's failure handling with its database step replaced by a script of outcomes."""

    def __init__(
        self,
        outcomes: list[BaseException | None],
        max_attempts: int,
        *,
        producer: Any = None,
        fail_ids: frozenset[str] = frozenset(),
    ) -> None:
        registry = HandlerRegistry()
        registry.on(ResponseReceivedV1, self._noop)
        super().__init__(
            group_id="unit",
            topics=["t"],
            registry=registry,
            sessions=None,  # type: ignore[arg-type]
            inbox=sa.Table("inbox", sa.MetaData()),
            outbox=None,  # type: ignore[arg-type]
            producer=producer,
            bootstrap_servers="unused:9092",
            topic_prefix="unit",
            clock=SystemClock(),
            source="/unit",
            max_attempts=max_attempts,
        )
        self.outcomes = outcomes
        self.fail_ids = fail_ids
        self.calls = 0
        self.batches: list[list[str]] = []
        self.handled: list[str] = []
        self.dead_letters: list[str] = []

    @staticmethod
    async def _noop(*_: Any) -> None:
        return None

    async def _handle_batch(self, items: Any) -> None:
        ids = [i.event.data.response_id for i in items]
        self.batches.append(ids)
        if self.calls < len(self.outcomes):
            outcome = self.outcomes[self.calls]
            self.calls += 1
            if outcome is not None:
                raise outcome
        if self.fail_ids.intersection(ids):
            raise ValueError("a bad record in this batch")
        self.handled += ids

    async def _dead_letter(self, record: Any, reason: str, exc: BaseException) -> None:
        self.dead_letters.append(reason)


def a_record(
    response_id: str = "r", offset: int = 7, partition: int = 0, topic: str = "t"
) -> ConsumerRecord[bytes, bytes]:
    now = datetime.now(UTC)
    data = ResponseReceivedV1(
        response_id=response_id,
        survey_id="s",
        customer=Customer(id="c", email="anna@example.pl", name="Anna Secret"),
        score=5,
        category=categorize(5),
        answered_at=now,
        received_at=now,
        source="unit",
    )
    value = new_event(data, tenant_id="t", source="/unit", clock=SystemClock()).encode()
    return ConsumerRecord(topic, partition, offset, 0, 0, b"t:c", value, None, 3, len(value), ())


async def decoded(consumer: EventConsumer, record: ConsumerRecord[bytes, bytes]) -> Decoded:
    item = consumer._decode_known(record)
    assert item is not None
    return item


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "backoff", lambda *_a, **_k: 0.0)


TP = TopicPartition("t", 0)


async def test_a_long_outage_does_not_use_up_the_attempts() -> None:
    outage = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    consumer = ScriptedConsumer([outage] * 20 + [None], max_attempts=3)
    await consumer._handle_alone({TP}, await decoded(consumer, a_record()))
    assert consumer.calls == 21
    assert consumer.dead_letters == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_max_attempts() -> None:
    outage = asyncpg.exceptions.CannotConnectNowError("starting up")
    bug = ValueError("bug")
    consumer = ScriptedConsumer([bug, outage, bug, outage, bug, None], max_attempts=3)
    await consumer._handle_alone({TP}, await decoded(consumer, a_record()))
    assert consumer.calls == 5  # three errors (outages in between do not count), then given up
    assert consumer.dead_letters == ["handler_failed"]


async def test_a_failing_batch_falls_back_to_single_records_and_spares_the_neighbours() -> None:
    consumer = ScriptedConsumer([], max_attempts=2, fail_ids=frozenset({"r2"}))
    records = [a_record(f"r{n}", offset=n) for n in range(5)]
    await consumer._handle_items({TP}, [await decoded(consumer, r) for r in records])
    assert consumer.batches[0] == ["r0", "r1", "r2", "r3", "r4"]  # one transaction first
    assert consumer.handled == ["r0", "r1", "r3", "r4"]
    assert consumer.dead_letters == ["handler_failed"]


async def test_an_outage_during_a_batch_is_waited_out_without_splitting_it() -> None:
    outage = sa.exc.TimeoutError("QueuePool limit reached")
    consumer = ScriptedConsumer([outage, outage, None], max_attempts=1)
    records = [a_record(f"r{n}", offset=n) for n in range(3)]
    await consumer._handle_items({TP}, [await decoded(consumer, r) for r in records])
    assert consumer.batches == [["r0", "r1", "r2"]] * 3
    assert consumer.handled == ["r0", "r1", "r2"]
    assert consumer.dead_letters == []


async def test_a_batch_waiting_out_an_outage_gives_up_when_its_partition_is_revoked() -> None:
    outage = asyncpg.exceptions.CannotConnectNowError("starting up")
    consumer = ScriptedConsumer([outage] * 1000, max_attempts=1)
    consumer._revoked.add(TP)
    with pytest.raises(consumer_module.PartitionRevoked):
        await consumer._handle_items(
            {TP}, [await decoded(consumer, a_record(f"r{n}", n)) for n in range(2)]
        )
    assert consumer.handled == []
    assert consumer.dead_letters == []


class FakeKafka:
    """Just enough of AIOKafkaConsumer for `poll_once`: one scripted fetch, an assignment."""

    def __init__(self, fetch: dict[Any, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.fetch = fetch
        self.assigned = set(fetch)
        self.committed: dict[Any, int] = {}
        self.highwaters: dict[Any, int] = {}
        self.positions: dict[Any, int] = {}

    async def getmany(self, **_: Any) -> dict[Any, list[ConsumerRecord[bytes, bytes]]]:
        fetch, self.fetch = self.fetch, {}
        return fetch

    def assignment(self) -> set[Any]:
        return self.assigned

    async def commit(self, offsets: dict[Any, Any]) -> None:
        self.committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters.get(tp)

    async def position(self, tp: Any) -> int:
        return self.positions[tp]

    async def stop(self) -> None:
        return None


async def test_records_of_a_partition_revoked_after_the_fetch_are_dropped_not_handled() -> None:
    consumer = ScriptedConsumer([], max_attempts=1)
    other = TopicPartition("t", 1)
    kafka = FakeKafka({TP: [a_record("kept", 0)], other: [a_record("revoked", 0, partition=1)]})
    consumer._started = kafka
    consumer._revoked.add(other)  # the rebalance listener ran after the fetch
    await consumer.poll_once()
    assert consumer.handled == ["kept"]
    assert kafka.committed == {TP: 1}


async def test_lag_is_the_high_watermark_less_the_committed_offset() -> None:
    consumer = ScriptedConsumer([], max_attempts=1)
    kafka = FakeKafka({TP: [a_record("a", 0), a_record("b", 1)]})
    kafka.highwaters[TP] = 7
    consumer._started = kafka
    await consumer.poll_once()
    lag = REGISTRY.get_sample_value(
        "closeloop_consumer_lag_records",
        {"group": consumer.group_id, "topic": TP.topic, "partition": str(TP.partition)},
    )
    assert kafka.committed == {TP: 2}
    assert lag == 5


def lag_of(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "closeloop_consumer_lag_records",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


async def test_an_empty_fetch_reports_the_lag_of_every_partition_a_fetch_has_reached() -> None:
    consumer = ScriptedConsumer([], max_attempts=1)
    consumer.group_id = "unit-idle"
    caught_up, behind, unfetched = (TopicPartition("unit.responses", p) for p in range(3))
    kafka = FakeKafka({})
    kafka.assigned = {caught_up, behind, unfetched}
    kafka.highwaters = {caught_up: 7, behind: 9}
    kafka.positions = {caught_up: 7, behind: 4, unfetched: 0}
    consumer._started = kafka
    assert await consumer.poll_once() == 0
    # The topic label is the logical name, without KAFKA_TOPIC_PREFIX ("unit").
    assert lag_of("unit-idle", "responses", 0) == 0
    assert lag_of("unit-idle", "responses", 1) == 5
    assert lag_of("unit-idle", "responses", 2) is None  # no fetch has told its high watermark
    await consumer.stop()
    assert lag_of("unit-idle", "responses", 0) is None  # a stopped consumer reports no lag


async def test_a_revoked_partition_loses_its_lag_series_once_its_batch_committed() -> None:
    consumer = ScriptedConsumer([], max_attempts=1)
    consumer.group_id = "unit-revoke"
    kept, moved = TopicPartition("unit.cases", 0), TopicPartition("unit.cases", 1)
    kafka = FakeKafka(
        {
            kept: [a_record("a", 0, topic=kept.topic)],
            moved: [a_record("b", 0, partition=1, topic=moved.topic)],
        }
    )
    kafka.highwaters = {kept: 3, moved: 2}
    consumer._started = kafka
    await consumer.poll_once()
    assert (lag_of("unit-revoke", "cases", 0), lag_of("unit-revoke", "cases", 1)) == (2, 1)
    await consumer_module._Rebalance(consumer).on_partitions_revoked([moved])
    assert lag_of("unit-revoke", "cases", 0) == 2
    assert lag_of("unit-revoke", "cases", 1) is None  # its new owner reports it


class TrickleKafka(FakeKafka):
    """Records arrive a few at a time: each `getmany` gives the next scripted fetch."""

    def __init__(self, fetches: list[dict[Any, list[ConsumerRecord[bytes, bytes]]]]) -> None:
        super().__init__({})
        self.fetches = fetches
        self.assigned = {tp for f in fetches for tp in f}
        self.asked: list[tuple[int, int]] = []  # (timeout_ms, max_records) of each call

    async def getmany(self, **kwargs: Any) -> dict[Any, list[ConsumerRecord[bytes, bytes]]]:
        self.asked.append((kwargs["timeout_ms"], kwargs["max_records"]))
        return self.fetches.pop(0) if self.fetches else {}


async def test_a_short_batch_waits_the_linger_for_more_records_but_never_past_the_limit() -> None:
    consumer = ScriptedConsumer([], max_attempts=1)
    consumer._batch_max_records, consumer._linger_ms = 5, 40
    kafka = TrickleKafka(
        [{TP: [a_record(f"r{n}", n) for n in range(2)]}, {TP: [a_record("r2", 2)]}]
    )
    consumer._started = kafka
    await consumer.poll_once(timeout_ms=500)
    assert kafka.asked == [(500, 5), (40, 3)]  # the linger asks only for what is left
    assert consumer.batches == [["r0", "r1", "r2"]]  # one transaction for both fetches
    assert kafka.committed == {TP: 3}


class ScriptedProducer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.sent: list[OutboundRecord] = []

    async def send(self, record: OutboundRecord) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(record)


async def test_a_dead_letter_refused_for_good_does_not_block_the_partition() -> None:
    from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

    producer = ScriptedProducer([KafkaTimeoutError(), MessageSizeTooLargeError()])
    consumer = ScriptedConsumer([], max_attempts=1, producer=producer)
    await EventConsumer._dead_letter(consumer, a_record(), "handler_failed", ValueError("x"))
    assert producer.failures == []  # the timeout was retried, the size refusal given up on
    assert producer.sent == []


async def test_dead_letter_headers_name_the_failure_but_carry_no_input_values() -> None:
    producer = ScriptedProducer([])
    consumer = ScriptedConsumer([], max_attempts=1, producer=producer)
    try:
        # A score no timestamp can contain by chance (the headers carry the failure time).
        ResponseReceivedV1.model_validate(
            {"score": -31415926, "customer": {"id": "anna@example.pl"}}
        )
    except Exception as exc:
        failure = exc
    await EventConsumer._dead_letter(consumer, a_record(), "handler_failed", failure)
    headers = dict(producer.sent[0].headers)
    error = headers["closeloop.dlq.error"].decode()
    assert error.startswith("ValidationError")
    assert "score" in error
    all_headers = b" ".join(v for _, v in producer.sent[0].headers)
    assert b"anna@example.pl" not in all_headers
    assert b"31415926" not in all_headers


def test_describe_error_of_a_database_error_gives_its_sqlstate_not_its_parameters() -> None:
    exc = sa.exc.DBAPIError(
        "INSERT INTO x VALUES ($1)",
        {"email": "anna@example.pl"},
        asyncpg.exceptions.NotNullViolationError("null value in column anna@example.pl"),
    )
    described = describe_error(exc)
    assert "anna@example.pl" not in described
    assert described.startswith("DBAPIError")
