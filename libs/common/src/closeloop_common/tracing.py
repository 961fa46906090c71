"""Distributed tracing (OpenTelemetry): one trace follows a response from webhook to email.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`configure`, called by `ServiceRuntime.start`);
then spans go in batches over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, sampled by
`OTEL_TRACES_SAMPLER_ARG` (a ratio of the traces that start here; a trace that came in sampled,
through `traceparent`, stays sampled). Off, nothing is exported, no processor runs and the code
below is skipped behind `enabled()`: the hot paths (the consumer's batches, ingest's webhooks)
pay one boolean test.

The provider is this module's own, not OpenTelemetry's global one, so no library traces on its
own behalf (FastAPI's built-in telemetry would put query strings in its spans).

The spans (see the README, "Observability"):
- `<METHOD> <route template>` (server): an HTTP request, child of its `traceparent` header;
  attributes: method, route, status; never the path, the query or a body (customer text).
- `publish <topic>` (producer): one outbox relay send, linked to the context of every event sent.
- `process <topic>` (consumer): one consumer batch, linked to the context of every event in it.
- `process <event type>` (consumer): the work done for one event, child of the event's
  `traceparent`: what it emits and the messages it stores continue its trace (`handlers`).
- `group commit` (internal): one of ingest's shared transactions, linked to its requests.
- `<SQL verb>` (client): a statement, under whatever span is current (none outside spans);
  the statement's text only, never its parameters.
- `send <channel>` (client): the notifier sending one message, child of the context stored with
  the message (the event it was made for).

Events carry their context in the CloudEvents extension attributes `traceparent` and `tracestate`
(W3C Trace Context, the CloudEvents distributed tracing extension); `carrier_of` and
`context_of` convert.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from closeloop_common.events import CloudEvent
    from closeloop_common.settings import CommonSettings

log = logging.getLogger(__name__)

Carrier = tuple[str, str | None]
"""A context on the wire: (`traceparent`, `tracestate` or None)."""

EVENT_TYPE_PREFIX = "dev.closeloop."
MAX_QUERY_TEXT = 2000

_W3C = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


def enabled() -> bool:
    """Whether spans are recorded (a provider is installed)."""
    return _provider is not None


def tracer() -> trace.Tracer:
    return _tracer


def install(provider: TracerProvider) -> None:
    """Record spans with `provider` (what `configure` does; tests pass an in-memory one)."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("closeloop")


def uninstall() -> None:
    """Stop recording spans (the provider is left to its owner)."""
    global _provider, _tracer
    _provider = None
    _tracer = trace.NoOpTracer()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint (as `OTEL_EXPORTER_OTLP_ENDPOINT` means it)."""
    return endpoint.rstrip("/") + "/v1/traces"


def configure(settings: CommonSettings, *, service: str) -> TracerProvider | None:
    """Install an exporting provider if `OTEL_EXPORTER_OTLP_ENDPOINT` is set; None otherwise."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name or f"closeloop-{service}",
                "service.namespace": "closeloop",
            }
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_traces_sampler_arg)),
    )
    # Headers, timeout and compression come from the standard OTEL_EXPORTER_OTLP_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    install(provider)
    log.info(
        "tracing on",
        extra={"otlp_endpoint": traces_url(endpoint), "ratio": settings.otel_traces_sampler_arg},
    )
    return provider


async def shut_down(provider: TracerProvider) -> None:
    """Export what is buffered and stop (in a thread: the exporter blocks)."""
    if _provider is provider:
        uninstall()
    await asyncio.to_thread(provider.shutdown)


# -- contexts on the wire ------------------------------------------------------------------


def carrier_of(context: Context | None = None) -> Carrier | None:
    """The `traceparent`/`tracestate` of `context` (the current one by default), or None when
    tracing is off or there is no valid span in it."""
    if _provider is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    headers: dict[str, str] = {}
    _W3C.inject(headers, context)
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None
    return traceparent, headers.get("tracestate")


def context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The remote context a `traceparent` names; None when absent or malformed."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _W3C.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def event_context(event: CloudEvent[Any]) -> Context | None:
    return context_of(event.traceparent, event.tracestate)


# An encoded event's trace context, read without parsing it (the relay has only the bytes). Our
# envelopes write the extension attributes before `data`, and inside a JSON string a quote is
# escaped, so customer text cannot fake them.
_ENCODED_TRACE = re.compile(
    rb'"traceparent":"([0-9a-f-]{1,256})"(?:,"tracestate":"([^"]{1,1024})")?'
)


def encoded_context(payload: bytes) -> Context | None:
    """The context of an encoded event (`CloudEvent.encode`), None when it carries none."""
    end = payload.find(b'"data":')
    found = _ENCODED_TRACE.search(payload, 0, end if end >= 0 else len(payload))
    if found is None:
        return None
    state = found.group(2)
    return context_of(found.group(1).decode(), state.decode() if state else None)


def span_context_of(context: Context | None) -> SpanContext | None:
    if context is None:
        return None
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


def links_to(contexts: Sequence[Context | None]) -> list[Link]:
    """Links to the valid ones of `contexts`, once each (a span keeps the first 128)."""
    seen: set[tuple[int, int]] = set()
    links: list[Link] = []
    for context in contexts:
        found = span_context_of(context)
        if found is not None and (found.trace_id, found.span_id) not in seen:
            seen.add((found.trace_id, found.span_id))
            links.append(Link(found))
    return links


