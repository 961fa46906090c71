"""Ingest's parts, wired once per process: the runtime, the sources cache and the group-commit
writer every write API shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common import tracing
from closeloop_common.db import delete_in_chunks
from closeloop_common.group_commit import BatchCommitter
from closeloop_common.handlers import Transaction
from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.adapters.tables import deliveries
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.metrics import GROUP_COMMIT_SIZE
from closeloop_ingest.service_layer.intake import Intake, IntakeResult, record
from closeloop_ingest.service_layer.sources import SourceDirectory

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, runtime: ServiceRuntime, settings: IngestSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.window = timedelta(seconds=settings.suspicion_window_seconds)
        self.sources = SourceDirectory(
            runtime.sessions, clock=runtime.clock, refresh_seconds=settings.sources_refresh_seconds
        )
        self.writer: BatchCommitter[Intake, IntakeResult] = BatchCommitter(
            runtime.sessions,
            self._write,
            max_batch=settings.group_commit_max_batch,
            max_wait_ms=settings.group_commit_max_wait_ms,
            concurrency=settings.group_commit_concurrency,
        )
        runtime.on_start(self._start)
        runtime.on_stop(self.writer.stop)
        runtime.add_worker("sources-refresh", self.sources.run)
        runtime.add_worker("delivery-retention", self._prune_deliveries)

    async def _start(self) -> None:
        await self.writer.start()
        if self.settings.sources_file is not None:
            # A bad file stops the start (a configuration error); so does a database that is
            # down, since the file's sources could not be applied.
            await self.sources.apply_file(self.settings.sources_file)
        try:
            await self.sources.refresh()
        except Exception:
            # The database is down: start anyway (readiness says so); the refresh worker retries.
            log.warning("sources not loaded at start; retrying in the background", exc_info=True)

    async def _prune_deliveries(self) -> None:
        async def step() -> bool:
            await self.prune_deliveries()
            return False

        await repeat(step, wake=asyncio.Event(), idle=600, name="delivery retention")

    async def prune_deliveries(self) -> int:
        """Delete raw deliveries older than `DELIVERY_RETENTION_DAYS`."""
        before = self.runtime.clock.now() - timedelta(days=self.settings.delivery_retention_days)
        return await delete_in_chunks(
            self.runtime.worker_sessions,
            deliveries,
            key=[deliveries.c.id],
            where=deliveries.c.received_at < before,
        )

    def transaction(self, session: AsyncSession) -> Transaction:
        runtime = self.runtime
        return Transaction(
            session=session, clock=runtime.clock, source=runtime.source, outbox=runtime.outbox
        )

    async def _write(self, session: AsyncSession, intakes: Sequence[Intake]) -> list[IntakeResult]:
        GROUP_COMMIT_SIZE.observe(len(intakes))
        return await record(self.transaction(session), intakes, window=self.window)

    async def accept(self, intake: Intake) -> IntakeResult:
        """Write `intake` with the next group commit; its result once durable. Its events carry
        the caller's trace context (the batch is written in the committer's own task)."""
        if tracing.enabled() and intake.trace is None:
            intake = replace(intake, trace=tracing.carrier_of())
        return await self.writer.submit(intake)
