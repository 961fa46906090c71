"""Ingest's HTTP API in-process, with its lifespan (producer and outbox relay), against the real
PostgreSQL and Kafka broker: accept, deduplicate, refuse, publish, and the operations endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import closeloop_ingest
from closeloop_common.events import ResponseReceivedV1, Topic, decode_event
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import TopicTail
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.entrypoints.app import create_ingest_app

OUTBOX = metadata.tables["ingest.outbox"]
RESPONSES = metadata.tables["ingest.responses"]
PROBLEM = "application/problem+json"
RECEIVED = ResponseReceivedV1.EVENT_TYPE


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    """One ingest app for the module, running its lifespan (producer and outbox relay)."""
    app = create_ingest_app()
    async with app.router.lifespan_context(app):
        yield app
        # Let the relay publish what the tests queued, so no row of this run's topics (deleted at
        # the end of the run) is left behind for a later run's relay.
        await _wait_until_relayed(_runtime(app).sessions, _runtime(app).settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    return _runtime(app).sessions


@pytest.fixture
def tenant() -> str:
    return f"it-ingest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def auth(bearer: Callable[..., dict[str, str]], tenant: str) -> dict[str, str]:
    """The tenant's token: it may post responses and read them."""
    return bearer(tenant, "responses:write", "read")


def _runtime(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


async def _wait_until_relayed(
    sessions: async_sessionmaker[AsyncSession], settings: CommonSettings, timeout: float = 15
) -> None:
    prefix = f"{settings.kafka_topic_prefix}."
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with sessions() as session:
            left = await session.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None), OUTBOX.c.topic.startswith(prefix))
            )
        if left == 0:
            return
        await asyncio.sleep(0.1)


def a_response(**overrides: Any) -> dict[str, Any]:
    """A valid canonical response with a fresh response id and customer id."""
    body: dict[str, Any] = {
        "response_id": f"r-{uuid.uuid4().hex}",
        "survey_id": "relationship-2026",
        "customer": {
            "id": f"cust-{uuid.uuid4().hex[:10]}",
            "email": "jan.kowalski@klient.example.pl",
            "name": "Jan Kowalski",
            "locale": "pl-PL",
        },
        "account_id": "hurtownia-kowalski",
        "score": 3,
        "comment": "Dostawa spóźniła się o tydzień.",
        "answered_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
        "segments": {"product": "billing", "region": "PL", "channel": "email"},
    }
    body.update(overrides)
    return body


