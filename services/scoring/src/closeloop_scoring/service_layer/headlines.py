"""Headline segments: their NPS as Prometheus gauges, and `nps.changed.v1` when it moves.

`HeadlineWatcher.run` is a background worker (`runtime.add_worker`): every
`SCORING_HEADLINE_INTERVAL_SECONDS` it refreshes each configured headline (`SCORING_HEADLINES`)
in a transaction of its own on the worker pool:
1. a transaction-scoped advisory lock on the headline, so scoring replicas take turns and the
   second one sees what the first published;
2. the last event published for it (`scoring.headlines`); one computed by another definition
   (the headline's filters or window were changed) counts as none;
3. its counts over its window from the read side (`views.tally`), the estimate (adjusted Wald,
   95 %, flagged insufficient below `SCORING_MIN_RESPONSES`) and the gauges;
4. `domain.headlines.decide`; when it publishes, the event goes to the outbox and the headline's
   row is updated, in that same transaction, so an event is stored exactly when its row is.
A headline that fails (the database is away) is logged and tried again at the next interval;
the others go on. Each step reads the time once from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.db import transaction
from closeloop_common.events import HeadlineWindow, NpsChangedV1
from closeloop_common.handlers import Transaction
from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_scoring import views
from closeloop_scoring.adapters.tables import headlines as headlines_table
from closeloop_scoring.config import Headline, ScoringSettings
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.headlines import ChangeRule, Decision, Published, decide
from closeloop_scoring.domain.statistics import NpsEstimate, estimate
from closeloop_scoring.metrics import (
    HEADLINE_CI_HIGH,
    HEADLINE_CI_LOW,
    HEADLINE_COMPUTED,
    HEADLINE_NPS,
    HEADLINE_RESPONSES,
)
from closeloop_scoring.reports import Statistics, rounded

log = logging.getLogger(__name__)

_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))")


def window_days(name: windows.WindowName, *, now: datetime, zone: ZoneInfo) -> views.Days:
    """The local days of a named window at `now` (unbounded for all time)."""
    period = windows.resolve(name, now=now, tz=zone)
    return views.Days() if period is None else views.Days(*windows.local_days(period, zone))


class HeadlineWatcher:
    """Refreshes the configured headlines (see the module docstring)."""

    def __init__(
        self,
        *,
        runtime: ServiceRuntime,
        headlines: Sequence[Headline],
        zone: ZoneInfo,
        rule: ChangeRule,
        stats: Statistics,
        interval: timedelta,
    ) -> None:
        self._runtime = runtime
        self.headlines = tuple(headlines)
        self._zone = zone
        self._rule = rule
        self._stats = stats
        self._interval = interval

    @classmethod
    def configured(cls, runtime: ServiceRuntime, settings: ScoringSettings) -> HeadlineWatcher:
        """The watcher of the configured headlines (reading SCORING_HEADLINES_FILE, if set)."""
        return cls(
            runtime=runtime,
            headlines=settings.headlines(),
            zone=settings.time_zone,
            rule=ChangeRule(
                min_change=settings.scoring_headline_min_change,
                debounce=timedelta(seconds=settings.scoring_headline_debounce_seconds),
            ),
            stats=Statistics(min_n=settings.scoring_min_responses),
            interval=timedelta(seconds=settings.scoring_headline_interval_seconds),
        )

    async def run(self) -> None:
        await repeat(
            self.step,
            wake=asyncio.Event(),
            idle=self._interval.total_seconds(),
            name="headlines",
        )

    async def step(self) -> bool:
        """Refresh every headline once; there is never more to do at once (False)."""
        now = self._runtime.clock.now()
        for headline in self.headlines:
            try:
                await self.refresh(headline, now=now)
            except Exception:
                log.exception(
                    "headline refresh failed; retrying at the next interval",
                    extra={"tenant_id": headline.tenant, "headline": headline.name},
                )
        return False

    async def refresh(self, headline: Headline, *, now: datetime) -> Decision:
        """Compute one headline, set its gauges, and publish its event if `decide` says so."""
        runtime = self._runtime
        days = window_days(headline.window, now=now, zone=self._zone)
        async with transaction(runtime.worker_sessions) as session:
            await session.execute(
                _LOCK, {"key": f"scoring.headline:{headline.tenant}:{headline.name}"}
            )
            last = await _last_published(session, headline)
            found = await views.tally(
                session, headline.tenant, views.Filters.of(headline.filters), days
            )
            figures = estimate(
                found.counts,
                method=self._stats.method,
                confidence=self._stats.confidence,
                min_n=self._stats.min_n,
            )
            decision = decide(last, figures.nps, now=now, rule=self._rule)
            if decision.publish:
                tx = Transaction(
                    session=session,
                    clock=runtime.clock,
                    source=runtime.source,
                    outbox=runtime.outbox,
                )
                data = self._event(headline, days, figures, last, decision, now)
                event = await tx.emit(data, tenant_id=headline.tenant)
                await _remember(session, headline, data, event.id, now)
                await tx.flush()
        _set_gauges(headline, figures, now)
        if decision.publish:
            log.info(
                "headline NPS published",
                extra={
                    "tenant_id": headline.tenant,
                    "headline": headline.name,
                    "reason": decision.reason,
                    "nps": decision.nps,
                    "change": decision.change,
                },
            )
        return decision

    def _event(
        self,
        headline: Headline,
        days: views.Days,
        figures: NpsEstimate,
        last: Published | None,
        decision: Decision,
        now: datetime,
    ) -> NpsChangedV1:
        return NpsChangedV1(
            headline=headline.name,
            filters=dict(sorted(headline.filters.items())),
            window=HeadlineWindow.model_validate(
                {
                    "name": headline.window,
                    "from": days.first,
                    "to": days.end,
                    "time_zone": self._zone.key,
                }
            ),
            n=figures.n,
            promoters=figures.promoters,
            passives=figures.passives,
            detractors=figures.detractors,
            nps=decision.nps,
            ci_low=rounded(figures.ci_low),
            ci_high=rounded(figures.ci_high),
            confidence=figures.confidence,
            method=figures.method,
            insufficient=figures.insufficient,
            previous_nps=None if last is None else last.nps,
            change=decision.change,
            computed_at=now,
        )


async def _last_published(session: AsyncSession, headline: Headline) -> Published | None:
    t = headlines_table
    row = (
        await session.execute(
            sa.select(t.c.definition, t.c.nps, t.c.published_at).where(
                t.c.tenant_id == headline.tenant, t.c.name == headline.name
            )
        )
    ).one_or_none()
    if row is None or row.definition != headline.definition:
        return None
    return Published(nps=row.nps, at=row.published_at)


async def _remember(
    session: AsyncSession, headline: Headline, data: NpsChangedV1, event_id: str, now: datetime
) -> None:
    t = headlines_table
    values = {
        "definition": headline.definition,
        "nps": data.nps,
        "n": data.n,
        "published_at": now,
        "event_id": event_id,
    }
    await session.execute(
        pg_insert(t)
        .values(tenant_id=headline.tenant, name=headline.name, **values)
        .on_conflict_do_update(index_elements=[t.c.tenant_id, t.c.name], set_=values)
    )


def _set_gauges(headline: Headline, figures: NpsEstimate, now: datetime) -> None:
    labels = (headline.tenant, headline.name)
    HEADLINE_NPS.labels(*labels).set(_or_nan(figures.nps))
    HEADLINE_CI_LOW.labels(*labels).set(_or_nan(figures.ci_low))
    HEADLINE_CI_HIGH.labels(*labels).set(_or_nan(figures.ci_high))
    HEADLINE_RESPONSES.labels(*labels).set(figures.n)
    HEADLINE_COMPUTED.labels(*labels).set(now.timestamp())


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
