"""A message is sent in the trace of the event it was made for: stored with the `traceparent` of
the case event's `process` span, sent in a `send <channel>` span that is its child, and the send's
log lines name the message's case and response. Spans are recorded in memory.

Real PostgreSQL and SMTP; see conftest.py for the `delivery` harness and the clock.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind

from closeloop_common import tracing
from closeloop_common.logging import JsonFormatter
from closeloop_devtools.mailsink import MailSink
from closeloop_devtools.tracesink import recording
from closeloop_notifier.adapters.webhook import WebhookChannel
from services.notifier.tests.integration.conftest import Delivery, free_port, mails_of_case

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
ORCHESTRATOR_SPAN = "00f067aa0ba902b7"  # the span that emitted case.opened.v1
TRACEPARENT = f"00-{TRACE_ID}-{ORCHESTRATOR_SPAN}-01"


def hex16(value: int) -> str:
    return format(value, "016x")


@contextmanager
def dispatch_log() -> Iterator[io.StringIO]:
    """The dispatcher's log lines as JSON, while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("notifier"))
    logger = logging.getLogger("closeloop_notifier.service_layer.dispatch")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_message_is_stored_and_sent_in_the_trace_of_its_case_event(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    event = delivery.case_opened().model_copy(update={"traceparent": TRACEPARENT})

    with recording() as spans:
        await delivery.handle(event)
        message = await delivery.message_of_case(event.data.case_id)
        await delivery.dispatcher(sink.controller.port).dispatch_all()
        recorded = spans.get_finished_spans()

    assert len(mails_of_case(sink, event.data.case_id)) == 1
    (process,) = [s for s in recorded if s.name == "process case.opened.v1"]
    assert process.parent is not None
    assert (format(process.context.trace_id, "032x"), hex16(process.parent.span_id)) == (
        TRACE_ID,
        ORCHESTRATOR_SPAN,
    )
    # Stored in the trace of the event's work ...
    assert message.traceparent == f"00-{TRACE_ID}-{hex16(process.context.span_id)}-01"
    # ... and sent in it, as that work's child.
    (send,) = [s for s in recorded if s.name == "send email"]
    assert send.kind is SpanKind.CLIENT
    assert send.parent is not None
    assert send.parent.span_id == process.context.span_id
    assert send.context.trace_id == process.context.trace_id
    attributes = dict(send.attributes or {})
    assert attributes == {
        "closeloop.message_id": str(message.message_id),
        "closeloop.tenant_id": delivery.tenant,
        "closeloop.case_id": str(event.data.case_id),
        "closeloop.response_id": event.data.response_id,
        "closeloop.message.kind": "apology",
        "closeloop.message.channel": "email",
        "closeloop.message.attempt": 1,
        "closeloop.send.outcome": "sent",
    }


async def test_without_tracing_a_message_keeps_no_trace_context(delivery: Delivery) -> None:
    event = delivery.case_opened().model_copy(update={"traceparent": TRACEPARENT})

    await delivery.handle(event)

    assert (await delivery.message_of_case(event.data.case_id)).traceparent is None
    await delivery.finish()


async def test_a_failed_send_is_logged_with_its_case_response_and_trace(
    delivery: Delivery,
) -> None:
    event = delivery.case_opened().model_copy(update={"traceparent": TRACEPARENT})
    # No email channel: this message cannot be sent, a failure of its own.
    dispatcher = delivery.dispatcher(
        0, channels={"webhook": WebhookChannel(allow_private=True, timeout=5)}
    )

    with recording() as spans:
        await delivery.handle(event)
        with dispatch_log() as stream:
            await dispatcher.dispatch_all()
        recorded = spans.get_finished_spans()

    (send,) = [s for s in recorded if s.name == "send email"]
    assert send.status.status_code.name == "ERROR"
    assert dict(send.attributes or {})["closeloop.send.outcome"] == "failed"
    by_message = {line["msg"]: line for line in lines(stream)}
    failed = by_message["message could not be sent"]
    assert failed["case_id"] == str(event.data.case_id)
    assert failed["response_id"] == event.data.response_id
    assert failed["trace_id"] == TRACE_ID
    assert failed["span_id"] == hex16(send.context.span_id)
    assert by_message["delivery failed"]["case_id"] == str(event.data.case_id)
    assert by_message["delivery failed"]["response_id"] == event.data.response_id
    assert not tracing.enabled()
