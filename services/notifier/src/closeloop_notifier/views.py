"""The notifier's read side: the queries behind its HTTP API and the JSON they answer with.

No commands here (they are in `service_layer`); routes call these and return what they give.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_notifier.adapters.tables import messages

MessageStatus = Literal["pending", "sending", "sent", "failed", "suppressed", "no_recipient"]

MESSAGE_FIELDS = (
    "message_id",
    "case_id",
    "response_id",
    "customer_id",
    "template",
    "locale",
    "channel",
    "recipient",
    "subject",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "sent_at",
)


async def list_messages(
    session: AsyncSession,
    *,
    tenant_id: str,
    case_id: uuid.UUID | None = None,
    response_id: str | None = None,
    status: MessageStatus | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """The tenant's messages, newest first, optionally of one case, response or status."""
    query = sa.select(*(messages.c[f] for f in MESSAGE_FIELDS)).where(
        messages.c.tenant_id == tenant_id
    )
    if case_id is not None:
        query = query.where(messages.c.case_id == case_id)
    if response_id is not None:
        query = query.where(messages.c.response_id == response_id)
    if status is not None:
        query = query.where(messages.c.status == status)
    rows = await session.execute(query.order_by(messages.c.created_at.desc()).limit(limit))
    return {"tenant_id": tenant_id, "messages": [dict(row._mapping) for row in rows]}


def opt_out_view(tenant_id: str, key: str) -> dict[str, str]:
    """An opt-out as the API shows it: the address is its stored key (normalised, lower case)."""
    return {"tenant_id": tenant_id, "email": key, "status": "opted_out"}
