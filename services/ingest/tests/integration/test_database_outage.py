"""Ingest's database down: webhooks and canonical POSTs answer 503 (nothing half-kept), ingest
starts and stays alive, and once the database is back the same deliveries are accepted once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.engine import make_url

from closeloop_common.settings import CommonSettings
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints.app import create_ingest_app
from services.ingest.tests.integration.test_broker_outage import free_port
from services.ingest.tests.integration.test_responses_api import a_response
from services.ingest.tests.unit.sources.signing import SECRET, fixture, hmac_base64


class CuttableProxy:
    """A TCP proxy to the database whose connections can all be cut, as a database crash
    would, and then let through again."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, RuntimeError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_database_outage_is_a_503_and_nothing_is_lost_once_it_is_back(
    infra: dict[str, str], bearer: Callable[..., dict[str, str]]
) -> None:
    url = make_url(CommonSettings().database_url)
    proxy = CuttableProxy(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    settings = IngestSettings(
        database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
    )
    app = create_ingest_app(settings)
    tenant = f"it-dbdown-{uuid.uuid4().hex[:8]}"
    writer = bearer(tenant, "responses:write", "read", "admin")
    body = fixture("typeform", "promoter")
    signed = {
        "content-type": "application/json",
        "Typeform-Signature": f"sha256={hmac_base64(SECRET, body)}",
    }
    response = a_response()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            put = await client.put(
                "/v1/sources/tf", json={"kind": "typeform", "secrets": [SECRET]}, headers=writer
            )
            assert put.status_code == 201, put.text
            hook = f"/v1/webhooks/{tenant}.tf"

            await proxy.cut()
            down_hook = await client.post(hook, content=body, headers=signed)
            down_api = await client.post("/v1/responses", json=response, headers=writer)
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")

            assert down_hook.status_code == 503, down_hook.text
            assert down_hook.json()["type"] == "urn:closeloop:problem:database-unavailable"
            assert down_hook.headers["retry-after"] == "5"
            assert down_api.status_code == 503, down_api.text
            assert down_api.headers["retry-after"] == "5"
            assert ready.status_code == 503
            assert alive.status_code == 200

            await proxy.start()
            accepted = await _until_not_503(client, hook, body, signed)
            again = await client.post(hook, content=body, headers=signed)
            api = await client.post("/v1/responses", json=response, headers=writer)
            assert accepted.status_code == 202, accepted.text
            assert again.json()["status"] == "duplicate"
            assert api.status_code == 202, api.text  # the 503 kept nothing of it
    await proxy.cut()


async def _until_not_503(
    client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """The pool drops connections the outage broke on first use: retry as a survey tool would."""
    for _ in range(50):
        answer = await client.post(path, content=body, headers=headers)
        if answer.status_code != 503:
            return answer
        await asyncio.sleep(0.1)
    pytest.fail("still 503 after the database came back")
