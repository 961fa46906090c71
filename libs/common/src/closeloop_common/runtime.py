"""The parts every service runs: database engine, producer, outbox relay, consumers, workers.

`ServiceRuntime.build` wires the real adapters; the app's lifespan calls `start` and `stop`.
A background task that dies makes the service unready (`/readyz`), so an orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import sqlalchemy as sa

from closeloop_common.clock import Clock, SystemClock
from closeloop_common.db import make_engine, make_sessionmaker, ping
from closeloop_common.events import Topic
from closeloop_common.kafka.consumer import EventConsumer, Handler
from closeloop_common.kafka.producer import EventProducer
from closeloop_common.outbox import Outbox, OutboxRelay
from closeloop_common.settings import CommonSettings

log = logging.getLogger(__name__)

Worker = Callable[[], Coroutine[Any, Any, None]]


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        settings: CommonSettings,
        metadata: sa.MetaData,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.source = f"/closeloop/{name}"
        self.engine = make_engine(
            settings.database_url, pool_size=settings.database_pool_size, application_name=name
        )
        self.sessions = make_sessionmaker(self.engine)
        schema = metadata.schema
        self._outbox_table = metadata.tables[f"{schema}.outbox"]
        self._inbox_table = metadata.tables[f"{schema}.inbox"]
        self.producer = EventProducer(settings.kafka_bootstrap_servers, client_id=name)
        self.outbox = Outbox(self._outbox_table, topic_prefix=settings.kafka_topic_prefix)
        self.relay = OutboxRelay(
            sessions=self.sessions,
            table=self._outbox_table,
            outbox=self.outbox,
            producer=self.producer,
            clock=self.clock,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
        )
        self.consumers: list[EventConsumer] = []
        self._workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add_consumer(self, topics: list[Topic], handlers: Mapping[str, Handler]) -> EventConsumer:
        """Subscribe this service's consumer group to `topics`, dispatching by event type."""
        prefix = self.settings.kafka_topic_prefix
        consumer = EventConsumer(
            group_id=f"{prefix}.{self.name}",
            topics=[t.address(prefix) for t in topics],
            handlers=handlers,
            sessions=self.sessions,
            inbox=self._inbox_table,
            producer=self.producer,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            topic_prefix=prefix,
            clock=self.clock,
            max_attempts=self.settings.consumer_max_attempts,
        )
        self.consumers.append(consumer)
        return consumer

    def add_worker(self, name: str, worker: Worker) -> None:
        """Run `worker` as a background task for the service's lifetime."""
        self._workers[name] = worker

    async def start(self) -> None:
        await self.producer.start()
        self._spawn("outbox-relay", self.relay.run)
        for consumer in self.consumers:
            await consumer.start()
            self._spawn(f"consumer:{consumer.group_id}", consumer.run)
        for name, worker in self._workers.items():
            self._spawn(name, worker)
        log.info("service started", extra={"tasks": sorted(self._tasks)})

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
        steps = [*(c.stop() for c in self.consumers), self.producer.stop(), self.engine.dispose()]
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
        checks: dict[str, str] = {}
        for name, probe in (("database", ping(self.engine)), ("kafka", self.producer.ping())):
            try:
                await probe
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable ({type(exc).__name__})"
        for name, task in self._tasks.items():
            checks[name] = "ok" if not task.done() else "stopped"
        return checks
