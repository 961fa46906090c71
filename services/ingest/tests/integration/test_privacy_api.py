"""Erasure and export in ingest (real PostgreSQL, app in-process with its lifespan): the admin
names a respondent in a POST body, ingest erases its copy (stored requests, raw deliveries) in
the transaction that queues the erasure event, the status shows each service's part, and no
log line names the person."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.events import (
    CloudEvent,
    ErasureCompletedV1,
    ErasureRequestedV1,
    decode_event,
    new_event,
)
from closeloop_common.privacy import ERASED
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.adapters.tables import deliveries, invitations, metadata, responses
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_ingest.service_layer.privacy import record_completion

OUTBOX = metadata.tables["ingest.outbox"]
ANNA = "Anna.Kowalska@Klient.example.pl"
JAN = "jan.nowak@klient.example.pl"


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    # The other services are nowhere (nothing listens on port 9): the combined export lists them.
    nowhere = "http://127.0.0.1:9"
    settings = IngestSettings(
        ingest_scoring_url=nowhere,
        ingest_orchestrator_url=nowhere,
        ingest_notifier_url=nowhere,
        ingest_privacy_timeout_seconds=2,
    )
    app = create_ingest_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


@pytest.fixture
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    return runtime_of(app).sessions


def a_response(customer_id: str, email: str, name: str) -> dict[str, Any]:
    return {
        "response_id": f"r-{uuid.uuid4().hex}",
        "survey_id": "relationship-2026",
        "customer": {"id": customer_id, "email": email, "name": name, "locale": "pl-PL"},
        "score": 3,
        "comment": f"{name}: the courier was rude.",
        "answered_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
        "user_agent": "Mozilla/5.0 (Anna's phone)",
    }


async def events(sessions: async_sessionmaker[AsyncSession], tenant: str, kind: str) -> list[Any]:
    async with sessions() as session:
        payloads = await session.scalars(
            sa.select(OUTBOX.c.payload)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == kind)
            .order_by(OUTBOX.c.seq)
        )
        return [decode_event(p) for p in payloads.all()]


async def relayed(sessions: async_sessionmaker[AsyncSession], tenant: str) -> None:
    """Wait until the relay has published every event of the tenant (it runs in the app)."""
    for _ in range(200):
        async with sessions() as session:
            waiting = await session.scalar(
                sa.select(sa.func.count()).where(
                    OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None)
                )
            )
        if waiting == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the relay did not publish the tenant's events")


async def test_erasure_by_address_erases_ingests_copy_and_asks_every_service(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # As the services configure it (`closeloop_common.logging`): aiokafka's debug lines print
    # whole records, so it is held at WARNING.
    caplog.set_level(logging.WARNING, logger="aiokafka")
    tenant = f"it-privacy-{uuid.uuid4().hex[:10]}"
    writer = bearer(tenant, "responses:write", "read")
    admin = bearer(tenant, "admin", subject="dpo-marta")
    anna_1 = a_response("c-anna", ANNA, "Anna Kowalska")
    # The same person under a second customer id (another system), found by the address.
    anna_2 = a_response("c-anna-crm", ANNA.lower(), "Anna Kowalska")
    jan = a_response("c-jan", JAN, "Jan Nowak")
    for body in (anna_1, anna_2, jan):
        accepted = await client.post("/v1/responses", json=body, headers=writer)
        assert accepted.status_code == 202, accepted.text
    invited = await client.post(
        "/v1/invitations",
        json={
            "invitation_id": "inv-anna",
            "survey_id": "relationship-2026",
            "customer": {"id": "c-anna", "email": ANNA},
            "channel": "email",
            "invited_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        },
        headers=writer,
    )
    assert invited.status_code == 202, invited.text
    async with sessions.begin() as session:  # a raw webhook delivery that carried Anna's answer
        await session.execute(
            sa.insert(deliveries).values(
                tenant_id=tenant,
                source="typeform",
                received_at=datetime.now(UTC),
                content_type="application/json",
                headers={"x-forwarded-for": "203.0.113.7"},
                body=f'{{"email": "{ANNA}"}}'.encode(),
                outcome="accepted",
                response_ids=[anna_1["response_id"]],
            )
        )
    await relayed(sessions, tenant)
    exported = await client.post("/v1/privacy/export", json={"email": ANNA}, headers=admin)
    assert exported.status_code == 200, exported.text
    assert sorted(r["response_id"] for r in exported.json()["responses"]) == sorted(
        [anna_1["response_id"], anna_2["response_id"]]
    )
    assert exported.json()["webhook_deliveries"][0]["body"] == f'{{"email": "{ANNA}"}}'

    asked = await client.post("/v1/privacy/erasures", json={"email": ANNA}, headers=admin)

    assert asked.status_code == 202, asked.text
    erasure_id = asked.json()["erasure_id"]
    assert asked.headers["location"] == f"/v1/privacy/erasures/{erasure_id}"
    pseudonym = f"erased:{erasure_id}"
    async with sessions() as session:
        stored = {
            r.response_id: r
            for r in await session.execute(
                sa.select(responses).where(responses.c.tenant_id == tenant)
            )
        }
        invitation = (
            await session.execute(sa.select(invitations).where(invitations.c.tenant_id == tenant))
        ).one()
        delivery = (
            await session.execute(sa.select(deliveries).where(deliveries.c.tenant_id == tenant))
        ).one()
    for anna in (anna_1, anna_2):
        row = stored[anna["response_id"]]
        assert row.customer_id == pseudonym
        assert row.payload["customer"] == {"id": pseudonym}
        assert row.payload["comment"] == ERASED
        assert "user_agent" not in row.payload
        assert row.score == 3  # what counts is kept
    assert stored[jan["response_id"]].payload["customer"]["email"] == JAN
    assert stored[jan["response_id"]].payload["comment"] == "Jan Nowak: the courier was rude."
    assert (invitation.customer_id, invitation.payload["customer"]) == (
        pseudonym,
        {"id": pseudonym},
    )
    assert (bytes(delivery.body), delivery.headers) == (b"", {})
    [requested] = await events(sessions, tenant, ErasureRequestedV1.EVENT_TYPE)
    assert requested.partitionkey == f"{tenant}:erasure:{erasure_id}"
    assert requested.data.customer_ids == ("c-anna", "c-anna-crm")
    assert requested.data.emails == (ANNA.lower(),)
    assert sorted(requested.data.response_ids) == sorted(
        [anna_1["response_id"], anna_2["response_id"]]
    )
    assert requested.data.invitation_ids == ("inv-anna",)
    [own] = await events(sessions, tenant, ErasureCompletedV1.EVENT_TYPE)
    # Published events keyed by either customer id: Anna's two responses and her invitation.
    assert own.data.rows == {"responses": 2, "invitations": 1, "deliveries": 1, "outbox": 3}
    async with sessions() as session:
        kept = (
            await session.scalars(sa.select(OUTBOX.c.payload).where(OUTBOX.c.tenant_id == tenant))
        ).all()
    assert [p for p in kept if b"Kowalska" in p] == []

    status = await client.get(f"/v1/privacy/erasures/{erasure_id}", headers=admin)
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "in_progress"
    assert status.json()["services"]["ingest"]["rows"] == own.data.rows
    assert status.json()["services"]["scoring"] == {"status": "pending"}
    nothing_left = await client.post("/v1/privacy/export", json={"email": ANNA}, headers=admin)
    assert nothing_left.json()["responses"] == []
    for line in caplog.messages + [str(r.__dict__) for r in caplog.records]:
        assert ANNA.lower() not in line.lower()
        assert "c-anna" not in line
        assert "Kowalska" not in line


async def test_erasure_by_customer_id_finds_the_address_and_erases_it_under_other_ids_too(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
) -> None:
    tenant = f"it-privacy-{uuid.uuid4().hex[:10]}"
    writer = bearer(tenant, "responses:write", "read")
    admin = bearer(tenant, "admin")
    piotr = a_response("c-piotr", "piotr.zielinski@klient.example.pl", "Piotr Zieliński")
    # The same address under another customer id (a second system): found through the address.
    piotr_crm = a_response("c-piotr-crm", "piotr.zielinski@klient.example.pl", "P. Zieliński")
    jan = a_response("c-jan", JAN, "Jan Nowak")
    for body in (piotr, piotr_crm, jan):
        assert (await client.post("/v1/responses", json=body, headers=writer)).status_code == 202

    asked = await client.post(
        "/v1/privacy/erasures", json={"customer_id": "c-piotr"}, headers=admin
    )

    assert asked.status_code == 202, asked.text
    pseudonym = f"erased:{asked.json()['erasure_id']}"
    [requested] = await events(sessions, tenant, ErasureRequestedV1.EVENT_TYPE)
    # The id given and its address: every service also matches the address, so what was held
    # under the other customer id is erased too (below, and downstream).
    assert requested.data.customer_ids == ("c-piotr",)
    assert requested.data.emails == ("piotr.zielinski@klient.example.pl",)
    async with sessions() as session:
        stored = {
            r.response_id: r
            for r in await session.execute(
                sa.select(responses).where(responses.c.tenant_id == tenant)
            )
        }
    assert {stored[b["response_id"]].customer_id for b in (piotr, piotr_crm)} == {pseudonym}
    assert stored[piotr_crm["response_id"]].payload["comment"] == ERASED
    assert stored[jan["response_id"]].customer_id == "c-jan"


async def test_status_becomes_completed_when_every_service_reported(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
) -> None:
    tenant = f"it-privacy-{uuid.uuid4().hex[:10]}"
    admin = bearer(tenant, "admin")
    asked = await client.post("/v1/privacy/erasures", json={"customer_id": "c-x"}, headers=admin)
    erasure_id = uuid.UUID(asked.json()["erasure_id"])
    await relayed(sessions, tenant)
    assert len(await events(sessions, tenant, ErasureRequestedV1.EVENT_TYPE)) == 1
    runtime = runtime_of(app)
    for service, rows in (("scoring", {}), ("orchestrator", {"cases": 1}), ("notifier", {})):
        report: CloudEvent[ErasureCompletedV1] = new_event(
            ErasureCompletedV1(
                erasure_id=erasure_id, service=service, rows=rows, completed_at=runtime.clock.now()
            ),
            tenant_id=tenant,
            source=f"/closeloop/{service}",
            clock=runtime.clock,
        )
        for _ in range(2):  # a report delivered twice changes nothing
            async with runtime.transaction() as tx:
                await record_completion(tx.context(tenant), report)

    status = (await client.get(f"/v1/privacy/erasures/{erasure_id}", headers=admin)).json()

    assert status["status"] == "completed"
    assert status["services"]["orchestrator"]["rows"] == {"cases": 1}
    assert {s["status"] for s in status["services"].values()} == {"completed"}
    # The published request names the person: it leaves the outbox once every part is done.
    assert await events(sessions, tenant, ErasureRequestedV1.EVENT_TYPE) == []
    other_tenant = await client.get(
        f"/v1/privacy/erasures/{erasure_id}", headers=bearer(f"{tenant}-x", "admin")
    )
    assert other_tenant.status_code == 404


async def test_combined_export_lists_services_that_do_not_answer_as_unavailable(
    client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]
) -> None:
    tenant = f"it-privacy-{uuid.uuid4().hex[:10]}"
    body = a_response("c-ola", "ola@klient.example.pl", "Ola")
    await client.post("/v1/responses", json=body, headers=bearer(tenant, "responses:write"))

    answer = await client.post(
        "/v1/privacy/exports", json={"customer_id": "c-ola"}, headers=bearer(tenant, "admin")
    )

    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert sorted(document["unavailable"]) == ["notifier", "orchestrator", "scoring"]
    [response] = document["services"]["ingest"]["responses"]
    assert response["request"]["comment"] == "Ola: the courier was rude."
    assert document["identifiers"]["emails"] == ["ola@klient.example.pl"]


@pytest.mark.parametrize(
    ("scopes", "body", "status"),
    [
        (("read", "responses:write", "cases:write"), {"email": ANNA}, 403),
        (("admin",), {"email": ANNA, "customer_id": "c-anna"}, 422),
        (("admin",), {}, 422),
        (("admin",), {"email": "not an address"}, 422),
    ],
)
async def test_erasure_needs_the_admin_scope_and_exactly_one_identifier(
    client: httpx.AsyncClient,
    bearer: Callable[..., dict[str, str]],
    scopes: tuple[str, ...],
    body: dict[str, Any],
    status: int,
) -> None:
    tenant = f"it-privacy-{uuid.uuid4().hex[:10]}"
    answer = await client.post("/v1/privacy/erasures", json=body, headers=bearer(tenant, *scopes))
    assert answer.status_code == status, answer.text
