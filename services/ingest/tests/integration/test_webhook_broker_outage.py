"""Survey-tool webhooks keep being accepted while Kafka is down: every signed Typeform delivery is
answered 202 and its event waits in ingest's outbox, readiness stays ready, and once the broker
answers the relay publishes every event exactly once (none missing, none twice).

The broker is "down" the way `test_broker_outage.py` makes it: ingest's bootstrap address is a
local port where nothing listens until a TCP proxy to the shared broker opens there, so other
tests using the broker are never disturbed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

from closeloop_common.events import ResponseReceivedV1, Topic, decode_event
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import Records, TopicTail
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints.app import create_ingest_app
from services.ingest.tests.integration.test_broker_outage import free_port, tcp_proxy

OUTBOX = metadata.tables["ingest.outbox"]
TYPEFORM_PROMOTER = Path(__file__).parents[1] / "fixtures" / "typeform" / "promoter.json"
SECRET = "typeform-outage-secret"
DELIVERIES = 40


def typeform_webhook(n: int) -> tuple[bytes, dict[str, str]]:
    """The documented promoter payload as a response of its own (token and event id), signed
    with Typeform's `sha256=<base64 HMAC-SHA256 of the body>`."""
    payload = json.loads(TYPEFORM_PROMOTER.read_text(encoding="utf-8"))
    payload["event_id"] = f"evt-outage-{n}-{uuid.uuid4().hex[:8]}"
    payload["form_response"]["token"] = f"outage{n}{uuid.uuid4().hex}"
    body = json.dumps(payload, ensure_ascii=False).encode()
    digest = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return body, {"content-type": "application/json", "typeform-signature": f"sha256={digest}"}


def events_of(records: Records, tenant: str) -> Counter[str]:
    """How many times each event of `tenant` is on the topic."""
    counts: Counter[str] = Counter()
    for record in records:
        if not (record.key or b"").startswith(f"{tenant}:".encode()):
            continue
        event = decode_event(record.value or b"")
        assert event.type == ResponseReceivedV1.EVENT_TYPE
        counts[event.id] += 1
    return counts


async def test_webhooks_posted_while_the_broker_is_down_are_published_once_it_is_back(
    infra: dict[str, str], bearer: Callable[..., dict[str, str]]
) -> None:
    common = CommonSettings()
    host, _, broker_port = common.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    bootstrap_port = free_port()  # nothing listens there yet: the broker is "down"
    app = create_ingest_app(IngestSettings(kafka_bootstrap_servers=f"127.0.0.1:{bootstrap_port}"))
    tenant = f"it-wh-outage-{uuid.uuid4().hex[:8]}"
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            source = await client.put(
                "/v1/sources/typeform",
                headers=bearer(tenant, "admin"),
                json={"kind": "typeform", "secrets": [SECRET]},
            )
            assert source.status_code == 201, source.text
            webhook = f"/v1/webhooks/{tenant}.typeform"

            async def deliver(n: int) -> httpx.Response:
                body, headers = typeform_webhook(n)
                return await client.post(webhook, content=body, headers=headers)

            first_half = await asyncio.gather(*(deliver(n) for n in range(DELIVERIES // 2)))
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["kafka"].startswith("optional: unreachable")
            second_half = await asyncio.gather(
                *(deliver(n) for n in range(DELIVERIES // 2, DELIVERIES))
            )
            answers = first_half + second_half
            assert [a.status_code for a in answers] == [202] * DELIVERIES, [
                a.text for a in answers if a.status_code != 202
            ]
            accepted = {a.json()["event_id"] for a in answers}
            assert len(accepted) == DELIVERIES
            assert all(a.json()["status"] == "accepted" for a in answers)
            assert (await client.get("/readyz")).status_code == 200

            async with runtime.sessions() as session:
                waiting = set(
                    await session.scalars(
                        sa.select(OUTBOX.c.event_id).where(
                            OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None)
                        )
                    )
                )
            assert waiting == accepted

            # The broker comes back: the relay connects and publishes what waited.
            async with (
                tcp_proxy(bootstrap_port, (host, int(broker_port))),
                TopicTail(
                    common.kafka_bootstrap_servers,
                    Topic.RESPONSES.address(common.kafka_topic_prefix),
                ) as tail,
            ):
                await tail.until(lambda rs: len(events_of(rs, tenant)) >= DELIVERIES, timeout=60)

                async def all_marked_published() -> bool:
                    async with runtime.sessions() as session:
                        left = await session.scalar(
                            sa.select(sa.func.count())
                            .select_from(OUTBOX)
                            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
                        )
                    return bool(left == 0)

                async with asyncio.timeout(15):
                    while not await all_marked_published():
                        await tail.poll()
                # A second relay pass, had it republished anything, would show by now.
                for _ in range(10):
                    await tail.poll()
                published = events_of(tail.records, tenant)
                assert (await client.get("/readyz")).status_code == 200

    assert set(published) == accepted, "missing or foreign events on the topic"
    assert [event for event, times in published.items() if times > 1] == []
