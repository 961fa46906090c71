"""SurveyMonkey's and Qualtrics' webhooks end to end through ingest's HTTP app (in-process, with
its lifespan: the fetch worker and the outbox relay) against the real PostgreSQL: the signed
webhook queues a fetch, the worker fetches the response from a fake vendor API (a real uvicorn
server serving the documented answers), retries while the vendor fails and accepts the response
once it recovers; a missing response fails the fetch; repeats and forgeries queue nothing more."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from closeloop_common.events import ResponseReceivedV1
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints.app import create_ingest_app

FIXTURES = Path(__file__).parents[1] / "fixtures"
OUTBOX = metadata.tables["ingest.outbox"]
FETCHES = metadata.tables["ingest.fetches"]
RECEIVED = ResponseReceivedV1.EVENT_TYPE
Kind = Literal["surveymonkey", "qualtrics"]
KINDS: tuple[Kind, ...] = ("surveymonkey", "qualtrics")

SM_SIGNING_KEY = "sm-client-id&sm-client-secret"  # `<api_key>&<api_secret>`
SM_TOKEN = "tok-sm-integration"
QX_SHARED_KEY = "qualtrics-shared-key"
QX_TOKEN = "tok-qx-integration"
QX_TOPIC = "acmebrand.surveyengine.completedResponse.SV_cVn9uBwheR9hz01"
# The ids the documented webhook fixtures name, and so the canonical response ids.
RESPONSE_ID: dict[Kind, str] = {
    "surveymonkey": "surveymonkey:118823455901",
    "qualtrics": "qualtrics:R_suq806jn8LGzhx7",
}


def fixture_text(path: str) -> str:
    return (FIXTURES / path).read_text(encoding="utf-8")


@dataclass
class Script:
    """What the fake API answers one tenant: 5xx while `failing`, 404 when `missing`."""

    failing: bool = False
    missing: bool = False
    answered_at: str | None = None  # in place of the documented answer time
    answered: list[int] = field(default_factory=list)  # status of every request, in order


class Vendor:
    """SurveyMonkey's and Qualtrics' response endpoints under `/<tenant>/`, each tenant scripted
    on its own (tests share the server and the app's fetch worker)."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}

    def script(self, tenant: str) -> Script:
        return self.scripts.setdefault(tenant, Script())

    async def surveymonkey(self, request: Request) -> Response:
        authorised = request.headers.get("authorization") == f"Bearer {SM_TOKEN}"
        return self._answer(request, authorised, "surveymonkey/details_promoter.json")

    @staticmethod
    def _surveymonkey_answered_at(document: dict[str, Any], at: str) -> None:
        document["date_created"] = document["date_modified"] = at

    async def qualtrics(self, request: Request) -> Response:
        authorised = request.headers.get("x-api-token") == QX_TOKEN
        return self._answer(request, authorised, "qualtrics/response_promoter.json")

    @staticmethod
    def _qualtrics_answered_at(document: dict[str, Any], at: str) -> None:
        document["result"]["values"]["recordedDate"] = at

    def _answer(self, request: Request, authorised: bool, document: str) -> Response:
        script = self.script(request.path_params["tenant"])
        answer: Response
        if not authorised:
            answer = JSONResponse({"error": "unauthorized"}, status_code=401)
        elif script.failing:
            # Both kinds of outage the vendors show: an error and an overloaded gateway.
            status = 500 if len(script.answered) % 2 == 0 else 503
            answer = PlainTextResponse("unavailable", status_code=status)
        elif script.missing:
            answer = JSONResponse({"error": "not found"}, status_code=404)
        else:
            answer = JSONResponse(self._document(document, script.answered_at))
        script.answered.append(answer.status_code)
        return answer

    def _document(self, path: str, answered_at: str | None) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(fixture_text(path))
        if answered_at is not None:
            if path.startswith("surveymonkey/"):
                self._surveymonkey_answered_at(document, answered_at)
            else:
                self._qualtrics_answered_at(document, answered_at)
        return document


@pytest.fixture(scope="module")
async def vendor() -> AsyncIterator[tuple[str, Vendor]]:
    """The fake vendor API on an ephemeral port: its base URL and its scripts."""
    fake = Vendor()
    api = Starlette(
        routes=[
            Route(
                "/{tenant}/v3/surveys/{survey_id}/responses/{response_id}/details",
                fake.surveymonkey,
            ),
            Route("/{tenant}/API/v3/surveys/{survey_id}/responses/{response_id}", fake.qualtrics),
        ]
    )
    config = uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", fake
    server.should_exit = True
    await serving


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    """One ingest app for the module; retries and polls of its fetch worker in tens of ms."""
    settings = IngestSettings(
        fetch_retry_base_seconds=0.05,
        fetch_max_backoff_seconds=1,
        fetch_poll_seconds=0.05,
        fetch_timeout_seconds=2,
    )
    app = create_ingest_app(settings)
    async with app.router.lifespan_context(app):
        yield app
        # Let the relay publish what the tests queued (this run's topics are deleted at the end).
        await until(lambda: _nothing_to_relay(app), timeout=15, what="the outbox relayed")


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
    return f"it-fetch-{uuid.uuid4().hex[:12]}"


def _runtime(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


async def _nothing_to_relay(app: FastAPI) -> bool:
    prefix = f"{_runtime(app).settings.kafka_topic_prefix}."
    async with _runtime(app).sessions() as session:
        left = await session.scalar(
            sa.select(sa.func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.published_at.is_(None), OUTBOX.c.topic.startswith(prefix))
        )
    return left == 0


async def until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 10, what: str
) -> None:
    """Wait until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def put_source(
    client: httpx.AsyncClient, admin: dict[str, str], kind: Kind, api_base: str
) -> str:
    """Create the tenant's source of `kind` reading from the fake API; its webhook path."""
    secret, token = (
        (SM_SIGNING_KEY, SM_TOKEN) if kind == "surveymonkey" else (QX_SHARED_KEY, QX_TOKEN)
    )
    answer = await client.put(
        f"/v1/sources/{kind}",
        headers=admin,
        json={"kind": kind, "secrets": [secret], "api": {"base_url": api_base, "token": token}},
    )
    assert answer.status_code == 201, answer.text
    webhook_url: str = answer.json()["webhook_url"]
    return webhook_url.removeprefix("http://test")


def signed_webhook(kind: Kind, *, key: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The tool's documented webhook body, signed the way the tool signs it."""
    if kind == "surveymonkey":
        body = fixture_text("surveymonkey/webhook_response_completed.json").encode()
        digest = hmac.new((key or SM_SIGNING_KEY).encode(), body, hashlib.sha1).digest()
        return body, {
            "content-type": "application/json",
            "sm-apikey": "sm-client-id",
            "sm-signature": base64.b64encode(digest).decode(),
        }
    message = fixture_text("qualtrics/event_msg.json").strip()
    signature = hmac.new((key or QX_SHARED_KEY).encode(), message.encode(), hashlib.sha512)
    form = {"Topic": QX_TOPIC, "MSG": message, "HMAC": signature.hexdigest()}
    return urlencode(form).encode(), {"content-type": "application/x-www-form-urlencoded"}


async def fetch_rows(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[Any]:
    async with sessions() as session:
        rows = await session.execute(
            sa.select(FETCHES).where(FETCHES.c.tenant_id == tenant).order_by(FETCHES.c.id)
        )
        return list(rows.all())


async def received_events(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[Any]:
    async with sessions() as session:
        rows = await session.execute(
            sa.select(OUTBOX.c.event_id, OUTBOX.c.payload).where(
                OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == RECEIVED
            )
        )
        return list(rows.all())


async def only_fetch(sessions: async_sessionmaker[AsyncSession], tenant: str) -> Any:
    rows = await fetch_rows(sessions, tenant)
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("kind", KINDS)
async def test_fetch_stays_pending_while_the_vendor_fails_and_accepts_the_response_once_it_recovers(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    vendor: tuple[str, Vendor],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
    kind: Kind,
) -> None:
    base, fake = vendor
    script = fake.script(tenant)
    script.failing = True
    webhook = await put_source(client, bearer(tenant, "admin"), kind, f"{base}/{tenant}")
    reader = bearer(tenant, "read")
    body, headers = signed_webhook(kind)

    posted = await client.post(webhook, content=body, headers=headers)

    assert posted.status_code == 202, posted.text
    assert posted.json() == {"status": "fetch_queued"}
    seen_attempts: list[int] = []

    async def failed_several_times() -> bool:
        row = await only_fetch(sessions, tenant)
        assert row.status == "pending", row
        seen_attempts.append(row.attempts)
        return row.attempts >= 4 and len(script.answered) >= 4

    await until(failed_several_times, what="four failed attempts")
    assert seen_attempts == sorted(seen_attempts)
    assert {500, 503} <= set(script.answered)
    pending = await only_fetch(sessions, tenant)
    assert pending.last_error is not None
    assert "answered 50" in pending.last_error
    assert (
        await client.get(f"/v1/responses/{RESPONSE_ID[kind]}", headers=reader)
    ).status_code == 404
    assert await received_events(sessions, tenant) == []

    script.failing = False

    async def fetched() -> bool:
        return bool((await only_fetch(sessions, tenant)).status == "done")

    await until(fetched, what="the fetch done")
    done = await only_fetch(sessions, tenant)
    assert list(done.response_ids) == [RESPONSE_ID[kind]]
    assert done.last_error is None
    assert done.finished_at is not None
    got = await client.get(f"/v1/responses/{RESPONSE_ID[kind]}", headers=reader)
    assert got.status_code == 200, got.text
    assert got.json()["source"] == kind
    assert got.json()["category"] == "promoter"
    events = await received_events(sessions, tenant)
    assert len(events) == 1
    assert got.json()["event_id"] == events[0].event_id
    assert script.answered[-1] == 200
    assert script.answered.count(200) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_response_the_vendor_does_not_have_fails_the_fetch_and_accepts_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    vendor: tuple[str, Vendor],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
    kind: Kind,
) -> None:
    base, fake = vendor
    script = fake.script(tenant)
    script.missing = True
    webhook = await put_source(client, bearer(tenant, "admin"), kind, f"{base}/{tenant}")
    body, headers = signed_webhook(kind)

    posted = await client.post(webhook, content=body, headers=headers)
    assert posted.status_code == 202, posted.text

    async def given_up() -> bool:
        return bool((await only_fetch(sessions, tenant)).status == "failed")

    await until(given_up, what="the fetch failed")
    failed = await only_fetch(sessions, tenant)
    assert failed.attempts == 1
    assert "404" in failed.last_error
    assert list(failed.response_ids) == []
    assert script.answered == [404]
    reader = bearer(tenant, "read")
    missing = await client.get(f"/v1/responses/{RESPONSE_ID[kind]}", headers=reader)
    assert missing.status_code == 404
    assert await received_events(sessions, tenant) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fetched_answer_dated_in_the_future_is_refused_like_a_webhook_would_be(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    vendor: tuple[str, Vendor],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
    kind: Kind,
) -> None:
    base, fake = vendor
    fake.script(tenant).answered_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    webhook = await put_source(client, bearer(tenant, "admin"), kind, f"{base}/{tenant}")
    body, headers = signed_webhook(kind)

    posted = await client.post(webhook, content=body, headers=headers)
    assert posted.status_code == 202, posted.text

    async def finished() -> bool:
        return bool((await only_fetch(sessions, tenant)).status != "pending")

    await until(finished, what="the fetch finished")
    refused = await only_fetch(sessions, tenant)
    assert refused.status == "failed"
    assert "answered_at" in refused.last_error
    assert "future" in refused.last_error
    missing = await client.get(f"/v1/responses/{RESPONSE_ID[kind]}", headers=bearer(tenant, "read"))
    assert missing.status_code == 404
    assert await received_events(sessions, tenant) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_the_same_webhook_posted_twice_queues_one_fetch(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    vendor: tuple[str, Vendor],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
    kind: Kind,
) -> None:
    base, fake = vendor
    script = fake.script(tenant)
    script.failing = True  # the first fetch stays pending while the repeat arrives
    webhook = await put_source(client, bearer(tenant, "admin"), kind, f"{base}/{tenant}")
    body, headers = signed_webhook(kind)

    first = await client.post(webhook, content=body, headers=headers)
    await until(lambda: _answered(script), what="the first fetch attempted")
    again = await client.post(webhook, content=body, headers=headers)

    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    assert again.json() == {"status": "fetch_queued"}
    assert (await only_fetch(sessions, tenant)).status == "pending"

    script.failing = False

    async def fetched() -> bool:
        return bool((await only_fetch(sessions, tenant)).status == "done")

    await until(fetched, what="the fetch done")
    assert len(await received_events(sessions, tenant)) == 1
    assert script.answered.count(200) == 1


async def _answered(script: Script) -> bool:
    return bool(script.answered)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_webhook_with_a_bad_signature_is_refused_and_queues_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    vendor: tuple[str, Vendor],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
    kind: Kind,
) -> None:
    base, fake = vendor
    webhook = await put_source(client, bearer(tenant, "admin"), kind, f"{base}/{tenant}")
    body, headers = signed_webhook(kind, key="not-the-shared-key")

    forged = await client.post(webhook, content=body, headers=headers)

    assert forged.status_code == 401, forged.text
    assert forged.json()["type"] == "urn:closeloop:problem:bad-signature"
    # Give the worker the chance it would have to fetch (it polls every 50 ms).
    await asyncio.sleep(0.3)
    assert await fetch_rows(sessions, tenant) == []
    assert fake.script(tenant).answered == []
    assert await received_events(sessions, tenant) == []
