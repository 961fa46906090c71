"""The transactional outbox: events are written in the same transaction as the state they describe,
and a relay publishes them to Kafka afterwards, so state and events never disagree.

Delivery is at least once (a crash between the broker's ack and marking the row published
re-publishes it); consumers dedupe by event id in their inbox, so the effect is exactly once.
One relay publishes at a time per schema (a transaction-scoped advisory lock), in `seq` order,
so a customer's events reach their partition in the order they were written. A batch is sent as
many records at once, their acknowledgements awaited together, then marked in one statement.
Published rows are deleted after a retention period by `prune_outbox` (the runtime's retention worker).

Lag: each pass sets `closeloop_outbox_oldest_pending_age_seconds` from the first row it read
(the oldest unpublished one) before it sends, and to 0 once a pass leaves nothing behind. While
the broker refuses, the relay retries at least every 30 s, so the age keeps growing: the outbox
lag alert is this gauge over a threshold. A pass that finds another relay holding the lock sets
nothing (that relay reports), so replicas are aggregated with `max`.

An event keeps the trace context it was emitted with (it is stored whole); with tracing on, each
send is a `publish <topic>` span linked to those contexts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from opentelemetry.trace import SpanKind
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common import tracing
from closeloop_common.clock import Clock
from closeloop_common.db import delete_in_chunks, on_commit, transaction
from closeloop_common.events import CloudEvent
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.loop import repeat
from closeloop_common.metrics import OUTBOX_DELAY, OUTBOX_OLDEST_PENDING_AGE, OUTBOX_PUBLISHED


class Outbox:
    """Adds events to a service's outbox inside the caller's transaction."""

    def __init__(self, table: sa.Table, *, topic_prefix: str) -> None:
        self._table = table
        self._prefix = topic_prefix
        # `seq` comes from the table's sequence in the rows' order, which is the events' order.
        self._insert = sa.text(
            f'INSERT INTO "{table.schema}"."{table.name}" '
            "(event_id, tenant_id, topic, event_type, key, payload, created_at) "
            "SELECT r.i, r.t, r.tp, r.y, r.k, convert_to(r.p, 'UTF8'), r.c "
            "FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(row, n), "
            "jsonb_to_record(e.row) AS r(i text, t text, tp text, y text, k text, p text, "
            "c timestamptz) ORDER BY e.n"
        )
        self.committed = asyncio.Event()  # set when a transaction that added rows commits

    async def add(self, session: AsyncSession, event: CloudEvent[Any]) -> None:
        await self.add_many(session, [event])

    async def add_many(self, session: AsyncSession, events: Sequence[CloudEvent[Any]]) -> None:
        """Queue events in the caller's transaction, in order, with one statement.

        The rows travel as one JSON document (`jsonb_to_recordset`): one compiled, cached
        statement whatever the number of events, and one parameter to encode instead of an
        array per column (asyncpg checks every element of an array parameter in Python)."""
        if not events:
            return
        rows = [
            {
                "i": event.id,
                "t": event.tenantid,
                "tp": event.data.TOPIC.address(self._prefix),
                "y": event.type,
                "k": event.partitionkey,
                "p": event.encode().decode(),
                "c": event.time,
            }
            for event in events
        ]
        await session.execute(self._insert, {"rows": orjson.dumps(rows).decode()})
        # Wake the relay when the rows are visible, not before.
        on_commit(session, self.committed.set)


class OutboxRelay:
    """Publishes unpublished outbox rows in order, marking them once the broker has acked."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        table: sa.Table,
        outbox: Outbox,
        producer: EventProducer,
        clock: Clock,
        batch_size: int = 1000,
        poll_interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._outbox = outbox
        self._producer = producer
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lock_name = f"closeloop.outbox.{table.schema}"

    async def run(self) -> None:
        """Publish until cancelled (the producer must be started)."""
        await repeat(
            self._step, wake=self._outbox.committed, idle=self._poll_interval, name="outbox relay"
        )

    async def _step(self) -> bool:
        return await self.publish_batch() == self._batch_size

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows it published (0 if another relay holds the lock)."""
        t = self._table
        async with transaction(self._sessions) as session:
            locked = await session.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(sa.func.hashtext(self._lock_name)))
            )
            if not locked:
                return 0
            rows = (
                await session.execute(
                    sa.select(t.c.seq, t.c.topic, t.c.key, t.c.payload, t.c.created_at)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.seq)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_OLDEST_PENDING_AGE.set(0)
                return 0
            oldest = self._clock.now() - rows[0].created_at
            OUTBOX_OLDEST_PENDING_AGE.set(max(0.0, oldest.total_seconds()))
            records = [OutboundRecord(topic=r.topic, key=r.key, value=r.payload) for r in rows]
            if tracing.enabled():
                await self._send_traced(records)
            else:
                await self._producer.send_batch(records)
            now = self._clock.now()
            seqs = sa.bindparam(
                "seqs", [r.seq for r in rows], type_=postgresql.ARRAY(sa.BigInteger)
            )
            await session.execute(
                sa.update(t).where(t.c.seq == sa.any_(seqs)).values(published_at=now)
            )
        for r in rows:
            OUTBOX_PUBLISHED.labels(r.topic).inc()
            OUTBOX_DELAY.observe(max(0.0, (now - r.created_at).total_seconds()))
        if len(rows) < self._batch_size:
            OUTBOX_OLDEST_PENDING_AGE.set(0)  # rows written since the read are seconds old
        return len(rows)

    async def _send_traced(self, records: list[OutboundRecord]) -> None:
        """The send in a `publish <topic>` span linked to the context each event carries (the
        events themselves go as they were stored: their context is the emitter's)."""
        topics = sorted({r.topic for r in records})
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.batch.message_count": len(records),
        }
        if len(topics) == 1:
            attributes["messaging.destination.name"] = topics[0]
        with tracing.span(
            f"publish {topics[0]}" if len(topics) == 1 else "publish",
            kind=SpanKind.PRODUCER,
            links=tracing.links_to([tracing.encoded_context(r.value) for r in records]),
            attributes=attributes,
        ):
            await self._producer.send_batch(records)


async def prune_outbox(
    sessions: async_sessionmaker[AsyncSession], table: sa.Table, *, before: datetime
) -> int:
    """Delete rows published before `before`."""
    return await delete_in_chunks(
        sessions, table, key=[table.c.seq], where=table.c.published_at < before
    )
