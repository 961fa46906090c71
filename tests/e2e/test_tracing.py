"""One trace from webhook to email, across the real processes: a survey tool's signed webhook
(Typeform) reaches ingest with a `traceparent`, and the trace it starts holds ingest's request,
the orchestrator's work on the response, the notifier's work on the case and the SMTP send of
the apology, each the child of the one before, exported over OTLP/HTTP to a receiver this test
runs (`closeloop_devtools.tracesink.TraceSink`).

The session's stack is restarted with tracing on for this module and restarted as it was after
it: a second stack beside it would share the database, and its dispatcher could send this
test's message (and its span) through the other notifier.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from closeloop_devtools.demo import create_typeform_source, typeform_body, typeform_signature
from closeloop_devtools.stack import Stack
from closeloop_devtools.tracesink import ReceivedSpan, TraceSink
from tests.e2e.conftest import eventually
from tests.e2e.test_closed_loop import a_response, mails_of_case

TRACE_ID = uuid.uuid4().hex
SURVEY_TOOL_SPAN = uuid.uuid4().hex[:16]  # the span of whoever posts the webhook


@pytest.fixture(scope="module")
def traced(stack: Stack) -> Iterator[TraceSink]:
    """The session's stack, exporting its spans to a receiver of this module's."""
    sink = TraceSink()
    sink.start()
    before = dict(stack.env)
    stack.stop()
    stack.env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s instead of 5 s
        }
    )
    try:
        stack.start()
        yield sink
    finally:
        stack.stop()
        stack.env.clear()
        stack.env.update(before)
        stack.start()
        sink.stop()


def one(spans: list[ReceivedSpan], service: str, name: str, parent: str) -> ReceivedSpan | None:
    found = [
        s
        for s in spans
        if (s.service, s.name, s.parent_span_id) == (f"closeloop-{service}", name, parent)
    ]
    return found[0] if len(found) == 1 else None


def test_one_trace_follows_a_webhook_response_to_its_email(
    traced: TraceSink, stack: Stack, maildir: Path, bearer: Callable[..., dict[str, str]]
) -> None:
    tenant = f"e2e-trace-{uuid.uuid4().hex[:8]}"
    path = create_typeform_source(stack, bearer(tenant, "admin"), "trace-secret")
    response = a_response(f"r-{uuid.uuid4().hex[:8]}", score=2, comment="Faktura była błędna.")
    body = typeform_body(response)

    posted = httpx.post(
        f"{stack.url('ingest')}{path}",
        content=body,
        headers={
            "content-type": "application/json",
            "Typeform-Signature": typeform_signature("trace-secret", body),
            "traceparent": f"00-{TRACE_ID}-{SURVEY_TOOL_SPAN}-01",
        },
        timeout=10,
    )
    assert posted.status_code == 202, posted.text
    response_id = posted.json()["response_id"]
    assert response_id == f"typeform:{response['response_id']}"

    with httpx.Client(headers=bearer(tenant, "read"), timeout=10) as client:

        def case_of() -> dict[str, Any] | None:
            found = client.get(
                f"{stack.url('orchestrator')}/v1/cases", params={"response_id": response_id}
            ).json()["cases"]
            return found[0] if found else None

        case = eventually(case_of, what="the case")
    eventually(lambda: mails_of_case(maildir, case["case_id"]) or None, what="the apology email")

    def the_trace() -> dict[str, ReceivedSpan] | None:
        """The trace's four hops, once every span of it has arrived."""
        spans = [s for s in traced.spans() if s.trace_id == TRACE_ID]
        request = one(spans, "ingest", "POST /v1/webhooks/{source}", SURVEY_TOOL_SPAN)
        if request is None:
            return None
        response_work = one(spans, "orchestrator", "process response.received.v1", request.span_id)
        if response_work is None:
            return None
        case_work = one(spans, "notifier", "process case.opened.v1", response_work.span_id)
        if case_work is None:
            return None
        sends = [
            s
            for s in spans
            if s.name == "send email"
            and s.parent_span_id == case_work.span_id
            and s.attributes.get("closeloop.message.kind") == "apology"
        ]
        known = {s.span_id for s in spans} | {SURVEY_TOOL_SPAN}
        if len(sends) != 1 or any(s.parent_span_id not in known for s in spans):
            return None  # a hop, or a span between them, has not been exported yet
        return {"request": request, "response": response_work, "case": case_work, "send": sends[0]}

    hops = eventually(the_trace, timeout=30, what="the trace from webhook to email")

    trace = [s for s in traced.spans() if s.trace_id == TRACE_ID]
    assert {s.service for s in trace} >= {
        "closeloop-ingest",
        "closeloop-orchestrator",
        "closeloop-notifier",
    }
    assert hops["request"].kind == "server"
    assert hops["request"].attributes["http.response.status_code"] == 202
    assert (hops["response"].kind, hops["case"].kind, hops["send"].kind) == (
        "consumer",
        "consumer",
        "client",
    )
    assert hops["response"].attributes["closeloop.response_id"] == response_id
    assert hops["case"].attributes["closeloop.case_id"] == case["case_id"]
    assert hops["send"].attributes["closeloop.case_id"] == case["case_id"]
    assert hops["send"].attributes["closeloop.send.outcome"] == "sent"
    # The notifier composes the message in the case's trace: its statements are spans there.
    case_statements = [
        s.attributes["db.query.text"]
        for s in trace
        if s.parent_span_id == hops["case"].span_id and "db.query.text" in s.attributes
    ]
    assert any("notifier.templates" in text for text in case_statements), case_statements
    assert not any("klient.example.pl" in str(s.attributes) for s in trace)
    # Work done for many at once is a span of its own linked to the trace, with its statements:
    # ingest's shared write (group commit), the relay's send, the orchestrator's consumer batch.
    everything = traced.spans()
    linked = {
        (s.service, s.name.split(" ")[0]): s
        for s in everything
        if (TRACE_ID, hops["request"].span_id) in s.links
    }
    assert ("closeloop-ingest", "publish") in linked
    for batch in (
        linked[("closeloop-ingest", "group")],
        linked[("closeloop-orchestrator", "process")],
    ):
        assert any(
            s.parent_span_id == batch.span_id and "db.query.text" in s.attributes
            for s in everything
        )
