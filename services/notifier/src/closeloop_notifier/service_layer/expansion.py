"""Expanding a campaign into messages, one page per transaction (`expand_page`; the worker that
runs it is `service_layer.campaign_worker`).

In the caller's transaction:
1. The oldest `expanding` campaign is locked (`FOR UPDATE SKIP LOCKED`: replicas expand different
   campaigns; pause and cancel wait for the page under way).
2. Its next page of recipients (`page_size`): first the respondents of the listed responses
   (`audience.response_ids[respondents_done:]`), then, when the change names a segment, the
   invitations in it after `invitations_after`, in invitation-id order (`service_layer.audience`).
3. Each recipient's message is keyed by (campaign, address) (`kinds.campaign_key`; a customer
   without a usable address by their customer id), so a customer listed twice, or both a
   respondent and invited, gets one message; keys stored by earlier pages are skipped.
4. Each message is rendered in the customer's language (`change_summary.template_context`) and
   stored (`messages.store`): `pending`, or `suppressed` (opted out; one query per page),
   `no_recipient` or `failed` (an address that is not one mailbox, or a template that failed
   for this customer alone). Pending ones are due `1 / rate_per_second` apart from the
   campaign's next slot, or from now if that has passed (`change_summary.slots`).
5. The cursors, the recipient count and the next slot are updated with the page's messages, so a
   crash or a stop at any point neither skips nor repeats anyone: the page is redone whole or
   not at all. When both parts are done the campaign is `sending` (`expanded_at`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.db import on_commit
from closeloop_common.events import ChangeSummaryV1
from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import campaigns, messages
from closeloop_notifier.domain.change_summary import Reader, slots, template_context
from closeloop_notifier.domain.kinds import Kind, campaign_key
from closeloop_notifier.domain.timing import recipient_zone
from closeloop_notifier.metrics import CAMPAIGN_RECIPIENTS
from closeloop_notifier.service_layer.audience import Recipient, invited_page, respondents_of
from closeloop_notifier.service_layer.messages import (
    Address,
    InitialStatus,
    NewMessage,
    customer_address,
    store,
)
from closeloop_notifier.service_layer.policy import opted_out

log = logging.getLogger(__name__)

PAGE_SIZE = 1000


class Rendered(Protocol):
    """What a renderer gives: the three parts of a message."""

    @property
    def subject(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str | None: ...


class Composes(Protocol):
    """What expansion needs of `service_layer.compose.Composer`."""

    async def compose(
        self,
        session: AsyncSession,
        tenant_id: str,
        kind: Kind,
        locale: str,
        context: Mapping[str, Any],
    ) -> Rendered:
        """The tenant's template of `kind` in `locale` rendered with `context` (keys: `locale`,
        `now`, `tenant`, `customer`, `greeting`, `change`, `unsubscribe_url`)."""
        ...

    def unsubscribe_url(self, tenant_id: str, recipient_key: str | None) -> str | None: ...


TenantContext = Callable[[AsyncSession, str], Awaitable[Mapping[str, Any]]]
"""The `tenant` of the template context for a tenant id (company name, links, time zone)."""


@dataclass(frozen=True, slots=True)
class Expanded:
    """What one page did."""

    campaign_id: uuid.UUID
    stored: int
    pending: int


@dataclass(frozen=True, slots=True)
class _Planned:
    """A recipient's message before its due time is known."""

    key: str
    recipient: Recipient
    address: Address
    status: InitialStatus
    language: str
    subject: str
    text: str
    html: str | None
    error: str | None


