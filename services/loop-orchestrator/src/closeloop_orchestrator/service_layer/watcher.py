"""The SLA watcher: fires due timers as `case.sla_alert.v1` (and `case.resurvey_due.v1`) events,
and recounts the open-case gauges.

Every replica runs one. A step takes up to `ORCHESTRATOR_WATCH_BATCH` due timers with
`timers.fire_due` (SKIP LOCKED over the partial index of pending timers: replicas share the
work, nothing fires twice, a replica dying mid-step leaves its timers to the next step), reads
their cases in one query, and emits one event per timer in the same transaction. Time is the
runtime's injected clock. Between steps the watcher sleeps until the next pending timer is due,
at most `ORCHESTRATOR_WATCH_INTERVAL_SECONDS` (a timer set by another replica meanwhile is found
by then) and at least `ORCHESTRATOR_WATCH_TICK_SECONDS` (`next_pause`): timers due within a tick
fire together, at most a tick late, instead of a step (a transaction and a scan) each. Measured
by `make bench-orchestrator` (61 timers due per second among a million open cases): a step per
timer cost the watcher 32 % of a core.

A timer whose clock has stopped meanwhile is not alerted: stopping a clock cancels its timers
in the same transaction, so this is a second line, for a row changed by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    CaseResurveyDueV1,
    CaseSlaAlertV1,
    Category,
    Customer,
)
from closeloop_common.handlers import Transaction
from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator.adapters.tables import (
    ACTIVE_STATUSES,
    ISSUE_STATUSES,
    cases,
    structural_issues,
)
from closeloop_orchestrator.adapters.tables import timers as timer_table
from closeloop_orchestrator.domain import silence
from closeloop_orchestrator.domain.case_commands import Priority
from closeloop_orchestrator.domain.setup import Organisation
from closeloop_orchestrator.domain.sla import ClockName
from closeloop_orchestrator.metrics import (
    FIRST_CONTACT_WITHIN_SLA_RATIO,
    OPEN_CASES,
    SLA_ALERT_LATENESS,
    SLA_ALERTS,
    STRUCTURAL_ISSUES,
)
from closeloop_orchestrator.service_layer import timers
from closeloop_orchestrator.service_layer.case_store import owner_of
from closeloop_orchestrator.service_layer.setup_store import SetupStore

log = logging.getLogger(__name__)
WITHIN_SLA_WINDOW = timedelta(days=30)
# Cases answer a response (its category) or stand for a silent key contact.
CASE_TYPES = (*(c.value for c in Category), silence.CASE_TYPE)


def next_pause(until_due: float | None, *, tick: float, interval: float) -> float | None:
    """Seconds to sleep before the next step when the next pending timer is due in `until_due`
    seconds (None: none pending): until then, but at least a `tick` (also when it is overdue:
    locked by another replica's step); None when that is an `interval` or more away (the
    watcher then sleeps `interval`, or until woken)."""
    if until_due is None or until_due >= interval:
        return None
    return max(tick, until_due)


class SlaWatcher:
    def __init__(
        self,
        runtime: ServiceRuntime,
        store: SetupStore,
        *,
        limit: int,
        interval: float,
        tick: float = 0.0,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.limit = limit
        self.interval = interval
        self.tick = tick
        self.wake = asyncio.Event()

    async def run(self) -> None:
        await repeat(self._step_and_wait, wake=self.wake, idle=self.interval, name="sla-watcher")

    async def _step_and_wait(self) -> bool:
        fired = await self.step()
        if fired >= self.limit:
            return True
        pause = next_pause(await self.until_next_due(), tick=self.tick, interval=self.interval)
        if pause is None:
            return False
        await asyncio.sleep(pause)
        return True

    async def until_next_due(self) -> float | None:
        """Seconds until the next pending timer is due (None: none pending)."""
        async with self.runtime.worker_sessions() as session:
            due = await session.scalar(
                sa.select(sa.func.min(timer_table.c.due_at)).where(
                    timer_table.c.fired_at.is_(None), timer_table.c.cancelled_at.is_(None)
                )
            )
        if due is None:
            return None
        waited: float = (due - self.runtime.clock.now()).total_seconds()
        return waited

    async def step(self) -> int:
        """Fire the timers due now (at most `limit`); how many."""
        async with self.runtime.worker_transaction() as tx:
            session = tx.session
            now = self.runtime.clock.now()

            async def fire(session: AsyncSession, due: Sequence[timers.DueTimer]) -> None:
                await self._fire(tx, due, now)

            fired = await timers.fire_due(session, now=now, limit=self.limit, fire=fire)
        return fired

    async def _fire(self, tx: Transaction, due: Sequence[timers.DueTimer], now: datetime) -> None:
        keys = sorted({(d.tenant_id, d.case_id) for d in due})
        # Any of the tenants and any of the case ids, as two arrays: a list of (tenant, case)
        # pairs costs PostgreSQL more to plan than to run. A case id is unique across tenants
        # in practice (uuid5 of tenant and response); a row nobody asked for is ignored below.
        tenants = sa.bindparam("tenants", sorted({k[0] for k in keys}), type_=ARRAY(sa.Text))
        ids = sa.bindparam("ids", [k[1] for k in keys], type_=ARRAY(UUID(as_uuid=True)))
        found = await tx.session.execute(
            sa.select(cases).where(
                cases.c.tenant_id == sa.any_(tenants), cases.c.case_id == sa.any_(ids)
            )
        )
        rows = {(row.tenant_id, row.case_id): row for row in found}
        # Each tenant's set-up once per step, not once per timer (a query each).
        organisations = {
            tenant: (await self.store.current(tx.session, tenant)).setup.organisation
            for tenant in sorted({tenant for tenant, _ in keys})
        }
        for item in due:
            row = rows.get((item.tenant_id, item.case_id))
            if row is None:
                continue  # the case was erased
            timer = item.timer
            if timer.clock == ClockName.RESURVEY:
                if row.status == "closed" and row.resurvey_due_at == timer.due_at:
                    await tx.emit(
                        CaseResurveyDueV1(
                            case_id=row.case_id,
                            response_id=row.response_id,
                            survey_id=row.survey_id,
                            customer=Customer.model_validate(row.customer),
                            account_id=row.account_id,
                            closed_at=row.closed_at,
                            due_at=timer.due_at,
                        ),
                        tenant_id=row.tenant_id,
                        subject=str(row.case_id),
                    )
                continue
            if not _running(row, timer.clock):
                continue
            await self._alert(tx, row, item, now, organisations[row.tenant_id])

    async def _alert(
        self, tx: Transaction, row: Any, item: timers.DueTimer, now: datetime, org: Organisation
    ) -> None:
        timer = item.timer
        team = org.team(row.team_id if row.team_id and org.has_team(row.team_id) else None)
        holder = org.holder(timer.to, team=team, owner_id=row.owner_id)
        deadline = (
            row.first_contact_due_at
            if timer.clock == ClockName.FIRST_CONTACT
            else row.resolution_due_at
        )
        await tx.emit(
            CaseSlaAlertV1(
                case_id=row.case_id,
                response_id=row.response_id,
                customer=Customer.model_validate(row.customer),
                account_id=row.account_id,
                clock=timer.clock.value,
                kind=timer.kind.value,
                step=timer.step,
                to=timer.to,
                recipient=None if holder is None else holder.owner(),
                owner=owner_of(row) or (team.queue_owner() if row.queue else None),
                priority=row.priority,
                due_at=timer.due_at,
                deadline=deadline,
                fired_at=now,
            ),
            tenant_id=row.tenant_id,
            subject=str(row.case_id),
        )
        SLA_ALERTS.labels(clock=timer.clock.value, kind=timer.kind.value).inc()
        SLA_ALERT_LATENESS.observe(max(0.0, (now - timer.due_at).total_seconds()))


def _running(row: Any, clock: ClockName) -> bool:
    if row.status not in ACTIVE_STATUSES:
        return False
    if clock == ClockName.FIRST_CONTACT:
        return row.first_contacted_at is None
    return row.resolution_due_at is not None


async def recount(runtime: ServiceRuntime) -> None:
    """Set the open-case gauges from the table (every case type and priority, zeros included),
    and the structural issues by status."""
    now = runtime.clock.now()
    async with runtime.worker_sessions() as session:
        counts = {
            (row.case_type, row.priority): int(row.n)
            for row in await session.execute(
                sa.select(cases.c.case_type, cases.c.priority, sa.func.count().label("n"))
                .where(cases.c.status.in_(ACTIVE_STATUSES))
                .group_by(cases.c.case_type, cases.c.priority)
            )
        }
        in_time, judged = (
            await session.execute(
                sa.select(
                    sa.func.count().filter(
                        cases.c.first_contacted_at <= cases.c.first_contact_due_at
                    ),
                    sa.func.count(),
                ).where(
                    cases.c.opened_at >= now - WITHIN_SLA_WINDOW,
                    sa.or_(
                        cases.c.first_contacted_at.is_not(None),
                        cases.c.first_contact_due_at < now,
                    ),
                )
            )
        ).one()
        issues = {
            row.status: int(row.n)
            for row in await session.execute(
                sa.select(structural_issues.c.status, sa.func.count().label("n")).group_by(
                    structural_issues.c.status
                )
            )
        }
    for case_type in CASE_TYPES:
        for priority in Priority:
            OPEN_CASES.labels(case_type=case_type, priority=priority.value).set(
                counts.get((case_type, priority.value), 0)
            )
    for status in ISSUE_STATUSES:
        STRUCTURAL_ISSUES.labels(status=status).set(issues.get(status, 0))
    if judged:
        FIRST_CONTACT_WITHIN_SLA_RATIO.set(in_time / judged)


async def run_gauges(runtime: ServiceRuntime, interval: float) -> None:
    async def step() -> bool:
        await recount(runtime)
        return False

    await repeat(step, wake=asyncio.Event(), idle=interval, name="case-gauges")
