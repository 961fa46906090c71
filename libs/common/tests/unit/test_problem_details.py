"""Errors leave the HTTP shell as RFC 9457 problem details."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

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
        if body.score == 57:
            # What a pooled connection that died with a database restart raises.
            raise sa_exc.InterfaceError(
                "SELECT 1", None, Exception("connection is closed"), connection_invalidated=True
            )
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


async def test_a_database_outage_is_a_503_to_retry_not_a_500(client: httpx.AsyncClient) -> None:
    """Found by the fault run: the first request after a PostgreSQL restart met a pooled
    connection the restart had closed, and its client got a 500 as if the request were wrong."""
    reply = await client.post("/things", json={"score": 57})
    assert reply.status_code == 503
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert reply.headers["retry-after"] == "1"
    assert reply.json()["type"] == "urn:closeloop:problem:unavailable"
    assert "SELECT" not in reply.text


async def test_an_outage_is_answered_without_being_raised_again(
    client: httpx.AsyncClient,
) -> None:
    """Starlette re-raises whatever reaches the catch-all handler, and the server then logs a
    second traceback at error level; an outage is answered where nothing is re-raised."""
    assert isinstance(client._transport, httpx.ASGITransport)
    raising = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=client._transport.app, raise_app_exceptions=True),
        base_url="http://test",
    )
    async with raising:
        reply = await raising.post("/things", json={"score": 57})
        assert reply.status_code == 503
        with pytest.raises(RuntimeError, match="boom"):
            await raising.post("/things", json={"score": 99})
