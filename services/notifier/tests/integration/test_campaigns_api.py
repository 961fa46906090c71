"""The campaigns API over HTTP (in process, the real PostgreSQL; no lifespan: no broker needed):
the tenant's list newest first with a cursor, a report, pause / resume / cancel, and problems."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import create_app
from closeloop_notifier.adapters.tables import metadata
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.change_summary import campaign_id_of
from closeloop_notifier.entrypoints.campaigns_api import build_campaigns_router
from services.notifier.tests.integration.campaign_support import (
    Audience,
    audience,
    change_summary,
    clock,
    customer,
    infra,
    received,
)

__all__ = ["audience", "clock", "infra"]  # fixtures

Bearer = Callable[..., dict[str, str]]


@pytest.fixture
async def api(settings: NotifierSettings, audience: Audience) -> AsyncIterator[httpx.AsyncClient]:
    runtime = ServiceRuntime(
        name="notifier", settings=settings, metadata=metadata, clock=audience.clock
    )
    app = create_app(title="campaigns", runtime=runtime, routers=[build_campaigns_router(runtime)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await runtime.engine.dispose()
    await runtime.worker_engine.dispose()


async def a_campaign(audience: Audience, *people: str) -> uuid.UUID:
    now = audience.clock.now()
    await audience.handle(
        [received(audience.tenant, f"r-{c}", customer(c), at=now) for c in people]
    )
    event = change_summary(audience.tenant, at=now, response_ids=[f"r-{c}" for c in people])
    await audience.open(event, rate_per_second=1)
    return campaign_id_of(audience.tenant, event.id)


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:closeloop:problem:{kind}"
    return body


async def test_campaigns_are_listed_newest_first_page_by_page(
    api: httpx.AsyncClient, audience: Audience, bearer: Bearer
) -> None:
    headers = bearer(audience.tenant, "read")
    older = await a_campaign(audience, "anna")
    audience.clock.advance(timedelta(minutes=1))
    newer = await a_campaign(audience, "bob")

    first = await api.get("/v1/campaigns", params={"limit": 1}, headers=headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [c["campaign_id"] for c in page["campaigns"]] == [str(newer)]
    assert page["campaigns"][0]["title"] == "Czytelne faktury"
    assert page["campaigns"][0]["status"] == "expanding"
    second = await api.get(
        "/v1/campaigns", params={"limit": 1, "cursor": page["next_cursor"]}, headers=headers
    )
    assert [c["campaign_id"] for c in second.json()["campaigns"]] == [str(older)]
    assert second.json()["next_cursor"] is None

    paused = await api.get("/v1/campaigns", params={"status": "paused"}, headers=headers)
    assert paused.json()["campaigns"] == []
    others = await api.get("/v1/campaigns", headers=bearer(f"{audience.tenant}-x", "read"))
    assert others.json()["campaigns"] == []
    problem(
        await api.get("/v1/campaigns", params={"cursor": "nonsense"}, headers=headers),
        400,
        "bad-cursor",
    )


async def test_a_campaign_is_reported_paused_resumed_and_cancelled_over_http(
    api: httpx.AsyncClient, audience: Audience, bearer: Bearer
) -> None:
    reader = bearer(audience.tenant, "read")
    writer = bearer(audience.tenant, "cases:write")
    campaign_id = await a_campaign(audience, "anna", "bob", "cecil")
    await audience.expand_all(audience.expander())

    found = await api.get(f"/v1/campaigns/{campaign_id}", headers=reader)
    assert found.status_code == 200, found.text
    report = found.json()
    assert (report["status"], report["recipients"]) == ("sending", 3)
    assert report["messages"]["pending"] == 3
    assert report["estimated_seconds_left"] == pytest.approx(3.0)

    problem(await api.post(f"/v1/campaigns/{campaign_id}/pause", headers=reader), 403, "forbidden")
    paused = await api.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert paused.json()["messages"]["held"] == 3
    again = await api.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer)
    assert again.json()["status"] == "paused"

    resumed = await api.post(f"/v1/campaigns/{campaign_id}/resume", headers=writer)
    assert (resumed.json()["status"], resumed.json()["messages"]["pending"]) == ("sending", 3)
    cancelled = await api.post(f"/v1/campaigns/{campaign_id}/cancel", headers=writer)
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["estimated_seconds_left"] == 0

    refused = problem(
        await api.post(f"/v1/campaigns/{campaign_id}/resume", headers=writer),
        409,
        "campaign-finished",
    )
    assert refused["campaign_status"] == "cancelled"
    unknown = uuid.uuid4()
    problem(await api.get(f"/v1/campaigns/{unknown}", headers=reader), 404, "not-found")
    problem(await api.post(f"/v1/campaigns/{unknown}/cancel", headers=writer), 404, "not-found")
    other_tenant = bearer(f"{audience.tenant}-x", "read", "cases:write")
    problem(await api.get(f"/v1/campaigns/{campaign_id}", headers=other_tenant), 404, "not-found")
    problem(
        await api.post(f"/v1/campaigns/{campaign_id}/pause", headers=other_tenant),
        404,
        "not-found",
    )
