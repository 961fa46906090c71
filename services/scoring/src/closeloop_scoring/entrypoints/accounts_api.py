"""B2B: NPS per account, revenue weights, the weighted NPS and account health."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.openapi import BAD_REQUEST
from closeloop_common.web import AdminTenant, ReadTenant
from closeloop_scoring import views
from closeloop_scoring.adapters.tables import account_weights
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE
from closeloop_scoring.entrypoints.queries import (
    DEFAULT_METHOD,
    Confidence,
    MethodQuery,
    window_json,
)
from closeloop_scoring.entrypoints.reading import Filters, Reads, Window
from closeloop_scoring.reports import (
    health_json,
    health_of,
    policy_json,
    rounded,
    tally_report,
)

# An account's health is judged on its last year by default: recent enough to be the current
# relationship, long enough to hold a year of relationship surveys and a renewal.
HEALTH_DEFAULT_DAYS = 365


class AccountWeight(BaseModel):
    revenue_weight: float = Field(ge=0, le=1e12, description="e.g. annual revenue or its share")


def build_accounts_router(reads: Reads) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["accounts"], responses={**BAD_REQUEST})
    policy = reads.settings.health_policy()

    @router.get("/accounts", tags=["accounts"], summary="NPS per account, optionally weighted")
    async def accounts(
        tenant: ReadTenant,
        filters: Filters,
        window: Window,
        weighted: bool = False,
        health: Annotated[
            bool, Query(description="add each account's health (judged on its row's figures)")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = reads.days_of(window)
        async with reads.runtime.sessions() as session:
            found = await views.tallies(
                session, tenant, filters.filters(reads.scored), days, by="account"
            )
            weights = {
                row.account_id: row.revenue_weight
                for row in await session.execute(
                    sa.select(account_weights.c.account_id, account_weights.c.revenue_weight).where(
                        account_weights.c.tenant_id == tenant
                    )
                )
            }
        stats = reads.stats_of(method, confidence)
        ordered = views.most_answered(found)
        rows: list[dict[str, Any]] = []
        for account, tally in ordered[:limit]:
            weight = weights.get(account)
            row = {"account_id": account, "revenue_weight": weight, **tally_report(tally, stats)}
            if health:
                row["health"] = health_json(health_of(tally, stats, weight, policy))
            rows.append(row)
        body: dict[str, Any] = {
            "tenant_id": tenant,
            "filters": filters.filters(reads.scored).given(),
            "window": window_json(days, reads.zone),
            "accounts": rows,
            "truncated": len(ordered) > limit,
        }
        if weighted:
            body["weighted"] = weighted_nps(
                {account: tally.counts.nps for account, tally in ordered}, weights
            )
        return body

    @router.get("/accounts/{account_id}/nps", tags=["accounts"], summary="One account's NPS")
    async def account_nps(
        account_id: Annotated[str, Field(min_length=1, max_length=200)],
        tenant: ReadTenant,
        window: Window,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        days = reads.days_of(window)
        async with reads.runtime.sessions() as session:
            found = await views.tally(session, tenant, views.Filters(account=account_id), days)
            weight = await weight_of(session, tenant, account_id)
        return {
            "tenant_id": tenant,
            "account_id": account_id,
            "revenue_weight": weight,
            "window": window_json(days, reads.zone),
            **tally_report(found, reads.stats_of(method, confidence)),
        }

    @router.get(
        "/accounts/{account_id}/health",
        tags=["accounts"],
        summary="One account's health: safe, at risk or unknown, with the reasons",
    )
    async def account_health(
        account_id: Annotated[str, Field(min_length=1, max_length=200)],
        tenant: ReadTenant,
        window: Window,
        method: MethodQuery = DEFAULT_METHOD,
        confidence: Confidence = DEFAULT_CONFIDENCE,
    ) -> dict[str, Any]:
        if not window.given():
            window = dataclasses.replace(window, days=HEALTH_DEFAULT_DAYS)
        days = reads.days_of(window)
        async with reads.runtime.sessions() as session:
            found = await views.tally(session, tenant, views.Filters(account=account_id), days)
            weight = await weight_of(session, tenant, account_id)
        stats = reads.stats_of(method, confidence)
        return {
            "tenant_id": tenant,
            "account_id": account_id,
            "revenue_weight": weight,
            "window": window_json(days, reads.zone),
            **tally_report(found, stats),
            **health_json(health_of(found, stats, weight, policy)),
            "policy": policy_json(policy),
        }

    @router.put(
        "/accounts/{account_id}/weight",
        tags=["accounts"],
        summary="Set an account's revenue weight (as a CRM syncs it)",
    )
    async def put_weight(
        account_id: Annotated[str, Field(min_length=1, max_length=200)],
        tenant: AdminTenant,
        weight: AccountWeight,
    ) -> dict[str, Any]:
        now = reads.runtime.clock.now()
        async with reads.runtime.transaction() as tx:
            stmt = pg_insert(account_weights).values(
                tenant_id=tenant,
                account_id=account_id,
                revenue_weight=weight.revenue_weight,
                updated_at=now,
            )
            await tx.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[account_weights.c.tenant_id, account_weights.c.account_id],
                    set_={"revenue_weight": weight.revenue_weight, "updated_at": now},
                )
            )
        return {
            "account_id": account_id,
            "revenue_weight": weight.revenue_weight,
            "updated_at": now,
        }

    return router


async def weight_of(session: AsyncSession, tenant: str, account_id: str) -> float | None:
    """The account's revenue weight; None when none was set."""
    weight: float | None = await session.scalar(
        sa.select(account_weights.c.revenue_weight).where(
            account_weights.c.tenant_id == tenant,
            account_weights.c.account_id == account_id,
        )
    )
    return weight


def weighted_nps(
    nps_by_account: dict[str, float | None], weights: dict[str, float]
) -> dict[str, Any]:
    """The revenue-weighted mean of the accounts' NPS (accounts with answers and a weight)."""
    pairs = [
        (nps, weights[a]) for a, nps in nps_by_account.items() if nps is not None and a in weights
    ]
    total = sum(w for _, w in pairs)
    return {
        "nps": rounded(sum(n * w for n, w in pairs) / total) if total > 0 else None,
        "accounts": len(pairs),
        "accounts_without_weight": sum(1 for a in nps_by_account if a not in weights),
    }
