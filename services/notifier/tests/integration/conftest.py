"""The notifier's delivery path, driven step by step against the real PostgreSQL and real SMTP
servers (the dev mail sink, or aiosmtpd servers that answer as a test needs).

The case handlers (`CaseMessages`) and the `Dispatcher` are driven directly with a `FixedClock`:
a retry becomes due because the test moves the clock, never because it sleeps. Each test's
tenant starts with settings that keep timing out of the way (no reply delay, no quiet hours, no
frequency cap, no new-case alert); tests of those features set them with `configure`.

Isolation: `Dispatcher.dispatch_batch` serves the most overdue messages of ANY tenant, and the
messages table is shared with other runs and other test files. Each test therefore starts its
clock a day before the earliest message already waiting in the table (pending, or sending under
a lease) and no later than 2001: the only messages that are ever due for that clock are the ones
the test itself prepared, so the test never sends another test's message and can assert that a
`dispatch_batch` found nothing to do. A test that may leave messages waiting calls `finish()`.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import FixedClock
from closeloop_common.db import make_engine, make_sessionmaker, transaction
from closeloop_common.events import (
    CaseOpenedV1,
    CaseSlaAlertV1,
    CaseUpdatedV1,
    Category,
    CloudEvent,
    Customer,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    Owner,
    Playbook,
    decode_event,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_common.outbox import Outbox
from closeloop_common.tenants import TenantConfig, TenantDirectory
from closeloop_devtools.mailsink import MailSink, read_mailbox
from closeloop_notifier.adapters.channels import Channel
from closeloop_notifier.adapters.email import SmtpPool, SmtpSettings
from closeloop_notifier.adapters.tables import messages, metadata
from closeloop_notifier.adapters.webhook import WebhookChannel
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.rendering import Renderer
from closeloop_notifier.domain.tenant_settings import MessagingSettings, ReplyDelay
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_notifier.service_layer import settings_store
from closeloop_notifier.service_layer.case_messages import CaseMessages
from closeloop_notifier.service_layer.compose import Composer, Sender
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy, Dispatcher
from closeloop_notifier.service_layer.policy import add_opt_out
from closeloop_notifier.service_layer.settings_store import SettingsStore

OUTBOX = metadata.tables["notifier.outbox"]
SOURCE = "/closeloop/notifier"
SENDER = "feedback@acme.example"
OWNER = Owner(id="owner-ewa", name="Ewa Zielińska", email="ewa.zielinska@acme.example")
CUSTOMER_EMAIL = "anna.nowak@klient.example.pl"
LATEST_START = datetime(2001, 1, 1, tzinfo=UTC)
UNSUBSCRIBE_SECRET = "notifier-it-unsubscribe-secret"
PUBLIC_URL = "http://notifier.test"
RENDERER = Renderer()
# What each test's tenant starts with: timing and suppression out of the way.
QUIET_SETTINGS = MessagingSettings(
    reply_delay=ReplyDelay(min_minutes=0, max_minutes=0),
    quiet_hours=None,
    frequency_cap=None,
    team_messages=frozenset(),
)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fullwidth(ascii_text: str) -> str:
    """`ascii_text` in full-width letters (U+FF21...): another spelling of the same domain."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


def mails_of_case(sink: MailSink, case_id: uuid.UUID) -> list[EmailMessage]:
    return [m for m in read_mailbox(sink.maildir) if m["X-Closeloop-Case-Id"] == str(case_id)]


