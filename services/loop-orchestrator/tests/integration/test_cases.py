"""Opening cases (the `response.received` handler) and reading them over HTTP, against the real
PostgreSQL: one case per response with an id derived from it, tenants kept apart, bad filters
refused. The handler is called directly; the consumer around it is tested in libs/common."""

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

from closeloop_common.clock import SystemClock
from closeloop_common.db import transaction
from closeloop_common.events import (
    CaseOpenedV1,
    CloudEvent,
    Customer,
    Owner,
    ResponseReceivedV1,
    categorize,
    decode_event,
    new_event,
)
from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator.adapters.tables import cases, metadata
from closeloop_orchestrator.domain.rules import CasePolicy
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_orchestrator.service_layer.cases import open_case

OUTBOX = metadata.tables["orchestrator.outbox"]
PROBLEM = "application/problem+json"
ANNA = Owner(id="anna", name="Anna Nowak", email="anna@acme.example")
JAN = Owner(id="jan", name="Jan Kowalski", email="jan@acme.example")
POLICY = CasePolicy(team=(ANNA, JAN), key_accounts=frozenset({"key-account"}))


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    """The orchestrator app without its lifespan: no consumer or relay, the tests call the
    handler themselves."""
    app = create_orchestrator_app()
    yield app
    await _runtime(app).engine.dispose()


def _runtime(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


@pytest.fixture
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    return _runtime(app).sessions


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    tenant = f"it-cases-{uuid.uuid4().hex[:12]}"
    yield tenant
    # No relay runs here: mark this tenant's case.opened events as sent, so that no later relay
    # (an e2e stack on the same database) publishes them to this run's deleted topics.
    async with transaction(sessions) as session:
        await session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
            .values(published_at=sa.func.now())
        )


def received(
    tenant: str, response_id: str, *, score: int = 2, account_id: str | None = "acc-7"
) -> CloudEvent[ResponseReceivedV1]:
    answered_at = datetime.now(UTC) - timedelta(minutes=5)
    data = ResponseReceivedV1(
        response_id=response_id,
        survey_id="relationship-2026",
        customer=Customer(id=f"cust-{response_id}", email="jan@klient.example.pl"),
        account_id=account_id,
        score=score,
        category=categorize(score),
        comment="Dostawa spóźniła się.",
        answered_at=answered_at,
        received_at=answered_at + timedelta(seconds=1),
        source="api",
    )
    event: CloudEvent[ResponseReceivedV1] = new_event(
        data, tenant_id=tenant, source="/closeloop/ingest", clock=SystemClock()
    )
    return event


async def handle(app: FastAPI, event: CloudEvent[ResponseReceivedV1]) -> uuid.UUID | None:
    """Run the handler in one transaction, as the consumer does."""
    runtime = _runtime(app)
    async with runtime.transaction() as tx:
        return await open_case(tx.context(event.tenantid), event, policy=POLICY)


async def opened_case_ids(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[Any]:
    async with sessions() as session:
        payloads = await session.scalars(
            sa.select(OUTBOX.c.payload)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == CaseOpenedV1.EVENT_TYPE)
            .order_by(OUTBOX.c.seq)
        )
        return [decode_event(p).data.case_id for p in payloads]


async def test_reprocessing_a_response_after_its_case_was_lost_opens_it_under_the_same_id(
    app: FastAPI, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    event = received(tenant, "r-replayed")
    first = await handle(app, event)
    assert first is not None
    # A fresh schema (a rebuild, a restore, a cleared inbox) holds no trace of the first run.
    async with transaction(sessions) as session:
        await session.execute(sa.delete(cases).where(cases.c.tenant_id == tenant))

    again = await handle(app, event)

    assert again == first
    # Both case.opened events name one case, so the notifier's (tenant, case, template)
    # uniqueness sends one message for the response, however often it was processed.
    assert await opened_case_ids(sessions, tenant) == [first, first]


async def test_a_second_delivery_of_a_response_opens_no_second_case(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    event = received(tenant, "r-twice")

    first = await handle(app, event)
    again = await handle(app, event)

    assert first is not None
    assert again is None
    listed = await client.get(
        "/v1/cases",
        params={"response_id": "r-twice"},
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )
    assert [c["case_id"] for c in listed.json()["cases"]] == [str(first)]
    assert await opened_case_ids(sessions, tenant) == [first]


async def test_a_case_is_read_by_its_tenant_only(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    case_id = await handle(app, received(tenant, "r-read", score=9, account_id="key-account"))

    mine = await client.get(
        f"/v1/cases/{case_id}", headers=bearer(tenant, "read", "responses:write", "cases:write")
    )
    theirs = await client.get(f"/v1/cases/{case_id}", headers=bearer(f"{tenant}-other", "read"))

    assert mine.status_code == 200, mine.text
    case = mine.json()
    assert case["case_id"] == str(case_id)
    assert case["tenant_id"] == tenant
    assert case["response_id"] == "r-read"
    assert case["customer"]["id"] == "cust-r-read"
    assert (case["category"], case["playbook"], case["status"]) == (
        "promoter",
        "thanks_referral",
        "open",
    )
    assert case["key_account"] is True
    assert case["owner"] in (ANNA.model_dump(), JAN.model_dump())
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == PROBLEM


async def test_cases_are_listed_key_accounts_first_and_filtered_by_owner(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    ordinary = await handle(app, received(tenant, "r-ordinary", account_id="acc-1"))
    key = await handle(app, received(tenant, "r-key", account_id="key-account"))
    headers = bearer(tenant, "read", "responses:write", "cases:write")

    everything = (await client.get("/v1/cases", headers=headers)).json()
    owner = everything["cases"][0]["owner"]["id"]
    of_owner = (await client.get("/v1/cases", params={"owner_id": owner}, headers=headers)).json()

    assert everything["tenant_id"] == tenant
    assert [c["case_id"] for c in everything["cases"]] == [str(key), str(ordinary)]
    assert of_owner["cases"]
    assert {c["owner"]["id"] for c in of_owner["cases"]} == {owner}


@pytest.mark.parametrize("name", ["owner_id", "response_id"])
async def test_a_nul_character_in_a_case_filter_is_a_validation_problem(
    client: httpx.AsyncClient,
    tenant: str,
    name: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    answer = await client.get(
        "/v1/cases",
        params={name: "a\x00b"},
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == "urn:closeloop:problem:validation"
    assert [(e["location"], e["kind"]) for e in problem["errors"]] == [
        (["query", name], "nul_character")
    ]
