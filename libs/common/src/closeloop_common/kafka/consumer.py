"""A consumer with exactly-once *effect*, in batches: fetch -> decode -> dedupe -> handle -> commit.

The steps of one batch (`EventConsumer.poll_once`):
- fetch: `getmany` returns what the background fetcher holds, per partition (at most
  `batch_max_records` in all; with a linger, it waits that long for more to fill a short batch).
  Records of partitions revoked since are dropped.
- decode: each value must be a structured CloudEvent of a known contract. Undecodable bytes are
  poison: they go to the dead-letter topic at once. A well-formed event of a type this build does
  not know (say a newer version), or one no handler is registered for, is skipped.
- dedupe + handle, in ONE database transaction for the whole batch: the inbox rows of every event
  are inserted with one statement and only the events that were not there before are given to the
  handlers (in partition order, a batch handler per run of events of one type); what they emit is
  written to the outbox; then the transaction commits.
- commit: the partitions' offsets are committed (one request) only after that transaction
  committed. A crash in between redelivers records the inbox then skips.

Failures:
- infrastructure errors (database or broker down, pool exhausted, lock or statement timeouts) are
  retried with backoff for as long as they last, so an outage loses nothing and dead-letters nothing;
- any other error of a batch makes the consumer fall back to one record per transaction for that
  batch, so the record at fault is isolated: each record is retried `max_attempts` times and then
  dead-lettered, and its neighbours are handled as usual;
- a dead letter the broker refuses for good (say, a record too large) is logged and counted, and the
  partition moves on; it is never allowed to block the partition.

Tracing (`tracing.py`, when on): each batch transaction is a `process <topic>` span linked to
every event's `traceparent`; handlers give each event a `process <event type>` span in its own
trace (`handlers`). A dead letter is the record as it came, its trace context included.

Rebalances: while a batch is handled the consumer holds a lock; a revocation waits for that batch
to commit (and its offsets), then the partition's remaining fetched records are dropped rather than
handled beside the new owner. A batch stuck in an outage retry gives up when its partition is
revoked; the new owner redelivers it and the inbox keeps the effect single.

Lag (`closeloop_consumer_lag_records{group,topic,partition}`, the topic's logical name): the
partition's high watermark at the last fetch less the group's position, both known locally after
a fetch (no request to the broker). It is set for a batch's partitions after their offsets are
committed, and for every partition of the assignment when a fetch comes back empty: fetches are
handled one after the other, so by then everything fetched before is committed and the position
is the committed offset. A revoked partition's series is removed once its last batch committed
(its new owner reports it), and so are all of a consumer's series when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common import tracing
from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.errors import backoff, describe_error, is_permanent_kafka_error, is_transient
from closeloop_common.events import (
    CloudEvent,
    Topic,
    UndecodableEvent,
    UnknownEventType,
    decode_event,
)
from closeloop_common.handlers import HandlerRegistry, Registration, Transaction
from closeloop_common.inbox import Deliveries, record_new
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.loop import until_connected
from closeloop_common.metrics import (
    CONSUMER_BATCH_DURATION,
    CONSUMER_BATCH_SIZE,
    CONSUMER_LAG,
    DEAD_LETTERS_DROPPED,
    EVENT_AGE,
    EVENTS_CONSUMED,
    HANDLER_FAILURES,
)
from closeloop_common.outbox import Outbox

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]

# Events of one batch whose age is observed (see `_count`).
AGE_SAMPLES_PER_BATCH = 100


@dataclass(frozen=True, slots=True)
class Decoded:
    record: Record
    event: CloudEvent[Any]
    registration: Registration[Any]

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetch, decoded: the events to handle and the offsets to commit once they are."""

    offsets: dict[TopicPartition, int]
    items: list[Decoded]
    records: int


