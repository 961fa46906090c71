"""The campaign worker (`runtime.add_worker("campaign-expander", expander.run)`): each step, in
transactions of its own, expands one page of a campaign (`expansion.expand_page`) and discards
one chunk of what cancelled campaigns left waiting (`campaign_upkeep.discard_cancelled`); when
neither had work, and at least every `maintenance_every` while they do, it finishes campaigns,
re-holds paused ones' messages and recounts the gauges (`campaign_upkeep.settle`,
`refresh_gauges`).

Every step is bounded (a page, a chunk), so a stop waits for at most one of them
(`closeloop_common.loop.repeat`); a failed step is retried with backoff and, having rolled back
whole, repeats nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import on_commit, transaction
from closeloop_common.handlers import Transaction
from closeloop_common.loop import repeat
from closeloop_common.outbox import Outbox
from closeloop_notifier.service_layer.campaign_upkeep import (
    discard_cancelled,
    refresh_gauges,
    settle,
)
from closeloop_notifier.service_layer.expansion import (
    PAGE_SIZE,
    Composes,
    TenantContext,
    expand_page,
)

DISCARD_CHUNK = 1000


class CampaignExpander:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        clock: Clock,
        source: str,
        composer: Composes,
        tenant_context: TenantContext,
        page_size: int = PAGE_SIZE,
        discard_chunk: int = DISCARD_CHUNK,
        idle_poll: float = 1.0,
        maintenance_every: timedelta = timedelta(seconds=15),
        dispatcher_wake: asyncio.Event | None = None,
    ) -> None:
        """`dispatcher_wake` is set when a page with pending messages commits."""
        self._sessions = sessions
        self._outbox = outbox
        self._clock = clock
        self._source = source
        self._composer = composer
        self._tenant_context = tenant_context
        self._page_size = page_size
        self._discard_chunk = discard_chunk
        self._idle_poll = idle_poll
        self._maintenance_every = maintenance_every
        self._dispatcher_wake = dispatcher_wake
        self._maintained_at: datetime | None = None
        self.wake = asyncio.Event()
        """Set it when a campaign was opened or resumed, to expand it without waiting."""

    async def run(self) -> None:
        """Step until cancelled."""
        await repeat(self.step, wake=self.wake, idle=self._idle_poll, name="campaign expander")

    async def step(self) -> bool:
        """One page, one chunk of discarding and maintenance when due (module docstring);
        False when there was nothing to expand or discard."""
        expanded = await self.expand_page()
        discarded = await self.discard_cancelled()
        now = self._clock.now()
        overdue = (
            self._maintained_at is None or now - self._maintained_at >= self._maintenance_every
        )
        if not (expanded or discarded) or overdue:
            await self.maintain()
            self._maintained_at = now
        return expanded or discarded

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        async with transaction(self._sessions) as session:
            tx = Transaction(
                session=session, clock=self._clock, source=self._source, outbox=self._outbox
            )
            yield tx
            await tx.flush()

    async def expand_page(self) -> bool:
        """Expand one page of one campaign; False when no campaign is expanding."""
        async with self._transaction() as tx:
            page = await expand_page(
                tx,
                composer=self._composer,
                tenant_context=self._tenant_context,
                page_size=self._page_size,
            )
            if page is not None and page.pending and self._dispatcher_wake is not None:
                on_commit(tx.session, self._dispatcher_wake.set)
        return page is not None

    async def discard_cancelled(self) -> bool:
        """Discard one chunk; True when there may be more."""
        async with self._transaction() as tx:
            discarded = await discard_cancelled(tx, chunk=self._discard_chunk)
        return discarded == self._discard_chunk

    async def maintain(self) -> None:
        async with transaction(self._sessions) as session:
            await settle(session, now=self._clock.now())
        async with self._sessions() as session:
            await refresh_gauges(session)
