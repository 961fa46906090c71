"""The read side of accounts: the actions agreed with one (one action and the account's list,
shaped as the API answers them), and what its quarterly review reads of the orchestrator's own
tables (cases, actions and structural issues of the quarter; `service_layer/review_pack.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_orchestrator.adapters.tables import (
    ACTIVE_STATUSES,
    account_actions,
    cases,
    structural_issue_cases,
    structural_issues,
)
from closeloop_orchestrator.domain.account_actions import ActionStatus, overdue
from closeloop_orchestrator.domain.review import CaseRow, open_during

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


# --- what a quarterly review reads (`service_layer/review_pack.py`) --------------------


async def review_cases(
    *, session: AsyncSession, tenant_id: str, account_id: str, start: datetime, end: datetime
) -> list[CaseRow]:
    """The account's cases opened, resolved or closed in the quarter, and those open now."""
    c = cases.c

    def within(column: Any) -> Any:
        return sa.and_(column >= start, column < end)

    rows = await session.execute(
        sa.select(c.case_type, c.status, c.opened_at, c.first_contact_due_at,
                  c.first_contacted_at, c.resolved_at, c.closed_at)
        .where(
            c.tenant_id == tenant_id,
            c.account_id == account_id,
            sa.or_(within(c.opened_at), within(c.resolved_at), within(c.closed_at),
                   c.status.in_(ACTIVE_STATUSES)),
        )
    )  # fmt: skip
    return [CaseRow(**row._mapping) for row in rows]


async def review_actions(
    *,
    session: AsyncSession,
    tenant_id: str,
    account_id: str,
    start: datetime,
    end: datetime,
    today: date,
) -> dict[str, Any]:
    """The account's actions open at some time in the quarter, the earliest agreed first."""
    rows = await session.execute(
        sa.select(account_actions)
        .where(
            account_actions.c.tenant_id == tenant_id,
            account_actions.c.account_id == account_id,
            account_actions.c.agreed_at < end,
        )
        .order_by(account_actions.c.agreed_at, account_actions.c.action_id)
    )
    items = [
        action_json(row)
        | {"overdue": overdue(status=ActionStatus(row.status), due_on=row.due_on, today=today)}
        for row in rows
        if open_during(begun_at=row.agreed_at, ended_at=row.finished_at, start=start, end=end)
    ]
    by_status = dict.fromkeys((s.value for s in ActionStatus), 0)
    for item in items:
        by_status[item["status"]] += 1
    return {"total": len(items), "by_status": by_status, "items": items}


async def review_issues(
    *, session: AsyncSession, tenant_id: str, account_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Structural issues linked to the account's cases, open at some time in the quarter."""
    issue, linked = structural_issues.c, structural_issue_cases.c
    rows = await session.execute(
        sa.select(issue.issue_id, issue.title, issue.status, issue.created_at, issue.decided_at,
                  sa.func.count().label("account_cases"))
        .join_from(
            structural_issue_cases,
            structural_issues,
            sa.and_(issue.tenant_id == linked.tenant_id, issue.issue_id == linked.issue_id),
        )
        .where(linked.tenant_id == tenant_id, linked.account_id == account_id,
               issue.created_at < end)
        .group_by(issue.issue_id, issue.title, issue.status, issue.created_at, issue.decided_at)
        .order_by(issue.created_at, issue.issue_id)
    )  # fmt: skip
    return [
        dict(row._mapping)
        for row in rows
        if open_during(begun_at=row.created_at, ended_at=row.decided_at, start=start, end=end)
    ]