class PartitionRevoked(Exception):
    """The partition was taken away while its batch waited out an outage."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: EventConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._consumer._revoked.update(revoked)
        # Let the batch under way commit (and its offsets) before the partition moves.
        async with self._consumer._busy:
            self._consumer._forget_lag(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._consumer._revoked.difference_update(assigned)


class EventConsumer:
    def __init__(
        self,
        *,
        group_id: str,
        topics: list[str],
        registry: HandlerRegistry,
        sessions: async_sessionmaker[AsyncSession],
        inbox: sa.Table,
        outbox: Outbox,
        producer: EventProducer,
        bootstrap_servers: str,
        topic_prefix: str,
        clock: Clock,
        source: str,
        max_attempts: int = 5,
        batch_max_records: int = 5000,
        linger_ms: int = 0,
        batch_mode: bool = True,
    ) -> None:
        self.group_id = group_id
        self._topics = topics
        self._registry = registry
        self._sessions = sessions
        self._inbox = inbox
        self._outbox = outbox
        self._producer = producer
        self._deadletter_topic = Topic.DEADLETTER.address(topic_prefix)
        self._clock = clock
        self._source = source
        self._max_attempts = max_attempts
        self._batch_max_records = batch_max_records
        self._linger_ms = linger_ms
        self.batch_mode = batch_mode
        self._bootstrap_servers = bootstrap_servers
        self._started: AIOKafkaConsumer | None = None
        self._topic_prefix = topic_prefix
        self._busy = asyncio.Lock()
        self._revoked: set[TopicPartition] = set()
        self._lag_reported: set[TopicPartition] = set()  # partitions with a lag series

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._started is None:
            raise RuntimeError("EventConsumer used before start()")
        return self._started

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member of the group holds now (none before it joined)."""
        if self._started is None:
            return frozenset()
        return frozenset(self._started.assignment())

    async def start(self) -> None:
        """Connect and join the group; raises if the broker cannot be reached."""
        # aiokafka binds to the running loop, so the client is made here, not in __init__.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            await consumer.start()
            consumer.subscribe(self._topics, listener=_Rebalance(self))
        except BaseException:
            await consumer.stop()
            raise
        self._started = consumer

    async def stop(self) -> None:
        if self._started is not None:
            await self._started.stop()
            self._started = None
        self._forget_lag(set(self._lag_reported))

    async def run(self) -> None:
        """Consume until cancelled; connects first, waiting out a broker that is down."""
        if self._started is None:
            await until_connected(self.start, what=f"consumer {self.group_id}")
        # Pipelined: the next fetch is decoded while the current batch is in the database, so
        # Python (decoding) and PostgreSQL (the transaction) work at the same time.
        upcoming = asyncio.ensure_future(self._fetch_decoded(500))
        try:
            while True:
                fetched = await upcoming
                upcoming = asyncio.ensure_future(self._fetch_decoded(500))
                await self._handle_fetched(fetched)
        finally:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await upcoming

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch and handle one batch (records of every partition fetched, in one transaction);
        returns how many records it fetched."""
        fetched = await self._fetch_decoded(timeout_ms)
        await self._handle_fetched(fetched)
        return fetched.records

    async def _fetch_decoded(self, timeout_ms: int) -> Fetched:
        """Fetch, decode (dead-lettering what is undecodable) and note the offsets to commit."""
        batches = await self._fetch(timeout_ms)
        items: list[Decoded] = []
        decoded = 0
        for records in batches.values():
            for record in records:
                try:
                    item = self._decode_known(record)
                except UndecodableEvent as exc:
                    await self._poisoned(record, exc)
                    item = None
                if item is not None:
                    items.append(item)
                decoded += 1
                if decoded % 500 == 0:
                    await asyncio.sleep(0)  # let the batch under way reach the database
        return Fetched(
            offsets={tp: records[-1].offset + 1 for tp, records in batches.items()},
            items=items,
            records=decoded,
        )

    async def _handle_fetched(self, fetched: Fetched) -> None:
        """Handle a fetch's events of partitions still ours, then commit their offsets."""
        async with self._busy:
            if not fetched.offsets:
                await self._report_idle_lag()
                return
            owned = {tp: o for tp, o in fetched.offsets.items() if not self._is_revoked(tp)}
            if not owned:
                return
            items = fetched.items
            if len(owned) < len(fetched.offsets):
                items = [i for i in items if i.partition in owned]
            try:
                await self._handle_items(set(owned), items)
            except PartitionRevoked:
                return
            await self._commit(owned)

    def _is_revoked(self, tp: TopicPartition) -> bool:
        return tp in self._revoked or tp not in self._consumer.assignment()

    async def _fetch(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        limit = self._batch_max_records if self.batch_mode else 200
        batches: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
            timeout_ms=timeout_ms, max_records=limit
        )
        fetched = sum(len(r) for r in batches.values())
        if self.batch_mode and self._linger_ms > 0 and 0 < fetched < limit:
            more = await self._consumer.getmany(
                timeout_ms=self._linger_ms, max_records=limit - fetched
            )
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
        return batches

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError:
            # Lost a partition in a rebalance: the new owner redelivers, the inbox dedupes.
            log.warning("offset commit failed", extra={"offsets": str(offsets)})
            return
        for tp, offset in offsets.items():
            self._set_lag(tp, offset)

    async def _report_idle_lag(self) -> None:
        """After an empty fetch: the lag of every partition still ours whose high watermark a
        fetch has brought (a record produced since then shows at the next fetch)."""
        for tp in list(self._consumer.assignment()):
            if tp in self._revoked or self._consumer.highwater(tp) is None:
                continue
            self._set_lag(tp, await self._consumer.position(tp))

    def _set_lag(self, tp: TopicPartition, position: int) -> None:
        highwater = self._consumer.highwater(tp)
        if highwater is None:
            return
        CONSUMER_LAG.labels(*self._lag_labels(tp)).set(max(0, highwater - position))
        self._lag_reported.add(tp)

    def _forget_lag(self, partitions: Iterable[TopicPartition]) -> None:
        """Remove the lag series of partitions no longer ours."""
        for tp in partitions:
            if tp in self._lag_reported:
                self._lag_reported.discard(tp)
                CONSUMER_LAG.remove(*self._lag_labels(tp))

    def _lag_labels(self, tp: TopicPartition) -> tuple[str, str, str]:
        return (
            self.group_id,
            tp.topic.removeprefix(f"{self._topic_prefix}."),
            str(tp.partition),
        )

    async def _handle_items(
        self, partitions: set[TopicPartition], items: Sequence[Decoded]
    ) -> None:
        """Handle one fetch's events: in batch mode all in one transaction, falling back to one
        record per transaction when the batch fails for a reason other than an outage."""
        if not items:
            return
        if self.batch_mode and len(items) > 1:
            try:
                await self._until_not_transient(partitions, items)
                return
            except PartitionRevoked:
                raise
            except Exception as exc:
                HANDLER_FAILURES.labels(self.group_id, "batch", "error").inc()
                log.warning(
                    "batch failed; handling its records one by one to isolate the bad one",
                    extra={"group": self.group_id, "error": repr(exc)},
                )
        for item in items:
            if item.partition in self._revoked:
                raise PartitionRevoked(str(item.partition))
            await self._handle_alone({item.partition}, item)

    def _decode_known(self, record: Record) -> Decoded | None:
        """The record's event and handler; None for a type nobody here handles. Raises
        `UndecodableEvent` for poison. Not a coroutine: it runs for every record consumed."""
        try:
            event = decode_event(record.value or b"")
        except UnknownEventType:
            # Not the type as label: a record's content must not mint metric series.
            EVENTS_CONSUMED.labels(self.group_id, "unknown", "skipped").inc()
            return None
        registration = self._registry.get(event.type)
        if registration is None:
            EVENTS_CONSUMED.labels(self.group_id, event.type, "skipped").inc()
            return None
        return Decoded(record, event, registration)

    async def _poisoned(self, record: Record, exc: UndecodableEvent) -> None:
        await self._dead_letter(record, "undecodable", exc)
        EVENTS_CONSUMED.labels(self.group_id, "undecodable", "dead_lettered").inc()

    async def _until_not_transient(
        self, partitions: set[TopicPartition], items: Sequence[Decoded]
    ) -> None:
        """Handle `items` in one transaction, retrying while the infrastructure is down."""
        outages = 0
        while True:
            try:
                await self._handle_batch(items)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                outages += 1
                HANDLER_FAILURES.labels(self.group_id, items[0].event.type, "transient").inc()
                delay = backoff(outages)
                log.warning(
                    "infrastructure error; retrying the batch",
                    extra={"group": self.group_id, "error": repr(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                if partitions & self._revoked:
                    raise PartitionRevoked(str(partitions & self._revoked)) from exc

    async def _handle_alone(self, partitions: set[TopicPartition], item: Decoded) -> None:
        """One record per transaction: outages are waited out, errors dead-letter it in the end."""
        errors = 0
        while True:
            try:
                await self._until_not_transient(partitions, [item])
                return
            except (asyncio.CancelledError, PartitionRevoked):
                raise
            except Exception as exc:
                errors += 1
                HANDLER_FAILURES.labels(self.group_id, item.event.type, "error").inc()
                if errors >= self._max_attempts:
                    # The dead letter is the record as it came: its trace context stays in it.
                    log.exception(
                        "handler failed for good; dead-lettering",
                        extra=dict(item.event.log_fields()),
                    )
                    await self._dead_letter(item.record, "handler_failed", exc)
                    EVENTS_CONSUMED.labels(self.group_id, item.event.type, "dead_lettered").inc()
                    return
                delay = backoff(errors)
                log.warning(
                    "handler failed; retrying",
                    extra={**item.event.log_fields(), "error": repr(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)

    async def _handle_batch(self, items: Sequence[Decoded]) -> None:
        """Dedupe and handle `items` in one transaction; metrics only after it committed.

        With tracing on, in a `process <topic>` span linked to every event's context (each
        handled event gets a `process <event type>` span of its own in its trace: `handlers`)."""
        if not tracing.enabled():
            await self._handle_in_transaction(items)
            return
        topics = sorted({i.record.topic for i in items})
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": self.group_id,
            "messaging.batch.message_count": len(items),
        }
        if len(topics) == 1:
            attributes["messaging.destination.name"] = topics[0]
        with tracing.span(
            f"process {topics[0]}" if len(topics) == 1 else "process",
            kind=SpanKind.CONSUMER,
            links=tracing.links_to([tracing.event_context(i.event) for i in items]),
            attributes=attributes,
        ):
            await self._handle_in_transaction(items)

    async def _handle_in_transaction(self, items: Sequence[Decoded]) -> None:
        started = time.perf_counter()
        async with transaction(self._sessions) as session:
            # Events of idempotent handlers skip the inbox: their handler dedupes by version.
            inboxed = [i for i in items if not i.registration.idempotent]
            new_ids = await record_new(
                session,
                self._inbox,
                group_id=self.group_id,
                deliveries=Deliveries(
                    event_ids=[i.event.id for i in inboxed],
                    tenant_ids=[i.event.tenantid for i in inboxed],
                    event_types=[i.event.type for i in inboxed],
                    topics=[i.record.topic for i in inboxed],
                    partitions=[i.record.partition for i in inboxed],
                    offsets=[i.record.offset for i in inboxed],
                ),
                now=self._clock.now(),
            )
            fresh: list[Decoded] = []
            for item in items:
                if item.registration.idempotent:
                    fresh.append(item)
                elif item.event.id in new_ids:
                    new_ids.discard(item.event.id)  # the same event twice in one batch: once
                    fresh.append(item)
            tx = Transaction(
                session=session, clock=self._clock, source=self._source, outbox=self._outbox
            )
            for registration, run in _runs(fresh):
                await registration.batch(tx, [i.event for i in run])
            await tx.flush()
        CONSUMER_BATCH_DURATION.labels(self.group_id).observe(time.perf_counter() - started)
        CONSUMER_BATCH_SIZE.labels(self.group_id).observe(len(items))
        self._count(items, fresh)

    def _count(self, items: Sequence[Decoded], fresh: Sequence[Decoded]) -> None:
        """Outcome counters (every event) and event ages (a sample of a large batch)."""
        processed = Counter(i.event.type for i in fresh)
        seen = Counter(i.event.type for i in items)
        for event_type, n in seen.items():
            EVENTS_CONSUMED.labels(self.group_id, event_type, "processed").inc(
                processed[event_type]
            )
            if n > processed[event_type]:
                EVENTS_CONSUMED.labels(self.group_id, event_type, "duplicate").inc(
                    n - processed[event_type]
                )
        # Live traffic comes in small batches, whose every event is timed; a backlog replayed in
        # large batches is sampled evenly, so timing never costs more than the handling.
        step = max(1, len(fresh) // AGE_SAMPLES_PER_BATCH)
        now = self._clock.now()
        for item in fresh[::step]:
            age = max(0.0, (now - item.event.time).total_seconds())
            EVENT_AGE.labels(self.group_id, item.event.type).observe(age)

    async def _dead_letter(self, record: Record, reason: str, exc: BaseException) -> None:
        """Store the record on the dead-letter topic; headers say where from and why, never what.

        The offset must not move past a record that is stored nowhere, so broker outages are
        retried; a refusal that will never change (too large, not authorised) is logged with the
        record's coordinates and counted instead of blocking the partition for good."""
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("closeloop.dlq.")]
        headers += [
            ("closeloop.dlq.topic", record.topic.encode()),
            ("closeloop.dlq.partition", str(record.partition).encode()),
            ("closeloop.dlq.offset", str(record.offset).encode()),
            ("closeloop.dlq.group", self.group_id.encode()),
            ("closeloop.dlq.reason", reason.encode()),
            ("closeloop.dlq.error", describe_error(exc).encode()),
            ("closeloop.dlq.failed_at", self._clock.now().isoformat().encode()),
        ]
        key = (record.key or b"").decode(errors="replace")
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._producer.send(
                    OutboundRecord(self._deadletter_topic, key, record.value or b"", tuple(headers))
                )
                return
            except KafkaError as send_error:
                if is_permanent_kafka_error(send_error):
                    log.error(
                        "the broker refused the dead letter for good; moving on",
                        extra={
                            "group": self.group_id,
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "error": type(send_error).__name__,
                        },
                    )
                    DEAD_LETTERS_DROPPED.labels(self.group_id, reason).inc()
                    return
                log.warning("dead-letter publish failed; retrying", exc_info=True)
                await asyncio.sleep(backoff(attempt))


def _runs(items: Sequence[Decoded]) -> list[tuple[Registration[Any], list[Decoded]]]:
    """Consecutive items of one registration, in order: each run goes to its batch handler."""
    runs: list[tuple[Registration[Any], list[Decoded]]] = []
    for item in items:
        if runs and runs[-1][0] is item.registration:
            runs[-1][1].append(item)
        else:
            runs.append((item.registration, [item]))
    return runs
