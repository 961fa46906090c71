"""Ingest's parts, wired once per process: the runtime, the sources cache and the group-commit
writer every write API shares."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.group_commit import BatchCommitter
from closeloop_common.handlers import Transaction
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.metrics import GROUP_COMMIT_SIZE
from closeloop_ingest.service_layer.intake import Intake, IntakeResult, record
from closeloop_ingest.service_layer.sources import SourceDirectory


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
        )
        runtime.on_start(self._start)
        runtime.on_stop(self.writer.stop)
        runtime.add_worker("sources-refresh", self.sources.run)

    async def _start(self) -> None:
        await self.writer.start()
        if self.settings.sources_file is not None:
            await self.sources.apply_file(self.settings.sources_file)
        await self.sources.refresh()

    def transaction(self, session: AsyncSession) -> Transaction:
        runtime = self.runtime
        return Transaction(
            session=session, clock=runtime.clock, source=runtime.source, outbox=runtime.outbox
        )

    async def _write(self, session: AsyncSession, intakes: Sequence[Intake]) -> list[IntakeResult]:
        GROUP_COMMIT_SIZE.observe(len(intakes))
        return await record(self.transaction(session), intakes, window=self.window)

    async def accept(self, intake: Intake) -> IntakeResult:
        """Write `intake` with the next group commit; its result once durable."""
        return await self.writer.submit(intake)
