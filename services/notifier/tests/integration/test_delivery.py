"""The notifier's delivery path against the real PostgreSQL, a real SMTP server (the dev mail sink)
and, for the HTTP API, the real Kafka broker.

`prepare_message` and `Dispatcher` are driven directly with a `FixedClock`: a retry becomes due
because the test moves the clock, never because it sleeps.

Isolation: `Dispatcher.dispatch_one` serves the most overdue pending message of ANY tenant, and the
messages table is shared with other runs and other test files. Each test therefore starts its clock
a day before the earliest pending message already in the table (and no later than 2001): the only
messages that are ever due for that clock are the ones the test itself prepared, so the test never
sends another test's message and can assert that a `dispatch_one` found nothing to do.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import FixedClock
from closeloop_common.db import make_engine, make_sessionmaker, transaction
from closeloop_common.events import (
    CaseOpenedV1,
    Category,
    CloudEvent,
    Customer,
    NotificationFailedV1,
    NotificationSentV1,
    Owner,
    Playbook,
    Topic,
    decode_event,
    new_event,
)
from closeloop_common.kafka.producer import OutboundRecord
from closeloop_common.outbox import Outbox
from closeloop_common.runtime import ServiceRuntime
from closeloop_devtools.mailsink import MailSink, body_text, read_mailbox
from closeloop_notifier.adapters.smtp import SmtpSender
from closeloop_notifier.adapters.tables import messages, metadata, opt_outs
from closeloop_notifier.entrypoints.app import NotifierSettings, create_notifier_app
from closeloop_notifier.service_layer.messages import DeliveryPolicy, Dispatcher, prepare_message

OUTBOX = metadata.tables["notifier.outbox"]
SOURCE = "/closeloop/notifier"
SENDER = "feedback@acme.example"
OWNER = Owner(id="owner-ewa", name="Ewa Zielińska", email="ewa.zielinska@acme.example")
LATEST_START = datetime(2001, 1, 1, tzinfo=UTC)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(infra: dict[str, str]) -> NotifierSettings:
    return NotifierSettings()


@pytest.fixture(scope="module")
async def sessions(settings: NotifierSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url, pool_size=2, application_name="notifier-it")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def outbox(settings: NotifierSettings) -> Outbox:
    return Outbox(OUTBOX, topic_prefix=settings.kafka_topic_prefix)


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    """A tenant of this test alone; afterwards its outbox rows are marked published.

    These tests call the service layer without a relay. An unpublished row would otherwise wait
    for a later run's relay, which cannot publish it: this run's topics are deleted at its end.
    """
    tenant = f"it-notifier-{uuid.uuid4().hex[:12]}"
    yield tenant
    async with transaction(sessions) as session:
        await session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_(None))
            .values(published_at=datetime.now(UTC))
        )


@pytest.fixture
async def clock(sessions: async_sessionmaker[AsyncSession]) -> FixedClock:
    """A clock before every pending message in the shared table (see the module docstring)."""
    async with sessions() as session:
        earliest = await session.scalar(
            sa.select(sa.func.min(messages.c.next_attempt_at)).where(messages.c.status == "pending")
        )
    start = LATEST_START if earliest is None else min(LATEST_START, earliest - timedelta(days=1))
    return FixedClock(start.replace(microsecond=0))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def start_sink(tmp_path: Path) -> Iterator[Callable[[int], MailSink]]:
    """Starts real SMTP sinks (aiosmtpd) on given ports; stops them after the test."""
    started: list[MailSink] = []

    def start(port: int) -> MailSink:
        sink = MailSink(tmp_path / f"mail-{port}", port=port)
        sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


# -- helpers -----------------------------------------------------------------------------------


def case_opened(
    tenant: str, clock: FixedClock, *, email: str | None = "anna.nowak@klient.example.pl"
) -> CloudEvent[CaseOpenedV1]:
    """A detractor's case as the orchestrator publishes it (Polish customer: apology template)."""
    case_id = uuid.uuid4()
    data = CaseOpenedV1(
        case_id=case_id,
        response_id=f"r-{uuid.uuid4().hex}",
        survey_id="relationship-2026",
        customer=Customer(
            id=f"cust-{uuid.uuid4().hex[:10]}", email=email, name="Anna Nowak", locale="pl-PL"
        ),
        account_id="hurtownia-nowak",
        score=2,
        category=Category.DETRACTOR,
        comment="Faktura znowu była błędna.",
        playbook=Playbook.APOLOGY_CALLBACK,
        owner=OWNER,
        key_account=False,
        opened_at=clock.now(),
        first_contact_due_at=clock.now() + timedelta(days=1),
    )
    return new_event(
        data,
        tenant_id=tenant,
        source="/closeloop/orchestrator",
        clock=clock,
        subject=str(case_id),
    )


