"""The parts every service runs: database pools, producer, outbox relay, consumer, workers.

`ServiceRuntime` wires the real adapters; the app's lifespan calls `start` and `stop`.
- Handlers are registered by contract class: `runtime.on(ResponseReceivedV1, handler)`, or
  `runtime.on_batch(...)` for a handler that takes a whole batch; the service's one consumer group
  subscribes to the topics of the registered contracts.
- Two connection pools: `sessions` for HTTP requests, `worker_sessions` for the consumer, the relay
  and background workers, so a burst of reads cannot starve the event handling (or the reverse).
- Starting never waits for the broker: the producer and the consumer connect in the background
  and retry until the broker answers. A service that needs no consumer (ingest) is ready while
  the broker is down and keeps accepting into its outbox; the relay catches up later.
- A retention worker deletes old published outbox rows and old inbox rows.
- Tracing (`tracing.py`) starts with the service when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (then
  every statement of both pools is a span under the current one) and its last spans are exported
  when it stops.
A background task that dies makes the service unhealthy (`/healthz`), so an orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common import tracing
from closeloop_common.clock import Clock, SystemClock
from closeloop_common.db import make_engine, make_sessionmaker, ping
from closeloop_common.db import transaction as db_transaction
from closeloop_common.handlers import (
    BatchHandler,
    DataT,
    Handler,
    HandlerRegistry,
    Transaction,
)
from closeloop_common.inbox import prune_inbox
from closeloop_common.kafka.consumer import EventConsumer
from closeloop_common.kafka.producer import EventProducer
from closeloop_common.loop import repeat
from closeloop_common.outbox import Outbox, OutboxRelay, prune_outbox
from closeloop_common.settings import CommonSettings

log = logging.getLogger(__name__)

Worker = Callable[[], Coroutine[Any, Any, None]]
Hook = Callable[[], Coroutine[Any, Any, None]]

RETENTION_EVERY = timedelta(minutes=10)
# Young objects a collection waits for (CPython's default is 700). A consumer allocates a few
# dozen objects per event; at the default it runs the collector every few events, and every
# collection walks the live events of the batch in hand. Objects without cycles are freed at
# once whatever this says; only cyclic garbage waits a little longer.
GC_YOUNG_THRESHOLD = 100_000


def consumer_group(settings: CommonSettings, service: str) -> str:
    """A service's consumer group: `<KAFKA_TOPIC_PREFIX>.<service>`."""
    return f"{settings.kafka_topic_prefix}.{service}"


