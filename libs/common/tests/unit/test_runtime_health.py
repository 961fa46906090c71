"""/healthz fails when a background worker died, so an orchestrator restarts the process."""

from __future__ import annotations

import asyncio

import httpx

from closeloop_common.db import schema_metadata
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.web import PROBLEM_CONTENT_TYPE, create_app


async def test_healthz_turns_503_when_a_worker_dies_and_names_it() -> None:
    runtime = ServiceRuntime(
        name="unit", settings=CommonSettings(), metadata=schema_metadata("unit")
    )
    crash = asyncio.Event()

    async def fragile_worker() -> None:
        await crash.wait()
        raise RuntimeError("a bug")

    app = create_app(title="unit", runtime=runtime, routers=[])
    # Only the worker runs: no broker or database is needed for liveness.
    runtime._spawn("fragile", fragile_worker)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        crash.set()
        await asyncio.wait({runtime._tasks["fragile"]})
        reply = await client.get("/healthz")
    assert reply.status_code == 503
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert reply.json()["tasks"] == ["fragile"]