async def prepare(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    event: CloudEvent[CaseOpenedV1],
) -> str:
    """`prepare_message` in its own transaction, as the consumer runs it."""
    async with transaction(sessions) as session:
        return await prepare_message(
            session=session,
            outbox=outbox,
            clock=clock,
            source=SOURCE,
            company_name="Acme",
            event=event,
            wake=asyncio.Event(),
        )


def dispatcher(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    smtp_port: int,
    policy: DeliveryPolicy | None = None,
) -> Dispatcher:
    return Dispatcher(
        sessions=sessions,
        outbox=outbox,
        sender=SmtpSender(host="127.0.0.1", port=smtp_port, timeout=5),
        clock=clock,
        source=SOURCE,
        sender_address=SENDER,
        sender_name="Acme Customer Care",
        policy=policy or DeliveryPolicy(),
    )


async def messages_of_case(
    sessions: async_sessionmaker[AsyncSession], tenant: str, case_id: uuid.UUID
) -> list[Any]:
    async with sessions() as session:
        rows = await session.execute(
            sa.select(messages).where(messages.c.tenant_id == tenant, messages.c.case_id == case_id)
        )
        return list(rows.all())


async def message_of_case(
    sessions: async_sessionmaker[AsyncSession], tenant: str, case_id: uuid.UUID
) -> Any:
    rows = await messages_of_case(sessions, tenant, case_id)
    assert len(rows) == 1, rows
    return rows[0]


async def outbox_events(
    sessions: async_sessionmaker[AsyncSession], tenant: str
) -> list[CloudEvent[Any]]:
    """The events the tenant's messages queued in the notifier's outbox, in order."""
    async with sessions() as session:
        payloads = await session.scalars(
            sa.select(OUTBOX.c.payload).where(OUTBOX.c.tenant_id == tenant).order_by(OUTBOX.c.seq)
        )
        return [decode_event(p) for p in payloads.all()]


async def opt_out(
    sessions: async_sessionmaker[AsyncSession], tenant: str, email: str, clock: FixedClock
) -> None:
    """Record an opt-out as the API stores it (lower case)."""
    async with transaction(sessions) as session:
        await session.execute(
            sa.insert(opt_outs).values(
                tenant_id=tenant, email=email.lower(), created_at=clock.now()
            )
        )


def mails_of_case(sink: MailSink, case_id: uuid.UUID) -> list[EmailMessage]:
    return [m for m in read_mailbox(sink.maildir) if m["X-Closeloop-Case-Id"] == str(case_id)]


# -- prepare and dispatch ----------------------------------------------------------------------


