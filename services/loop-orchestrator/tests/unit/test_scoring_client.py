"""The orchestrator's questions to scoring carry the caller's trace when tracing is on, and no
trace header when it is off (scoring's HTTP span then joins the request's trace)."""

from __future__ import annotations

import httpx

from closeloop_common import tracing
from closeloop_devtools.tracesink import recording
from closeloop_orchestrator.adapters.scoring_client import ScoringClient

ANSWER = {"response_ids": ["r-1"], "truncated": False}


def client(seen: list[httpx.Request]) -> ScoringClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ANSWER)

    transport = httpx.MockTransport(answer)
    return ScoringClient(
        "http://scoring",
        timeout=1,
        client=httpx.AsyncClient(transport=transport, base_url="http://scoring"),
    )


async def test_a_question_carries_the_trace_it_is_asked_in() -> None:
    seen: list[httpx.Request] = []
    with recording(), tracing.span("POST /v1/issues") as span:
        found = await client(seen).theme_responses(
            authorization="Bearer t", theme="delivery", filters={}
        )
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert found.response_ids == ("r-1",)
    [request] = seen
    assert request.headers["traceparent"].split("-")[1] == trace_id
    assert request.headers["authorization"] == "Bearer t"


async def test_without_tracing_no_trace_header_is_sent() -> None:
    seen: list[httpx.Request] = []
    await client(seen).theme_responses(authorization="Bearer t", theme="delivery", filters={})
    [request] = seen
    assert "traceparent" not in request.headers
