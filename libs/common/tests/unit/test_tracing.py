"""Tracing: the trace context in the CloudEvents envelope, the spans of handlers and of HTTP
requests, and log lines that lead to their trace. Spans are recorded in memory (no exporter)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common import tracing
from closeloop_common.clock import FixedClock
from closeloop_common.db import schema_metadata
from closeloop_common.events import (
    CaseOpenedV1,
    Category,
    CloudEvent,
    Customer,
    Owner,
    Playbook,
    decode_event,
    schema_urn,
)
from closeloop_common.handlers import HandlerContext, HandlerRegistry, Transaction
from closeloop_common.logging import JsonFormatter, bind_log_context, reset_log_context
from closeloop_common.messaging_tables import inbox_table, outbox_table
from closeloop_common.outbox import Outbox
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.web import create_app
from closeloop_devtools.tracesink import recording

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
CASE_ID = uuid.UUID("6f1c1f2e-3c54-4d8e-9a55-2b9d8a6f4c10")
# A remote caller's context (W3C Trace Context's own example ids).
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
# The comment quotes an envelope attribute: customer text must never pass for one.
COMMENT = 'Faktura "traceparent":"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"'

# Written by the build before the trace context extension existed (same data, id and time):
# with tracing off, events are unchanged on the wire.
OPENED_BEFORE_TRACE_CONTEXT = (
    b'{"specversion":"1.0","id":"e-1","source":"/closeloop/orchestrator","type":"dev.closeloop.c'
    b'ase.opened.v1","subject":"6f1c1f2e-3c54-4d8e-9a55-2b9d8a6f4c10","time":"2026-11-23T09:30:0'
    b'0Z","datacontenttype":"application/json","dataschema":"urn:closeloop:schema:dev.closeloop.'
    b'case.opened.v1","tenantid":"acme","partitionkey":"acme:c-42","data":{"case_id":"6f1c1f2e-3'
    b'c54-4d8e-9a55-2b9d8a6f4c10","response_id":"r-1","survey_id":"s","customer":{"id":"c-42","e'
    b'mail":"anna@example.pl","name":null,"locale":"pl-PL"},"account_id":null,"score":2,"categor'
    b'y":"detractor","comment":"Faktura \\"traceparent\\":\\"00-ffffffffffffffffffffffffffffffff-ff'
    b'ffffffffffffff-01\\"","playbook":"apology_callback","owner":{"id":"ewa","name":"Ewa","email'
    b'":"ewa@acme.example"},"key_account":false,"opened_at":"2026-11-23T09:30:00Z","first_contac'
    b't_due_at":"2026-11-23T09:30:00Z"}}'
)


def opened(case_id: uuid.UUID = CASE_ID, response_id: str = "r-1") -> CaseOpenedV1:
    return CaseOpenedV1(
        case_id=case_id,
        response_id=response_id,
        survey_id="s",
        customer=Customer(id="c-42", email="anna@example.pl", locale="pl-PL"),
        account_id=None,
        score=2,
        category=Category.DETRACTOR,
        comment=COMMENT,
        playbook=Playbook.APOLOGY_CALLBACK,
        owner=Owner(id="ewa", name="Ewa", email="ewa@acme.example"),
        key_account=False,
        opened_at=AT,
        first_contact_due_at=AT,
    )


def envelope(
    data: CaseOpenedV1 | None = None, *, event_id: str = "e-1", **trace: str
) -> CloudEvent[CaseOpenedV1]:
    data = data or opened()
    return CloudEvent[CaseOpenedV1](
        id=event_id,
        source="/closeloop/orchestrator",
        type=data.EVENT_TYPE,
        subject=str(data.case_id),
        time=AT,
        dataschema=schema_urn(data.EVENT_TYPE),
        tenantid="acme",
        partitionkey="acme:c-42",
        data=data,
        **trace,
    )


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recording() as exporter:
        yield exporter


def a_transaction() -> Transaction:
    metadata = schema_metadata("tracetest")
    outbox = Outbox(metadata.tables["tracetest.outbox"], topic_prefix="t")
    # Nothing here reaches the database: only envelopes are made.
    return Transaction(cast(AsyncSession, None), FixedClock(AT), "/closeloop/orchestrator", outbox)


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def trace_of(span: ReadableSpan) -> str:
    return hex_id(span.context.trace_id, 32)


def span_id(span: ReadableSpan) -> str:
    return hex_id(span.context.span_id, 16)


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else hex_id(span.parent.span_id, 16)


def traceparent_ids(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    _, trace_id, parent, _ = traceparent.split("-")
    return trace_id, parent


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


# -- the envelope ---------------------------------------------------------------------------


def test_an_event_without_trace_context_is_byte_for_byte_what_the_build_before_wrote() -> None:
    assert envelope().encode() == OPENED_BEFORE_TRACE_CONTEXT
    assert decode_event(OPENED_BEFORE_TRACE_CONTEXT).traceparent is None


def test_the_trace_context_travels_in_the_envelope_before_the_data_and_back() -> None:
    event = envelope(traceparent=TRACEPARENT, tracestate="vendor=opaque")
    encoded = event.encode()

    assert encoded == OPENED_BEFORE_TRACE_CONTEXT.replace(
        b'"partitionkey":"acme:c-42",',
        b'"partitionkey":"acme:c-42","traceparent":"'
        + TRACEPARENT.encode()
        + b'","tracestate":"vendor=opaque",',
    )
    decoded = decode_event(encoded)
    assert (decoded.traceparent, decoded.tracestate) == (TRACEPARENT, "vendor=opaque")
    assert decoded == event


def test_a_malformed_traceparent_is_no_poison_and_names_no_context() -> None:
    raw = envelope(traceparent="not-a-traceparent").encode()

    event = decode_event(raw)

    assert event.data == opened()
    assert tracing.event_context(event) is None
    assert tracing.encoded_context(raw) is None


def test_the_relay_reads_the_envelopes_context_never_one_quoted_by_customer_text(
    spans: InMemorySpanExporter,
) -> None:
    assert tracing.encoded_context(envelope().encode()) is None

    found = tracing.span_context_of(
        tracing.encoded_context(envelope(traceparent=TRACEPARENT).encode())
    )

    assert found is not None
    assert (hex_id(found.trace_id, 32), hex_id(found.span_id, 16)) == (TRACE_ID, CALLER_SPAN)


# -- what handlers and commands emit ----------------------------------------------------


def test_with_tracing_off_an_emitted_event_carries_no_trace_context() -> None:
    event = a_transaction().envelope(opened(), tenant_id="acme")

    assert (event.traceparent, event.tracestate) == (None, None)


def test_an_event_emitted_in_a_span_continues_that_span(spans: InMemorySpanExporter) -> None:
    with tracing.span("POST /v1/cases/{case_id}/events") as current:
        event = a_transaction().envelope(opened(), tenant_id="acme")

    context = current.get_span_context()
    assert traceparent_ids(event.traceparent) == (
        hex_id(context.trace_id, 32),
        hex_id(context.span_id, 16),
    )


async def test_a_plain_handler_runs_in_a_process_span_of_its_events_trace_linked_to_the_batch(
    spans: InMemorySpanExporter,
) -> None:
    emitted: list[CloudEvent[Any]] = []

    async def handler(ctx: HandlerContext, event: CloudEvent[CaseOpenedV1]) -> None:
        emitted.append(await ctx.emit(opened(case_id=uuid.uuid4())))

    registry = HandlerRegistry()
    registry.on(CaseOpenedV1, handler)
    registration = registry.get(CaseOpenedV1.EVENT_TYPE)
    assert registration is not None
    traced = envelope(traceparent=TRACEPARENT)
    untraced = envelope(event_id="e-2")
    tx = a_transaction()

    with tracing.span("process t.cases", kind=SpanKind.CONSUMER) as batch:
        await registration.batch(tx, [traced, untraced])

    recorded = spans.get_finished_spans()
    first, second = named(recorded, "process case.opened.v1")
    batch_id = hex_id(batch.get_span_context().span_id, 16)
    # The event's work continues its trace, linked to the batch it came in ...
    assert (trace_of(first), parent_id(first)) == (TRACE_ID, CALLER_SPAN)
    assert [hex_id(link.context.span_id, 16) for link in first.links] == [batch_id]
    assert first.kind is SpanKind.CONSUMER
    assert first.attributes is not None
    assert first.attributes["cloudevents.event_id"] == "e-1"
    assert first.attributes["closeloop.case_id"] == str(CASE_ID)
    assert first.attributes["closeloop.response_id"] == "r-1"
    # ... and what it emitted continues it from there.
    assert traceparent_ids(emitted[0].traceparent) == (TRACE_ID, span_id(first))
    # An event that came without context is worked on under its batch.
    assert parent_id(second) == batch_id
    assert traceparent_ids(emitted[1].traceparent)[1] == span_id(second)


def test_a_batch_handler_names_the_event_each_emitted_event_follows_from(
    spans: InMemorySpanExporter,
) -> None:
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    first = envelope(traceparent=TRACEPARENT)
    second = envelope(event_id="e-2", traceparent=f"00-{other_trace}-b7ad6b7169203331-01")
    tx = a_transaction()

    with tracing.span("process t.responses", kind=SpanKind.CONSUMER):
        a = tx.envelope(opened(), tenant_id="acme", caused_by=first)
        again = tx.envelope(opened(), tenant_id="acme", caused_by=first)
        b = tx.envelope(opened(), tenant_id="acme", caused_by=second)

    processes = named(spans.get_finished_spans(), "process case.opened.v1")
    assert [(trace_of(s), parent_id(s)) for s in processes] == [
        (TRACE_ID, CALLER_SPAN),
        (other_trace, "b7ad6b7169203331"),
    ]
    assert traceparent_ids(a.traceparent) == (TRACE_ID, span_id(processes[0]))
    assert again.traceparent == a.traceparent  # one span per cause and transaction
    assert traceparent_ids(b.traceparent) == (other_trace, span_id(processes[1]))


# -- HTTP ----------------------------------------------------------------------------------


class IdleRuntime(ServiceRuntime):
    async def start(self) -> None:
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        return None


def an_app() -> FastAPI:
    metadata = sa.MetaData(schema="tracetest")
    outbox_table(metadata)
    inbox_table(metadata)
    runtime = IdleRuntime(
        name="tracetest", settings=CommonSettings(environment="test"), metadata=metadata
    )
    router = APIRouter(prefix="/v1")

    @router.get("/things/{thing_id}")
    async def read_thing(thing_id: str) -> dict[str, Any]:
        return {"thing": thing_id, "traceparent": (tracing.carrier_of() or ("",))[0]}

    @router.get("/broken")
    async def broken() -> None:
        raise RuntimeError("anna@example.pl broke it")

    return create_app(title="trace test", runtime=runtime, routers=[router])


async def test_a_request_is_a_server_span_named_by_its_route_in_the_callers_trace(
    spans: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=an_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://shell") as client:
        answer = await client.get(
            "/v1/things/anna@example.pl",
            params={"email": "anna@example.pl"},
            headers={"traceparent": TRACEPARENT},
        )
        failed = await client.get("/v1/broken")

    assert answer.status_code == 200
    assert failed.status_code == 500
    (server,) = named(spans.get_finished_spans(), "GET /v1/things/{thing_id}")
    assert server.kind is SpanKind.SERVER
    assert (trace_of(server), parent_id(server)) == (TRACE_ID, CALLER_SPAN)
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.route": "/v1/things/{thing_id}",
        "http.response.status_code": 200,
    }
    # Inside the request the span is current: what a command emits continues it.
    assert traceparent_ids(answer.json()["traceparent"]) == (TRACE_ID, span_id(server))
    (broken,) = named(spans.get_finished_spans(), "GET /v1/broken")
    assert broken.status.status_code.name == "ERROR"
    assert dict(broken.attributes or {})["error.type"] == "RuntimeError"
    assert broken.events == ()  # no exception message (it may quote customer data)


async def test_without_tracing_a_request_makes_no_span() -> None:
    transport = httpx.ASGITransport(app=an_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://shell") as client:
        answer = await client.get("/v1/things/x", headers={"traceparent": TRACEPARENT})

    assert answer.json()["traceparent"] == ""


# -- logs ----------------------------------------------------------------------------------


def a_log_line(**extra: Any) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("orchestrator"))
    logger = logging.getLogger("closeloop.tracetest")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("handled", extra=extra)
    finally:
        logger.removeHandler(handler)
    line: dict[str, Any] = json.loads(stream.getvalue())
    return line


def test_a_log_line_names_its_trace_and_the_event_being_handled(
    spans: InMemorySpanExporter,
) -> None:
    token = bind_log_context(envelope())
    try:
        with tracing.span("process case.opened.v1") as current:
            line = a_log_line(case_id="from-extra")
    finally:
        reset_log_context(token)

    context = current.get_span_context()
    assert line["trace_id"] == hex_id(context.trace_id, 32)
    assert line["span_id"] == hex_id(context.span_id, 16)
    assert (line["event_id"], line["event_type"], line["tenant_id"]) == (
        "e-1",
        "dev.closeloop.case.opened.v1",
        "acme",
    )
    assert line["response_id"] == "r-1"
    assert line["case_id"] == "from-extra"  # a record's own extra wins


def test_a_log_line_outside_spans_and_events_has_no_such_fields() -> None:
    line = a_log_line()

    assert not {"trace_id", "span_id", "event_id", "case_id"} & set(line)


# -- settings ------------------------------------------------------------------------------


def test_tracing_is_off_without_an_endpoint_and_exports_to_its_traces_path_with_one() -> None:
    assert tracing.configure(CommonSettings(), service="ingest") is None
    assert not tracing.enabled()

    provider = tracing.configure(
        CommonSettings(
            otel_exporter_otlp_endpoint="http://127.0.0.1:4318/",
            otel_traces_sampler_arg=0.25,
        ),
        service="ingest",
    )
    try:
        assert provider is not None
        assert tracing.enabled()
        assert provider.resource.attributes["service.name"] == "closeloop-ingest"
        assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
        assert provider.sampler.get_description().startswith("ParentBased")
    finally:
        tracing.uninstall()
        if provider is not None:
            provider.shutdown()
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"


def test_the_service_name_and_a_bad_ratio_are_settings() -> None:
    settings = CommonSettings(
        otel_exporter_otlp_endpoint="http://127.0.0.1:4318", otel_service_name="nps-ingest"
    )
    provider = tracing.configure(settings, service="ingest")
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "nps-ingest"
    finally:
        tracing.uninstall()
        if provider is not None:
            provider.shutdown()
    with pytest.raises(ValueError, match="less than or equal to 1"):
        CommonSettings(otel_traces_sampler_arg=1.5)
