"""Keeping campaigns moving once their messages exist: discarding what cancelled campaigns left
waiting, finishing campaigns, holding what came back to paused ones, and the gauges.

- `discard_cancelled`: up to `chunk` waiting (`held` or `pending`) messages of `cancelled`
  campaigns become `discarded`, each with its `notification.failed.v2` (reason `discarded`) in
  the same transaction. Cancelling a campaign of any size thus costs its command one statement
  (`service_layer.campaigns`) and each of these transactions a bounded amount of work.
- `settle`: a `sending` campaign with no message left pending, held or sending is `done`, and a
  `cancelled` one with none left is finished (`finished_at`); pending messages of `paused`
  campaigns are held (a message that was with the mail server at the pause and came back for a
  retry).
- `refresh_gauges`: recounts `closeloop_notifier_campaigns` and `_campaign_messages`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import campaigns, messages
from closeloop_notifier.campaign_views import CAMPAIGN_MESSAGE_STATUSES, campaign_gauges
from closeloop_notifier.domain.change_summary import CAMPAIGN_STATUSES
from closeloop_notifier.metrics import CAMPAIGN_MESSAGES, CAMPAIGNS
from closeloop_notifier.service_layer.messages import publish_failed

CANCELLED = "the campaign was cancelled"

_c, _m = campaigns.c, messages.c
_OF_CAMPAIGN = sa.and_(_m.tenant_id == _c.tenant_id, _m.campaign_id == _c.campaign_id)
_UNFINISHED = sa.exists().where(_OF_CAMPAIGN, _m.status.in_(("pending", "held", "sending")))


async def discard_cancelled(tx: Transaction, *, chunk: int) -> int:
    """Discard up to `chunk` waiting messages of cancelled campaigns; how many."""
    doomed = (
        sa.select(_m.tenant_id, _m.message_id)
        .select_from(campaigns.join(messages, _OF_CAMPAIGN))
        .where(
            _c.status == "cancelled",
            _c.finished_at.is_(None),
            _m.status.in_(("held", "pending")),
        )
        .limit(chunk)
        .with_for_update(of=messages, skip_locked=True)
    )
    rows = (
        await tx.session.execute(
            sa.update(messages)
            .where(sa.tuple_(_m.tenant_id, _m.message_id).in_(doomed))
            .values(status="discarded", next_attempt_at=None, last_error=CANCELLED)
            .returning(messages)
        )
    ).all()
    now = tx.clock.now()
    for row in rows:
        publish_failed(tx, row, "discarded", CANCELLED, now)
    return len(rows)


async def settle(session: AsyncSession, *, now: datetime) -> None:
    """Finish what is finished and hold what came back to paused campaigns."""
    await session.execute(
        sa.update(campaigns)
        .where(_c.status == "sending", ~_UNFINISHED)
        .values(status="done", finished_at=now)
    )
    await session.execute(
        sa.update(campaigns)
        .where(_c.status == "cancelled", _c.finished_at.is_(None), ~_UNFINISHED)
        .values(finished_at=now)
    )
    await session.execute(
        sa.update(messages)
        .where(_m.status == "pending", _OF_CAMPAIGN, _c.status == "paused")
        .values(status="held")
    )


async def refresh_gauges(session: AsyncSession) -> None:
    by_campaign, by_message = await campaign_gauges(session)
    for campaign_status in CAMPAIGN_STATUSES:
        CAMPAIGNS.labels(campaign_status).set(by_campaign.get(campaign_status, 0))
    for message_status in CAMPAIGN_MESSAGE_STATUSES:
        CAMPAIGN_MESSAGES.labels(message_status).set(by_message.get(message_status, 0))
