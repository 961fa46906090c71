"""Prepare and dispatch on the happy path and its ordinary detours (duplicates, opt-outs, no
address, temporary refusals), and the HTTP API with the service's lifespan.

Real PostgreSQL and SMTP servers; see conftest.py for the `delivery` harness and the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.events import (
    NotificationFailedV1,
    NotificationSentV1,
    NotificationSentV2,
    Topic,
)
from closeloop_common.kafka.producer import OutboundRecord
from closeloop_common.runtime import ServiceRuntime
from closeloop_devtools.mailsink import MailSink, body_text, read_mailbox
from closeloop_notifier.adapters.tables import opt_outs
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy
from services.notifier.tests.integration.conftest import (
    OUTBOX,
    OWNER,
    SENDER,
    Delivery,
    free_port,
    fullwidth,
    mails_of_case,
)

# -- prepare and dispatch ----------------------------------------------------------------------


async def test_prepared_message_is_delivered_over_smtp_and_recorded_as_sent(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    event = delivery.case_opened()
    case = event.data

    assert await delivery.prepare(event) == "pending"
    assert await delivery.dispatcher(sink.controller.port).dispatch_batch() == 1

    mails = read_mailbox(sink.maildir)
    assert len(mails) == 1
    mail = mails[0]
    row = await delivery.message_of_case(case.case_id)
    assert mail["To"] == "anna.nowak@klient.example.pl"
    assert mail["X-Closeloop-Case-Id"] == str(case.case_id)
    assert mail["X-Closeloop-Kind"] == "apology"
    assert mail["Reply-To"] == OWNER.email
    assert mail["Subject"] == "Przepraszamy i chcemy to naprawić"
    assert mail["Message-ID"] == f"<{row.message_id}@closeloop>"
    assert SENDER in mail["From"]
    assert mail["List-Unsubscribe"].startswith("<http://notifier.test/v1/unsubscribe/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = body_text(mail)
    assert body.startswith("Dzień dobry,\n")
    assert "> Faktura znowu była błędna." in body
    # When and how the owner will make contact, in Polish and the tenant's time zone.
    assert "Zadzwonię do Państwa najpóźniej 2 stycznia 2001 o godz. 01:00" in body
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert "Faktura znowu była błędna." in html.get_content()
    assert OWNER.name in body

    assert (row.status, row.attempts, row.locale) == ("sent", 1, "pl")
    assert row.sent_at == delivery.clock.now()
    assert (row.next_attempt_at, row.lease_until, row.last_error) == (None, None, None)

    events = await delivery.events()
    assert [e.type for e in events] == [NotificationSentV1.EVENT_TYPE]
    sent = events[0]
    assert isinstance(sent.data, NotificationSentV1)
    assert sent.tenantid == delivery.tenant
    assert sent.partitionkey == f"{delivery.tenant}:{case.customer.id}"
    assert (sent.data.message_id, sent.data.case_id, sent.data.attempts) == (
        row.message_id,
        case.case_id,
        1,
    )
    assert sent.data.recipient == "anna.nowak@klient.example.pl"


async def test_case_prepared_twice_stores_one_message_and_sends_it_once(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    event = delivery.case_opened()
    send = delivery.dispatcher(sink.controller.port)

    assert await delivery.prepare(event) == "pending"
    assert await delivery.prepare(event) == "duplicate"
    assert len(await delivery.messages_of_case(event.data.case_id)) == 1

    assert await send.dispatch_batch() == 1
    assert await send.dispatch_batch() == 0
    # The event delivered once more after the message went out changes nothing either.
    assert await delivery.prepare(event) == "duplicate"
    assert await send.dispatch_batch() == 0

    assert len(mails_of_case(sink, event.data.case_id)) == 1
    assert len(read_mailbox(sink.maildir)) == 1
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts) == ("sent", 1)
    assert [e.type for e in await delivery.events()] == [NotificationSentV1.EVENT_TYPE]


async def test_temporary_refusal_is_retried_after_the_backoff_and_counts_as_an_attempt(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    clock = delivery.clock
    server = start_smtp(rcpt=["451 4.7.1 Greylisted, please try again later"])
    policy = DeliveryPolicy(first_retry_after=timedelta(seconds=30))
    send = delivery.dispatcher(server.port, policy)
    event = delivery.case_opened()
    case_id = event.data.case_id
    assert await delivery.prepare(event) == "pending"

    assert await send.dispatch_batch() == 1
    row = await delivery.message_of_case(case_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error
    assert "451" in row.last_error
    # Exponential backoff with jitter: between half and all of the first wait.
    assert clock.now() + timedelta(seconds=15) <= row.next_attempt_at
    assert row.next_attempt_at <= clock.now() + timedelta(seconds=30)
    assert (row.sent_at, row.lease_until) == (None, None)
    assert await delivery.events() == []

    # Not due yet: nothing is tried at the same time, nor a second before the retry time.
    assert await send.dispatch_batch() == 0
    clock.set(row.next_attempt_at - timedelta(seconds=1))
    assert await send.dispatch_batch() == 0
    assert (await delivery.message_of_case(case_id)).attempts == 1

    clock.advance(timedelta(seconds=2))
    assert await send.dispatch_batch() == 1

    row = await delivery.message_of_case(case_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.sent_at == clock.now()
    assert row.last_error is None
    assert row.next_attempt_at is None
    assert server.recipients == ["anna.nowak@klient.example.pl"]
    events = await delivery.events()
    assert [e.type for e in events] == [NotificationSentV1.EVENT_TYPE]
    assert events[0].data.attempts == 2


async def test_message_refused_for_now_at_every_attempt_fails_for_good_after_max_attempts(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    clock = delivery.clock
    server = start_smtp(rcpt=["452 4.2.2 Mailbox full"] * 5)
    policy = DeliveryPolicy(max_attempts=2, first_retry_after=timedelta(seconds=30))
    send = delivery.dispatcher(server.port, policy)
    event = delivery.case_opened()
    case_id = event.data.case_id
    assert await delivery.prepare(event) == "pending"

    assert await send.dispatch_batch() == 1
    assert (await delivery.message_of_case(case_id)).status == "pending"
    clock.advance(timedelta(seconds=31))
    assert await send.dispatch_batch() == 1

    row = await delivery.message_of_case(case_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.next_attempt_at is None
    assert row.last_error
    assert row.sent_at is None
    # Failed is final: however far time moves, it is not tried again.
    clock.advance(timedelta(days=1))
    assert await send.dispatch_batch() == 0
    assert server.received == []

    events = await delivery.events()
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.message_id, failed.case_id) == (row.message_id, case_id)
    assert (failed.reason, failed.attempts) == ("delivery_failed", 2)
    assert failed.detail


async def test_opted_out_address_is_suppressed_whatever_its_case(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.opt_out("anna.nowak@klient.example.pl")
    event = delivery.case_opened(email="Anna.Nowak@Klient.Example.PL")

    assert await delivery.prepare(event) == "suppressed"
    assert await delivery.dispatcher(sink.controller.port).dispatch_batch() == 0

    assert read_mailbox(sink.maildir) == []
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("suppressed", 0, None)
    events = await delivery.events()
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.reason, failed.attempts, failed.message_id) == ("opted_out", 0, row.message_id)


async def test_opt_out_of_another_tenant_does_not_suppress_the_message(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.opt_out("anna.nowak@klient.example.pl", tenant=f"{delivery.tenant}-other")
    event = delivery.case_opened()

    assert await delivery.prepare(event) == "pending"
    assert await delivery.dispatcher(sink.controller.port).dispatch_batch() == 1

    assert len(mails_of_case(sink, event.data.case_id)) == 1
    assert (await delivery.message_of_case(event.data.case_id)).status == "sent"


async def test_customer_without_email_gets_no_recipient_status(delivery: Delivery) -> None:
    event = delivery.case_opened(email=None)

    assert await delivery.prepare(event) == "no_recipient"
    assert await delivery.dispatcher(free_port()).dispatch_batch() == 0

    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.recipient, row.attempts) == ("no_recipient", None, 0)
    events = await delivery.events()
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.reason, failed.message_id) == ("no_recipient", row.message_id)


async def test_opt_out_registered_while_a_retry_is_pending_stops_the_message(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp(rcpt=["451 4.7.1 Greylisted, please try again later"])
    send = delivery.dispatcher(server.port)
    event = delivery.case_opened()
    assert await delivery.prepare(event) == "pending"
    assert await send.dispatch_batch() == 1  # refused for now; a retry is scheduled
    # The customer opts out before the retry, writing the address another way.
    await delivery.opt_out("ANNA.NOWAK@klient.EXAMPLE.pl")
    delivery.clock.advance(timedelta(hours=1))

    assert await send.dispatch_batch() == 1

    assert server.received == []
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("suppressed", 1, None)
    events = await delivery.events()
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    assert events[0].data.reason == "opted_out"


# -- HTTP API, with the service's lifespan (consumer, dispatcher, relay) -----------------------


async def test_opt_out_api_adds_once_and_removes_any_spelling_of_the_address(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    headers = bearer(tenant, "read", "responses:write", "cases:write")

    async def stored() -> list[str]:
        async with sessions() as session:
            found = await session.scalars(
                sa.select(opt_outs.c.email).where(opt_outs.c.tenant_id == tenant)
            )
            return list(found.all())

    first = await api.post(
        "/v1/opt-outs", json={"email": "Jan.Kowalski@Example.COM"}, headers=headers
    )
    assert first.status_code == 201, first.text
    assert first.json() == {
        "tenant_id": tenant,
        "email": "jan.kowalski@example.com",
        "status": "opted_out",
    }
    # Full-width letters in the domain are the same address once normalised.
    again = await api.post(
        "/v1/opt-outs", json={"email": f"jan.kowalski@{fullwidth('EXAMPLE')}.com"}, headers=headers
    )
    assert again.status_code == 200, again.text
    assert await stored() == ["jan.kowalski@example.com"]

    removed = await api.delete("/v1/opt-outs/JAN.KOWALSKI@example.com", headers=headers)
    assert removed.status_code == 204
    assert await stored() == []


@pytest.mark.parametrize(
    "email", ["not an address", "a@[b.c", "anna,boss@example.com", "anna<boss@example.com>"]
)
async def test_opt_out_api_refuses_an_address_that_is_not_one_mailbox(
    api: httpx.AsyncClient,
    tenant: str,
    email: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    headers = bearer(tenant, "read", "responses:write", "cases:write")

    added = await api.post("/v1/opt-outs", json={"email": email}, headers=headers)
    removed = await api.delete(f"/v1/opt-outs/{quote(email)}", headers=headers)

    for answer, location in ((added, ["body", "email"]), (removed, ["path", "email"])):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["location"] for e in answer.json()["errors"]] == [location]


async def test_case_opened_on_the_topic_becomes_a_sent_message_listed_by_the_api(
    notifier: tuple[FastAPI, MailSink],
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    delivery: Delivery,
    bearer: Callable[..., dict[str, str]],
) -> None:
    tenant = delivery.tenant
    app, sink = notifier
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    event = delivery.case_opened()
    case_id = str(event.data.case_id)
    await runtime.producer.send(
        OutboundRecord(
            Topic.CASES.address(runtime.settings.kafka_topic_prefix),
            event.partitionkey,
            event.encode(),
        )
    )

    async def listed() -> list[dict[str, Any]]:
        answer = await api.get(
            "/v1/messages",
            params={"case_id": case_id},
            headers=bearer(tenant, "read", "responses:write", "cases:write"),
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["messages"]
        return found

    async with asyncio.timeout(30):
        while [m["status"] for m in await listed()] != ["sent"]:
            await asyncio.sleep(0.1)

    [message] = await listed()
    assert message["case_id"] == case_id
    assert (message["kind"], message["locale"], message["attempts"]) == ("apology", "pl", 1)
    assert message["recipient"] == "anna.nowak@klient.example.pl"
    assert len(mails_of_case(sink, event.data.case_id)) == 1
    other = await api.get(
        "/v1/messages", params={"case_id": case_id}, headers=bearer(f"{tenant}-other", "read")
    )
    assert other.json()["messages"] == []

    # The relay publishes the notification.sent.v1 the dispatcher queued.
    async with asyncio.timeout(15):
        while True:
            async with sessions() as session:
                unpublished = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
                )
                published = set(
                    await session.scalars(
                        sa.select(OUTBOX.c.event_type).where(
                            OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_not(None)
                        )
                    )
                )
            if unpublished == 0 and published:
                break
            await asyncio.sleep(0.1)
    assert published == {NotificationSentV1.EVENT_TYPE, NotificationSentV2.EVENT_TYPE}
