"""Ingest keeps accepting while Kafka is down: it starts without the broker, stays ready (its job is
the database and its outbox), and its relay publishes everything once the broker answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa

from closeloop_common.events import Topic
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import TopicTail
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints.app import create_ingest_app

OUTBOX = metadata.tables["ingest.outbox"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def tcp_proxy(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """A bootstrap address for the broker that exists only inside this block."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_ingest_accepts_and_is_ready_while_the_broker_is_down_then_catches_up(
    infra: dict[str, str], bearer: Callable[..., dict[str, str]]
) -> None:
    common = CommonSettings()
    host, _, broker_port = common.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    bootstrap_port = free_port()  # nothing listens there yet: the broker is "down"
    settings = IngestSettings(kafka_bootstrap_servers=f"127.0.0.1:{bootstrap_port}")
    app = create_ingest_app(settings)
    tenant = f"it-outage-{uuid.uuid4().hex[:8]}"
    response_ids = [f"outage-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["kafka"].startswith("optional: unreachable")
            for response_id in response_ids:
                reply = await client.post(
                    "/v1/responses",
                    headers=bearer(tenant, "responses:write"),
                    json={
                        "response_id": response_id,
                        "survey_id": "s",
                        "customer": {"id": "c-1"},
                        "score": 2,
                        "answered_at": datetime.now(UTC).isoformat(),
                    },
                )
                assert reply.status_code == 202, reply.text
        runtime = app.state.runtime
        async with runtime.sessions() as session:
            waiting = await session.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
            )
        assert waiting == len(response_ids)

        # The broker comes back: the relay connects and publishes what waited.
        async with (
            tcp_proxy(bootstrap_port, (host, int(broker_port))),
            TopicTail(
                common.kafka_bootstrap_servers,
                Topic.RESPONSES.address(common.kafka_topic_prefix),
            ) as tail,
        ):
            records = await tail.until(
                lambda rs: sum(1 for r in rs if tenant.encode() in (r.key or b"")) >= 3,
                timeout=60,
            )
    mine = [r for r in records if tenant.encode() in (r.key or b"")]
    assert len(mine) == len(response_ids)
