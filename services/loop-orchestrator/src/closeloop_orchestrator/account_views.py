"""The read side of the actions agreed with accounts: one action and an account's list, shaped as
the API answers them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_orchestrator.adapters.tables import account_actions

MAX_LISTED = 500


def action_json(row: Any) -> dict[str, Any]:
    return {
        "action_id": row.action_id,
        "account_id": row.account_id,
        "title": row.title,
        "description": row.description,
        "owner": row.owner,
        "due_on": row.due_on,
        "status": row.status,
        "note": row.note,
        "issue_id": row.issue_id,
        "version": row.version,
        "agreed_at": row.agreed_at,
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
    }


async def list_actions(
    *,
    session: AsyncSession,
    tenant_id: str,
    account_id: str,
    status: Sequence[str] | None,
    limit: int,
) -> dict[str, Any]:
    """The account's actions (of these statuses), the earliest agreed first."""
    where = [account_actions.c.tenant_id == tenant_id, account_actions.c.account_id == account_id]
    if status:
        where.append(account_actions.c.status.in_(list(status)))
    rows = await session.execute(
        sa.select(account_actions)
        .where(*where)
        .order_by(account_actions.c.agreed_at, account_actions.c.action_id)
        .limit(limit)
    )
    total = await session.scalar(
        sa.select(sa.func.count()).select_from(account_actions).where(*where)
    )
    return {
        "account_id": account_id,
        "actions": [action_json(row) for row in rows],
        "total": total or 0,
    }


async def action(
    *, session: AsyncSession, tenant_id: str, account_id: str, action_id: uuid.UUID
) -> dict[str, Any] | None:
    """One action of the account; None when the tenant's account has no such action."""
    row = (
        await session.execute(
            sa.select(account_actions).where(
                account_actions.c.tenant_id == tenant_id,
                account_actions.c.account_id == account_id,
                account_actions.c.action_id == action_id,
            )
        )
    ).one_or_none()
    return None if row is None else action_json(row)
