"""The notifier's read side: the queries behind its HTTP API and the JSON they answer with.

No commands here (they are in `service_layer`); routes call these and return what they give.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_notifier.adapters.tables import messages

MessageStatus = Literal[
    "draft",
    "pending",
    "held",
    "sending",
    "sent",
    "failed",
    "suppressed",
    "discarded",
    "no_recipient",
]

MESSAGE_FIELDS = (
    "message_id",
    "kind",
    "audience",
    "case_id",
    "campaign_id",
    "response_id",
    "customer_id",
    "locale",
    "channel",
    "recipient",
    "subject",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "sent_at",
    "reviewed_by",
    "reviewed_at",
    "edited",
)


async def list_messages(
    session: AsyncSession,
    *,
    tenant_id: str,
    case_id: uuid.UUID | None = None,
    response_id: str | None = None,
    status: MessageStatus | None = None,
    kind: str | None = None,
    campaign_id: uuid.UUID | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """The tenant's messages, newest first, optionally of one case, response or status."""
    query = message_list_query(
        tenant_id=tenant_id,
        case_id=case_id,
        response_id=response_id,
        status=status,
        kind=kind,
        campaign_id=campaign_id,
        limit=limit,
    )
    rows = await session.execute(query)
    return {"tenant_id": tenant_id, "messages": [dict(row._mapping) for row in rows]}


def message_list_query(
    *,
    tenant_id: str,
    case_id: uuid.UUID | None = None,
    response_id: str | None = None,
    status: MessageStatus | None = None,
    kind: str | None = None,
    campaign_id: uuid.UUID | None = None,
    limit: int = 100,
) -> sa.Select[Any]:
    """The statement of `list_messages` (newest first: `ix_messages_tenant_created`)."""
    query = sa.select(*(messages.c[f] for f in MESSAGE_FIELDS)).where(
        messages.c.tenant_id == tenant_id
    )
    if case_id is not None:
        query = query.where(messages.c.case_id == case_id)
    if response_id is not None:
        query = query.where(messages.c.response_id == response_id)
    if status is not None:
        # Written into the SQL (a known literal): the drafts' partial index serves only a query
        # whose text names the status (see `service_layer.dispatch._inline`).
        query = query.where(messages.c.status == sa.literal(status, sa.Text, literal_execute=True))
    if kind is not None:
        query = query.where(messages.c.kind == kind)
    if campaign_id is not None:
        query = query.where(messages.c.campaign_id == campaign_id)
    return query.order_by(messages.c.created_at.desc()).limit(limit)


def opt_out_view(tenant_id: str, key: str) -> dict[str, str]:
    """An opt-out as the API shows it: the address is its stored key (normalised, lower case)."""
    return {"tenant_id": tenant_id, "email": key, "status": "opted_out"}


async def message_detail(
    session: AsyncSession, *, tenant_id: str, message_id: uuid.UUID
) -> dict[str, Any] | None:
    """One message with its content (subject, text and HTML parts): what a draft's owner reads."""
    row = (
        await session.execute(
            sa.select(
                *(messages.c[f] for f in MESSAGE_FIELDS),
                messages.c.body.label("text"),
                messages.c.html,
                messages.c.reply_to,
            ).where(messages.c.tenant_id == tenant_id, messages.c.message_id == message_id)
        )
    ).one_or_none()
    return None if row is None else dict(row._mapping)


def message_view(row: sa.Row[Any]) -> dict[str, Any]:
    """A message row as the API shows it after a command."""
    return {f: row._mapping[f] for f in MESSAGE_FIELDS}
