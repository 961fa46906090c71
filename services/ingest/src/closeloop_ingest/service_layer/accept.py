"""Accepting a response: dedupe by (tenant, response id), persist, and queue the event, atomically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.events import Category, categorize
from closeloop_common.handlers import Transaction
from closeloop_ingest.adapters.tables import responses
from closeloop_ingest.domain.responses import CanonicalResponse, fingerprint_of


class ResponseConflict(Exception):
    """The response id was accepted before with different content."""


class AnsweredInFuture(Exception):
    """The answer's time is later than now (beyond clock-drift tolerance)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    status: Literal["accepted", "duplicate"]
    tenant_id: str
    response_id: str
    category: Category
    event_id: str


async def accept_response(
    *, tx: Transaction, tenant_id: str, response: CanonicalResponse, source: str
) -> Accepted:
    """Persist a first delivery and queue `response.received.v1`; a repeat changes nothing."""
    session = tx.session
    now = tx.clock.now()
    if response.answered_in_future(now):
        raise AnsweredInFuture(response.answered_at.isoformat())
    data = response.to_event(received_at=now, source=source)
    event = tx.envelope(data, tenant_id=tenant_id, subject=response.response_id)
    payload = response.model_dump(mode="json")
    fingerprint = fingerprint_of(payload)  # the same as response.fingerprint(), one dump fewer
    inserted = await session.scalar(
        pg_insert(responses)
        .values(
            tenant_id=tenant_id,
            response_id=response.response_id,
            survey_id=response.survey_id,
            customer_id=response.customer.id,
            account_id=response.account_id,
            score=response.score,
            category=data.category.value,
            answered_at=response.answered_at,
            received_at=now,
            source=source,
            fingerprint=fingerprint,
            event_id=event.id,
            payload=payload,
        )
        .on_conflict_do_nothing()
        .returning(responses.c.event_id)
    )
    if inserted is not None:
        tx.add(event)
        return Accepted("accepted", tenant_id, response.response_id, data.category, event.id)

    earlier = (
        await session.execute(
            sa.select(responses.c.fingerprint, responses.c.event_id).where(
                responses.c.tenant_id == tenant_id, responses.c.response_id == response.response_id
            )
        )
    ).one()
    if earlier.fingerprint != fingerprint:
        raise ResponseConflict(response.response_id)
    return Accepted(
        "duplicate", tenant_id, response.response_id, categorize(response.score), earlier.event_id
    )
