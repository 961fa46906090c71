"""The loop's impact, counted over the orchestrator's own tables (the scoring-independent
figures: `impact_issues.py` asks scoring about done issues, `impact_gauges.py` exports these).

The definitions are `domain/impact.py`'s; here they are SQL. Each figure is one aggregate query
(counts, sums and PostgreSQL's `percentile_cont`), so no case is read into Python: the same
queries serve one tenant's HTTP report and the gauges' recount over every tenant. Cases are
those opened in [`opened_from`, `opened_before`); the re-survey of a case is found through
`ix_invitations_customer` (one index probe per case, `LATERAL ... LIMIT 1`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import Category
from closeloop_orchestrator.adapters.tables import cases, invitations, responses
from closeloop_orchestrator.domain.impact import (
    HISTOGRAM_HOURS,
    QUANTILES,
    Bucket,
    LoopGroup,
    LoopImpact,
    Moments,
    Share,
    histogram,
    loop_impact,
    wilson,
)

NO_RESPONSE = "no_response"
CASE_TYPES = (*(c.value for c in Category), NO_RESPONSE)
SETTLED = ("resolved", "closed")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which cases count: a tenant's (None: every tenant's) opened in [opened_from,
    opened_before) (None: up to now), optionally of one survey and case type; judged at `now`."""

    tenant_id: str | None
    opened_from: datetime
    opened_before: datetime | None
    now: datetime
    survey_id: str | None = None
    case_type: str | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        found = [cases.c.opened_at >= self.opened_from]
        if self.opened_before is not None:
            found.append(cases.c.opened_at < self.opened_before)
        if self.tenant_id is not None:
            found.append(cases.c.tenant_id == self.tenant_id)
        if self.survey_id is not None:
            found.append(cases.c.survey_id == self.survey_id)
        if self.case_type is not None:
            found.append(cases.c.case_type == self.case_type)
        return found


def _reached() -> sa.ColumnElement[bool]:
    return cases.c.first_contacted_at.is_not(None)


def _settled() -> sa.ColumnElement[bool]:
    return cases.c.status.in_(SETTLED)


async def loop_groups(session: AsyncSession, scope: Scope) -> tuple[LoopGroup, LoopGroup]:
    """(closed loops, not closed): cases, re-surveys, answers and score changes."""
    resurvey = (
        sa.select(invitations.c.invited_at, invitations.c.answered_at, invitations.c.response_id)
        .where(
            invitations.c.tenant_id == cases.c.tenant_id,
            invitations.c.customer_id == cases.c.customer_id,
            invitations.c.invited_at > cases.c.opened_at,
            invitations.c.invited_at <= scope.now,
        )
        .order_by(invitations.c.invited_at, invitations.c.invitation_id)
        .limit(1)
        .lateral("resurvey")
    )
    answer = sa.and_(
        responses.c.tenant_id == cases.c.tenant_id,
        responses.c.response_id == resurvey.c.response_id,
        resurvey.c.answered_at.is_not(None),
    )
    counted = sa.or_(_reached(), cases.c.first_contact_due_at <= scope.now, _settled())
    per_case = (
        sa.select(
            sa.and_(_reached(), _settled()).label("closed"),
            resurvey.c.invited_at,
            resurvey.c.answered_at,
            (responses.c.body["score"].as_integer() - cases.c.score).label("change"),
        )
        .select_from(
            cases.outerjoin(resurvey, sa.true()).outerjoin(responses, answer),
        )
        .where(
            *scope.conditions(),
            counted,
            cases.c.case_type != NO_RESPONSE,
            cases.c.score.is_not(None),
        )
        .subquery("per_case")
    )
    change = per_case.c.change
    rows = await session.execute(
        sa.select(
            per_case.c.closed,
            sa.func.count(),
            sa.func.count(per_case.c.invited_at),
            sa.func.count(per_case.c.answered_at),
            sa.func.count(change),
            sa.func.coalesce(sa.func.sum(change), 0),
            sa.func.coalesce(sa.func.sum(change * change), 0),
        ).group_by(per_case.c.closed)
    )
    groups = {
        bool(closed): LoopGroup(
            cases=int(n),
            invited=int(invited),
            responded=int(responded),
            score_change=Moments(int(changes), float(total), float(squares)),
        )
        for closed, n, invited, responded, changes, total, squares in rows
    }
    return groups.get(True, LoopGroup()), groups.get(False, LoopGroup())


@dataclass(frozen=True, slots=True)
class SlaCounts:
    """Per (priority, case type): cases judged (reached, or their deadline passed) and those
    reached by the deadline."""

    by_kind: Mapping[tuple[str, str], tuple[int, int]]

    def share(
        self, confidence: float, *, priority: str | None = None, case_type: str | None = None
    ) -> Share:
        judged = within = 0
        for (p, t), (n, k) in self.by_kind.items():
            if priority in (None, p) and case_type in (None, t):
                judged, within = judged + n, within + k
        return wilson(within, judged, confidence)


async def sla_counts(session: AsyncSession, scope: Scope) -> SlaCounts:
    rows = await session.execute(
        sa.select(
            cases.c.priority,
            cases.c.case_type,
            sa.func.count(),
            sa.func.count().filter(cases.c.first_contacted_at <= cases.c.first_contact_due_at),
        )
        .where(
            *scope.conditions(),
            sa.or_(_reached(), cases.c.first_contact_due_at <= scope.now),
        )
        .group_by(cases.c.priority, cases.c.case_type)
    )
    return SlaCounts({(p, t): (int(n), int(k)) for p, t, n, k in rows})


@dataclass(frozen=True, slots=True)
class ContactDelays:
    """Time to first contact of the reached cases: how many, the `QUANTILES` in seconds (None
    without any) and the histogram."""

    count: int
    quantiles: tuple[float, ...] | None
    buckets: Sequence[Bucket]


async def contact_delays(session: AsyncSession, scope: Scope) -> ContactDelays:
    delay = sa.cast(sa.extract("epoch", cases.c.first_contacted_at - cases.c.opened_at), sa.Float)
    quantiles = sa.bindparam("quantiles", list(QUANTILES), type_=ARRAY(sa.Float))
    row = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.percentile_cont(quantiles).within_group(delay),
                *(sa.func.count().filter(delay <= hours * 3600) for hours in HISTOGRAM_HOURS),
            ).where(*scope.conditions(), _reached())
        )
    ).one()
    count, found, *at_most = row
    return ContactDelays(
        count=int(count),
        quantiles=None if found is None else tuple(float(v) for v in found),
        buckets=histogram([int(n) for n in at_most], int(count)),
    )


@dataclass(frozen=True, slots=True)
class ImpactFigures:
    loop: LoopImpact
    sla: SlaCounts
    delays: ContactDelays


async def figures(session: AsyncSession, scope: Scope, confidence: float) -> ImpactFigures:
    """Every scoring-independent figure of the scope."""
    closed, not_closed = await loop_groups(session, scope)
    return ImpactFigures(
        loop=loop_impact(closed, not_closed, confidence),
        sla=await sla_counts(session, scope),
        delays=await contact_delays(session, scope),
    )
