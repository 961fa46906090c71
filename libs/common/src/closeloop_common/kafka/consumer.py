"""A consumer with exactly-once *effect*: decode -> dedupe -> handle -> commit DB -> commit offset.

Contract of one record's trip (`EventConsumer._process`):
- decode: the value must be a structured CloudEvent of a known contract. Undecodable bytes are
  poison: they go to the dead-letter topic at once. A well-formed event of a type this build does
  not know (say a newer version) is skipped, not dead-lettered.
- dedupe + handle: one database transaction inserts `(group, event id)` into the inbox and runs the
  handler; if the inbox row exists the event was handled before and nothing happens. The handler
  writes its state and outbox rows in that same transaction.
- failures: infrastructure errors (database or network down) are retried with backoff for as long as
  they last, so an outage loses nothing; any other error is retried `max_attempts` times and then the
  record is dead-lettered with the error in its headers.
- commit: the partition's offset is committed only after every record before it is durable. A crash
  in between redelivers records the inbox then skips. Records are handled one at a time, in
  partition order. A rebalance may revoke a partition while one of its records is being handled:
  the commit then fails (logged), the new owner redelivers, and the inbox skips what was done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.events import (
    CloudEvent,
    Topic,
    UndecodableEvent,
    UnknownEventType,
    decode_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.metrics import EVENT_AGE, EVENTS_CONSUMED, HANDLE_LATENCY, HANDLER_FAILURES

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent[Any]], Awaitable[None]]


# SQLSTATE classes that say the database (or its configuration) is the problem, not the message:
# 08 connection exception, 53 insufficient resources (too many clients), 57P operator intervention
# (shutting down, starting up), 28 invalid authorization, 3D000 no such database, and the two
# conflicts a retry resolves (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "28", "3D000", "40001", "40P01")


def _sqlstates(exc: BaseException) -> list[str]:
    """SQLSTATE codes found on the exception, the driver error it wraps, and their causes."""
    found: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str):
            found.append(code)
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]
    return found


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure rather than of the message: worth retrying without limit."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if any(code.startswith(_TRANSIENT_SQLSTATE_PREFIXES) for code in _sqlstates(exc)):
        return True
    return isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError | OSError | TimeoutError | KafkaError
    )


def backoff(attempt: int, *, base: float = 0.2, cap: float = 30.0) -> float:
    return min(cap, base * 2.0 ** max(0, attempt - 1))


class EventConsumer:
    def __init__(
        self,
        *,
        group_id: str,
        topics: list[str],
        handlers: Mapping[str, Handler],
        sessions: async_sessionmaker[AsyncSession],
        inbox: sa.Table,
        producer: EventProducer,
        bootstrap_servers: str,
        topic_prefix: str,
        clock: Clock,
        max_attempts: int = 5,
    ) -> None:
        self.group_id = group_id
        self._topics = topics
        self._handlers = handlers
        self._sessions = sessions
        self._inbox = inbox
        self._producer = producer
        self._deadletter_topic = Topic.DEADLETTER.address(topic_prefix)
        self._clock = clock
        self._max_attempts = max_attempts
        self._bootstrap_servers = bootstrap_servers
        self._started: AIOKafkaConsumer | None = None

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._started is None:
            raise RuntimeError("EventConsumer used before start()")
        return self._started

    async def start(self) -> None:
        # aiokafka binds to the running loop, so the client is made here, not in __init__.
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap_servers,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        self._started = consumer

    async def stop(self) -> None:
        if self._started is not None:
            await self._started.stop()
            self._started = None

    async def run(self) -> None:
        """Consume until cancelled."""
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batches.items():
                for record in records:
                    await self._process(record)
                await self._commit(tp, records[-1].offset + 1)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(offset, "")})
        except KafkaError:
            # Lost the partition in a rebalance: the new owner redelivers, the inbox dedupes.
            log.warning("offset commit failed", extra={"partition": str(tp), "offset": offset})

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = decode_event(record.value or b"")
        except UnknownEventType:
            # Not the type as label: a record's content must not mint metric series.
            EVENTS_CONSUMED.labels(self.group_id, "unknown", "skipped").inc()
            return
        except UndecodableEvent as exc:
            await self._dead_letter(record, "undecodable", str(exc))
            EVENTS_CONSUMED.labels(self.group_id, "undecodable", "dead_lettered").inc()
            return
        handler = self._handlers.get(event.type)
        if handler is None:
            EVENTS_CONSUMED.labels(self.group_id, event.type, "skipped").inc()
            return
        failures = 0  # consecutive failures of any kind: they set the backoff
        errors = 0  # failures that were not the infrastructure's: only these count to the limit
        while True:
            started = time.perf_counter()
            try:
                handled = await self._handle_once(record, event, handler)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                transient = is_transient(exc)
                errors += 0 if transient else 1
                HANDLER_FAILURES.labels(
                    self.group_id, event.type, "transient" if transient else "error"
                ).inc()
                if errors >= self._max_attempts:
                    log.exception(
                        "handler failed for good; dead-lettering",
                        extra={"event_id": event.id, "event_type": event.type, "attempts": errors},
                    )
                    await self._dead_letter(record, "handler_failed", repr(exc))
                    EVENTS_CONSUMED.labels(self.group_id, event.type, "dead_lettered").inc()
                    return
                delay = backoff(failures)
                log.warning(
                    "handler failed; retrying",
                    extra={"event_id": event.id, "error": repr(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                continue
            outcome = "processed" if handled else "duplicate"
            EVENTS_CONSUMED.labels(self.group_id, event.type, outcome).inc()
            HANDLE_LATENCY.labels(self.group_id, event.type).observe(time.perf_counter() - started)
            if handled:
                age = (self._clock.now() - event.time).total_seconds()
                EVENT_AGE.labels(self.group_id, event.type).observe(max(0.0, age))
            return

    async def _handle_once(
        self, record: ConsumerRecord[bytes, bytes], event: CloudEvent[Any], handler: Handler
    ) -> bool:
        """Run the handler once inside the inbox transaction; False if it was handled before."""
        async with transaction(self._sessions) as session:
            first_time = await session.scalar(
                pg_insert(self._inbox)
                .values(
                    consumer_group=self.group_id,
                    event_id=event.id,
                    tenant_id=event.tenantid,
                    event_type=event.type,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    processed_at=self._clock.now(),
                )
                .on_conflict_do_nothing()
                .returning(self._inbox.c.event_id)
            )
            if first_time is None:
                return False
            await handler(session, event)
            return True

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str, error: str
    ) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("closeloop.dlq.")]
        headers += [
            ("closeloop.dlq.topic", record.topic.encode()),
            ("closeloop.dlq.partition", str(record.partition).encode()),
            ("closeloop.dlq.offset", str(record.offset).encode()),
            ("closeloop.dlq.group", self.group_id.encode()),
            ("closeloop.dlq.reason", reason.encode()),
            ("closeloop.dlq.error", error[:2000].encode()),
            ("closeloop.dlq.failed_at", self._clock.now().isoformat().encode()),
        ]
        key = (record.key or b"").decode(errors="replace")
        attempt = 0
        while True:  # the offset must not move past a record that is not stored somewhere
            attempt += 1
            try:
                await self._producer.send(
                    OutboundRecord(self._deadletter_topic, key, record.value or b"", tuple(headers))
                )
                return
            except KafkaError:
                log.warning("dead-letter publish failed; retrying", exc_info=True)
                await asyncio.sleep(backoff(attempt))
