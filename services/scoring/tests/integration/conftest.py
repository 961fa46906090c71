"""Scoring's app without its lifespan (no consumer or relay): tests feed the batch handlers
(`support.feed`) and read over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .support import runtime_of


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    app = create_scoring_app(ScoringSettings(scoring_time_zone="Europe/Warsaw"))
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def tenant() -> str:
    return f"it-sc-{uuid.uuid4().hex[:12]}"
