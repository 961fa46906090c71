"""Ingest's part of a trace, against the real PostgreSQL: a survey tool's webhook (answered by the
fast path, ahead of FastAPI) and a canonical POST are server spans in the caller's trace; the
event each stores continues that span, though the write runs in a shared group commit, whose span
links the requests and holds their statements. Spans are recorded in memory."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from closeloop_common.events import decode_event
from closeloop_common.runtime import ServiceRuntime
from closeloop_devtools.tracesink import recording
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.entrypoints.app import create_ingest_app
from services.ingest.tests.integration.test_responses_api import _wait_until_relayed, a_response
from services.ingest.tests.unit.sources.signing import SECRET, fixture, hmac_base64

OUTBOX = metadata.tables["ingest.outbox"]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture(scope="module")
async def traced(infra: dict[str, str]) -> AsyncIterator[tuple[FastAPI, InMemorySpanExporter]]:
    """Ingest started with tracing on (so its statements are traced too)."""
    with recording() as spans:
        app = create_ingest_app()
        async with app.router.lifespan_context(app):
            yield app, spans
            runtime = app.state.runtime
            assert isinstance(runtime, ServiceRuntime)
            await _wait_until_relayed(runtime.sessions, runtime.settings)


@pytest.fixture
async def client(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=traced[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def stored_event(app: FastAPI, response_id: str, tenant: str) -> Any:
    runtime = app.state.runtime
    async with runtime.sessions() as session:
        payload = await session.scalar(
            sa.select(OUTBOX.c.payload).where(
                OUTBOX.c.tenant_id == tenant,
                OUTBOX.c.event_type == "dev.closeloop.response.received.v1",
            )
        )
    event = decode_event(payload)
    assert event.data.response_id == response_id
    return event


def hex16(value: int) -> str:
    return format(value, "016x")


def one(spans: InMemorySpanExporter, name: str, trace_id: str = TRACE_ID) -> ReadableSpan:
    (found,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == name and format(s.context.trace_id, "032x") == trace_id
    ]
    return found


async def test_a_webhook_is_a_server_span_of_the_callers_trace_that_its_event_continues(
    traced: tuple[FastAPI, InMemorySpanExporter],
    client: httpx.AsyncClient,
    bearer: Callable[..., dict[str, str]],
) -> None:
    app, spans = traced
    tenant = f"it-trace-{uuid.uuid4().hex[:10]}"
    put = await client.put(
        "/v1/sources/tf",
        json={"kind": "typeform", "secrets": [SECRET]},
        headers=bearer(tenant, "admin"),
    )
    url = put.json()["webhook_url"].removeprefix("http://test")
    body = fixture("typeform", "detractor")
    headers = {
        "content-type": "application/json",
        "Typeform-Signature": f"sha256={hmac_base64(SECRET, body)}",
        "traceparent": TRACEPARENT,
    }

    answer = await client.post(url, content=body, headers=headers)

    assert answer.status_code == 202, answer.text
    server = one(spans, "POST /v1/webhooks/{source}")
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert hex16(server.parent.span_id) == CALLER_SPAN
    assert dict(server.attributes or {})["http.response.status_code"] == 202
    # Nothing of the delivery in the span: not the source's path, not the body.
    assert tenant not in json.dumps(dict(server.attributes or {}))
    event = await stored_event(app, answer.json()["response_id"], tenant)
    assert event.traceparent == f"00-{TRACE_ID}-{hex16(server.context.span_id)}-01"
    # The shared write: its span links the request and holds the statements.
    (commit,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == "group commit"
        and any(link.context.span_id == server.context.span_id for link in s.links)
    ]
    inserts = [
        s
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == commit.context.span_id
    ]
    texts = [str((s.attributes or {}).get("db.query.text")) for s in inserts]
    assert any("INSERT INTO ingest.responses" in t for t in texts)
    assert any('INSERT INTO "ingest"."outbox"' in t for t in texts)
    assert not any(tenant in t for t in texts)


async def test_a_canonical_post_is_a_server_span_named_by_its_route(
    traced: tuple[FastAPI, InMemorySpanExporter],
    client: httpx.AsyncClient,
    bearer: Callable[..., dict[str, str]],
) -> None:
    app, spans = traced
    tenant = f"it-trace-{uuid.uuid4().hex[:10]}"
    response = a_response()

    answer = await client.post(
        "/v1/responses",
        json=response,
        headers={**bearer(tenant, "responses:write"), "traceparent": TRACEPARENT},
    )

    assert answer.status_code == 202, answer.text
    (server,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == "POST /v1/responses"
        and s.parent is not None
        and hex16(s.parent.span_id) == CALLER_SPAN
    ]
    assert dict(server.attributes or {})["http.route"] == "/v1/responses"
    event = await stored_event(app, response["response_id"], tenant)
    assert event.traceparent == f"00-{TRACE_ID}-{hex16(server.context.span_id)}-01"
