"""Ingest's read side: the queries and JSON the API answers with. No writes happen here."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_ingest.adapters.tables import responses


async def response(
    *, session: AsyncSession, tenant_id: str, response_id: str
) -> dict[str, Any] | None:
    """An accepted response as last received, or None if the tenant has none with that id."""
    row = (
        await session.execute(
            sa.select(responses).where(
                responses.c.tenant_id == tenant_id, responses.c.response_id == response_id
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return {
        "tenant_id": row.tenant_id,
        "response_id": row.response_id,
        "category": row.category,
        "version": row.version,
        "status": row.status,
        "suspicion": list(row.suspicion),
        "received_at": row.received_at,
        "source": row.source,
        "event_id": row.event_id,
        "response": row.payload,
    }