async def expand_page(
    tx: Transaction,
    *,
    composer: Composes,
    tenant_context: TenantContext,
    page_size: int = PAGE_SIZE,
) -> Expanded | None:
    """Expand one page of the oldest expanding campaign (module docstring); None when no
    campaign is expanding (or every one is being expanded by another replica)."""
    session = tx.session
    campaign = (
        await session.execute(
            sa.select(campaigns)
            .where(campaigns.c.status == "expanding")
            .order_by(campaigns.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if campaign is None:
        return None
    tenant_id: str = campaign.tenant_id
    change = ChangeSummaryV1.model_validate(campaign.content)
    response_ids = change.audience.response_ids
    segment = change.audience.segment
    values: dict[str, Any] = {}
    respondents_done: int = campaign.respondents_done
    invitations_done: bool = campaign.invitations_done
    recipients: list[Recipient] = []
    if respondents_done < len(response_ids):
        chunk = response_ids[respondents_done : respondents_done + page_size]
        recipients = await respondents_of(session, tenant_id, chunk)
        respondents_done += len(chunk)
        values["respondents_done"] = respondents_done
    elif not invitations_done and segment is not None:
        page = await invited_page(
            session, tenant_id, segment, after=campaign.invitations_after, size=page_size
        )
        recipients = page.recipients
        invitations_done = page.exhausted
        values["invitations_after"] = page.last_invitation_id
        values["invitations_done"] = invitations_done
    else:
        invitations_done = True
    now = tx.clock.now()
    tenant = await tenant_context(session, tenant_id)
    planned = await _plan(session, campaign, recipients)
    rendered = [
        await _render(composer, session, tenant_id, change, p, tenant=tenant, now=now)
        for p in planned
    ]
    pending = [p for p in rendered if p.status == "pending"]
    due, next_slot = slots(max(campaign.next_slot_at, now), len(pending), campaign.rate_per_second)
    due_of = {p.key: at for p, at in zip(pending, due, strict=True)}
    zone = str(tenant.get("time_zone") or "UTC")
    stored = await store(
        tx,
        tenant_id,
        [
            _message(
                campaign.campaign_id,
                p,
                due_of.get(p.key),
                recipient_zone(p.recipient.locale, zone).key,
            )
            for p in rendered
        ],
    )
    values["recipients"] = campaign.recipients + len(stored)
    if pending:
        values["next_slot_at"] = next_slot
    if respondents_done >= len(response_ids) and invitations_done:
        values["status"] = "sending"
        values["expanded_at"] = now
    await session.execute(
        sa.update(campaigns)
        .where(campaigns.c.tenant_id == tenant_id, campaigns.c.campaign_id == campaign.campaign_id)
        .values(**values)
    )
    statuses = [row.status for row in stored]
    on_commit(session, lambda: _count_recipients(statuses))
    return Expanded(campaign.campaign_id, len(stored), len(pending))


async def _plan(
    session: AsyncSession, campaign: sa.Row[Any], recipients: Sequence[Recipient]
) -> list[_Planned]:
    """The page's new messages, one per key, in the page's order, with their status (not
    rendered yet)."""
    tenant_id: str = campaign.tenant_id
    unique: dict[str, tuple[Recipient, Address]] = {}
    for recipient in recipients:
        address = customer_address(recipient.email)
        identity = address.key or f"customer:{recipient.customer_id}"
        unique.setdefault(campaign_key(campaign.campaign_id, identity), (recipient, address))
    if not unique:
        return []
    keys = sa.bindparam("keys", list(unique), type_=postgresql.ARRAY(sa.Text))
    stored = set(
        (
            await session.scalars(
                sa.select(messages.c.dedup_key).where(
                    messages.c.tenant_id == tenant_id, messages.c.dedup_key == sa.any_(keys)
                )
            )
        ).all()
    )
    refused = await opted_out(session, [(tenant_id, a.key) for _, a in unique.values()])
    planned: list[_Planned] = []
    for key, (recipient, address) in unique.items():
        if key in stored:
            continue
        status: InitialStatus
        if address.problem == "no_recipient":
            status = "no_recipient"
        elif address.problem is not None:
            status = "failed"
        elif (tenant_id, address.key) in refused:
            status = "suppressed"
        else:
            status = "pending"
        planned.append(_Planned(key, recipient, address, status, "", "", "", None, address.detail))
    return planned


async def _render(
    composer: Composes,
    session: AsyncSession,
    tenant_id: str,
    change: ChangeSummaryV1,
    planned: _Planned,
    *,
    tenant: Mapping[str, Any],
    now: datetime,
) -> _Planned:
    recipient = planned.recipient
    reader = Reader(
        recipient.customer_id, recipient.name, planned.address.recipient, recipient.locale
    )
    language, context = template_context(change, reader, tenant=tenant, now=now)
    context["unsubscribe_url"] = composer.unsubscribe_url(tenant_id, planned.address.key)
    try:
        parts = await composer.compose(session, tenant_id, Kind.CHANGE_SUMMARY, language, context)
    except Exception as exc:
        # This customer's data broke the template: their message fails alone.
        log.exception("campaign message could not be rendered")
        error = f"rendering failed: {type(exc).__name__}: {exc}"
        return _Planned(
            planned.key, recipient, planned.address, "failed", language, "", "", None, error
        )
    return _Planned(
        planned.key,
        recipient,
        planned.address,
        planned.status,
        language,
        parts.subject,
        parts.text,
        parts.html,
        planned.error,
    )


def _message(
    campaign_id: uuid.UUID, planned: _Planned, due: datetime | None, time_zone: str
) -> NewMessage:
    recipient = planned.recipient
    return NewMessage(
        dedup_key=planned.key,
        kind=Kind.CHANGE_SUMMARY,
        channel="email",
        locale=planned.language,
        subject=planned.subject,
        body=planned.text,
        html=planned.html,
        status=planned.status,
        next_attempt_at=due,
        recipient=planned.address.recipient,
        recipient_key=planned.address.key,
        time_zone=time_zone,
        campaign_id=campaign_id,
        response_id=recipient.response_id,
        customer_id=recipient.customer_id,
        last_error=planned.error,
    )


def _count_recipients(statuses: Sequence[str]) -> None:
    for status in statuses:
        CAMPAIGN_RECIPIENTS.labels(status).inc()
