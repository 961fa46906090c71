"""The notifier's delivery path, driven step by step against the real PostgreSQL and real SMTP
servers (the dev mail sink, or aiosmtpd servers that answer as a test needs).

`prepare_message` and `Dispatcher` are driven directly with a `FixedClock`: a retry becomes due
because the test moves the clock, never because it sleeps.

Isolation: `Dispatcher.dispatch_one` serves the most overdue message of ANY tenant, and the
messages table is shared with other runs and other test files. Each test therefore starts its
clock a day before the earliest message already waiting in the table (pending, or sending under
a lease) and no later than 2001: the only messages that are ever due for that clock are the ones
the test itself prepared, so the test never sends another test's message and can assert that a
`dispatch_one` found nothing to do. A test that may leave messages waiting calls `finish()`.
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

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import FixedClock
from closeloop_common.db import make_engine, make_sessionmaker, transaction
from closeloop_common.events import (
    CaseOpenedV1,
    Category,
    CloudEvent,
    Customer,
    Owner,
    Playbook,
    decode_event,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_common.outbox import Outbox
from closeloop_devtools.mailsink import MailSink, read_mailbox
from closeloop_notifier.adapters.smtp import SmtpSender
from closeloop_notifier.adapters.tables import messages, metadata
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.service_layer.dispatch import Dispatcher
from closeloop_notifier.service_layer.policy import DeliveryPolicy, add_opt_out
from closeloop_notifier.service_layer.prepare import prepare_message

OUTBOX = metadata.tables["notifier.outbox"]
SOURCE = "/closeloop/notifier"
SENDER = "feedback@acme.example"
OWNER = Owner(id="owner-ewa", name="Ewa Zielińska", email="ewa.zielinska@acme.example")
CUSTOMER_EMAIL = "anna.nowak@klient.example.pl"
LATEST_START = datetime(2001, 1, 1, tzinfo=UTC)


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

    def case_opened(self, *, email: str | None = CUSTOMER_EMAIL) -> CloudEvent[CaseOpenedV1]:
        """A detractor's case as the orchestrator publishes it (Polish customer: apology)."""
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
            opened_at=self.clock.now(),
            first_contact_due_at=self.clock.now() + timedelta(days=1),
        )
        return new_event(
            data,
            tenant_id=self.tenant,
            source="/closeloop/orchestrator",
            clock=self.clock,
            subject=str(case_id),
        )

    async def prepare(self, event: CloudEvent[CaseOpenedV1]) -> str:
        """`prepare_message` in its own transaction, as the consumer runs it."""
        async with transaction(self.sessions) as session:
            tx = Transaction(session=session, clock=self.clock, source=SOURCE, outbox=self.outbox)
            status = await prepare_message(
                tx.context(event.tenantid), event, company_name="Acme", wake=asyncio.Event()
            )
            await tx.flush()
            return status

    def dispatcher(
        self,
        smtp_port: int,
        policy: DeliveryPolicy | None = None,
        *,
        sender: SmtpSender | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> Dispatcher:
        return Dispatcher(
            sessions=sessions or self.sessions,
            outbox=self.outbox,
            sender=sender or SmtpSender(host="127.0.0.1", port=smtp_port, timeout=5),
            clock=self.clock,
            source=SOURCE,
            sender_address=SENDER,
            sender_name="Acme Customer Care",
            policy=policy or DeliveryPolicy(),
        )

    async def messages_of_case(self, case_id: uuid.UUID) -> list[Any]:
        async with self.sessions() as session:
            rows = await session.execute(
                sa.select(messages).where(
                    messages.c.tenant_id == self.tenant, messages.c.case_id == case_id
                )
            )
            return list(rows.all())

    async def message_of_case(self, case_id: uuid.UUID) -> Any:
        rows = await self.messages_of_case(case_id)
        assert len(rows) == 1, rows
        return rows[0]

    async def events(self) -> list[CloudEvent[Any]]:
        """The events the tenant's messages queued in the notifier's outbox, in order."""
        async with self.sessions() as session:
            payloads = await session.scalars(
                sa.select(OUTBOX.c.payload)
                .where(OUTBOX.c.tenant_id == self.tenant)
                .order_by(OUTBOX.c.seq)
            )
            return [decode_event(p) for p in payloads.all()]

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
def delivery(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, clock: FixedClock, tenant: str
) -> Delivery:
    return Delivery(sessions, outbox, clock, tenant)


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