def fail(span: Span, exc: BaseException) -> None:
    """Mark `span` failed by the exception's class only: its message may quote customer data."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR))


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current span that records a failure's class (not its message) and ends on exit."""
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        links=links,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                fail(current, exc)
            raise


# -- events ------------------------------------------------------------------------------


def short_type(event_type: str) -> str:
    return event_type.removeprefix(EVENT_TYPE_PREFIX)


def event_attributes(event: CloudEvent[Any]) -> dict[str, Any]:
    """Ids only: the event, its tenant, and the response and case it is about when it has them."""
    ids = event.log_fields()  # the event's, tenant's, response's and case's ids
    return {
        "messaging.system": "kafka",
        "messaging.message.id": event.id,
        "cloudevents.event_id": ids.pop("event_id"),
        "cloudevents.event_type": ids.pop("event_type"),
        "cloudevents.event_source": event.source,
        **{f"closeloop.{name}": value for name, value in ids.items()},
    }


def _process_span_arguments(event: CloudEvent[Any]) -> dict[str, Any]:
    batch = trace.get_current_span().get_span_context()
    parent = event_context(event)
    return {
        "name": f"process {short_type(event.type)}",
        "kind": SpanKind.CONSUMER,
        "context": parent,
        "links": [Link(batch)] if parent is not None and batch.is_valid else (),
        "attributes": {**event_attributes(event), "messaging.operation.type": "process"},
        "record_exception": False,
        "set_status_on_exception": False,
    }


@contextmanager
def processing(event: CloudEvent[Any]) -> Iterator[Span]:
    """The current `process <event type>` span of the work for one event: a child of the
    event's `traceparent` (of the current span when it has none), linked to the current span
    (its consumer batch)."""
    with _tracer.start_as_current_span(**_process_span_arguments(event)) as current:
        try:
            yield current
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                fail(current, exc)
            raise


def processed(event: CloudEvent[Any], *, started_ns: int | None = None) -> Carrier | None:
    """A `process <event type>` span, from `started_ns` (its batch's start) until now, for an
    event a batch handler worked on together with others, without a span around it; returns
    its carrier, for what the event caused (`Transaction.emit(..., caused_by=event)`)."""
    current = _tracer.start_span(**_process_span_arguments(event), start_time=started_ns)
    current.end()
    return carrier_of(trace.set_span_in_context(current))


# -- database statements --------------------------------------------------------------------


def instrument_engine(engine: AsyncEngine) -> None:
    """A `<SQL verb>` span per statement of `engine`, under the current span when one records
    (none otherwise: pollers and workers make no traces of their own)."""
    from sqlalchemy import event as sa_event

    sync_engine = engine.sync_engine
    url = sync_engine.url
    common: dict[str, Any] = {"db.system.name": "postgresql"}
    if url.database:
        common["db.namespace"] = url.database
    if url.host:
        common["server.address"] = url.host
    if url.port:
        common["server.port"] = url.port

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if _provider is None or context is None:
            return
        if not trace.get_current_span().is_recording():
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._closeloop_span = _tracer.start_span(
            verb,
            kind=SpanKind.CLIENT,
            attributes={
                **common,
                "db.operation.name": verb,
                "db.query.text": statement[:MAX_QUERY_TEXT],
            },
            record_exception=False,
            set_status_on_exception=False,
        )

    def after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        current = getattr(context, "_closeloop_span", None)
        if current is not None:
            current.end()
            context._closeloop_span = None

    def on_error(exception_context: Any) -> None:
        context = exception_context.execution_context
        current = getattr(context, "_closeloop_span", None)
        if current is not None:
            fail(current, exception_context.original_exception)
            current.end()
            context._closeloop_span = None

    sa_event.listen(sync_engine, "before_cursor_execute", before)
    sa_event.listen(sync_engine, "after_cursor_execute", after)
    sa_event.listen(sync_engine, "handle_error", on_error)


# -- HTTP --------------------------------------------------------------------------------


async def serve_traced(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, route: str | None = None
) -> None:
    """Run `app` for one HTTP request in a server span named `<METHOD> <route template>`
    (`route`, else the template the router matched), a child of the request's `traceparent`."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name in (b"traceparent", b"tracestate"):
            headers[name.decode("latin-1")] = value.decode("latin-1")
    parent = _W3C.extract(headers) if headers else None
    method = scope.get("method", "GET")
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scope.get("scheme", "http"),
    }
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    if route is not None:
        attributes["http.route"] = route
    status = 500

    async def send_and_note(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    with span(
        f"{method} {route or 'unmatched'}",
        kind=SpanKind.SERVER,
        parent=parent,
        attributes=attributes,
    ) as current:
        try:
            await app(scope, receive, send_and_note)
        finally:
            if route is None:
                matched = getattr(scope.get("route"), "path", None)
                if matched is not None:
                    current.update_name(f"{method} {matched}")
                    current.set_attribute("http.route", matched)
            current.set_attribute("http.response.status_code", status)
            if status >= 500:
                current.set_status(Status(StatusCode.ERROR))
