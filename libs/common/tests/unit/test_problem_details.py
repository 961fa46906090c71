"""Errors leave the HTTP shell as RFC 9457 problem details."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from closeloop_common.web import PROBLEM_CONTENT_TYPE, Problem, install_problem_handlers


class Body(BaseModel):
    score: int


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/things")
    async def post_thing(body: Body) -> dict[str, int]:
        if body.score == 13:
            raise Problem(409, "unlucky", "Unlucky number", "13 is taken", score=13)
        if body.score == 99:
            raise RuntimeError("boom")
        return {"score": body.score}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_invalid_body_is_a_422_problem_listing_each_field(client: httpx.AsyncClient) -> None:
    reply = await client.post("/things", json={"score": "many"})
    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = reply.json()
    assert problem["type"] == "urn:closeloop:problem:validation"
    assert problem["status"] == 422
    assert problem["instance"] == "/things"
    assert problem["errors"][0]["location"] == ["body", "score"]


async def test_domain_problem_keeps_its_type_status_and_extensions(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post("/things", json={"score": 13})
    assert reply.status_code == 409
    assert reply.json() == {
        "type": "urn:closeloop:problem:unlucky",
        "title": "Unlucky number",
        "status": 409,
        "detail": "13 is taken",
        "instance": "/things",
        "score": 13,
    }


async def test_unknown_route_and_unexpected_error_are_problems_too(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert missing.json()["title"] == "Not Found"
    crashed = await client.post("/things", json={"score": 99})
    assert crashed.status_code == 500
    assert crashed.json()["type"] == "urn:closeloop:problem:internal"
    assert "boom" not in crashed.text


async def test_method_not_allowed_problem_keeps_the_allow_header(client: httpx.AsyncClient) -> None:
    reply = await client.get("/things")
    assert reply.status_code == 405
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert reply.headers["allow"] == "POST"
