"""Custom attributes through ingest's HTTP app, against the real PostgreSQL (and the relay to the
real broker): the canonical API (one, a batch, corrections, invitations) and a survey tool's
webhook mapped by JSONPath, each published with the response; without attributes nothing about
the published event changes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.entrypoints.app import create_ingest_app
from services.ingest.tests.integration.test_responses_api import _wait_until_relayed, a_response
from services.ingest.tests.integration.test_webhooks_api import events, put_source, typeform
from services.ingest.tests.unit.sources.signing import SECRET, fixture

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    app = create_ingest_app()
    async with app.router.lifespan_context(app):
        yield app
        runtime = app.state.runtime
        assert isinstance(runtime, ServiceRuntime)
        await _wait_until_relayed(runtime.sessions, runtime.settings)


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


@pytest.fixture
def tenant() -> str:
    return f"it-attr-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def writer(bearer: Callable[..., dict[str, str]], tenant: str) -> dict[str, str]:
    return bearer(tenant, "responses:write", "read")


async def test_a_posted_response_keeps_and_publishes_its_attributes(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    writer: dict[str, str],
) -> None:
    body = a_response(attributes={"plan": "gold", "tier": "smb"})

    first = await client.post("/v1/responses", json=body, headers=writer)
    again = await client.post("/v1/responses", json=body, headers=writer)
    read = await client.get(f"/v1/responses/{body['response_id']}", headers=writer)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert read.json()["response"]["attributes"] == {"plan": "gold", "tier": "smb"}
    (event,) = await events(sessions, tenant, "response.received")
    assert event["attributes"] == {"plan": "gold", "tier": "smb"}


async def test_a_response_without_attributes_is_published_without_the_field(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    writer: dict[str, str],
) -> None:
    plain = a_response()
    empty = a_response(attributes={})

    answers = [
        await client.post("/v1/responses", json=body, headers=writer) for body in (plain, empty)
    ]

    assert [a.status_code for a in answers] == [202, 202]
    published = await events(sessions, tenant, "response.received")
    assert len(published) == 2
    assert all("attributes" not in event for event in published)


async def test_a_later_version_with_other_attributes_is_a_correction_naming_the_old_ones(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    writer: dict[str, str],
) -> None:
    answered = datetime.now(UTC) - timedelta(hours=1)
    body = a_response(answered_at=answered.isoformat(), attributes={"plan": "silver"})
    later = {
        **body,
        "updated_at": (answered + timedelta(minutes=5)).isoformat(),
        "attributes": {"plan": "gold"},
    }
    same_version_other_plan = {**body, "attributes": {"plan": "bronze"}}

    first = await client.post("/v1/responses", json=body, headers=writer)
    conflict = await client.post("/v1/responses", json=same_version_other_plan, headers=writer)
    correction = await client.post("/v1/responses", json=later, headers=writer)

    assert [first.status_code, conflict.status_code, correction.status_code] == [202, 409, 202]
    assert correction.json()["status"] == "corrected"
    (event,) = await events(sessions, tenant, "response.corrected")
    assert event["attributes"] == {"plan": "gold"}
    assert event["previous"]["attributes"] == {"plan": "silver"}


async def test_a_batch_judges_attributes_entry_by_entry(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    writer: dict[str, str],
) -> None:
    good = a_response(attributes={"plan": "gold"})
    bad = a_response(attributes={"Plan": "gold"})

    answer = await client.post("/v1/responses", json={"responses": [good, bad]}, headers=writer)

    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert results[0]["status"] == "accepted"
    assert results[1]["status"] == "invalid"
    assert any("attributes" in e["location"] for e in results[1]["errors"])
    (event,) = await events(sessions, tenant, "response.received")
    assert event["attributes"] == {"plan": "gold"}


async def test_an_invalid_attribute_is_a_validation_problem_naming_it(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    answer = await client.post(
        "/v1/responses", json=a_response(attributes={"plan": "x" * 101}), headers=writer
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert ["body", "attributes", "plan"] in [e["location"] for e in answer.json()["errors"]]


async def test_invitations_carry_their_attributes(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    writer: dict[str, str],
) -> None:
    invitation = {
        "invitation_id": "inv-1",
        "survey_id": "relationship-2026",
        "customer": {"id": "c-1"},
        "channel": "email",
        "invited_at": datetime.now(UTC).isoformat(),
        "attributes": {"plan": "gold"},
    }
    plain = {**invitation, "invitation_id": "inv-2"}
    del plain["attributes"]

    first = await client.post("/v1/invitations", json=invitation, headers=writer)
    again = await client.post("/v1/invitations", json=invitation, headers=writer)
    other = await client.post(
        "/v1/invitations", json={**invitation, "attributes": {"plan": "silver"}}, headers=writer
    )
    without = await client.post("/v1/invitations", json=plain, headers=writer)

    assert [a.status_code for a in (first, again, other, without)] == [202, 200, 409, 202]
    gold, unset = await events(sessions, tenant, "invitation.sent")
    assert gold["attributes"] == {"plan": "gold"}
    assert "attributes" not in unset


async def test_a_survey_tool_s_field_is_mapped_to_an_attribute_by_its_json_path(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
) -> None:
    admin = bearer(tenant, "admin")
    spec = {
        "kind": "typeform",
        "secrets": [SECRET],
        "fields": {"attributes": {"plan": "$.form_response.hidden.plan"}},
        "forms": {"lT4Z3j": {"attributes": {"tier": "$.form_response.hidden.tier"}}},
    }
    url = await put_source(client, admin, "tf", spec)
    shown = await client.get("/v1/sources/tf", headers=admin)
    payload = json.loads(fixture("typeform", "promoter"))
    payload["form_response"]["hidden"] |= {"plan": "gold", "tier": "smb", "colour": "blue"}
    body = json.dumps(payload).encode()

    answer = await client.post(url, content=body, headers=typeform(body))

    assert answer.status_code == 202, answer.text
    assert shown.json()["fields"]["attributes"] == {"plan": "$.form_response.hidden.plan"}
    (event,) = await events(sessions, tenant, "response.received")
    assert event["attributes"] == {"plan": "gold", "tier": "smb"}
    assert event["segments"]["product"] == "app"  # the hidden segments as before