class Delivery:
    """One test's tenant, clock and database: prepares cases, builds dispatchers, reads results."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        clock: FixedClock,
        tenant: str,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.clock = clock
        self.tenant = tenant
        self.settings = SettingsStore(sessions, ttl=0)
        self.speak(None)

    def speak(self, locale: str | None) -> None:
        """The tenant's language (`TENANTS_FILE`'s `default_locale`): the team's messages and
        customers of unknown locale get it."""
        tenants = TenantDirectory({self.tenant: TenantConfig(default_locale=locale)})
        self.composer = Composer(
            renderer=RENDERER,
            tenants=tenants,
            default_sender=Sender(address=SENDER, name="Acme Customer Care", company="Acme"),
            unsubscribe_secret=UNSUBSCRIBE_SECRET,
            public_url=PUBLIC_URL,
        )
        self.handlers = CaseMessages(self.composer, self.settings, random.Random(7))

    async def configure(self, settings: MessagingSettings = QUIET_SETTINGS, **changes: Any) -> None:
        """Store the tenant's messaging settings (`changes` on top of `settings`)."""
        wanted = MessagingSettings.model_validate({**settings.model_dump(), **changes})
        async with transaction(self.sessions) as session:
            _, version = await settings_store.load(session, self.tenant)
            await settings_store.save(
                session,
                tenant_id=self.tenant,
                settings=wanted,
                expected_version=version,
                actor="test",
                now=self.clock.now(),
            )

    def case_opened(
        self,
        *,
        email: str | None = CUSTOMER_EMAIL,
        name: str | None = "Anna Nowak",
        locale: str | None = "pl-PL",
        score: int = 2,
        comment: str | None = "Faktura znowu była błędna.",
        key_account: bool = False,
    ) -> CloudEvent[CaseOpenedV1]:
        """A case as the orchestrator publishes it (by default a Polish detractor: apology)."""
        case_id = uuid.uuid4()
        category, playbook = (
            (Category.DETRACTOR, Playbook.APOLOGY_CALLBACK)
            if score <= 6
            else (Category.PASSIVE, Playbook.IMPROVEMENT_ASK)
            if score <= 8
            else (Category.PROMOTER, Playbook.THANKS_REFERRAL)
        )
        data = CaseOpenedV1(
            case_id=case_id,
            response_id=f"r-{uuid.uuid4().hex}",
            survey_id="relationship-2026",
            customer=Customer(
                id=f"cust-{uuid.uuid4().hex[:10]}", email=email, name=name, locale=locale
            ),
            account_id="hurtownia-nowak",
            score=score,
            category=category,
            comment=comment,
            playbook=playbook,
            owner=OWNER,
            key_account=key_account,
            opened_at=self.clock.now(),
            first_contact_due_at=self.clock.now() + timedelta(days=1),
            channel="phone",
            priority="high",
        )
        return new_event(
            data,
            tenant_id=self.tenant,
            source="/closeloop/orchestrator",
            clock=self.clock,
            subject=str(case_id),
        )

    async def handle(
        self,
        event: CloudEvent[CaseOpenedV1]
        | CloudEvent[CaseUpdatedV1]
        | CloudEvent[CaseSlaAlertV1]
        | CloudEvent[NoResponseCaseOpenedV1]
        | CloudEvent[NoResponseCaseUpdatedV1],
    ) -> None:
        """The event's handler in its own transaction, as the consumer runs it."""
        async with transaction(self.sessions) as session:
            tx = Transaction(session=session, clock=self.clock, source=SOURCE, outbox=self.outbox)
            ctx = tx.context(event.tenantid)
            if isinstance(event.data, CaseOpenedV1):
                await self.handlers.on_opened(ctx, event)
            elif isinstance(event.data, NoResponseCaseOpenedV1):
                await self.handlers.on_no_response_opened(ctx, event)
            elif isinstance(event.data, NoResponseCaseUpdatedV1):
                # A subclass of CaseUpdatedV1: the consumer tells them apart by the event's type.
                no_response = cast("CloudEvent[NoResponseCaseUpdatedV1]", event)
                await self.handlers.on_no_response_updated(ctx, no_response)
            elif isinstance(event.data, CaseUpdatedV1):
                await self.handlers.on_updated(ctx, cast("CloudEvent[CaseUpdatedV1]", event))
            else:
                await self.handlers.on_sla_alert(ctx, event)
            await tx.flush()

    async def prepare(self, event: CloudEvent[CaseOpenedV1]) -> str:
        """Handle `event`; the status of the customer's message it stored, or `duplicate`."""
        before = len(await self.messages_of_case(event.data.case_id))
        await self.handle(event)
        rows = await self.messages_of_case(event.data.case_id)
        return "duplicate" if len(rows) == before else str(rows[0].status)

    def channels(self, smtp_port: int, **smtp: Any) -> dict[str, Channel]:
        return {
            "email": SmtpPool(
                SmtpSettings(host="127.0.0.1", port=smtp_port, timeout=5, size=2, **smtp)
            ),
            "webhook": WebhookChannel(allow_private=True, timeout=5),
        }

    def dispatcher(
        self,
        smtp_port: int,
        policy: DeliveryPolicy | None = None,
        *,
        channels: dict[str, Channel] | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        batch_size: int = 50,
    ) -> Dispatcher:
        return Dispatcher(
            sessions=sessions or self.sessions,
            outbox=self.outbox,
            channels=channels or self.channels(smtp_port),
            composer=self.composer,
            settings=self.settings,
            clock=self.clock,
            source=SOURCE,
            policy=policy or DeliveryPolicy(),
            batch_size=batch_size,
            rng=random.Random(11),
        )

    async def messages_of_case(
        self, case_id: uuid.UUID, *, audience: str | None = "customer"
    ) -> list[Any]:
        """The case's messages (its customer's, unless another audience or None is asked)."""
        query = sa.select(messages).where(
            messages.c.tenant_id == self.tenant, messages.c.case_id == case_id
        )
        if audience is not None:
            query = query.where(messages.c.audience == audience)
        async with self.sessions() as session:
            rows = await session.execute(query.order_by(messages.c.created_at))
            return list(rows.all())

    async def message_of_case(self, case_id: uuid.UUID) -> Any:
        rows = await self.messages_of_case(case_id)
        assert len(rows) == 1, rows
        return rows[0]

    async def events(self, version: int = 1) -> list[CloudEvent[Any]]:
        """The events of a contract version (`notification.*.v1` by default) the tenant's
        messages queued in the notifier's outbox, in order."""
        async with self.sessions() as session:
            payloads = await session.scalars(
                sa.select(OUTBOX.c.payload)
                .where(OUTBOX.c.tenant_id == self.tenant)
                .order_by(OUTBOX.c.seq)
            )
            found = [decode_event(p) for p in payloads.all()]
        return [e for e in found if e.type.endswith(f".v{version}")]

    async def opt_out(self, email: str, *, tenant: str | None = None) -> None:
        """Record an opt-out as the API does."""
        async with transaction(self.sessions) as session:
            await add_opt_out(
                session=session,
                tenant_id=tenant or self.tenant,
                email=email,
                clock=self.clock,
            )

    async def finish(self) -> None:
        """Leaves none of the tenant's messages waiting (whatever the code under test did)."""
        async with transaction(self.sessions) as session:
            await session.execute(
                sa.update(messages)
                .where(
                    messages.c.tenant_id == self.tenant,
                    messages.c.status.in_(("pending", "sending")),
                )
                .values(status="failed", next_attempt_at=None, lease_until=None)
            )


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
    """A clock before every waiting message in the shared table (see the module docstring)."""
    async with sessions() as session:
        earliest_pending = await session.scalar(
            sa.select(sa.func.min(messages.c.next_attempt_at)).where(messages.c.status == "pending")
        )
        earliest_lease = await session.scalar(
            sa.select(sa.func.min(messages.c.lease_until)).where(messages.c.status == "sending")
        )
    start = min(t for t in (LATEST_START, earliest_pending, earliest_lease) if t is not None)
    if start != LATEST_START:
        start -= timedelta(days=1)
    return FixedClock(start.replace(microsecond=0))