async def outbox_rows(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[Any]:
    """The `response.received` rows this tenant (unique per test) put into the ingest outbox."""
    async with sessions() as session:
        rows = await session.execute(
            sa.select(OUTBOX.c.event_id, OUTBOX.c.key, OUTBOX.c.payload).where(
                OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == RECEIVED
            )
        )
        return list(rows.all())


def field_errors(problem: dict[str, Any]) -> list[tuple[list[Any], str]]:
    return [(e["location"], e["kind"]) for e in problem["errors"]]


async def test_accepted_response_is_readable_by_its_tenant_only(
    client: httpx.AsyncClient,
    tenant: str,
    auth: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = a_response(score=2)

    posted = await client.post("/v1/responses", json=body, headers=auth)

    assert posted.status_code == 202, posted.text
    accepted = posted.json()
    assert accepted["status"] == "accepted"
    assert accepted["category"] == "detractor"
    assert accepted["tenant_id"] == tenant
    assert accepted["response_id"] == body["response_id"]
    assert accepted["event_id"]

    got = await client.get(f"/v1/responses/{body['response_id']}", headers=auth)
    assert got.status_code == 200, got.text
    stored = got.json()
    assert stored["tenant_id"] == tenant
    assert stored["event_id"] == accepted["event_id"]
    assert stored["category"] == "detractor"
    assert stored["source"] == "api"
    assert stored["response"]["score"] == 2
    assert stored["response"]["customer"] == body["customer"]

    other = await client.get(
        f"/v1/responses/{body['response_id']}", headers=bearer(f"{tenant}-other", "read")
    )
    assert other.status_code == 404
    assert other.headers["content-type"] == PROBLEM
    assert other.json()["type"] == "urn:closeloop:problem:not-found"


async def test_repeated_response_is_a_duplicate_with_one_outbox_event(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    auth: dict[str, str],
) -> None:
    body = a_response(score=9)
    headers = auth

    first = await client.post("/v1/responses", json=body, headers=headers)
    again = await client.post("/v1/responses", json=body, headers=headers)

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["category"] == "promoter"
    assert again.json()["event_id"] == first.json()["event_id"]
    rows = await outbox_rows(sessions, tenant)
    assert [r.event_id for r in rows] == [first.json()["event_id"]]
    assert body["response_id"].encode() in rows[0].payload


async def test_same_instant_written_with_another_offset_is_a_duplicate(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    auth: dict[str, str],
) -> None:
    answered = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    body = a_response(answered_at=answered.isoformat())
    warsaw = answered.astimezone(timezone(timedelta(hours=2))).isoformat()
    headers = auth

    first = await client.post("/v1/responses", json=body, headers=headers)
    again = await client.post(
        "/v1/responses", json={**body, "answered_at": warsaw}, headers=headers
    )

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert len(await outbox_rows(sessions, tenant)) == 1


async def test_reused_response_id_with_another_score_is_a_conflict_and_keeps_the_original(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    auth: dict[str, str],
) -> None:
    body = a_response(score=3)
    headers = auth
    first = await client.post("/v1/responses", json=body, headers=headers)
    assert first.status_code == 202, first.text

    conflicting = await client.post("/v1/responses", json={**body, "score": 10}, headers=headers)

    assert conflicting.status_code == 409
    assert conflicting.headers["content-type"] == PROBLEM
    assert conflicting.json()["type"] == "urn:closeloop:problem:response-conflict"
    stored = (await client.get(f"/v1/responses/{body['response_id']}", headers=headers)).json()
    assert stored["response"]["score"] == 3
    assert stored["category"] == "detractor"
    assert stored["event_id"] == first.json()["event_id"]
    assert len(await outbox_rows(sessions, tenant)) == 1


@pytest.mark.parametrize(
    ("change", "drop", "location", "kind"),
    [
        pytest.param({"score": 11}, None, ["body", "score"], "less_than_equal", id="score-11"),
        pytest.param({"score": "7"}, None, ["body", "score"], "int_type", id="score-as-string"),
        pytest.param({}, "customer", ["body", "customer"], "missing", id="missing-customer"),
        pytest.param(
            {"channel": "sms"}, None, ["body", "channel"], "extra_forbidden", id="extra-field"
        ),
    ],
)
async def test_invalid_body_is_a_validation_problem_naming_the_field(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    change: dict[str, Any],
    drop: str | None,
    location: list[str],
    kind: str,
    auth: dict[str, str],
) -> None:
    body = a_response(**change)
    if drop is not None:
        del body[drop]

    answer = await client.post("/v1/responses", json=body, headers=auth)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == "urn:closeloop:problem:validation"
    assert field_errors(problem) == [(location, kind)]
    assert await outbox_rows(sessions, tenant) == []


async def test_answer_a_day_in_the_future_is_refused(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    auth: dict[str, str],
) -> None:
    body = a_response(answered_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())

    answer = await client.post("/v1/responses", json=body, headers=auth)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == "urn:closeloop:problem:answered-in-future"
    missing = await client.get(f"/v1/responses/{body['response_id']}", headers=auth)
    assert missing.status_code == 404
    assert await outbox_rows(sessions, tenant) == []


@pytest.mark.parametrize(
    ("change", "location"),
    [
        pytest.param({"comment": "Zwrot\x00"}, ["body", "comment"], id="comment"),
        pytest.param({"survey_id": "\x00"}, ["body", "survey_id"], id="survey-id"),
        pytest.param({"customer": {"id": "c-\x00"}}, ["body", "customer", "id"], id="customer"),
        pytest.param(
            {"segments": {"region": "P\x00L"}}, ["body", "segments", "region"], id="segment"
        ),
    ],
)
async def test_a_nul_character_in_the_body_is_a_validation_problem_and_nothing_is_stored(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    change: dict[str, Any],
    location: list[str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = a_response(**change)

    answer = await client.post(
        "/v1/responses", json=body, headers=bearer(tenant, "read", "responses:write", "cases:write")
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == "urn:closeloop:problem:validation"
    assert field_errors(answer.json()) == [(location, "nul_character")]
    missing = await client.get(
        f"/v1/responses/{body['response_id']}",
        headers=bearer(tenant, "read", "responses:write", "cases:write"),
    )
    assert missing.status_code == 404
    assert await outbox_rows(sessions, tenant) == []


@pytest.mark.parametrize("answered_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_an_answer_time_beyond_the_utc_range_is_a_validation_problem(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    answered_at: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = a_response(answered_at=answered_at)

    answer = await client.post(
        "/v1/responses", json=body, headers=bearer(tenant, "read", "responses:write", "cases:write")
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["type"] == "urn:closeloop:problem:validation"
    assert field_errors(answer.json()) == [(["body", "answered_at"], "datetime_out_of_range")]
    assert await outbox_rows(sessions, tenant) == []


async def test_the_earliest_answer_time_is_accepted_and_read_back(
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = a_response(answered_at="0001-01-01T00:00:00+00:00")
    headers = bearer(tenant, "read", "responses:write", "cases:write")

    posted = await client.post("/v1/responses", json=body, headers=headers)

    assert posted.status_code == 202, posted.text
    stored = (await client.get(f"/v1/responses/{body['response_id']}", headers=headers)).json()
    assert stored["response"]["answered_at"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("offset", "instant"),
    [
        ("+19:21", datetime(2026, 2, 8, 8, 8, 44, tzinfo=UTC)),
        ("-22:12", datetime(2026, 2, 10, 1, 41, 44, tzinfo=UTC)),
    ],
)
async def test_an_answer_time_with_an_offset_over_16_hours_is_stored_at_its_instant(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
    offset: str,
    instant: datetime,
) -> None:
    # Found by the API fuzzer: PostgreSQL refuses offsets over 15:59 that ISO 8601 and Python
    # allow, and ingest passed the answer time to it as text with its offset (a 500).
    body = a_response(answered_at=f"2026-02-09T03:29:44{offset}")
    headers = bearer(tenant, "read", "responses:write")

    posted = await client.post("/v1/responses", json=body, headers=headers)

    assert posted.status_code == 202, posted.text
    read = await client.get(f"/v1/responses/{body['response_id']}", headers=headers)
    assert read.json()["response"]["answered_at"] == body["answered_at"]
    async with sessions() as session:
        stored = await session.scalar(
            sa.select(RESPONSES.c.answered_at).where(
                RESPONSES.c.tenant_id == tenant, RESPONSES.c.response_id == body["response_id"]
            )
        )
    assert stored == instant


async def test_a_nul_character_in_the_response_id_of_a_read_is_a_validation_problem(
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    answer = await client.get(
        "/v1/responses/r-%00", headers=bearer(tenant, "read", "responses:write", "cases:write")
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert field_errors(answer.json()) == [(["path", "response_id"], "nul_character")]


def version_1_fingerprint(body: dict[str, Any]) -> str:
    """How the first version fingerprinted a response: a dump of the whole model, in UTC."""
    response = CanonicalResponse.model_validate(body)
    in_utc = response.model_copy(update={"answered_at": response.answered_at.astimezone(UTC)})
    return hashlib.sha256(in_utc.model_dump_json().encode()).hexdigest()


def fingerprint_migration() -> ModuleType:
    versions = Path(closeloop_ingest.__file__).parent / "migrations" / "versions"
    path = versions / "0002_canonical_fingerprints.py"
    spec = importlib.util.spec_from_file_location("ingest_0002", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_resend_of_a_response_fingerprinted_by_version_1_is_a_duplicate_after_migrating(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    body = a_response(comment="Żółw byłby szybszy.")
    headers = bearer(tenant, "read", "responses:write", "cases:write")
    first = await client.post("/v1/responses", json=body, headers=headers)
    assert first.status_code == 202, first.text
    async with sessions() as session, session.begin():
        await session.execute(
            sa.update(RESPONSES)
            .where(RESPONSES.c.tenant_id == tenant)
            .values(fingerprint=version_1_fingerprint(body))
        )

    async with _runtime(app).engine.begin() as connection:
        await connection.run_sync(fingerprint_migration().rewrite_fingerprints)
    again = await client.post("/v1/responses", json=body, headers=headers)

    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert len(await outbox_rows(sessions, tenant)) == 1


async def test_unauthenticated_response_is_refused_and_nothing_is_accepted(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tenant: str
) -> None:
    body = a_response()

    # Naming a tenant in a header is no credential.
    answer = await client.post("/v1/responses", json=body, headers={"X-Tenant-Id": tenant})

    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == "urn:closeloop:problem:unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert await outbox_rows(sessions, tenant) == []


async def test_a_read_only_token_cannot_post_a_response(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    answer = await client.post("/v1/responses", json=a_response(), headers=bearer(tenant, "read"))

    assert answer.status_code == 403, answer.text
    assert answer.json()["type"] == "urn:closeloop:problem:forbidden"
    assert await outbox_rows(sessions, tenant) == []


async def test_the_response_belongs_to_the_token_s_tenant_not_to_a_header(
    client: httpx.AsyncClient, tenant: str, auth: dict[str, str]
) -> None:
    body = a_response()

    posted = await client.post(
        "/v1/responses", json=body, headers={**auth, "X-Tenant-Id": "someone-else"}
    )

    assert posted.status_code == 202, posted.text
    assert posted.json()["tenant_id"] == tenant


async def test_accepted_response_is_published_as_a_cloudevent_keyed_by_tenant_and_customer(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, auth: dict[str, str]
) -> None:
    settings = _runtime(app).settings
    body = a_response(score=8)
    customer_id = body["customer"]["id"]
    posted = await client.post("/v1/responses", json=body, headers=auth)
    assert posted.status_code == 202, posted.text
    event_id = posted.json()["event_id"]

    def ours(records: list[ConsumerRecord[bytes, bytes]]) -> list[ConsumerRecord[bytes, bytes]]:
        return [r for r in records if event_id.encode() in (r.value or b"")]

    async with TopicTail(
        settings.kafka_bootstrap_servers, Topic.RESPONSES.address(settings.kafka_topic_prefix)
    ) as tail:
        records = ours(await tail.until(lambda rs: bool(ours(rs))))

    assert len(records) == 1
    record = records[0]
    assert record.key == f"{tenant}:{customer_id}".encode()
    assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")
    event = decode_event(record.value or b"")
    assert event.id == event_id
    assert event.type == RECEIVED
    assert event.tenantid == tenant
    assert event.partitionkey == f"{tenant}:{customer_id}"
    assert event.source == "/closeloop/ingest"
    data = event.data
    assert isinstance(data, ResponseReceivedV1)
    assert (data.response_id, data.score, data.category.value) == (
        body["response_id"],
        8,
        "passive",
    )
    assert data.source == "api"


async def test_readiness_reports_database_and_broker_ok(client: httpx.AsyncClient) -> None:
    answer = await client.get("/readyz")

    assert answer.status_code == 200, answer.text
    ready = answer.json()
    assert ready["status"] == "ready"
    assert ready["checks"]["database"] == "ok"
    assert ready["checks"]["kafka"] == "ok"
    assert ready["checks"]["outbox-relay"] == "ok"


async def test_metrics_count_http_requests_by_route_and_status(
    client: httpx.AsyncClient, tenant: str, auth: dict[str, str]
) -> None:
    posted = await client.post("/v1/responses", json=a_response(), headers=auth)
    assert posted.status_code == 202, posted.text

    answer = await client.get("/metrics")

    assert answer.status_code == 200
    assert (
        'closeloop_http_requests_total{method="POST",route="/v1/responses",status="202"}'
        in answer.text
    )
