"""The fetch worker: SurveyMonkey's and Qualtrics' webhooks name a response by its ids; the
delivery is stored first (`ingest.fetches`, in the transaction that answered the webhook) and this
worker fetches the response from the vendor's API afterwards, so a vendor outage loses nothing.

Each step claims due fetches (`FOR UPDATE SKIP LOCKED`, so replicas share the work) and moves
their next attempt past a lease before letting go of the rows; a replica that dies mid-fetch
leaves them to be retried when the lease ends. Then, for each:
- the vendor answers: the response goes through the same intake as a webhook (deduplicated,
  versioned), then the fetch is marked done (a crash in between fetches again: a duplicate);
- the vendor fails transiently (connection, timeout, 429, 5xx): retried with a backoff doubling
  from `FETCH_RETRY_BASE_SECONDS` up to `FETCH_MAX_BACKOFF_SECONDS`, for as long as it takes
  (retries that came due are found every `FETCH_POLL_SECONDS`);
- the vendor refuses for good (401, 403, 404, a payload we cannot read), its answer is dated
  in the future (refused as a webhook's would be), or the source was deleted: marked failed
  with the reason, counted, kept for an operator.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from closeloop_common.db import transaction
from closeloop_common.errors import backoff
from closeloop_common.loop import repeat
from closeloop_ingest.adapters.tables import fetches
from closeloop_ingest.adapters.vendor_api import fetch_response
from closeloop_ingest.domain.sources.base import FetchFailed, Ignored, InvalidPayload
from closeloop_ingest.metrics import FETCHES, RESPONSES
from closeloop_ingest.service_layer.intake import Intake
from closeloop_ingest.service_layer.service import Ingest

log = logging.getLogger(__name__)


class Fetcher:
    def __init__(self, ingest: Ingest, client: httpx.AsyncClient | None = None) -> None:
        self._ingest = ingest
        settings = ingest.settings
        self._client = client or httpx.AsyncClient(timeout=settings.fetch_timeout_seconds)
        self._concurrency = settings.fetch_concurrency
        self._lease = timedelta(seconds=settings.fetch_timeout_seconds * 3)
        self._retry_base = settings.fetch_retry_base_seconds
        self._max_backoff = settings.fetch_max_backoff_seconds
        self._poll = settings.fetch_poll_seconds
        self.wake = asyncio.Event()

    async def run(self) -> None:
        try:
            await repeat(self.step, wake=self.wake, idle=self._poll, name="vendor fetches")
        finally:
            await self._client.aclose()

    async def step(self) -> bool:
        """Run the fetches due now; True when there may be more."""
        claimed = await self._claim()
        await asyncio.gather(*(self._fetch_one(row) for row in claimed))
        return len(claimed) == self._concurrency

    async def _fetch_one(self, row: Any) -> None:
        """One fetch; a failure of our own (a bug, our database) never stops the others."""
        try:
            await self._fetch(row)
        except Exception as exc:
            log.exception("fetch failed unexpectedly; retried later", extra={"fetch": row.id})
            try:
                await self._retry(row, f"unexpected: {type(exc).__name__}")
            except Exception:
                log.warning("could not record the failure; the lease brings it back")

    async def _claim(self) -> list[Any]:
        now = self._ingest.runtime.clock.now()
        async with transaction(self._ingest.runtime.worker_sessions) as session:
            due = (
                sa.select(fetches.c.id)
                .where(fetches.c.status == "pending", fetches.c.next_attempt_at <= now)
                .order_by(fetches.c.next_attempt_at)
                .limit(self._concurrency)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            rows = await session.execute(
                sa.update(fetches)
                .where(fetches.c.id.in_(due))
                .values(next_attempt_at=now + self._lease, attempts=fetches.c.attempts + 1)
                .returning(
                    fetches.c.id,
                    fetches.c.tenant_id,
                    fetches.c.source,
                    fetches.c.ids,
                    fetches.c.attempts,
                )
            )
            return list(rows.all())

    async def _fetch(self, row: Any) -> None:
        source = self._ingest.sources.get(row.tenant_id, row.source)
        if source is None:
            await self._finish(row, "failed", error="the source was deleted")
            FETCHES.labels("unknown", "failed").inc()
            return
        kind = source.kind
        try:
            parsed = await fetch_response(self._client, source, row.ids)
        except FetchFailed as exc:
            if exc.transient:
                await self._retry(row, str(exc))
                FETCHES.labels(kind, "retry").inc()
            else:
                await self._finish(row, "failed", error=str(exc))
                FETCHES.labels(kind, "failed").inc()
            return
        except InvalidPayload as exc:
            await self._finish(row, "failed", error=f"the vendor's answer: {exc.detail}")
            FETCHES.labels(kind, "failed").inc()
            return
        if isinstance(parsed, Ignored):
            await self._finish(row, "ignored", error=parsed.reason)
            FETCHES.labels(kind, "ignored").inc()
            return
        # Refused as the same answer in a webhook or the canonical API would be (422).
        now = self._ingest.runtime.clock.now()
        if any(s.response.answered_in_future(now) for s in parsed.submissions):
            error = "the vendor's answer: answered_at: the answer time is in the future"
            await self._finish(row, "failed", error=error)
            FETCHES.labels(kind, "failed").inc()
            return
        try:
            result = await self._ingest.accept(
                Intake(tenant_id=row.tenant_id, source=source.name, submissions=parsed.submissions)
            )
        except Exception as exc:  # our database: the fetch stays pending and comes back
            log.warning("fetched response not stored; will retry", exc_info=exc)
            await self._retry(row, f"storing failed: {type(exc).__name__}")
            return
        for outcome in result.outcomes:
            RESPONSES.labels(kind, outcome.status).inc()
        await self._finish(row, "done", response_ids=[o.response_id for o in result.outcomes])
        FETCHES.labels(kind, "accepted").inc()

    async def _retry(self, row: Any, error: str) -> None:
        wait = backoff(row.attempts, base=self._retry_base, cap=self._max_backoff)
        now = self._ingest.runtime.clock.now()
        async with transaction(self._ingest.runtime.worker_sessions) as session:
            await session.execute(
                sa.update(fetches)
                .where(fetches.c.id == row.id)
                .values(next_attempt_at=now + timedelta(seconds=wait), last_error=error[:1000])
            )

    async def _finish(
        self,
        row: Any,
        status: str,
        *,
        error: str | None = None,
        response_ids: list[str] | None = None,
    ) -> None:
        now = self._ingest.runtime.clock.now()
        async with transaction(self._ingest.runtime.worker_sessions) as session:
            await session.execute(
                sa.update(fetches)
                .where(fetches.c.id == row.id)
                .values(
                    status=status,
                    finished_at=now,
                    last_error=None if error is None else error[:1000],
                    response_ids=response_ids or [],
                )
            )
