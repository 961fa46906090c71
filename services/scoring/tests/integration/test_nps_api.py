"""Counting responses (the `response.received` handler) and reading NPS over HTTP, against the
real PostgreSQL: windows of answer days, segments of every dimension, bad parameters refused. The
handler is called directly; the consumer around it is tested in libs/common."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import SystemClock
from closeloop_common.db import transaction
from closeloop_common.events import (
    DIMENSIONS,
    Customer,
    ResponseReceivedV1,
    Segments,
    categorize,
    new_event,
)
from closeloop_common.runtime import ServiceRuntime
from closeloop_scoring.adapters.tables import metadata
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import compare, estimate
from closeloop_scoring.entrypoints.app import create_scoring_app
from closeloop_scoring.service_layer.counting import count_response

OUTBOX = metadata.tables["scoring.outbox"]
PROBLEM = "application/problem+json"
MAY_5 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)
MAY_6 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    """The scoring app without its lifespan: no consumer or relay, the tests call the handler."""
    app = create_scoring_app()
    yield app
    await _runtime(app).engine.dispose()


def _runtime(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def tenant(app: FastAPI) -> AsyncIterator[str]:
    tenant = f"it-nps-{uuid.uuid4().hex[:12]}"
    yield tenant
    # No relay runs here: mark this tenant's nps.updated events as sent, so that no later relay
    # (an e2e stack on the same database) publishes them to this run's deleted topics.
    async with transaction(_runtime(app).sessions) as session:
        await session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
            .values(published_at=sa.func.now())
        )


async def count(app: FastAPI, tenant: str, *, score: int, at: datetime, region: str) -> None:
    """Count one response through the handler, in one transaction, as the consumer does."""
    runtime = _runtime(app)
    data = ResponseReceivedV1(
        response_id=f"r-{uuid.uuid4().hex}",
        survey_id="relationship-2026",
        customer=Customer(id=f"cust-{uuid.uuid4().hex[:8]}"),
        score=score,
        category=categorize(score),
        answered_at=at,
        received_at=at,
        segments=Segments(region=region, touchpoint="renewal"),
        source="api",
    )
    event = new_event(data, tenant_id=tenant, source="/closeloop/ingest", clock=SystemClock())
    async with runtime.transaction() as tx:
        await count_response(tx.context(event.tenantid), event)


@pytest.fixture
async def three_answers(app: FastAPI, tenant: str) -> str:
    """A promoter on 5 May (PL), a detractor (PL) and a passive (DE) on 6 May."""
    await count(app, tenant, score=10, at=MAY_5, region="PL")
    await count(app, tenant, score=2, at=MAY_6, region="PL")
    await count(app, tenant, score=8, at=MAY_6, region="DE")
    return tenant


async def get(client: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    answer = await client.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_overall_nps_counts_every_answer_with_its_margin_of_error(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(client, bearer(three_answers, "read"), "/v1/nps")

    assert body["tenant_id"] == three_answers
    assert (body["dimension"], body["segment"]) == ("overall", "all")
    assert body["window"] == {"from": None, "to": None}
    assert (body["responses"], body["promoters"], body["passives"], body["detractors"]) == (
        3,
        1,
        1,
        1,
    )
    assert body["nps"] == 0.0
    assert body["margin_of_error_95"] > 0


async def test_a_window_of_days_counts_only_the_answers_given_in_it(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(
        client,
        bearer(three_answers, "read"),
        "/v1/nps",
        **{"from": "2024-05-06", "to": "2024-05-06"},
    )

    assert body["window"] == {"from": "2024-05-06", "to": "2024-05-06"}
    assert (body["responses"], body["nps"]) == (2, -50.0)


async def test_the_widest_window_of_dates_is_served(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(
        client,
        bearer(three_answers, "read"),
        "/v1/nps",
        **{"from": "0001-01-01", "to": "9999-12-31"},
    )

    assert body["window"] == {"from": "0001-01-01", "to": "9999-12-31"}
    assert body["responses"] == 3


async def test_one_segment_of_a_dimension_counts_its_answers_only(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(
        client, bearer(three_answers, "read"), "/v1/nps", dimension="region", segment="PL"
    )

    assert (body["dimension"], body["segment"]) == ("region", "PL")
    assert (body["responses"], body["promoters"], body["detractors"], body["nps"]) == (2, 1, 1, 0.0)


async def test_nps_by_segment_lists_every_segment_most_answers_first(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(client, bearer(three_answers, "read"), "/v1/nps/region")

    assert body["dimension"] == "region"
    assert [(s["segment"], s["responses"], s["nps"]) for s in body["segments"]] == [
        ("PL", 2, 0.0),
        ("DE", 1, 0.0),
    ]


async def test_every_dimension_of_the_contracts_is_served_and_no_other(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    for dimension in DIMENSIONS:
        await get(client, bearer(three_answers, "read"), f"/v1/nps/{dimension}")
    touchpoints = await get(client, bearer(three_answers, "read"), "/v1/nps/touchpoint")
    unknown = await client.get(
        "/v1/nps/country", headers=bearer(three_answers, "read", "responses:write", "cases:write")
    )

    assert [s["segment"] for s in touchpoints["segments"]] == ["renewal"]
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["location"] == ["path", "dimension"]


async def test_days_and_dates_together_are_an_invalid_window(
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    answer = await client.get(
        "/v1/nps",
        params={"days": 7, "from": "2024-05-01"},
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )

    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == "urn:closeloop:problem:invalid-window"


async def test_a_nul_character_in_the_segment_is_a_validation_problem(
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    answer = await client.get(
        "/v1/nps",
        params={"dimension": "region", "segment": "P\x00L"},
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert [(e["location"], e["kind"]) for e in answer.json()["errors"]] == [
        (["query", "segment"], "nul_character")
    ]


async def test_the_nps_comes_with_its_interval_by_the_chosen_method(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    headers = bearer(three_answers, "read")
    adjusted = await get(client, headers, "/v1/nps")
    wald = await get(client, headers, "/v1/nps", method="wald", confidence=0.9)

    # One promoter, one passive, one detractor; the figures are those of the statistics module.
    expected = estimate(NpsCounts(1, 1, 1))
    assert (adjusted["n"], adjusted["method"], adjusted["confidence"]) == (3, "adjusted-wald", 0.95)
    assert adjusted["standard_error"] == pytest.approx(expected.standard_error, abs=1e-4)
    assert adjusted["ci_low"] == pytest.approx(expected.ci_low, abs=0.01)
    assert adjusted["ci_high"] == pytest.approx(expected.ci_high, abs=0.01)
    assert adjusted["insufficient"] is True  # 3 answers, below the default 30
    assert (wald["method"], wald["confidence"]) == ("wald", 0.9)
    assert wald["ci_low"] == pytest.approx(-wald["ci_high"], abs=0.01)  # centred on NPS 0
    assert wald["margin_of_error"] < adjusted["margin_of_error_95"]  # 90 % is narrower

    bad = await client.get("/v1/nps", params={"method": "bootstrap"}, headers=headers)
    assert bad.status_code == 422
    assert (
        await client.get("/v1/nps", params={"confidence": 1.5}, headers=headers)
    ).status_code == 422


async def test_an_empty_segment_is_no_data_never_zero(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = await get(
        client, bearer(three_answers, "read"), "/v1/nps", dimension="region", segment="FR"
    )
    assert (body["n"], body["nps"], body["ci_low"], body["ci_high"]) == (0, None, None, None)


async def test_two_segments_or_two_windows_are_compared(
    client: httpx.AsyncClient,
    three_answers: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    headers = bearer(three_answers, "read")
    regions = await get(
        client,
        headers,
        "/v1/nps/compare",
        dimension="region",
        segment="PL",
        baseline_segment="DE",
        method="wald",
    )
    days = await get(
        client,
        headers,
        "/v1/nps/compare",
        **{"from": "2024-05-06", "to": "2024-05-06", "baseline_from": "2024-05-05"},
        baseline_to="2024-05-05",
    )

    assert (regions["compared"]["nps"], regions["baseline"]["nps"]) == (0.0, 0.0)
    assert regions["comparison"]["difference"] == 0.0
    assert regions["comparison"]["significant"] is False
    assert days["compared"]["n"] == 2
    assert days["baseline"]["n"] == 1
    expected = compare(NpsCounts(0, 1, 1), NpsCounts(1, 0, 0))
    assert expected is not None
    assert days["comparison"]["difference"] == pytest.approx(expected.difference, abs=0.01)
    assert days["comparison"]["p_value"] == pytest.approx(expected.p_value, abs=1e-5)
    same = await client.get("/v1/nps/compare", headers=headers)
    assert same.status_code == 400
    nobody = await get(
        client, headers, "/v1/nps/compare", dimension="region", segment="PL", baseline_segment="FR"
    )
    assert nobody["comparison"] is None
