"""Input PostgreSQL cannot store is refused where it enters, as a validation error: a NUL
character in any path parameter, query parameter or JSON body of any service's API, and an
instant that cannot be converted to UTC. (Events from Kafka: see test_events.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from closeloop_common.db import schema_metadata
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.storable import Instant
from closeloop_common.web import PROBLEM_CONTENT_TYPE, create_app


class Note(BaseModel):
    title: str
    tags: list[str] = []
    extra: dict[str, str] = {}


@pytest.fixture
def handled() -> list[str]:
    """What the route was called with: empty when the request was refused before it ran."""
    return []


@pytest.fixture
async def client(handled: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/notes/{name}")
    async def get_note(name: str, q: str | None = None) -> dict[str, str | None]:
        handled.append(name)
        return {"name": name, "q": q}

    @router.post("/notes")
    async def post_note(note: Note) -> dict[str, str]:
        handled.append(note.title)
        return {"title": note.title}

    runtime = ServiceRuntime(
        name="unit", settings=CommonSettings(), metadata=schema_metadata("unit")
    )
    app = create_app(title="unit", runtime=runtime, routers=[router])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        yield client
    await runtime.engine.dispose()


def refused_locations(reply: httpx.Response) -> list[list[Any]]:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem = reply.json()
    assert problem["type"] == "urn:closeloop:problem:validation"
    assert {e["kind"] for e in problem["errors"]} == {"nul_character"}
    return [e["location"] for e in problem["errors"]]


async def test_a_nul_character_in_a_path_parameter_is_refused_before_the_route_runs(
    client: httpx.AsyncClient, handled: list[str]
) -> None:
    reply = await client.get("/notes/a%00b")

    assert refused_locations(reply) == [["path", "name"]]
    assert handled == []


async def test_a_nul_character_in_a_query_parameter_is_refused_before_the_route_runs(
    client: httpx.AsyncClient, handled: list[str]
) -> None:
    reply = await client.get("/notes/a", params={"q": "x\x00"})

    assert refused_locations(reply) == [["query", "q"]]
    assert handled == []


@pytest.mark.parametrize(
    ("note", "location"),
    [
        pytest.param({"title": "a\x00"}, ["body", "title"], id="field"),
        pytest.param({"title": "t", "tags": ["ok", "\x00"]}, ["body", "tags", 1], id="list-item"),
        pytest.param({"title": "t", "extra": {"k": "v\x00"}}, ["body", "extra", "k"], id="dict"),
        pytest.param({"title": "t", "extra": {"k\x00": "v"}}, ["body", "extra", "k\x00"], id="key"),
    ],
)
async def test_a_nul_character_anywhere_in_a_json_body_is_refused_naming_where(
    client: httpx.AsyncClient, handled: list[str], note: dict[str, Any], location: list[Any]
) -> None:
    reply = await client.post("/notes", json=note)

    assert refused_locations(reply) == [location]
    assert handled == []


async def test_a_nul_character_in_a_utf16_json_body_is_refused_too(
    client: httpx.AsyncClient, handled: list[str]
) -> None:
    body = json.dumps({"title": "a\x00"}).encode("utf-16")

    reply = await client.post("/notes", content=body, headers={"content-type": "application/json"})

    assert refused_locations(reply) == [["body", "title"]]
    assert handled == []


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(
    client: httpx.AsyncClient, handled: list[str]
) -> None:
    # JSON `"a\\u0000"` is the six characters a, \, u, 0, 0, 0, 0: no NUL character.
    reply = await client.post(
        "/notes", content=b'{"title": "a\\\\u0000"}', headers={"content-type": "application/json"}
    )

    assert reply.status_code == 200, reply.text
    assert handled == ["a\\u0000"]


# --- Instant ---------------------------------------------------------------------------------


class Answer(BaseModel):
    at: Instant


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0001-01-01T00:00:00+14:00", id="before-year-1-in-utc"),
        pytest.param("9999-12-31T23:59:59-14:00", id="after-year-9999-in-utc"),
    ],
)
def test_an_instant_that_overflows_when_converted_to_utc_is_refused(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Answer.model_validate({"at": text})

    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [
        (("at",), "datetime_out_of_range")
    ]


@pytest.mark.parametrize(
    ("text", "in_utc"),
    [
        ("0001-01-01T14:00:00+14:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59+00:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_the_earliest_and_latest_instants_that_fit_in_utc_are_accepted(
    text: str, in_utc: datetime
) -> None:
    assert Answer.model_validate({"at": text}).at == in_utc


def test_an_instant_must_still_carry_an_offset() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Answer.model_validate({"at": "2024-05-06T09:00:00"})