async def test_prepared_message_is_delivered_over_smtp_and_recorded_as_sent(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    sink = start_sink(free_port())
    event = case_opened(tenant, clock)
    case = event.data

    assert await prepare(sessions, outbox, clock, event) == "pending"
    assert await dispatcher(sessions, outbox, clock, sink.controller.port).dispatch_one() is True

    mails = read_mailbox(sink.maildir)
    assert len(mails) == 1
    mail = mails[0]
    row = await message_of_case(sessions, tenant, case.case_id)
    assert mail["To"] == "anna.nowak@klient.example.pl"
    assert mail["X-Closeloop-Case-Id"] == str(case.case_id)
    assert mail["X-Closeloop-Template"] == "apology"
    assert mail["Reply-To"] == OWNER.email
    assert mail["Subject"] == "Przepraszamy i chcemy to naprawić"
    assert mail["Message-ID"] == f"<{row.message_id}@closeloop>"
    assert SENDER in mail["From"]
    body = body_text(mail)
    assert "Dzień dobry, Anna Nowak," in body
    assert "> Faktura znowu była błędna." in body
    assert OWNER.name in body

    assert (row.status, row.attempts, row.locale) == ("sent", 1, "pl")
    assert row.sent_at == clock.now()
    assert row.next_attempt_at is None
    assert row.last_error is None

    events = await outbox_events(sessions, tenant)
    assert [e.type for e in events] == [NotificationSentV1.EVENT_TYPE]
    sent = events[0]
    assert isinstance(sent.data, NotificationSentV1)
    assert sent.tenantid == tenant
    assert sent.partitionkey == f"{tenant}:{case.customer.id}"
    assert (sent.data.message_id, sent.data.case_id, sent.data.attempts) == (
        row.message_id,
        case.case_id,
        1,
    )
    assert sent.data.recipient == "anna.nowak@klient.example.pl"


async def test_case_prepared_twice_stores_one_message_and_sends_it_once(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    sink = start_sink(free_port())
    event = case_opened(tenant, clock)
    send = dispatcher(sessions, outbox, clock, sink.controller.port)

    assert await prepare(sessions, outbox, clock, event) == "pending"
    assert await prepare(sessions, outbox, clock, event) == "duplicate"
    assert len(await messages_of_case(sessions, tenant, event.data.case_id)) == 1

    assert await send.dispatch_one() is True
    assert await send.dispatch_one() is False
    # The event delivered once more after the message went out changes nothing either.
    assert await prepare(sessions, outbox, clock, event) == "duplicate"
    assert await send.dispatch_one() is False

    assert len(mails_of_case(sink, event.data.case_id)) == 1
    assert len(read_mailbox(sink.maildir)) == 1
    row = await message_of_case(sessions, tenant, event.data.case_id)
    assert (row.status, row.attempts) == ("sent", 1)
    assert [e.type for e in await outbox_events(sessions, tenant)] == [
        NotificationSentV1.EVENT_TYPE
    ]


async def test_delivery_is_retried_after_the_backoff_when_smtp_is_down(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    port = free_port()  # nothing listens here until the sink starts below
    policy = DeliveryPolicy(first_retry_after=timedelta(seconds=30))
    send = dispatcher(sessions, outbox, clock, port, policy)
    event = case_opened(tenant, clock)
    case_id = event.data.case_id
    assert await prepare(sessions, outbox, clock, event) == "pending"

    assert await send.dispatch_one() is True
    row = await message_of_case(sessions, tenant, case_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error
    assert "Connection" in row.last_error
    assert row.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert row.sent_at is None
    assert await outbox_events(sessions, tenant) == []

    # Not due yet: nothing is tried at the same time, nor a second before the retry time.
    assert await send.dispatch_one() is False
    clock.advance(timedelta(seconds=29))
    assert await send.dispatch_one() is False
    assert (await message_of_case(sessions, tenant, case_id)).attempts == 1

    sink = start_sink(port)
    clock.advance(timedelta(seconds=2))
    assert await send.dispatch_one() is True

    row = await message_of_case(sessions, tenant, case_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.sent_at == clock.now()
    assert row.last_error is None
    assert row.next_attempt_at is None
    assert len(mails_of_case(sink, case_id)) == 1
    events = await outbox_events(sessions, tenant)
    assert [e.type for e in events] == [NotificationSentV1.EVENT_TYPE]
    assert events[0].data.attempts == 2


async def test_message_fails_for_good_after_max_attempts(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
) -> None:
    policy = DeliveryPolicy(max_attempts=2, first_retry_after=timedelta(seconds=30))
    send = dispatcher(sessions, outbox, clock, free_port(), policy)  # SMTP is down throughout
    event = case_opened(tenant, clock)
    case_id = event.data.case_id
    assert await prepare(sessions, outbox, clock, event) == "pending"

    assert await send.dispatch_one() is True
    assert (await message_of_case(sessions, tenant, case_id)).status == "pending"
    clock.advance(timedelta(seconds=31))
    assert await send.dispatch_one() is True

    row = await message_of_case(sessions, tenant, case_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.next_attempt_at is None
    assert row.last_error
    assert row.sent_at is None
    # Failed is final: however far time moves, it is not tried again.
    clock.advance(timedelta(days=1))
    assert await send.dispatch_one() is False

    events = await outbox_events(sessions, tenant)
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.message_id, failed.case_id) == (row.message_id, case_id)
    assert (failed.reason, failed.attempts) == ("delivery_failed", 2)
    assert failed.detail


async def test_opted_out_address_is_suppressed_whatever_its_case(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    sink = start_sink(free_port())
    await opt_out(sessions, tenant, "anna.nowak@klient.example.pl", clock)
    event = case_opened(tenant, clock, email="Anna.Nowak@Klient.Example.PL")

    assert await prepare(sessions, outbox, clock, event) == "suppressed"
    assert await dispatcher(sessions, outbox, clock, sink.controller.port).dispatch_one() is False

    assert read_mailbox(sink.maildir) == []
    row = await message_of_case(sessions, tenant, event.data.case_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("suppressed", 0, None)
    events = await outbox_events(sessions, tenant)
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.reason, failed.attempts, failed.message_id) == ("opted_out", 0, row.message_id)


async def test_opt_out_of_another_tenant_does_not_suppress_the_message(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    sink = start_sink(free_port())
    await opt_out(sessions, f"{tenant}-other", "anna.nowak@klient.example.pl", clock)
    event = case_opened(tenant, clock)

    assert await prepare(sessions, outbox, clock, event) == "pending"
    assert await dispatcher(sessions, outbox, clock, sink.controller.port).dispatch_one() is True

    assert len(mails_of_case(sink, event.data.case_id)) == 1
    assert (await message_of_case(sessions, tenant, event.data.case_id)).status == "sent"


async def test_customer_without_email_gets_no_recipient_status(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
) -> None:
    event = case_opened(tenant, clock, email=None)

    assert await prepare(sessions, outbox, clock, event) == "no_recipient"
    assert await dispatcher(sessions, outbox, clock, free_port()).dispatch_one() is False

    row = await message_of_case(sessions, tenant, event.data.case_id)
    assert (row.status, row.recipient, row.attempts) == ("no_recipient", None, 0)
    events = await outbox_events(sessions, tenant)
    assert [e.type for e in events] == [NotificationFailedV1.EVENT_TYPE]
    failed = events[0].data
    assert isinstance(failed, NotificationFailedV1)
    assert (failed.reason, failed.message_id) == ("no_recipient", row.message_id)


# -- temporary refusals and late opt-outs -----------------------------------------------------


class GreylistingHandler:
    """An SMTP server that refuses every recipient for now (4xx), as greylisting does."""

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        return "451 4.7.1 Greylisted, please try again later"


async def test_temporary_recipient_refusal_is_retried_later(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
) -> None:
    port = free_port()
    server = Controller(GreylistingHandler(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        event = case_opened(tenant, clock)
        assert await prepare(sessions, outbox, clock, event) == "pending"
        assert await dispatcher(sessions, outbox, clock, port).dispatch_one() is True
    finally:
        server.stop()

    row = await message_of_case(sessions, tenant, event.data.case_id)
    try:
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at == clock.now() + DeliveryPolicy().first_retry_after
        assert await outbox_events(sessions, tenant) == []
    finally:
        await _finish(sessions, tenant)


async def test_opt_out_registered_while_a_retry_is_pending_stops_the_message(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    clock: FixedClock,
    tenant: str,
    start_sink: Callable[[int], MailSink],
) -> None:
    port = free_port()  # SMTP is down for the first attempt
    send = dispatcher(sessions, outbox, clock, port)
    event = case_opened(tenant, clock)
    assert await prepare(sessions, outbox, clock, event) == "pending"
    assert await send.dispatch_one() is True  # failed; a retry is scheduled
    # The customer opts out before the retry.
    await opt_out(sessions, tenant, "anna.nowak@klient.example.pl", clock)
    sink = start_sink(port)
    clock.advance(timedelta(hours=1))

    await send.dispatch_one()

    try:
        assert mails_of_case(sink, event.data.case_id) == []
        row = await message_of_case(sessions, tenant, event.data.case_id)
        assert row.status != "sent"
    finally:
        await _finish(sessions, tenant)


async def _finish(sessions: async_sessionmaker[AsyncSession], tenant: str) -> None:
    """Leaves none of the tenant's messages pending (whatever the code under test did)."""
    async with transaction(sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == tenant, messages.c.status == "pending")
            .values(status="failed", next_attempt_at=None)
        )


# -- HTTP API, with the service's lifespan (consumer, dispatcher, relay) -----------------------


@pytest.fixture
async def notifier(
    infra: dict[str, str], start_sink: Callable[[int], MailSink]
) -> AsyncIterator[tuple[FastAPI, MailSink]]:
    """The notifier app running its lifespan, delivering to a sink of its own."""
    sink = start_sink(free_port())
    app = create_notifier_app(NotifierSettings(notifier_smtp_port=sink.controller.port))
    async with app.router.lifespan_context(app):
        yield app, sink


@pytest.fixture
async def api(notifier: tuple[FastAPI, MailSink]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=notifier[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_opt_out_api_adds_once_and_removes_case_insensitively(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    headers = bearer(tenant, "cases:write")

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
    again = await api.post(
        "/v1/opt-outs", json={"email": "jan.kowalski@example.com"}, headers=headers
    )
    assert again.status_code == 200, again.text
    assert await stored() == ["jan.kowalski@example.com"]

    removed = await api.delete("/v1/opt-outs/JAN.KOWALSKI@example.com", headers=headers)
    assert removed.status_code == 204
    assert await stored() == []


async def test_opt_out_api_refuses_an_invalid_address(
    api: httpx.AsyncClient, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    answer = await api.post(
        "/v1/opt-outs", json={"email": "not an address"}, headers=bearer(tenant, "cases:write")
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in answer.json()["errors"]] == [["body", "email"]]


async def test_case_opened_on_the_topic_becomes_a_sent_message_listed_by_the_api(
    notifier: tuple[FastAPI, MailSink],
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    app, sink = notifier
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    event = case_opened(tenant, FixedClock(datetime.now(UTC)))
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
            "/v1/messages", params={"case_id": case_id}, headers=bearer(tenant, "read")
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["messages"]
        return found

    async with asyncio.timeout(30):
        while [m["status"] for m in await listed()] != ["sent"]:
            await asyncio.sleep(0.1)

    [message] = await listed()
    assert message["case_id"] == case_id
    assert (message["template"], message["locale"], message["attempts"]) == ("apology", "pl", 1)
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
                published = await session.scalar(
                    sa.select(OUTBOX.c.event_type).where(
                        OUTBOX.c.tenant_id == tenant, OUTBOX.c.published_at.is_not(None)
                    )
                )
            if unpublished == 0 and published is not None:
                break
            await asyncio.sleep(0.1)
    assert published == NotificationSentV1.EVENT_TYPE