@pytest.fixture
async def delivery(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, clock: FixedClock, tenant: str
) -> Delivery:
    delivery = Delivery(sessions, outbox, clock, tenant)
    await delivery.configure()
    return delivery


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


class ScriptedSmtp:
    """An SMTP server (aiosmtpd handler) that answers as a test scripts it and records the
    envelope and content of every message it accepted.

    `mail`/`data`: a reply to every MAIL FROM / DATA instead of accepting it. `rcpt`: replies to
    the next RCPT TO commands, one each, in order (then recipients are accepted).
    `refuse_recipients`: addresses always refused with 550. `password`: AUTH is offered, and a
    login with another password gets 535.
    """

    def __init__(
        self,
        *,
        mail: str | None = None,
        rcpt: list[str] | None = None,
        data: str | None = None,
        refuse_recipients: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        self.mail_reply = mail
        self.rcpt_replies = list(rcpt or [])
        self.data_reply = data
        self.refuse_recipients = refuse_recipients
        self.password = password
        self.received: list[tuple[list[str], bytes]] = []
        self.port = 0

    @property
    def recipients(self) -> list[str]:
        return [address for rcpt_tos, _ in self.received for address in rcpt_tos]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        if address in self.refuse_recipients:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.received.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        given = getattr(auth_data, "password", b"")
        if self.password is not None and given == self.password.encode():
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., ScriptedSmtp]]:
    """Starts a `ScriptedSmtp` server on a free port (keyword arguments: its script); stopped
    after the test."""
    started: list[Controller] = []

    def start(**script: Any) -> ScriptedSmtp:
        handler = ScriptedSmtp(**script)
        handler.port = free_port()
        options: dict[str, Any] = {}
        if handler.password is not None:
            options = {"authenticator": handler.authenticate, "auth_require_tls": False}
        server = Controller(handler, hostname="127.0.0.1", port=handler.port, **options)
        server.start()
        started.append(server)
        return handler

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def notifier(
    infra: dict[str, str], start_sink: Callable[[int], MailSink]
) -> AsyncIterator[tuple[FastAPI, MailSink]]:
    """The notifier app running its lifespan, delivering to a sink of its own (its unsubscribe
    links are the `delivery` harness's)."""
    sink = start_sink(free_port())
    app = create_notifier_app(
        NotifierSettings(
            notifier_smtp_port=sink.controller.port,
            notifier_unsubscribe_secret=SecretStr(UNSUBSCRIBE_SECRET),
            notifier_public_url=PUBLIC_URL,
        )
    )
    async with app.router.lifespan_context(app):
        yield app, sink


@pytest.fixture
async def api(notifier: tuple[FastAPI, MailSink]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=notifier[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
