"""The loop's impact, counted over the orchestrator's own tables, and the NPS of the segments of
done structural issues before and after, asked of scoring.

The definitions are `domain/impact.py`'s; here they are SQL. Each figure is one aggregate query
(counts, sums and PostgreSQL's `percentile_cont`), so no case is read into Python: the same
queries serve one tenant's HTTP report and the gauges' recount over every tenant. Cases are
those opened in [`opened_from`, `opened_before`); the re-survey of a case is found through
`ix_invitations_customer` (one index probe per case, `LATERAL ... LIMIT 1`).

Issues: the done issues decided in the window, latest first (at most `MAX_ISSUES`), each
compared in scoring (`/v1/nps/compare`, with the caller's token) over the issue's filters: the
`days` local days after the day of the decision (clipped at today) against the `days` before
it. The day of the decision itself is on neither side (it mixes both), and days are the UTC
dates of the decision and of now, which scoring reads as its own time zone's local days. An
issue decided today has no day after it yet: nothing is asked. Scoring down or refusing marks
that issue `unavailable`; the rest of the report is unaffected.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import Category
from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.statistics import DEFAULT_CONFIDENCE
from closeloop_orchestrator.adapters.scoring_client import (
    NpsComparison,
    ScoringClient,
    ScoringError,
)
from closeloop_orchestrator.adapters.tables import cases, invitations, responses, structural_issues
from closeloop_orchestrator.domain.case_commands import Priority
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
from closeloop_orchestrator.metrics import (
    LOOP_CASES,
    LOOP_FIRST_CONTACT_WITHIN_SLA_RATIO,
    LOOP_RESPONSE_RATE_DIFFERENCE_P_VALUE,
    LOOP_RESURVEY_INVITATIONS,
    LOOP_RESURVEY_RESPONSE_RATIO,
    LOOP_RESURVEY_RESPONSES,
    LOOP_SCORE_CHANGE_DIFFERENCE_P_VALUE,
    LOOP_SCORE_CHANGE_MEAN,
    LOOP_TIME_TO_FIRST_CONTACT,
)

NO_RESPONSE = "no_response"
CASE_TYPES = (*(c.value for c in Category), NO_RESPONSE)
SETTLED = ("resolved", "closed")
MAX_ISSUES = 20
GAUGE_WINDOW = timedelta(days=90)


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


@dataclass(frozen=True, slots=True)
class DoneIssue:
    issue_id: uuid.UUID
    title: str
    decided_at: datetime
    filters: Mapping[str, str]


async def done_issues(
    session: AsyncSession, *, tenant_id: str, decided_from: datetime, decided_before: datetime
) -> list[DoneIssue]:
    """The tenant's done issues decided in the window, latest first, at most `MAX_ISSUES`."""
    rows = await session.execute(
        sa.select(
            structural_issues.c.issue_id,
            structural_issues.c.title,
            structural_issues.c.decided_at,
            structural_issues.c.filters,
        )
        .where(
            structural_issues.c.tenant_id == tenant_id,
            structural_issues.c.status == "done",
            structural_issues.c.decided_at >= decided_from,
            structural_issues.c.decided_at < decided_before,
        )
        .order_by(structural_issues.c.decided_at.desc(), structural_issues.c.issue_id)
        .limit(MAX_ISSUES)
    )
    return [DoneIssue(r.issue_id, r.title, r.decided_at, dict(r.filters)) for r in rows]


@dataclass(frozen=True, slots=True)
class IssueBeforeAfter:
    """An issue's segment before and after its decision: `comparison` None with `detail` when
    scoring could not answer (`unavailable`) or there is no day after the decision yet."""

    issue: DoneIssue
    comparison: NpsComparison | None
    unavailable: bool
    detail: str | None


def before_and_after(decided: date, *, days: int, today: date) -> tuple[tuple[date, date], ...]:
    """(before, after) as local days [first, end): the `days` before the day of the decision and
    the `days` after it, clipped at today; () when no day after it has begun."""
    after_first = decided + timedelta(days=1)
    if after_first > today:
        return ()
    before = (decided - timedelta(days=days), decided)
    after = (after_first, min(after_first + timedelta(days=days), today + timedelta(days=1)))
    return before, after


async def compare_issues(
    scoring: ScoringClient,
    issues: Sequence[DoneIssue],
    *,
    authorization: str,
    days: int,
    today: date,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[IssueBeforeAfter]:
    """Each issue's NPS before and after, asked of scoring at once (in order of `issues`)."""

    async def one(issue: DoneIssue) -> IssueBeforeAfter:
        windows = before_and_after(issue.decided_at.date(), days=days, today=today)
        if not windows:
            return IssueBeforeAfter(issue, None, False, "decided today: no day after it yet")
        before, after = windows
        try:
            found = await scoring.compare_nps(
                authorization=authorization,
                filters=issue.filters,
                compared=after,
                baseline=before,
                confidence=confidence,
            )
        except ScoringError as exc:
            return IssueBeforeAfter(issue, None, True, str(exc))
        return IssueBeforeAfter(issue, found, False, None)

    return list(await asyncio.gather(*(one(issue) for issue in issues)))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


async def recount_gauges(runtime: ServiceRuntime) -> ImpactFigures:
    """Set the loop's gauges from every tenant's cases opened in the last 90 days (figures that
    are undefined, e.g. a rate without invitations, are NaN rather than a stale value)."""
    now = runtime.clock.now()
    scope = Scope(tenant_id=None, opened_from=now - GAUGE_WINDOW, opened_before=None, now=now)
    async with runtime.worker_sessions() as session:
        found = await figures(session, scope, DEFAULT_CONFIDENCE)
    impact = found.loop
    for loop, group in (("closed", impact.closed), ("not_closed", impact.not_closed)):
        LOOP_CASES.labels(loop=loop).set(group.cases)
        LOOP_RESURVEY_INVITATIONS.labels(loop=loop).set(group.response_rate.n)
        LOOP_RESURVEY_RESPONSES.labels(loop=loop).set(group.response_rate.successes)
        LOOP_RESURVEY_RESPONSE_RATIO.labels(loop=loop).set(_or_nan(group.response_rate.value))
        LOOP_SCORE_CHANGE_MEAN.labels(loop=loop).set(_or_nan(group.score_change.value))
    rates, changes = impact.response_rate_difference, impact.score_change_difference
    LOOP_RESPONSE_RATE_DIFFERENCE_P_VALUE.set(math.nan if rates is None else rates.p_value)
    LOOP_SCORE_CHANGE_DIFFERENCE_P_VALUE.set(math.nan if changes is None else changes.p_value)
    quantiles = found.delays.quantiles
    for i, q in enumerate(QUANTILES):
        LOOP_TIME_TO_FIRST_CONTACT.labels(quantile=str(q)).set(
            math.nan if quantiles is None else quantiles[i]
        )
    for priority in Priority:
        share = found.sla.share(DEFAULT_CONFIDENCE, priority=priority.value)
        LOOP_FIRST_CONTACT_WITHIN_SLA_RATIO.labels(priority=priority.value).set(
            _or_nan(share.value)
        )
    return found


async def run_gauges(runtime: ServiceRuntime, interval: float) -> None:
    async def step() -> bool:
        await recount_gauges(runtime)
        return False

    await repeat(step, wake=asyncio.Event(), idle=interval, name="loop-impact-gauges")
