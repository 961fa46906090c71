"""SLA timers against the real PostgreSQL: only due, pending timers fire, oldest first, once;
two watchers at once share them without overlap; a watcher dying mid-scan loses nothing; the scan
goes through the partial index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from closeloop_common.db import make_engine, make_sessionmaker, transaction
from closeloop_common.settings import CommonSettings
from closeloop_orchestrator.adapters.tables import timers
from closeloop_orchestrator.domain.business_time import WallTime
from closeloop_orchestrator.domain.sla import ClockName, TimerKind, clock_timers
from closeloop_orchestrator.service_layer.timers import DueTimer, cancel, fire_due, schedule

OPENED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=4, application_name="it-timers")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    """A tenant of its own; its timers (and any an aborted earlier run left) are deleted after,
    since a scan takes due timers of every tenant."""
    yield f"it-timers-{uuid.uuid4().hex[:10]}"
    async with transaction(sessions) as session:
        await session.execute(sa.delete(timers).where(timers.c.tenant_id.like("it-timers-%")))


async def open_cases(
    sessions: async_sessionmaker[AsyncSession], tenant: str, count: int, *, hours: int = 4
) -> list[uuid.UUID]:
    """`count` cases opened at OPENED with a first-contact clock of `hours` wall hours."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with transaction(sessions) as session:
        for case_id in ids:
            await schedule(
                session,
                tenant_id=tenant,
                case_id=case_id,
                found=clock_timers(
                    ClockName.FIRST_CONTACT,
                    started_at=OPENED,
                    duration=hours * H,
                    clock=WallTime(),
                ),
            )
    return ids


class Recorder:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.fired: list[DueTimer] = []

    async def __call__(self, session: AsyncSession, due: Sequence[DueTimer]) -> None:
        self.fired.extend(d for d in due if d.tenant_id == self.tenant)


async def fire(
    sessions: async_sessionmaker[AsyncSession], recorder: Recorder, now: datetime, limit: int = 100
) -> int:
    async with transaction(sessions) as session:
        return await fire_due(session, now=now, limit=limit, fire=recorder)


async def test_due_timers_fire_once_in_due_order_and_cancelled_ones_never(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    first, second = await open_cases(sessions, tenant, 2)
    async with transaction(sessions) as session:  # scheduling again changes nothing
        await schedule(
            session,
            tenant_id=tenant,
            case_id=first,
            found=clock_timers(
                ClockName.FIRST_CONTACT, started_at=OPENED, duration=4 * H, clock=WallTime()
            ),
        )
    recorder = Recorder(tenant)
    await fire(sessions, recorder, OPENED + 2 * H)
    assert recorder.fired == []
    await fire(sessions, recorder, OPENED + 3 * H)  # the warnings (75 % of 4 h)
    assert sorted((d.case_id, d.timer.kind) for d in recorder.fired) == sorted(
        [(first, TimerKind.WARNING), (second, TimerKind.WARNING)]
    )
    async with transaction(sessions) as session:  # the first customer is reached
        cancelled = await cancel(
            session,
            tenant_id=tenant,
            case_id=first,
            clock=ClockName.FIRST_CONTACT,
            at=OPENED + 3 * H,
        )
    assert cancelled == 3  # breach and two escalations; the warning had fired
    recorder.fired.clear()
    await fire(sessions, recorder, OPENED + 100 * H)
    assert [(d.case_id, d.timer.kind, d.timer.step) for d in recorder.fired] == [
        (second, TimerKind.BREACH, 0),
        (second, TimerKind.ESCALATION, 1),
        (second, TimerKind.ESCALATION, 2),
    ]
    recorder.fired.clear()
    await fire(sessions, recorder, OPENED + 200 * H)
    assert recorder.fired == []


async def test_two_watchers_at_once_share_the_due_timers_without_overlap(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await open_cases(sessions, tenant, 30)
    holding = asyncio.Event()
    release = asyncio.Event()

    class Slow(Recorder):
        async def __call__(self, session: AsyncSession, due: Sequence[DueTimer]) -> None:
            await super().__call__(session, due)
            holding.set()
            await release.wait()  # keeps its rows locked while the other watcher scans

    slow, quick = Slow(tenant), Recorder(tenant)
    now = OPENED + 3 * H  # 30 warnings due
    first = asyncio.create_task(fire(sessions, slow, now, limit=20))
    await holding.wait()
    await fire(sessions, quick, now, limit=100)
    release.set()
    await first
    slow_keys = {(d.case_id, d.timer.key) for d in slow.fired}
    quick_keys = {(d.case_id, d.timer.key) for d in quick.fired}
    assert len(slow_keys) == 20
    assert len(quick_keys) == 10
    assert not slow_keys & quick_keys


async def test_a_watcher_dying_mid_scan_leaves_its_timers_for_the_next(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    await open_cases(sessions, tenant, 3)

    async def dies(session: AsyncSession, due: Sequence[DueTimer]) -> None:
        raise RuntimeError("killed while emitting")

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await fire_due(session, now=OPENED + 3 * H, limit=100, fire=dies)
    recorder = Recorder(tenant)
    await fire(sessions, recorder, OPENED + 3 * H)
    assert len(recorder.fired) == 3


async def test_the_scan_reads_pending_due_rows_through_the_partial_index(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    # Many timers far in the future and a few due: the plan must not walk the table.
    async with transaction(sessions) as session:
        await session.execute(
            sa.text(
                "INSERT INTO orchestrator.timers (tenant_id, case_id, clock, kind, step, round, "
                "due_at, to_role) SELECT :tenant, gen_random_uuid(), 'resolution', 'breach', 0, 1, "
                "CAST(:later AS timestamptz) + g * interval '1 second', 'owner' "
                "FROM generate_series(1, 20000) g"
            ),
            {"tenant": tenant, "later": OPENED + 1000 * H},
        )
    async with transaction(sessions) as session:
        await session.execute(sa.text("ANALYZE orchestrator.timers"))
        compiled = (
            sa.select(timers)
            .where(
                timers.c.due_at <= OPENED,
                timers.c.fired_at.is_(None),
                timers.c.cancelled_at.is_(None),
            )
            .order_by(timers.c.due_at)
            .limit(100)
            .with_for_update(skip_locked=True)
        )
        plan = "\n".join(
            row[0]
            for row in await session.execute(
                sa.text("EXPLAIN " + str(compiled.compile(compile_kwargs={"literal_binds": True})))
            )
        )
    assert "ix_timers_pending_due" in plan, plan