def tune_garbage_collector() -> None:
    """Move what start-up built (modules, models, the app) out of the collector's way and let
    young collections run less often. Measured on this project's 2-core machines, before the
    consumer was pipelined: 10,800 -> 15,900 events/s (`make bench-consumer`'s batch mode)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        settings: CommonSettings,
        metadata: sa.MetaData,
        clock: Clock | None = None,
        broker_required_for_readiness: bool = True,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.source = f"/closeloop/{name}"
        self.broker_required_for_readiness = broker_required_for_readiness
        self.engine = make_engine(
            settings.database_url, pool_size=settings.database_pool_size, application_name=name
        )
        self.sessions = make_sessionmaker(self.engine)
        self.worker_engine = make_engine(
            settings.database_url,
            pool_size=settings.database_worker_pool_size,
            application_name=f"{name}-workers",
        )
        self.worker_sessions = make_sessionmaker(self.worker_engine)
        schema = metadata.schema
        self.outbox_table = metadata.tables[f"{schema}.outbox"]
        self.inbox_table = metadata.tables[f"{schema}.inbox"]
        self.producer = EventProducer(settings.kafka_bootstrap_servers, client_id=name)
        self.outbox = Outbox(self.outbox_table, topic_prefix=settings.kafka_topic_prefix)
        self.relay = OutboxRelay(
            sessions=self.worker_sessions,
            table=self.outbox_table,
            outbox=self.outbox,
            producer=self.producer,
            clock=self.clock,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
        )
        self.handlers = HandlerRegistry()
        self.consumer: EventConsumer | None = None
        self._workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._before_start_hooks: list[Hook] = []
        self._start_hooks: list[Hook] = []
        self._stop_hooks: list[Hook] = []
        self._tracing: TracerProvider | None = None
        self._engines_traced = False

    @property
    def group_id(self) -> str:
        return consumer_group(self.settings, self.name)

    def on(self, contract: type[DataT], handler: Handler[DataT]) -> None:
        """Handle every event of `contract` with `handler`, one event at a time."""
        self.handlers.on(contract, handler)

    def on_batch(
        self, contract: type[DataT], handler: BatchHandler[DataT], *, idempotent: bool = False
    ) -> None:
        """Handle the events of `contract` a consumer batch at a time (one transaction).

        `idempotent`: the handler itself ignores an event it has applied before (it keeps a
        version per entity), so its events need no inbox row (see `handlers`)."""
        self.handlers.on_batch(contract, handler, idempotent=idempotent)

    def on_batches(
        self, contracts: tuple[type[Any], ...], handler: BatchHandler[Any], *, idempotent: bool
    ) -> None:
        """One batch handler for consecutive events of several contracts (see `handlers`)."""
        self.handlers.on_batches(contracts, handler, idempotent=idempotent)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A command's transaction (HTTP pool): what it emits is stored in the outbox with it.

        Committed when the block ends, rolled back on any exception."""
        async with self._transaction(self.sessions) as tx:
            yield tx

    @asynccontextmanager
    async def worker_transaction(self) -> AsyncIterator[Transaction]:
        """`transaction` for a background worker: from the workers' pool, so a worker never
        waits for a connection behind HTTP requests (nor they behind it)."""
        async with self._transaction(self.worker_sessions) as tx:
            yield tx

    @asynccontextmanager
    async def _transaction(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncIterator[Transaction]:
        async with db_transaction(sessions) as session:
            tx = Transaction(
                session=session, clock=self.clock, source=self.source, outbox=self.outbox
            )
            yield tx
            await tx.flush()

    def add_worker(self, name: str, worker: Worker) -> None:
        """Run `worker` as a background task for the service's lifetime."""
        self._workers[name] = worker

    def before_start(self, hook: Hook) -> None:
        """Await `hook` before anything is spawned: a check that must pass before any event is
        handled (raising stops the service from starting)."""
        self._before_start_hooks.append(hook)

    def on_start(self, hook: Hook) -> None:
        """Await `hook` when the service starts, before it serves (after its tasks are spawned)."""
        self._start_hooks.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Await `hook` when the service stops, after its tasks and before its clients close."""
        self._stop_hooks.append(hook)

    def make_consumer(self, group_id: str | None = None) -> EventConsumer:
        """The consumer of the registered handlers, in the service's group unless `group_id`
        names another (a second group replays the same topics, as a rebuild test does)."""
        prefix = self.settings.kafka_topic_prefix
        return EventConsumer(
            group_id=group_id or self.group_id,
            topics=[t.address(prefix) for t in self.handlers.topics()],
            registry=self.handlers,
            sessions=self.worker_sessions,
            inbox=self.inbox_table,
            outbox=self.outbox,
            producer=self.producer,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            topic_prefix=prefix,
            clock=self.clock,
            source=self.source,
            max_attempts=self.settings.consumer_max_attempts,
            batch_max_records=self.settings.consumer_batch_max_records,
            linger_ms=self.settings.consumer_batch_linger_ms,
        )

    async def start(self) -> None:
        self._tracing = tracing.configure(self.settings, service=self.name)
        if tracing.enabled() and not self._engines_traced:
            tracing.instrument_engine(self.engine)
            tracing.instrument_engine(self.worker_engine)
            self._engines_traced = True
        for hook in self._before_start_hooks:
            await hook()
        tune_garbage_collector()
        self._spawn("outbox-relay", self._relay)
        if self.handlers:
            self.consumer = self.make_consumer()
            self._spawn(f"consumer:{self.consumer.group_id}", self.consumer.run)
        self._spawn("retention", self._retention)
        for name, worker in self._workers.items():
            self._spawn(name, worker)
        for hook in self._start_hooks:
            await hook()
        log.info("service started", extra={"tasks": sorted(self._tasks)})

    async def _relay(self) -> None:
        await self.producer.connect()
        await self.relay.run()

    async def _retention(self) -> None:
        async def step() -> bool:
            await self.prune()
            return False

        await repeat(
            step,
            wake=asyncio.Event(),
            idle=RETENTION_EVERY.total_seconds(),
            name="retention",
        )

    async def prune(self) -> tuple[int, int]:
        """Delete outbox rows published and inbox rows handled longer ago than their retention."""
        now = self.clock.now()
        outbox_rows = await prune_outbox(
            self.worker_sessions,
            self.outbox_table,
            before=now - timedelta(hours=self.settings.outbox_retention_hours),
        )
        inbox_rows = await prune_inbox(
            self.worker_sessions,
            self.inbox_table,
            before=now - timedelta(days=self.settings.inbox_retention_days),
        )
        if outbox_rows or inbox_rows:
            log.info(
                "retention", extra={"outbox_deleted": outbox_rows, "inbox_deleted": inbox_rows}
            )
        return outbox_rows, inbox_rows

    def _spawn(self, name: str, run: Worker) -> None:
        task = asyncio.create_task(run(), name=name)
        task.add_done_callback(self._on_task_done)
        self._tasks[name] = task

    @staticmethod
    def _on_task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task died", exc_info=task.exception(), extra={"task": task.get_name()}
            )

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop tasks, then clients; each step is bounded so a dead broker cannot hang shutdown."""
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            # Workers finish the step under way (see loop.repeat); a stuck one is abandoned.
            _, stuck = await asyncio.wait(self._tasks.values(), timeout=timeout)
            for task in stuck:
                log.warning("task did not stop in time", extra={"task": task.get_name()})
        steps = [
            *(hook() for hook in reversed(self._stop_hooks)),
            *([self.consumer.stop()] if self.consumer else []),
            self.producer.stop(),
            self.engine.dispose(),
            self.worker_engine.dispose(),
            *([tracing.shut_down(self._tracing)] if self._tracing else []),
        ]
        for step in steps:
            try:
                await asyncio.wait_for(step, timeout)
            except Exception:
                log.warning("shutdown step failed or timed out", exc_info=True)
        log.info("service stopped")

    def dead_tasks(self) -> list[str]:
        """Background tasks that ended on their own (they only end on a bug): the process is
        broken for good and should be restarted, which `/healthz` tells the orchestrator."""
        return [name for name, task in self._tasks.items() if task.done() and not task.cancelled()]

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state; `/readyz` fails on any that is not "ok".

        A service that needs no broker to do its job (ingest writes to its outbox) reports the
        broker as `optional: ...` while it is down, which does not fail readiness."""
        checks: dict[str, str] = {}
        try:
            await ping(self.engine)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable ({type(exc).__name__})"
        try:
            await self.producer.ping()
            checks["kafka"] = "ok"
        except Exception as exc:
            state = f"unreachable ({type(exc).__name__})"
            checks["kafka"] = state if self.broker_required_for_readiness else f"optional: {state}"
        for name, task in self._tasks.items():
            checks[name] = "ok" if not task.done() else "stopped"
        return checks


def is_ready(checks: dict[str, str]) -> bool:
    return all(v == "ok" or v.startswith("optional:") for v in checks.values())
