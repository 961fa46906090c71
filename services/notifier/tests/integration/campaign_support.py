"""What the audience and campaign tests share: events as ingest and the orchestrator publish them,
a tiny renderer, and an `Audience` helper that drives the handler and the expander step by step
against the real PostgreSQL with a `FixedClock`.

Fixtures (import them into a test module to use them):
- `infra`: replaces the run-wide one for these modules: they need the notifier's schema only
  (migrated here, idempotently), never the broker.
- `clock`: starts before every waiting message and every unfinished campaign of the shared
  tables, so the expander (which takes the oldest expanding campaign of any tenant) only ever
  finds the test's own campaigns (see conftest.py's module docstring for messages).
- `audience`: the test's tenant and helper; afterwards its campaigns are finished and its
  waiting messages failed, so they wait for no other test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import FixedClock
from closeloop_common.db import transaction, upgrade
from closeloop_common.events import (
    Category,
    ChangeAudience,
    ChangeSegment,
    ChangeSummaryV1,
    ChangeText,
    CloudEvent,
    Customer,
    InvitationSentV1,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseVersion,
    Segments,
    decode_event,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_common.outbox import Outbox
from closeloop_common.settings import CommonSettings
from closeloop_notifier.adapters.tables import SCHEMA, campaigns, messages
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import greeting_for
from closeloop_notifier.domain.tenant_settings import MessagingSettings
from closeloop_notifier.service_layer.audience import keep_audience
from closeloop_notifier.service_layer.campaign_worker import CampaignExpander
from closeloop_notifier.service_layer.campaigns import open_campaign
from closeloop_notifier.service_layer.policy import add_opt_out

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "closeloop_notifier" / "migrations"
OUTBOX = f"{SCHEMA}.outbox"
SOURCE = "/closeloop/notifier"
LATEST_START = datetime(2001, 1, 1, tzinfo=UTC)
SURVEY = "relationship-2026"


# -- events ------------------------------------------------------------------------------------


def customer(
    customer_id: str,
    *,
    email: str | None = "auto",
    name: str | None = None,
    locale: str | None = None,
) -> Customer:
    return Customer(
        id=customer_id,
        email=f"{customer_id}@klient.example.pl" if email == "auto" else email,
        name=name,
        locale=locale,
    )


def received(
    tenant: str, response_id: str, who: Customer, *, at: datetime
) -> CloudEvent[ResponseReceivedV1]:
    data = ResponseReceivedV1(
        response_id=response_id,
        survey_id=SURVEY,
        customer=who,
        score=3,
        category=Category.DETRACTOR,
        comment="Faktury są nieczytelne.",
        answered_at=at,
        received_at=at,
        source="api",
    )
    return _event(data, tenant, at)


def corrected(
    tenant: str, response_id: str, who: Customer, *, at: datetime, version: int = 2
) -> CloudEvent[ResponseCorrectedV1]:
    data = ResponseCorrectedV1(
        response_id=response_id,
        version=version,
        survey_id=SURVEY,
        customer=who,
        score=5,
        category=Category.DETRACTOR,
        answered_at=at,
        updated_at=at,
        received_at=at,
        source="api",
        previous=ResponseVersion(
            version=version - 1,
            survey_id=SURVEY,
            score=3,
            category=Category.DETRACTOR,
            answered_at=at,
        ),
    )
    return _event(data, tenant, at)


def invited(
    tenant: str,
    invitation_id: str,
    who: Customer,
    *,
    at: datetime,
    product: str | None = "faktury",
    region: str | None = "pomorskie",
) -> CloudEvent[InvitationSentV1]:
    data = InvitationSentV1(
        invitation_id=invitation_id,
        survey_id=SURVEY,
        customer=who,
        channel="email",
        invited_at=at,
        segments=Segments(product=product, region=region),
    )
    return _event(data, tenant, at)


def _event(data: Any, tenant: str, at: datetime) -> CloudEvent[Any]:
    return new_event(data, tenant_id=tenant, source="/closeloop/ingest", clock=FixedClock(at))


POLISH = ChangeText(
    title="Czytelne faktury",
    summary="Nowy układ faktury pokazuje każdą pozycję osobno.",
    you_said="Faktury są nieczytelne.",
)
ENGLISH = ChangeText(
    title="Readable invoices",
    summary="The new invoice shows every line on its own.",
    you_said="Invoices are hard to read.",
)


def change_summary(
    tenant: str,
    *,
    at: datetime,
    response_ids: Sequence[str] = (),
    segment: ChangeSegment | None = None,
) -> CloudEvent[ChangeSummaryV1]:
    data = ChangeSummaryV1(
        change_id=f"change-{uuid.uuid4().hex[:8]}",
        status="done",
        locale="pl",
        text=POLISH,
        translations={"en": ENGLISH},
        audience=ChangeAudience(response_ids=tuple(response_ids), segment=segment),
        decided_by="ewa.zielinska",
        decided_at=at,
    )
    return new_event(data, tenant_id=tenant, source="/closeloop/orchestrator", clock=FixedClock(at))


# -- a renderer for tests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    subject: str
    text: str
    html: str | None


def render(kind: Kind, language: str, context: Mapping[str, Any]) -> Page:
    """Enough of a template to see the language, salutation, text and tenant chosen."""
    assert kind is Kind.CHANGE_SUMMARY
    change = context["change"]
    tenant = context["tenant"]
    subject = f"[{language}] {change['title']}"
    text = f"{context['greeting']}\n{change['summary']}\n-- {tenant['company_name']}"
    return Page(subject, text, f"<p>{text}</p>")


class PageComposer:
    """A composer (`expansion.Composes`) over a test renderer, with no tenant templates."""

    def __init__(self, renderer: Callable[[Kind, str, Mapping[str, Any]], Any] = render) -> None:
        self.renderer = renderer

    async def compose(
        self,
        session: AsyncSession,
        tenant_id: str,
        kind: Kind,
        locale: str,
        context: Mapping[str, Any],
    ) -> Any:
        full = {**context, "greeting": greeting_for(kind, locale, context)}  # as Composer does
        return self.renderer(kind, locale, full)

    def unsubscribe_url(self, tenant_id: str, recipient_key: str | None) -> str | None:
        return None if recipient_key is None else f"http://notifier.test/u/{recipient_key}"


COMPOSER = PageComposer()


async def tenant_context(session: AsyncSession, tenant_id: str) -> Mapping[str, Any]:
    return {
        "company_name": "Acme",
        "review_url": None,
        "referral_url": None,
        "time_zone": "Europe/Warsaw",
    }


# -- the helper --------------------------------------------------------------------------------


class Audience:
    """One test's tenant: feeds the audience handler, opens campaigns, runs the expander."""

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

    def transaction_of(self, session: AsyncSession) -> Transaction:
        return Transaction(session=session, clock=self.clock, source=SOURCE, outbox=self.outbox)

    async def handle(self, events: Sequence[CloudEvent[Any]]) -> None:
        """One consumer batch through `keep_audience`, in its own transaction."""
        async with transaction(self.sessions) as session:
            await keep_audience(self.transaction_of(session), events)

    async def open(
        self, event: CloudEvent[ChangeSummaryV1], *, rate_per_second: float = 50
    ) -> bool:
        async with transaction(self.sessions) as session:
            tx = self.transaction_of(session)
            settings = MessagingSettings(campaign_rate_per_second=rate_per_second)
            opened = await open_campaign(tx, event, settings)
            await tx.flush()
            return opened

    async def opt_out(self, email: str) -> None:
        async with transaction(self.sessions) as session:
            await add_opt_out(session=session, tenant_id=self.tenant, email=email, clock=self.clock)

    def expander(self, *, page_size: int = 1000) -> CampaignExpander:
        return CampaignExpander(
            sessions=self.sessions,
            outbox=self.outbox,
            clock=self.clock,
            source=SOURCE,
            composer=COMPOSER,
            tenant_context=tenant_context,
            page_size=page_size,
        )

    async def expand_all(self, expander: CampaignExpander, *, at_most: int = 1000) -> int:
        """Expand pages until no campaign is expanding; how many pages it took."""
        for pages in range(at_most):
            if not await expander.expand_page():
                return pages
        raise AssertionError("the campaigns never finished expanding")

    async def campaign(self, campaign_id: uuid.UUID) -> Any:
        async with self.sessions() as session:
            return (
                await session.execute(
                    sa.select(campaigns).where(
                        campaigns.c.tenant_id == self.tenant, campaigns.c.campaign_id == campaign_id
                    )
                )
            ).one()

    async def messages(self, campaign_id: uuid.UUID | None = None) -> list[Any]:
        """The tenant's messages (of one campaign), in due order then customer id."""
        query = sa.select(messages).where(messages.c.tenant_id == self.tenant)
        if campaign_id is not None:
            query = query.where(messages.c.campaign_id == campaign_id)
        async with self.sessions() as session:
            rows = await session.execute(
                query.order_by(messages.c.next_attempt_at, messages.c.customer_id)
            )
            return list(rows.all())

    async def events(self) -> list[CloudEvent[Any]]:
        """The events queued in the notifier's outbox for the tenant, in order."""
        table = messages.metadata.tables[OUTBOX]
        async with self.sessions() as session:
            payloads = await session.scalars(
                sa.select(table.c.payload)
                .where(table.c.tenant_id == self.tenant)
                .order_by(table.c.seq)
            )
            return [decode_event(p) for p in payloads.all()]

    async def finish(self) -> None:
        """Leaves nothing of the tenant's running or waiting for other tests."""
        async with transaction(self.sessions) as session:
            await session.execute(
                sa.update(campaigns)
                .where(
                    campaigns.c.tenant_id == self.tenant,
                    campaigns.c.status.in_(("expanding", "sending", "paused")),
                )
                .values(status="cancelled", finished_at=self.clock.now())
            )
            await session.execute(
                sa.update(messages)
                .where(
                    messages.c.tenant_id == self.tenant,
                    messages.c.status.in_(("pending", "sending", "held")),
                )
                .values(status="failed", next_attempt_at=None, lease_until=None)
            )
            table = messages.metadata.tables[OUTBOX]
            await session.execute(
                sa.update(table)
                .where(table.c.tenant_id == self.tenant, table.c.published_at.is_(None))
                .values(published_at=datetime.now(UTC))
            )


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def infra() -> dict[str, str]:
    """The notifier's schema, migrated (no broker: these tests call the service layer)."""
    upgrade(MIGRATIONS, CommonSettings().database_url, SCHEMA)
    return {}


@pytest.fixture
async def clock(sessions: async_sessionmaker[AsyncSession]) -> FixedClock:
    """Before every waiting message and unfinished campaign of the shared tables."""
    async with sessions() as session:
        candidates = [
            await session.scalar(
                sa.select(sa.func.min(messages.c.next_attempt_at)).where(
                    messages.c.status == "pending"
                )
            ),
            await session.scalar(
                sa.select(sa.func.min(messages.c.lease_until)).where(messages.c.status == "sending")
            ),
            await session.scalar(
                sa.select(sa.func.min(campaigns.c.created_at)).where(
                    campaigns.c.status.in_(("expanding", "sending", "paused"))
                )
            ),
        ]
    start = min(t for t in (LATEST_START, *candidates) if t is not None)
    if start != LATEST_START:
        start -= timedelta(days=1)
    return FixedClock(start.replace(microsecond=0))


@pytest.fixture
async def audience(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, clock: FixedClock
) -> AsyncIterator[Audience]:
    helper = Audience(sessions, outbox, clock, f"it-campaign-{uuid.uuid4().hex[:12]}")
    yield helper
    await helper.finish()
