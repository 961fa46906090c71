"""Confirming a response that was held back as suspected automation: it is published as received
(its current version), and from then on it is an ordinary response."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop_common.events import Category
from closeloop_common.handlers import Transaction
from closeloop_ingest.adapters.tables import responses
from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.service_layer.intake import Outcome


class NotSuspected(Exception):
    """The response is not held back as suspected."""


async def confirm_response(tx: Transaction, *, tenant_id: str, response_id: str) -> Outcome:
    row = (
        await tx.session.execute(
            sa.select(responses)
            .where(responses.c.tenant_id == tenant_id, responses.c.response_id == response_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise LookupError(response_id)
    if row.status != "suspected":
        raise NotSuspected(f"is {row.status}")
    stored = CanonicalResponse.model_validate(row.payload)
    event = await tx.emit(
        stored.to_event(received_at=row.received_at, source=row.source),
        tenant_id=tenant_id,
        subject=response_id,
    )
    await tx.session.execute(
        sa.update(responses)
        .where(responses.c.tenant_id == tenant_id, responses.c.response_id == response_id)
        .values(status="accepted", event_id=event.id)
    )
    return Outcome("accepted", response_id, row.version, Category(row.category), event.id)
