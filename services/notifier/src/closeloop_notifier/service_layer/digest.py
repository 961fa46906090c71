"""The daily digest of overdue cases, one per owner, at the tenant's `digest_hour` (local).

A case is overdue while it is open and its first contact is late (not contacted by its
deadline) or its resolution is late. The digest lists the owner's overdue cases as of the moment
it is made; its dedup key (owner, local day) makes it once a day however many replicas run this
and however often they restart. Cases come from the notifier's own view of case events
(`case_view`), not from the orchestrator's tables.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.handlers import Transaction
from closeloop_common.loop import repeat
from closeloop_common.outbox import Outbox
from closeloop_notifier.adapters.tables import case_view, messages
from closeloop_notifier.domain.kinds import Kind, digest_key
from closeloop_notifier.metrics import DRAFTS_AWAITING, MESSAGES_WAITING
from closeloop_notifier.service_layer.compose import Composer
from closeloop_notifier.service_layer.messages import NewMessage, customer_address, store
from closeloop_notifier.service_layer.settings_store import SettingsStore

log = logging.getLogger(__name__)

OPEN = case_view.c.status.not_in(("resolved", "closed"))


def overdue(now: datetime) -> sa.ColumnElement[bool]:
    first_contact_late = sa.and_(
        case_view.c.first_contacted_at.is_(None), case_view.c.first_contact_due_at < now
    )
    return sa.and_(OPEN, sa.or_(first_contact_late, case_view.c.resolution_due_at < now))


class OverdueDigest:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        composer: Composer,
        settings: SettingsStore,
        clock: Clock,
        source: str,
        interval: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._composer = composer
        self._settings = settings
        self._clock = clock
        self._source = source
        self._interval = interval
        self._done: set[tuple[str, date]] = set()

    async def run(self) -> None:
        await repeat(self.step, wake=asyncio.Event(), idle=self._interval, name="overdue digest")

    async def step(self) -> bool:
        """Make the digests that are due; always False (it runs every `interval`)."""
        now = self._clock.now()
        async with self._sessions() as session:
            tenants = (
                await session.scalars(
                    sa.select(case_view.c.tenant_id).where(overdue(now)).distinct()
                )
            ).all()
        for tenant in tenants:
            settings = await self._settings.get(tenant)
            if settings.digest_hour is None or "overdue_digest" not in settings.team_messages:
                continue
            local = now.astimezone(ZoneInfo(settings.time_zone))
            if local.hour < settings.digest_hour or (tenant, local.date()) in self._done:
                continue
            made = await self.make(tenant, local.date())
            self._done.add((tenant, local.date()))
            log.info("overdue digests made", extra={"tenant_id": tenant, "digests": made})
        return False

    async def make(self, tenant_id: str, day: date) -> int:
        """The tenant's digests of `day` (those made already are kept); returns how many are new."""
        now = self._clock.now()
        settings = await self._settings.get(tenant_id)
        locale = self._composer.locale(tenant_id, None)
        async with transaction(self._sessions) as session:
            tx = Transaction(session, self._clock, self._source, self._outbox)
            rows = (
                await session.execute(
                    sa.select(case_view)
                    .where(case_view.c.tenant_id == tenant_id, overdue(now))
                    .where(case_view.c.owner_id.is_not(None))
                    .order_by(case_view.c.owner_id, case_view.c.first_contact_due_at)
                )
            ).all()
            by_owner: dict[str, list[sa.Row[Any]]] = {}
            for row in rows:
                by_owner.setdefault(row.owner_id, []).append(row)
            new: list[NewMessage] = []
            for owner_id, cases in by_owner.items():
                owner = cases[0]
                listed = [_listed(c, now) for c in cases]
                context = {
                    "locale": locale,
                    "now": now,
                    "tenant": self._composer.tenant_context(tenant_id, settings),
                    "unsubscribe_url": None,
                    "digest": {
                        "owner_name": owner.owner_name,
                        "day": day,
                        "cases": listed,
                        "count": len(listed),
                    },
                }
                rendered = await self._composer.compose(
                    session, tenant_id, Kind.OVERDUE_DIGEST, locale, context
                )
                address = customer_address(owner.owner_email)
                new.append(
                    NewMessage(
                        dedup_key=digest_key(owner_id, day),
                        kind=Kind.OVERDUE_DIGEST,
                        channel="email",
                        locale=locale,
                        subject=rendered.subject,
                        body=rendered.text,
                        html=rendered.html,
                        status="pending" if address.recipient else "no_recipient",
                        next_attempt_at=now if address.recipient else None,
                        recipient=address.recipient,
                    )
                )
            stored = await store(tx, tenant_id, new)
            await tx.flush()
        return len(stored)


def _listed(case: sa.Row[Any], now: datetime) -> dict[str, Any]:
    late_first = case.first_contacted_at is None and case.first_contact_due_at < now
    deadline = case.first_contact_due_at if late_first else case.resolution_due_at
    return {
        "id": str(case.case_id),
        "customer_name": case.customer_name,
        "priority": case.priority,
        "clock": "first_contact" if late_first else "resolution",
        # "no_response": a lack-of-response case, which has no answer (`domain.no_response`).
        "category": case.category,
        "deadline": deadline,
        "overdue_hours": round((now - deadline).total_seconds() / 3600, 1),
    }


async def recount(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Refresh the gauges of drafts and of messages waiting to be sent."""
    async with sessions() as session:
        rows = await session.execute(
            sa.select(messages.c.status, sa.func.count())
            .where(messages.c.status.in_(("draft", "pending", "sending")))
            .group_by(messages.c.status)
        )
        counts: dict[str, int] = {status: count for status, count in rows}
    DRAFTS_AWAITING.set(counts.get("draft", 0))
    for status in ("pending", "sending"):
        MESSAGES_WAITING.labels(status).set(counts.get(status, 0))
