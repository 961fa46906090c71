"""The orchestrator's app without its lifespan (no consumer, relay or watcher loops): tests feed
the batch handler (`support.feed`), step the SLA watcher themselves and call the API. Time stands
still at `support.NOW` unless a test moves it (it is put back after each test). Each test's tenant
is deleted afterwards, timers included: the watcher scans every tenant's due timers.

Modules that need scoring (the backlog's what-if, the loop's impact) override `app` with
`app_with_scoring`: the orchestrator asking scoring's real app in process; `scoring_down` is the
orchestrator with scoring nowhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.db import transaction
from closeloop_orchestrator.adapters import tables
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .support import ALL_SCOPES, NOW, OUTBOX, new_tenant, runtime_of

TENANT_TABLES = (
    tables.cases,
    tables.timers,
    tables.case_history,
    tables.responses,
    tables.tenant_setup,
    tables.account_owners,
    tables.team_turns,
    tables.structural_issues,  # its cases and history go with it (ON DELETE CASCADE)
    tables.invitations,
    tables.account_actions,
)


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(autouse=True)
def _time_put_back(clock: FixedClock) -> Iterator[None]:
    yield
    clock.set(NOW)


@pytest.fixture(scope="module")
async def app(infra: dict[str, str], clock: FixedClock) -> AsyncIterator[FastAPI]:
    app = create_orchestrator_app(OrchestratorSettings(), clock=clock)
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def scoring_app(infra: dict[str, str], clock: FixedClock) -> AsyncIterator[FastAPI]:
    app = create_scoring_app(ScoringSettings(scoring_time_zone="Europe/Warsaw"), clock=clock)
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def app_with_scoring(
    infra: dict[str, str], clock: FixedClock, scoring_app: FastAPI
) -> AsyncIterator[FastAPI]:
    """The orchestrator asking the real scoring app (in process)."""
    transport = httpx.ASGITransport(app=scoring_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as scoring:
        app = create_orchestrator_app(OrchestratorSettings(), clock=clock, scoring_http=scoring)
        yield app
        await runtime_of(app).engine.dispose()
        await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def scoring_down(infra: dict[str, str], clock: FixedClock) -> AsyncIterator[FastAPI]:
    """The orchestrator with scoring nowhere (nothing listens on port 9)."""
    settings = OrchestratorSettings(
        orchestrator_scoring_url="http://127.0.0.1:9", orchestrator_scoring_timeout_seconds=2
    )
    app = create_orchestrator_app(settings, clock=clock)
    yield app
    await app.state.scoring.aclose()
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def tenant(app: FastAPI) -> AsyncIterator[str]:
    tenant = new_tenant()
    yield tenant
    async with transaction(runtime_of(app).sessions) as session:
        for table in TENANT_TABLES:
            await session.execute(sa.delete(table).where(table.c.tenant_id == tenant))
        # No relay runs here: mark the tenant's events sent, so no later relay (an e2e stack on
        # the same database) publishes them to this run's deleted topics.
        await session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
            .values(published_at=sa.func.now())
        )


@pytest.fixture
def headers(tenant: str, bearer: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A token of the tenant with every scope, naming the agent `agent-ola`."""
    return bearer(tenant, *ALL_SCOPES, subject="agent-ola")
