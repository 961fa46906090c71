"""The NPS of the segments of done structural issues before and after their decision, asked of
scoring (`/v1/nps/compare`, with the caller's token), for the loop's impact.

The done issues decided in the window, latest first (at most `MAX_ISSUES`), are each compared
over the issue's filters: the `days` local days after the day of the decision (clipped at
today) against the `days` before it (`domain.impact.before_and_after`). Issues are asked at
once. An issue decided today has no day after it yet: nothing is asked. Scoring down or refusing
marks that issue `unavailable`; the rest of the report is unaffected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.statistics import DEFAULT_CONFIDENCE
from closeloop_orchestrator.adapters.scoring_client import (
    NpsComparison,
    ScoringClient,
    ScoringError,
)
from closeloop_orchestrator.adapters.tables import structural_issues
from closeloop_orchestrator.domain.impact import before_and_after

MAX_ISSUES = 20


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
        decided = issue.decided_at.astimezone(UTC).date()
        windows = before_and_after(decided, days=days, today=today)
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
