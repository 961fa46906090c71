"""Scoring's app without its lifespan (no consumer or relay): tests feed the batch handlers
(`support.feed`) and read over HTTP. Time stands still at `support.NOW` (a test may move the
clock; it is put back after each test), and local days are Warsaw's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .support import NOW, new_tenant, runtime_of


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(autouse=True)
def _time_put_back(clock: FixedClock) -> Iterator[None]:
    yield
    clock.set(NOW)


@pytest.fixture(scope="module")
async def app(infra: dict[str, str], clock: FixedClock) -> AsyncIterator[FastAPI]:
    app = create_scoring_app(ScoringSettings(scoring_time_zone="Europe/Warsaw"), clock=clock)
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def tenant() -> str:
    return new_tenant()
