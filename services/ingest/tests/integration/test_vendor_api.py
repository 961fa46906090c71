"""Fetching a response from SurveyMonkey's and Qualtrics' APIs against a small real HTTP server
(uvicorn + Starlette on an ephemeral port) serving their documented answers; no Kafka or
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from closeloop_ingest.adapters.vendor_api import fetch_response
from closeloop_ingest.domain.sources.base import FetchFailed, Responses, SourceDefinition

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOKEN = "tok-sm-0123456789"
QX_TOKEN = "tok-qx-9876543210"
SM_IDS = {"survey_id": "508117423", "response_id": "118823455901"}
QX_IDS = {"survey_id": "SV_cVn9uBwheR9hz01", "response_id": "R_suq806jn8LGzhx7"}


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))


class Vendor:
    """What the fake API answers: `failures` 5xx before the documented answer."""

    def __init__(self) -> None:
        self.failures: list[int] = []
        self.requests: list[Request] = []

    async def surveymonkey(self, request: Request) -> Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"http_status_code": 401}}, status_code=401)
        if self.failures:
            return PlainTextResponse("unavailable", status_code=self.failures.pop(0))
        if request.path_params["response_id"] != SM_IDS["response_id"]:
            return JSONResponse({"error": {"http_status_code": 404}}, status_code=404)
        if request.path_params["survey_id"] == "garbled":
            return PlainTextResponse("<html>maintenance</html>")
        return JSONResponse(fixture("surveymonkey/details_promoter.json"))

    async def qualtrics(self, request: Request) -> Response:
        self.requests.append(request)
        if request.headers.get("x-api-token") != QX_TOKEN:
            return JSONResponse({"meta": {"httpStatus": "401 - Unauthorized"}}, status_code=401)
        if self.failures:
            return PlainTextResponse("slow down", status_code=self.failures.pop(0))
        if request.path_params["survey_id"] == "wrong-shape":
            return JSONResponse({"meta": {"httpStatus": "200 - OK"}})
        return JSONResponse(fixture("qualtrics/response_promoter.json"))


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, Vendor]]:
    vendor = Vendor()
    app = Starlette(
        routes=[
            Route("/v3/surveys/{survey_id}/responses/{response_id}/details", vendor.surveymonkey),
            Route("/API/v3/surveys/{survey_id}/responses/{response_id}", vendor.qualtrics),
        ]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    while not running.started:
        await asyncio.sleep(0.01)
    port = running.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", vendor
    running.should_exit = True
    await task


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


def source(kind: str, base_url: str, token: str) -> SourceDefinition:
    return SourceDefinition.model_validate(
        {
            "tenant_id": "acme",
            "name": kind[:2],
            "kind": kind,
            "secrets": ["webhook-secret"],
            "api": {"base_url": base_url + "/", "token": token},
        }
    )


async def test_surveymonkey_details_are_fetched_with_the_bearer_token(
    server: tuple[str, Vendor], client: httpx.AsyncClient
) -> None:
    base, vendor = server
    vendor.requests.clear()
    parsed = await fetch_response(client, source("surveymonkey", base, TOKEN), SM_IDS)
    assert isinstance(parsed, Responses)
    assert parsed.submissions[0].response.response_id == "surveymonkey:118823455901"
    assert parsed.submissions[0].response.score == 9
    assert vendor.requests[-1].query_params.get("simple") == "true"


async def test_qualtrics_response_is_fetched_with_its_api_token(
    server: tuple[str, Vendor], client: httpx.AsyncClient
) -> None:
    base, _ = server
    parsed = await fetch_response(client, source("qualtrics", base, QX_TOKEN), QX_IDS)
    assert isinstance(parsed, Responses)
    assert parsed.submissions[0].response.response_id == "qualtrics:R_suq806jn8LGzhx7"
    assert parsed.submissions[0].response.score == 10


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_an_unavailable_api_is_transient_and_recovers(
    server: tuple[str, Vendor], client: httpx.AsyncClient, status: int
) -> None:
    base, vendor = server
    vendor.failures = [status]
    with pytest.raises(FetchFailed) as caught:
        await fetch_response(client, source("surveymonkey", base, TOKEN), SM_IDS)
    assert caught.value.transient
    assert str(status) in str(caught.value)
    retried = await fetch_response(client, source("surveymonkey", base, TOKEN), SM_IDS)
    assert isinstance(retried, Responses)


async def test_a_missing_response_is_permanent(
    server: tuple[str, Vendor], client: httpx.AsyncClient
) -> None:
    base, _ = server
    ids = SM_IDS | {"response_id": "999"}
    with pytest.raises(FetchFailed) as caught:
        await fetch_response(client, source("surveymonkey", base, TOKEN), ids)
    assert not caught.value.transient
    assert "404" in str(caught.value)


@pytest.mark.parametrize("kind", ["surveymonkey", "qualtrics"])
async def test_a_refused_token_is_permanent_and_never_in_the_message(
    server: tuple[str, Vendor], client: httpx.AsyncClient, kind: str
) -> None:
    base, _ = server
    ids = SM_IDS if kind == "surveymonkey" else QX_IDS
    with pytest.raises(FetchFailed) as caught:
        await fetch_response(client, source(kind, base, "tok-wrong-secret"), ids)
    assert not caught.value.transient
    assert "401" in str(caught.value)
    assert "tok-" not in str(caught.value)


async def test_an_answer_that_is_not_the_documented_json_is_permanent(
    server: tuple[str, Vendor], client: httpx.AsyncClient
) -> None:
    base, _ = server
    garbled = SM_IDS | {"survey_id": "garbled"}
    with pytest.raises(FetchFailed) as not_json:
        await fetch_response(client, source("surveymonkey", base, TOKEN), garbled)
    wrong = QX_IDS | {"survey_id": "wrong-shape"}
    with pytest.raises(FetchFailed) as wrong_shape:
        await fetch_response(client, source("qualtrics", base, QX_TOKEN), wrong)
    assert not not_json.value.transient
    assert not wrong_shape.value.transient
    assert "result.values" in str(wrong_shape.value)


async def test_a_connection_refused_is_transient(client: httpx.AsyncClient) -> None:
    with pytest.raises(FetchFailed) as caught:
        await fetch_response(client, source("qualtrics", "http://127.0.0.1:1", QX_TOKEN), QX_IDS)
    assert caught.value.transient
    assert QX_TOKEN not in str(caught.value)
