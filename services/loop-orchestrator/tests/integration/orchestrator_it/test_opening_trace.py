"""A case continues the trace of its response: the batch handler opens many cases at once, yet
each `case.opened.v1` (and a correction's `case.updated.v1`) carries the context of a `process`
span in the trace of the response event it follows from. Spans are recorded in memory."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common import tracing
from closeloop_common.clock import FixedClock
from closeloop_common.events import CaseOpenedV1, CaseUpdatedV1, CloudEvent, decode_event
from closeloop_devtools.tracesink import recording
from closeloop_orchestrator.service_layer.opening import ResponseHandler

from .support import OUTBOX, H, answer, correction, event_of, runtime_of

ANNA_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JAN_TRACE = "0af7651916cd43dd8448eb211c80319c"
FIX_TRACE = "5b8efff798038103d269b633813fc60c"


def traced(event: CloudEvent[Any], trace_id: str, span_id: str) -> CloudEvent[Any]:
    return event.model_copy(update={"traceparent": f"00-{trace_id}-{span_id}-01"})


async def handle(app: FastAPI, events: list[CloudEvent[Any]]) -> None:
    """One consumer batch, in the consumer's batch span."""
    runtime = runtime_of(app)
    handler: ResponseHandler = app.state.responses
    with tracing.span("process closeloop.responses"):
        async with runtime.transaction() as tx:
            await handler(tx, events)


async def emitted_events(app: FastAPI, tenant: str, event_type: str) -> list[CloudEvent[Any]]:
    async with runtime_of(app).sessions() as session:
        payloads = await session.scalars(
            sa.select(OUTBOX.c.payload)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == event_type)
            .order_by(OUTBOX.c.seq)
        )
        return [decode_event(p) for p in payloads]


def ids(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_each_case_continues_the_trace_of_its_response_and_its_correction(
    app: FastAPI, tenant: str, clock: FixedClock
) -> None:
    anna = answer("r-anna", score=2)
    anna_event = traced(event_of(tenant, anna, clock), ANNA_TRACE, "00f067aa0ba902b7")
    jan_event = traced(
        event_of(tenant, answer("r-jan", score=9), clock), JAN_TRACE, "b7ad6b7169203331"
    )
    untraced = event_of(tenant, answer("r-eva", score=3), clock)

    with recording() as spans:
        await handle(app, [anna_event, jan_event, untraced])
        clock.advance(2 * H)
        fix = traced(
            event_of(tenant, correction(anna, score=10), clock), FIX_TRACE, "53995c3f42cd8ad8"
        )
        await handle(app, [fix])
        recorded = spans.get_finished_spans()

    processes = {
        (s.attributes or {})["cloudevents.event_id"]: s
        for s in recorded
        if s.name in ("process response.received.v1", "process response.corrected.v1")
    }
    opened = {
        e.data.response_id: e for e in await emitted_events(app, tenant, CaseOpenedV1.EVENT_TYPE)
    }
    for response_id, event, trace_id in (
        ("r-anna", anna_event, ANNA_TRACE),
        ("r-jan", jan_event, JAN_TRACE),
    ):
        process = processes[event.id]
        assert process.parent is not None
        assert format(process.parent.span_id, "016x") == ids(event.traceparent)[1]
        assert ids(opened[response_id].traceparent) == (
            trace_id,
            format(process.context.span_id, "016x"),
        )
    # A response that came without context: its case continues the batch's span.
    assert ids(opened["r-eva"].traceparent)[0] not in (ANNA_TRACE, JAN_TRACE)
    (updated,) = await emitted_events(app, tenant, CaseUpdatedV1.EVENT_TYPE)
    assert ids(updated.traceparent) == (
        FIX_TRACE,
        format(processes[fix.id].context.span_id, "016x"),
    )
