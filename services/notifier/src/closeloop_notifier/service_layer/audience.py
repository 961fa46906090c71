"""The audience of "you said, we did" campaigns, kept from ingest's events in the notifier's own
schema: who each customer is (`contacts`), who was invited in which segment (`invitations`) and
who gave each response (`respondents`).

`keep_audience` is one batch handler for `response.received.v1`, `response.corrected.v1` and
`invitation.sent.v1` (`runtime.on_batches(AUDIENCE_CONTRACTS, keep_audience, idempotent=True)`).
Per consumer batch it runs at most three statements, one multi-row upsert per table, whatever
the number of tenants and events; rows go in key order, so two replicas handling overlapping
batches lock rows in the same order and cannot deadlock.

Idempotent without the inbox: a row is only replaced by a strictly newer one, so an event seen
again changes nothing and an older event arriving late never overwrites newer data.
- `contacts`: newer by the event's time (`seen_at`). The newer event's name, address and locale
  replace the stored ones, except those it does not carry: a response given without an address
  does not make us forget the customer's address.
- `invitations`: newer by `invited_at` (an invitation sent again later moves to its new
  segment). Its segment attributes are the invitation's `segments`, as scoring counts them.
- `respondents`: newer by `responded_at` (the response's `answered_at`).

The reads campaigns make of it are here too: the respondents of given responses and a page of
the invitations of a segment, each with the customer's contact (`respondents_of`,
`invited_page`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    ChangeSegment,
    CloudEvent,
    Customer,
    InvitationSentV1,
    ResponseCorrectedV1,
    ResponseReceivedV1,
)
from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import SCHEMA, contacts, invitations, respondents

AUDIENCE_CONTRACTS = (ResponseReceivedV1, ResponseCorrectedV1, InvitationSentV1)

_UPSERT_CONTACTS = sa.text(
    f"INSERT INTO {SCHEMA}.contacts AS c "
    "(tenant_id, customer_id, email, name, locale, seen_at) "
    "SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:customers AS text[]), "
    "CAST(:emails AS text[]), CAST(:names AS text[]), CAST(:locales AS text[]), "
    "CAST(:seen AS timestamptz[])) ORDER BY 1, 2 "
    "ON CONFLICT (tenant_id, customer_id) DO UPDATE SET "
    "email = COALESCE(excluded.email, c.email), name = COALESCE(excluded.name, c.name), "
    "locale = COALESCE(excluded.locale, c.locale), seen_at = excluded.seen_at "
    "WHERE c.seen_at < excluded.seen_at"
)
_UPSERT_INVITATIONS = sa.text(
    f"INSERT INTO {SCHEMA}.invitations AS i "
    "(tenant_id, invitation_id, customer_id, survey_id, account_id, product, region, channel, "
    "touchpoint, invited_at) "
    "SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[]), "
    "CAST(:customers AS text[]), CAST(:surveys AS text[]), CAST(:accounts AS text[]), "
    "CAST(:products AS text[]), CAST(:regions AS text[]), CAST(:channels AS text[]), "
    "CAST(:touchpoints AS text[]), CAST(:invited AS timestamptz[])) ORDER BY 1, 2 "
    "ON CONFLICT (tenant_id, invitation_id) DO UPDATE SET customer_id = excluded.customer_id, "
    "survey_id = excluded.survey_id, account_id = excluded.account_id, "
    "product = excluded.product, region = excluded.region, channel = excluded.channel, "
    "touchpoint = excluded.touchpoint, invited_at = excluded.invited_at "
    "WHERE i.invited_at < excluded.invited_at"
)
_UPSERT_RESPONDENTS = sa.text(
    f"INSERT INTO {SCHEMA}.respondents AS r (tenant_id, response_id, customer_id, responded_at) "
    "SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[]), "
    "CAST(:customers AS text[]), CAST(:responded AS timestamptz[])) ORDER BY 1, 2 "
    "ON CONFLICT (tenant_id, response_id) DO UPDATE SET customer_id = excluded.customer_id, "
    "responded_at = excluded.responded_at "
    "WHERE r.responded_at < excluded.responded_at"
)


@dataclass(slots=True)
class _Contact:
    email: str | None
    name: str | None
    locale: str | None
    seen_at: datetime

    def merge(self, customer: Customer, at: datetime) -> None:
        """Fold in a later event of the batch (the same rule as the upsert)."""
        self.email = customer.email or self.email
        self.name = customer.name or self.name
        self.locale = customer.locale or self.locale
        self.seen_at = at


class AudienceBatch:
    """One consumer batch folded to one row per key, newest wins (see the module docstring)."""

    def __init__(self) -> None:
        self.contacts: dict[tuple[str, str], _Contact] = {}
        self.invitations: dict[tuple[str, str], InvitationSentV1] = {}
        self.respondents: dict[tuple[str, str], tuple[str, datetime]] = {}

    def add(self, event: CloudEvent[Any]) -> None:
        data = event.data
        tenant = event.tenantid
        self._contact(tenant, data.customer, event.time)
        if isinstance(data, InvitationSentV1):
            key = (tenant, data.invitation_id)
            seen = self.invitations.get(key)
            if seen is None or seen.invited_at < data.invited_at:
                self.invitations[key] = data
        elif isinstance(data, ResponseReceivedV1 | ResponseCorrectedV1):
            key = (tenant, data.response_id)
            known = self.respondents.get(key)
            if known is None or known[1] < data.answered_at:
                self.respondents[key] = (data.customer.id, data.answered_at)

    def _contact(self, tenant: str, customer: Customer, at: datetime) -> None:
        key = (tenant, customer.id)
        known = self.contacts.get(key)
        if known is None:
            self.contacts[key] = _Contact(customer.email, customer.name, customer.locale, at)
        elif known.seen_at <= at:
            known.merge(customer, at)

    async def write(self, tx: Transaction) -> None:
        session = tx.session
        if self.contacts:
            keys = sorted(self.contacts)
            rows = [self.contacts[k] for k in keys]
            await session.execute(
                _UPSERT_CONTACTS,
                {
                    "tenants": [t for t, _ in keys],
                    "customers": [c for _, c in keys],
                    "emails": [r.email for r in rows],
                    "names": [r.name for r in rows],
                    "locales": [r.locale for r in rows],
                    "seen": [r.seen_at for r in rows],
                },
            )
        if self.invitations:
            keys = sorted(self.invitations)
            invitations = [self.invitations[k] for k in keys]
            await session.execute(
                _UPSERT_INVITATIONS,
                {
                    "tenants": [t for t, _ in keys],
                    "ids": [i for _, i in keys],
                    "customers": [i.customer.id for i in invitations],
                    "surveys": [i.survey_id for i in invitations],
                    "accounts": [i.account_id for i in invitations],
                    "products": [i.segments.product for i in invitations],
                    "regions": [i.segments.region for i in invitations],
                    "channels": [i.segments.channel for i in invitations],
                    "touchpoints": [i.segments.touchpoint for i in invitations],
                    "invited": [i.invited_at for i in invitations],
                },
            )
        if self.respondents:
            keys = sorted(self.respondents)
            answers = [self.respondents[k] for k in keys]
            await session.execute(
                _UPSERT_RESPONDENTS,
                {
                    "tenants": [t for t, _ in keys],
                    "ids": [r for _, r in keys],
                    "customers": [customer for customer, _ in answers],
                    "responded": [at for _, at in answers],
                },
            )


async def keep_audience(tx: Transaction, events: Sequence[CloudEvent[Any]]) -> None:
    """The batch handler (see the module docstring)."""
    batch = AudienceBatch()
    for event in events:
        batch.add(event)
    await batch.write(tx)


# -- reads -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """A customer a campaign reaches, with their latest contact (None when never seen)."""

    customer_id: str
    response_id: str | None
    email: str | None
    name: str | None
    locale: str | None


def _contact_of(tenant_id: str, customer_id: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return sa.and_(contacts.c.tenant_id == tenant_id, contacts.c.customer_id == customer_id)


async def respondents_of(
    session: AsyncSession, tenant_id: str, response_ids: Sequence[str]
) -> list[Recipient]:
    """Who gave each of `response_ids`, in that order; responses not (yet) known are left out."""
    if not response_ids:
        return []
    ids = sa.bindparam("ids", list(response_ids), type_=postgresql.ARRAY(sa.Text))
    rows = await session.execute(
        sa.select(
            respondents.c.response_id,
            respondents.c.customer_id,
            contacts.c.email,
            contacts.c.name,
            contacts.c.locale,
        )
        .select_from(
            respondents.outerjoin(contacts, _contact_of(tenant_id, respondents.c.customer_id))
        )
        .where(respondents.c.tenant_id == tenant_id, respondents.c.response_id == sa.any_(ids))
    )
    found = {row.response_id: row for row in rows}
    return [
        Recipient(row.customer_id, row.response_id, row.email, row.name, row.locale)
        for row in (found.get(response_id) for response_id in response_ids)
        if row is not None
    ]


def in_segment(segment: ChangeSegment) -> sa.ColumnElement[bool]:
    """Whether an invitation is in `segment` (every given field matches; never NULL)."""
    i = invitations.c
    given = (
        (i.survey_id, segment.survey_id),
        (i.account_id, segment.account_id),
        (i.product, segment.product),
        (i.region, segment.region),
        (i.channel, segment.channel),
        (i.touchpoint, segment.touchpoint),
    )
    conditions = [column == value for column, value in given if value is not None]
    if segment.invited_since is not None:
        conditions.append(i.invited_at >= segment.invited_since)
    if not conditions:
        return sa.true()
    return sa.func.coalesce(sa.and_(*conditions), sa.false())


@dataclass(frozen=True, slots=True)
class InvitedPage:
    recipients: list[Recipient]  # those in the segment, in invitation-id order
    last_invitation_id: str | None  # the last one looked at, in or out of the segment
    exhausted: bool  # no invitation is left after this page


async def invited_page(
    session: AsyncSession,
    tenant_id: str,
    segment: ChangeSegment,
    *,
    after: str | None,
    size: int,
) -> InvitedPage:
    """The next `size` invitations of the tenant in invitation-id order after `after`, and the
    customers of those in `segment`. A page looks at `size` invitations whether they match or
    not, so that a narrow segment in a large tenant costs bounded work per page."""
    i = invitations.c
    scan = sa.select(i.invitation_id, i.customer_id, in_segment(segment).label("matches")).where(
        i.tenant_id == tenant_id
    )
    if after is not None:
        scan = scan.where(i.invitation_id > after)
    scanned = scan.order_by(i.invitation_id).limit(size).subquery()
    rows = (
        await session.execute(
            sa.select(
                scanned.c.invitation_id,
                scanned.c.customer_id,
                scanned.c.matches,
                contacts.c.email,
                contacts.c.name,
                contacts.c.locale,
            )
            .select_from(
                scanned.outerjoin(
                    contacts,
                    sa.and_(scanned.c.matches, _contact_of(tenant_id, scanned.c.customer_id)),
                )
            )
            .order_by(scanned.c.invitation_id)
        )
    ).all()
    return InvitedPage(
        recipients=[
            Recipient(row.customer_id, None, row.email, row.name, row.locale)
            for row in rows
            if row.matches
        ],
        last_invitation_id=rows[-1].invitation_id if rows else after,
        exhausted=len(rows) < size,
    )


async def invited_after(
    session: AsyncSession, tenant_id: str, segment: ChangeSegment, *, after: str | None
) -> int:
    """How many invitations in `segment` come after `after` (a campaign's estimate)."""
    i = invitations.c
    query = sa.select(sa.func.count()).where(i.tenant_id == tenant_id, in_segment(segment))
    if after is not None:
        query = query.where(i.invitation_id > after)
    return int(await session.scalar(query) or 0)
