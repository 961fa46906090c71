"""A "you said, we did" campaign through the running services: the notifier keeps the audience
from ingest's invitations and responses, turns a `change.summary.v1` into a throttled campaign to
the respondents and everyone invited in the segment, and, killed with SIGKILL in the middle of it
and restarted, reaches every recipient once and skips nobody."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from closeloop_common.clock import SystemClock
from closeloop_common.events import (
    ChangeAudience,
    ChangeSegment,
    ChangeSummaryV1,
    ChangeText,
    Topic,
    new_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.settings import CommonSettings
from closeloop_devtools.mailsink import body_text, read_mailbox
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import eventually

RATE = 15  # campaign messages a second: slow enough to be killed in the middle
INVITED = 60  # in the segment (region north); the first RESPONDED of them answered
RESPONDED = 20
OUTSIDE = 10  # invited in another region: not in the campaign


def invitation(run: str, n: int, region: str) -> dict[str, Any]:
    return {
        "invitation_id": f"inv-{run}-{region}-{n}",
        "survey_id": "relationship",
        "customer": {
            "id": f"cust-{run}-{region}-{n}",
            "email": f"{region}{n}-{run}@campaign.example.com",
            "name": f"Klient {n}",
            "locale": "pl" if n % 2 else "en",
        },
        "channel": "email",
        "invited_at": datetime.now(UTC).isoformat(),
        "segments": {"region": region},
    }


async def publish(stack: Stack, event: Any) -> None:
    settings = CommonSettings(kafka_topic_prefix=stack.env["KAFKA_TOPIC_PREFIX"])
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="e2e-campaign")
    await producer.start()
    try:
        topic = Topic.CHANGES.address(settings.kafka_topic_prefix)
        await producer.send(OutboundRecord(topic, event.partitionkey, event.encode()))
    finally:
        await producer.stop()


async def audience_size(database_url: str, tenant: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                sa.text("SELECT count(*) FROM notifier.invitations WHERE tenant_id = :t"),
                {"t": tenant},
            )
            return int(count or 0)
    finally:
        await engine.dispose()


def test_a_campaign_killed_midway_reaches_every_recipient_once(
    stack: Stack, maildir: Path, bearer: Callable[..., dict[str, str]]
) -> None:
    tenant = f"campaign-{uuid.uuid4().hex[:10]}"
    run = uuid.uuid4().hex[:6]
    north = [invitation(run, n, "north") for n in range(INVITED)]
    south = [invitation(run, n, "south") for n in range(OUTSIDE)]
    with httpx.Client(timeout=10) as client:
        # Slow enough to be killed in the middle; no replies to the answers themselves.
        settings = client.put(
            f"{stack.url('notifier')}/v1/settings",
            json={"campaign_rate_per_second": RATE, "messages_on": [], "team_messages": []},
            headers={**bearer(tenant, "admin"), "If-Match": '"0"'},
        )
        assert settings.status_code == 200, settings.text
        writer = bearer(tenant, "responses:write")
        posted = client.post(
            f"{stack.url('ingest')}/v1/invitations",
            json={"invitations": north + south},
            headers=writer,
        )
        assert posted.status_code == 202, posted.text
        response_ids = []
        for n, invited in enumerate(north[:RESPONDED]):
            response_id = f"r-{run}-{n}"
            answer = {
                "response_id": response_id,
                "survey_id": "relationship",
                "customer": invited["customer"],
                "score": 3,
                "comment": "Faktury są nieczytelne.",
                "answered_at": datetime.now(UTC).isoformat(),
                "segments": {"region": "north"},
            }
            accepted = client.post(
                f"{stack.url('ingest')}/v1/responses", json=answer, headers=writer
            )
            assert accepted.status_code == 202, accepted.text
            response_ids.append(response_id)

    database_url = stack.env["DATABASE_URL"]
    eventually(
        lambda: asyncio.run(audience_size(database_url, tenant)) == INVITED + OUTSIDE or None,
        what="the notifier to keep the audience",
    )
    change = ChangeSummaryV1(
        change_id=f"issue-{run}",
        status="done",
        locale="pl",
        text=ChangeText(
            title="Czytelne faktury",
            summary="Każda pozycja faktury ma teraz własny wiersz i opis.",
            you_said="Faktury są nieczytelne.",
        ),
        translations={
            "en": ChangeText(
                title="Readable invoices",
                summary="Every invoice line now has a row and a description of its own.",
                you_said="Invoices are hard to read.",
            )
        },
        audience=ChangeAudience(
            response_ids=tuple(response_ids), segment=ChangeSegment(region="north")
        ),
        decided_by="product-owner",
        decided_at=datetime.now(UTC),
    )
    event = new_event(
        change, tenant_id=tenant, source="/closeloop/orchestrator", clock=SystemClock()
    )
    asyncio.run(publish(stack, event))
    recipients = {i["customer"]["email"] for i in north}

    def campaign_mails() -> list[Any]:
        return [m for m in read_mailbox(maildir) if m["To"] in recipients]

    eventually(
        lambda: len(campaign_mails()) >= INVITED // 3 or None,
        what="a third of the campaign",
    )
    stack.kill("notifier")
    time.sleep(0.5)
    stack.restart("notifier")
    eventually(
        lambda: {m["To"] for m in campaign_mails()} == recipients or None,
        timeout=90,
        what="every recipient of the campaign",
    )
    time.sleep(1.0)  # let a copy still under way arrive before counting

    mails = campaign_mails()
    counts = Counter(m["To"] for m in mails)
    # Killed between the server's acceptance and the record's commit, the batch in flight may
    # go twice (the one at-least-once window, docs/notifier.md): at 15 a second, one second's
    # messages at most. Nobody is skipped, nobody outside the segment is reached.
    duplicated = {to: n for to, n in counts.items() if n > 1}
    assert len(duplicated) <= RATE, duplicated
    assert all(n == 2 for n in duplicated.values()), duplicated
    assert set(counts) == recipients
    outside = {i["customer"]["email"] for i in south}
    assert not [m for m in read_mailbox(maildir) if m["To"] in outside]
    polish = next(m for m in mails if m["To"] == north[1]["customer"]["email"])
    english = next(m for m in mails if m["To"] == north[0]["customer"]["email"])
    assert "Każda pozycja faktury ma teraz własny wiersz" in body_text(polish)
    assert "Every invoice line now has a row" in body_text(english)
    assert polish["List-Unsubscribe"].startswith("<http")
    assert polish["X-Closeloop-Campaign-Id"] == english["X-Closeloop-Campaign-Id"]

    with httpx.Client(timeout=10) as client:
        report = client.get(
            f"{stack.url('notifier')}/v1/campaigns/{polish['X-Closeloop-Campaign-Id']}",
            headers=bearer(tenant, "read"),
        ).json()
    assert report["recipients"] == INVITED
    # A batch delivered but not recorded when the process died stays `sending` until its lease
    # ends (then it goes again: the window above); every other message is recorded sent.
    in_flight = report["messages"].get("sending", 0)
    assert in_flight <= RATE, report["messages"]
    assert report["messages"].get("sent", 0) + in_flight == INVITED, report["messages"]
