"""The read side of campaigns: the list, one campaign's report, and the totals behind the gauges.

A report counts the campaign's messages by status (`CAMPAIGN_MESSAGE_STATUSES`; `held`: waiting
while the campaign is paused, `discarded`: dropped by its cancellation) and estimates the time
left at the campaign's rate: the messages scheduled already (up to its next slot, or its pending
messages at the rate, whichever is later) plus the recipients not expanded yet (the listed
responses left, and the segment's invitations after the cursor; a customer counted twice there
makes it an upper bound). A paused campaign has no estimate; a finished one has none left.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import ChangeSummaryV1
from closeloop_notifier.adapters.tables import campaigns, messages
from closeloop_notifier.domain.change_summary import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    CampaignStatus,
)
from closeloop_notifier.service_layer.audience import invited_after

CAMPAIGN_MESSAGE_STATUSES = (
    "pending",
    "sending",
    "sent",
    "held",
    "suppressed",
    "discarded",
    "failed",
    "no_recipient",
)
NOT_FINISHED: tuple[CampaignStatus, ...] = ("expanding", "sending", "paused")


class BadCursor(ValueError):
    """A cursor this API did not give out."""


def _summary(row: Any) -> dict[str, Any]:
    content = row.content
    return {
        "campaign_id": row.campaign_id,
        "change_id": row.change_id,
        "change_status": row.change_status,
        "title": content["text"]["title"],
        "status": row.status,
        "recipients": row.recipients,
        "rate_per_second": row.rate_per_second,
        "created_at": row.created_at,
        "expanded_at": row.expanded_at,
        "finished_at": row.finished_at,
    }


def encode_cursor(row: Any) -> str:
    raw = json.dumps([row.created_at.isoformat(), str(row.campaign_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, campaign_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise TypeError("not an instant")
        return at, uuid.UUID(campaign_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("the cursor is not one this API gave out; start again without it") from exc


async def list_campaigns(
    session: AsyncSession,
    *,
    tenant_id: str,
    status: CampaignStatus | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of the tenant's campaigns, newest first, and the cursor of the next page."""
    c = campaigns.c
    query = sa.select(campaigns).where(c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(c.status == status)
    if cursor is not None:
        query = query.where(
            sa.tuple_(c.created_at, c.campaign_id) < sa.tuple_(*decode_cursor(cursor))
        )
    rows = (
        await session.execute(
            query.order_by(c.created_at.desc(), c.campaign_id.desc()).limit(limit + 1)
        )
    ).all()
    page = rows[:limit]
    return {
        "tenant_id": tenant_id,
        "campaigns": [_summary(row) for row in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > limit else None,
    }


async def campaign_report(
    session: AsyncSession, tenant_id: str, campaign_id: uuid.UUID, *, now: datetime
) -> dict[str, Any] | None:
    """One campaign: its progress, its messages by status and the time left (module docstring);
    None when the tenant has no such campaign."""
    campaign = (
        await session.execute(
            sa.select(campaigns).where(
                campaigns.c.tenant_id == tenant_id, campaigns.c.campaign_id == campaign_id
            )
        )
    ).one_or_none()
    if campaign is None:
        return None
    counts = dict.fromkeys(CAMPAIGN_MESSAGE_STATUSES, 0)
    rows = await session.execute(
        sa.select(messages.c.status, sa.func.count())
        .where(messages.c.tenant_id == tenant_id, messages.c.campaign_id == campaign_id)
        .group_by(messages.c.status)
    )
    for status, count in rows:
        counts[status] = count
    change = ChangeSummaryV1.model_validate(campaign.content)
    left_to_expand = max(0, len(change.audience.response_ids) - campaign.respondents_done)
    segment = change.audience.segment
    if segment is not None and not campaign.invitations_done:
        left_to_expand += await invited_after(
            session, tenant_id, segment, after=campaign.invitations_after
        )
    seconds_left: float | None
    if campaign.status in FINAL_STATUSES:
        seconds_left = 0.0
    elif campaign.status in ACTIVE_STATUSES:
        rate = campaign.rate_per_second
        scheduled = max((campaign.next_slot_at - now).total_seconds(), counts["pending"] / rate)
        seconds_left = max(0.0, scheduled) + left_to_expand / rate
    else:
        seconds_left = None
    return {
        **_summary(campaign),
        "tenant_id": tenant_id,
        "respondents_listed": len(change.audience.response_ids),
        "respondents_expanded": campaign.respondents_done,
        "segment": segment.model_dump(mode="json", exclude_none=True) if segment else None,
        "left_to_expand": left_to_expand,
        "messages": counts,
        "estimated_seconds_left": seconds_left,
    }


async def campaign_gauges(session: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
    """Campaigns by status, and the messages of campaigns not finished by status (all tenants)."""
    by_campaign = {
        status: int(count)
        for status, count in (
            await session.execute(
                sa.select(campaigns.c.status, sa.func.count()).group_by(campaigns.c.status)
            )
        )
    }
    c, m = campaigns.c, messages.c
    by_message = {
        status: int(count)
        for status, count in (
            await session.execute(
                sa.select(m.status, sa.func.count())
                .select_from(
                    campaigns.join(
                        messages,
                        sa.and_(m.tenant_id == c.tenant_id, m.campaign_id == c.campaign_id),
                    )
                )
                .where(c.status.in_(NOT_FINISHED))
                .group_by(m.status)
            )
        )
    }
    return by_campaign, by_message
