"""Every service's API answers a NUL character (which PostgreSQL cannot store) in a path
parameter, query parameter or JSON body with a 422 validation problem, not a database error.

The apps run against the real database without their lifespans (no consumers or workers): the
requests would reach PostgreSQL if the HTTP shell let them through. Each service's own tests cover
its inputs in more detail; this one keeps the rule for all four, the notifier included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.entrypoints.app import create_scoring_app

REQUESTS = [
    pytest.param(
        create_ingest_app, "GET", "/v1/responses/r-%00", None, ["path", "response_id"], id="ingest"
    ),
    pytest.param(
        create_scoring_app, "GET", "/v1/nps?segment=P%00L", None, ["query", "segment"], id="scoring"
    ),
    pytest.param(
        create_orchestrator_app,
        "GET",
        "/v1/cases?owner_id=%00",
        None,
        ["query", "owner_id"],
        id="orchestrator",
    ),
    pytest.param(
        create_notifier_app,
        "GET",
        "/v1/messages?response_id=%00",
        None,
        ["query", "response_id"],
        id="notifier-query",
    ),
    pytest.param(
        create_notifier_app,
        "DELETE",
        "/v1/opt-outs/a%00%40b.pl",
        None,
        ["path", "email"],
        id="notifier-path",
    ),
    pytest.param(
        create_notifier_app,
        "POST",
        "/v1/opt-outs",
        {"email": "a\x00@b.pl"},
        ["body", "email"],
        id="notifier-body",
    ),
]


@pytest.mark.parametrize(("factory", "method", "url", "body", "location"), REQUESTS)
async def test_a_nul_character_in_any_request_of_any_service_is_a_validation_problem(
    infra: dict[str, str],
    factory: Callable[[], FastAPI],
    method: str,
    url: str,
    body: dict[str, Any] | None,
    location: list[str],
) -> None:
    app = factory()
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.request(method, url, json=body)
    finally:
        await runtime.engine.dispose()

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:closeloop:problem:validation"
    assert [(e["location"], e["kind"]) for e in problem["errors"]] == [(location, "nul_character")]
