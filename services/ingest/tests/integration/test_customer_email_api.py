"""A customer's address is checked at POST: a bad one is a 422 and nothing is stored or queued;
a good one is stored and published only in its normal form (real PostgreSQL, app in-process)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.events import ResponseReceivedV1, decode_event
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.entrypoints.app import create_ingest_app

OUTBOX = metadata.tables["ingest.outbox"]


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    app = create_ingest_app()
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime.sessions


def a_response(email: str) -> dict[str, Any]:
    return {
        "response_id": f"r-{uuid.uuid4().hex}",
        "survey_id": "relationship-2026",
        "customer": {"id": f"cust-{uuid.uuid4().hex[:10]}", "email": email, "locale": "pl-PL"},
        "score": 3,
        "answered_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
    }


async def queued(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[Any]:
    async with sessions() as session:
        payloads = await session.scalars(
            sa.select(OUTBOX.c.payload).where(OUTBOX.c.tenant_id == tenant)
        )
        return [decode_event(p) for p in payloads.all()]


@pytest.mark.parametrize("email", ["a@[b.c", "anna,boss@klient.example.pl", "anna<boss@x.pl>"])
async def test_response_with_an_address_that_cannot_be_sent_to_is_refused_at_post(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    email: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    tenant = f"it-ingest-{uuid.uuid4().hex[:12]}"
    body = a_response(email)

    answer = await client.post(
        "/v1/responses", json=body, headers=bearer(tenant, "read", "responses:write", "cases:write")
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["location"] == ["body", "customer"]
    missing = await client.get(
        f"/v1/responses/{body['response_id']}",
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )
    assert missing.status_code == 404
    assert await queued(sessions, tenant) == []


async def test_accepted_address_is_stored_and_published_in_its_normal_form(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
) -> None:
    tenant = f"it-ingest-{uuid.uuid4().hex[:12]}"
    body = a_response("Anna.Nowak@KLIENT.Example.PL")

    posted = await client.post(
        "/v1/responses", json=body, headers=bearer(tenant, "read", "responses:write", "cases:write")
    )

    assert posted.status_code == 202, posted.text
    stored = await client.get(
        f"/v1/responses/{body['response_id']}",
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )
    assert stored.json()["response"]["customer"]["email"] == "Anna.Nowak@klient.example.pl"
    [event] = await queued(sessions, tenant)
    assert isinstance(event.data, ResponseReceivedV1)
    assert event.data.customer.email == "Anna.Nowak@klient.example.pl"
