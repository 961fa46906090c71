"""The read side of the structural issues backlog: the prioritised list and one issue with its
cases, the customers and accounts it concerns, and its history, shaped as the API answers them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_orchestrator.adapters.tables import (
    responses,
    structural_issue_cases,
    structural_issue_history,
    structural_issues,
)
from closeloop_orchestrator.domain.backlog import Impact, PerCost, Ranked, prioritised

MAX_LISTED = 5_000
"""A backlog is ranked whole in memory; a tenant with more open issues than this sees the newest."""


def _impact(row: Any) -> Impact | None:
    found = row.impact
    if found is None:
        return None
    return Impact(
        points=float(found["nps_points"]),
        ci_low=float(found["ci_low"]),
        ci_high=float(found["ci_high"]),
        n=int(found["n"]),
    )


def _per_cost(found: PerCost | None) -> dict[str, float] | None:
    if found is None:
        return None
    return {
        "value": round(found.value, 4),
        "ci_low": round(found.low, 4),
        "ci_high": round(found.high, 4),
    }


def _cost(value: Decimal) -> float:
    return float(value)


def issue_json(row: Any, ranked: Ranked | None = None) -> dict[str, Any]:
    ranked = ranked or Ranked(row.issue_id, row.created_at, _impact(row), row.cost)
    return {
        "issue_id": row.issue_id,
        "title": row.title,
        "description": row.description,
        "source": row.source,
        "theme": row.theme,
        "filters": row.filters,
        "status": row.status,
        "reason": row.reason,
        "owner": row.owner,
        "cost": _cost(row.cost),
        "cost_unit": row.cost_unit,
        "impact": row.impact,
        "impact_per_cost": _per_cost(ranked.per_cost),
        "locale": row.locale,
        "customer_text": row.customer_text,
        "notify_segment": row.notify_segment,
        "theme_responses": len(row.theme_responses),
        "version": row.version,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_by": row.updated_by,
        "updated_at": row.updated_at,
        "decided_at": row.decided_at,
    }


async def list_issues(
    *, session: AsyncSession, tenant_id: str, status: Sequence[str] | None, limit: int
) -> dict[str, Any]:
    """The tenant's issues (of these statuses), biggest impact per cost first."""
    query = sa.select(structural_issues).where(structural_issues.c.tenant_id == tenant_id)
    if status:
        query = query.where(structural_issues.c.status.in_(list(status)))
    query = query.order_by(structural_issues.c.created_at.desc()).limit(MAX_LISTED)
    rows = {row.issue_id: row for row in await session.execute(query)}
    ranked = prioritised(
        Ranked(r.issue_id, r.created_at, _impact(r), r.cost) for r in rows.values()
    )
    return {
        "issues": [issue_json(rows[r.issue_id], r) for r in ranked[:limit]],
        "total": len(ranked),
    }


async def issue(
    *, session: AsyncSession, tenant_id: str, issue_id: uuid.UUID
) -> dict[str, Any] | None:
    """One issue with its cases and history; None when the tenant has no such issue."""
    row = (
        await session.execute(
            sa.select(structural_issues).where(
                structural_issues.c.tenant_id == tenant_id,
                structural_issues.c.issue_id == issue_id,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    linked = await session.execute(
        sa.select(
            structural_issue_cases.c.case_id,
            structural_issue_cases.c.response_id,
            structural_issue_cases.c.customer_id,
            structural_issue_cases.c.account_id,
        )
        .where(
            structural_issue_cases.c.tenant_id == tenant_id,
            structural_issue_cases.c.issue_id == issue_id,
        )
        .order_by(structural_issue_cases.c.response_id)
    )
    history = await session.execute(
        sa.select(structural_issue_history)
        .where(
            structural_issue_history.c.tenant_id == tenant_id,
            structural_issue_history.c.issue_id == issue_id,
        )
        .order_by(structural_issue_history.c.version)
    )
    case_rows = [dict(c._mapping) for c in linked]
    # The respondents of the theme's responses, cases or not, as the orchestrator's copy of the
    # responses knows them.
    themed = await session.execute(
        sa.select(
            responses.c.body["customer"]["id"].astext.label("customer_id"),
            responses.c.body["account_id"].astext.label("account_id"),
        ).where(
            responses.c.tenant_id == tenant_id,
            responses.c.response_id
            == sa.any_(
                sa.bindparam("ids", list(row.theme_responses), type_=postgresql.ARRAY(sa.Text))
            ),
        )
    )
    affected = [*case_rows, *(dict(t._mapping) for t in themed)]
    return issue_json(row) | {
        "cases": case_rows,
        "customers": sorted({c["customer_id"] for c in affected}),
        "accounts": sorted({c["account_id"] for c in affected if c["account_id"] is not None}),
        "history": [
            {
                "version": h.version,
                "transition": h.kind,
                "from_status": h.from_status,
                "status": h.to_status,
                "actor": h.actor,
                "at": h.at,
                "details": h.details,
            }
            for h in history
        ],
    }
