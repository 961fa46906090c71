"""Commands on "you said, we did" campaigns: opening one from a change-summary event, and pausing,
resuming and cancelling it (the expansion into messages is `service_layer.expansion`).

Statuses of a campaign: see `domain.change_summary`. What a command does to the campaign's
messages (the dispatcher sends `pending` messages whose `next_attempt_at` is due, nothing else):

- pause: `pending` messages become `held` (their due time is kept, for their order), so the
  dispatcher no longer sees them; expansion stops after the page under way (the command waits
  for that page's lock). Messages already `sending` finish: they are with the mail server.
- resume: `held` messages become `pending` again, spread from now at the campaign's rate in
  their former order, and the campaign's next slot moves after them; expansion goes on where it
  stopped.
- cancel: the campaign is `cancelled` and its `pending` messages `held` at once, as by a pause
  (one statement, however large the campaign); the expander then makes them `discarded`, a
  bounded chunk per transaction, each with its `notification.failed.v2` (reason `discarded`),
  and finishes the campaign (`finished_at`) when none is left waiting or with the mail server.
A message that was `sending` when its campaign was paused or cancelled, and is then given back
for a retry (a temporary refusal), is held or discarded by the expander
(`expansion.CampaignExpander`) long before the retry comes due.

Asking for the state a campaign is in already changes nothing (a client may retry); an action on
a finished campaign is refused (`TransitionRefused`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.db import on_commit
from closeloop_common.events import ChangeSummaryV1, CloudEvent
from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import SCHEMA, campaigns, messages
from closeloop_notifier.domain.change_summary import (
    Action,
    CampaignStatus,
    campaign_id_of,
    transition,
)
from closeloop_notifier.domain.tenant_settings import MessagingSettings
from closeloop_notifier.metrics import CAMPAIGNS_OPENED

_RESUME = sa.text(
    f"UPDATE {SCHEMA}.messages AS m SET status = 'pending', "
    "next_attempt_at = CAST(:start AS timestamptz) "
    "+ make_interval(secs => (h.n - 1) / CAST(:rate AS double precision)) "
    "FROM (SELECT message_id, row_number() OVER (ORDER BY next_attempt_at, message_id) AS n "
    f"FROM {SCHEMA}.messages "
    "WHERE tenant_id = :tenant AND campaign_id = :campaign AND status = 'held') AS h "
    "WHERE m.tenant_id = :tenant AND m.message_id = h.message_id"
)


class UnknownCampaign(LookupError):
    """No campaign of the tenant has this id."""


async def open_campaign(
    tx: Transaction, event: CloudEvent[ChangeSummaryV1], settings: MessagingSettings
) -> bool:
    """Open the campaign of a change-summary event, throttled at the tenant's rate; False when
    it is open already (the event was delivered before). Its expansion starts with the
    expander's next step."""
    change = event.data
    now = tx.clock.now()
    opened = await tx.session.scalar(
        pg_insert(campaigns)
        .values(
            tenant_id=event.tenantid,
            campaign_id=campaign_id_of(event.tenantid, event.id),
            change_id=change.change_id,
            change_status=change.status,
            content=change.model_dump(mode="json"),
            status="expanding",
            rate_per_second=settings.campaign_rate_per_second,
            respondents_done=0,
            invitations_after=None,
            invitations_done=change.audience.segment is None,
            recipients=0,
            next_slot_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[campaigns.c.tenant_id, campaigns.c.campaign_id])
        .returning(campaigns.c.campaign_id)
    )
    if opened is None:
        return False
    on_commit(tx.session, CAMPAIGNS_OPENED.inc)
    return True


async def change_campaign(
    tx: Transaction, *, tenant_id: str, campaign_id: uuid.UUID, action: Action
) -> CampaignStatus:
    """Pause, resume or cancel a campaign (see the module docstring); its status afterwards.
    `UnknownCampaign`, or `TransitionRefused` for an action its status does not allow."""
    session = tx.session
    campaign = (
        await session.execute(
            sa.select(campaigns)
            .where(campaigns.c.tenant_id == tenant_id, campaigns.c.campaign_id == campaign_id)
            .with_for_update()
        )
    ).one_or_none()
    if campaign is None:
        raise UnknownCampaign(campaign_id)
    status: CampaignStatus = campaign.status
    new = transition(status, action, expanded=campaign.expanded_at is not None)
    if new is None:
        return status
    now = tx.clock.now()
    values: dict[str, Any] = {"status": new}
    of_campaign = sa.and_(messages.c.tenant_id == tenant_id, messages.c.campaign_id == campaign_id)
    if action in ("pause", "cancel"):
        await session.execute(
            sa.update(messages)
            .where(of_campaign, messages.c.status == "pending")
            .values(status="held")
        )
    elif action == "resume":
        resumed = await session.execute(
            _RESUME,
            {
                "tenant": tenant_id,
                "campaign": campaign_id,
                "start": now,
                "rate": campaign.rate_per_second,
            },
        )
        count = int(resumed.rowcount or 0)  # type: ignore[attr-defined]
        values["next_slot_at"] = now + timedelta(seconds=count / campaign.rate_per_second)
    await session.execute(
        sa.update(campaigns)
        .where(campaigns.c.tenant_id == tenant_id, campaigns.c.campaign_id == campaign_id)
        .values(**values)
    )
    return new
