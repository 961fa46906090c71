"""The orchestrator's read side: cases as the API answers them. No writes happen here."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_orchestrator.adapters.tables import cases


def case_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "case_id": row.case_id,
        "tenant_id": row.tenant_id,
        "response_id": row.response_id,
        "survey_id": row.survey_id,
        "customer": row.customer,
        "account_id": row.account_id,
        "score": row.score,
        "category": row.category,
        "comment": row.comment,
        "playbook": row.playbook,
        "owner": {"id": row.owner_id, "name": row.owner_name, "email": row.owner_email},
        "key_account": row.key_account,
        "status": row.status,
        "opened_at": row.opened_at,
        "first_contact_due_at": row.first_contact_due_at,
    }


async def case(
    *, session: AsyncSession, tenant_id: str, case_id: uuid.UUID
) -> dict[str, Any] | None:
    """One case of the tenant, or None."""
    row = (
        await session.execute(
            sa.select(cases).where(cases.c.tenant_id == tenant_id, cases.c.case_id == case_id)
        )
    ).one_or_none()
    return None if row is None else case_json(row)


async def list_cases(
    *,
    session: AsyncSession,
    tenant_id: str,
    status: str | None,
    owner_id: str | None,
    response_id: str | None,
    limit: int,
) -> dict[str, Any]:
    """The tenant's cases matching every filter given: key accounts first, then the nearest
    first-contact deadline."""
    query = sa.select(cases).where(cases.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(cases.c.status == status)
    if owner_id is not None:
        query = query.where(cases.c.owner_id == owner_id)
    if response_id is not None:
        query = query.where(cases.c.response_id == response_id)
    query = query.order_by(cases.c.key_account.desc(), cases.c.first_contact_due_at).limit(limit)
    rows = (await session.execute(query)).all()
    return {"tenant_id": tenant_id, "cases": [case_json(row) for row in rows]}
