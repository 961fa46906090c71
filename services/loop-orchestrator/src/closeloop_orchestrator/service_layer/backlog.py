"""Structural issues as stored: creating one (with the cases it concerns), recording a new impact
estimate, and each transition of its lifecycle (`domain/backlog.py`).

Every change is written in the caller's transaction with its history row, guarded by the
version it started from. A transition to done or rejected queues `change.summary.v1` in the same
transaction (the outbox publishes it to the `changes` topic), so a decision is never stored
without the customers being told, nor told without being stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import ChangeAudience, ChangeSegment, ChangeSummaryV1, ChangeText
from closeloop_common.handlers import Transaction
from closeloop_orchestrator.adapters.scoring_client import WhatIfAnswer
from closeloop_orchestrator.adapters.tables import (
    cases,
    structural_issue_cases,
    structural_issue_history,
    structural_issues,
)
from closeloop_orchestrator.domain.backlog import (
    CustomerText,
    Decision,
    IssueCommand,
    IssueStatus,
    IssueVersionConflict,
    audience_of,
    check_decision,
    check_version,
    next_status,
)


class IssueNotFound(LookupError):
    pass


class UnknownCases(ValueError):
    """Case ids that name no case of the tenant."""


class IssueFinal(ValueError):
    """A done or rejected issue is not estimated again: its impact is the one it was decided on."""


@dataclass(frozen=True, slots=True)
class NewIssue:
    title: str
    description: str | None
    source: Literal["theme", "cases"]
    theme: str | None
    filters: Mapping[str, str]
    cost: Decimal
    cost_unit: str
    owner: Mapping[str, str | None] | None
    case_ids: Sequence[uuid.UUID]


def impact_json(answer: WhatIfAnswer | None, *, at: datetime) -> dict[str, Any] | None:
    """The stored impact of scoring's answer; None when unknown (no answer or nothing projected)."""
    if answer is None or answer.points is None:
        return None
    return {
        "nps_points": answer.points,
        "ci_low": answer.ci_low,
        "ci_high": answer.ci_high,
        "n": answer.n,
        "today_nps": answer.today_nps,
        "projected_nps": answer.projected_nps,
        "confidence": answer.confidence,
        "method": answer.method,
        "window": dict(answer.window),
        "estimated_at": at.isoformat(),
    }


async def create(
    tx: Transaction,
    *,
    tenant_id: str,
    issue_id: uuid.UUID,
    new: NewIssue,
    impact: dict[str, Any] | None,
    actor: str,
) -> None:
    """Store a new proposed issue and link its cases (UnknownCases: some are not the tenant's)."""
    session, at = tx.session, tx.clock.now()
    linked: list[Any] = []
    if new.case_ids:
        wanted = set(new.case_ids)
        linked = list(
            await session.execute(
                sa.select(cases.c.case_id, cases.c.response_id, cases.c.customer_id,
                          cases.c.account_id)
                .where(cases.c.tenant_id == tenant_id, cases.c.case_id.in_(wanted))
            )
        )  # fmt: skip
        missing = wanted - {row.case_id for row in linked}
        if missing:
            shown = ", ".join(sorted(str(m) for m in missing)[:10])
            raise UnknownCases(f"{len(missing)} case(s) not found: {shown}")
    await session.execute(
        sa.insert(structural_issues).values(
            tenant_id=tenant_id,
            issue_id=issue_id,
            title=new.title,
            description=new.description,
            source=new.source,
            theme=new.theme,
            filters=dict(new.filters),
            status=IssueStatus.PROPOSED.value,
            owner=None if new.owner is None else dict(new.owner),
            cost=new.cost,
            cost_unit=new.cost_unit,
            impact=impact,
            notify_segment=False,
            version=1,
            created_by=actor,
            created_at=at,
            updated_by=actor,
            updated_at=at,
        )
    )
    if linked:
        await session.execute(
            sa.insert(structural_issue_cases),
            [
                {
                    "tenant_id": tenant_id,
                    "issue_id": issue_id,
                    "case_id": row.case_id,
                    "response_id": row.response_id,
                    "customer_id": row.customer_id,
                    "account_id": row.account_id,
                }
                for row in linked
            ],
        )
    await _history(
        session, tenant_id, issue_id, 1, "created", None, IssueStatus.PROPOSED, actor, at,
        {"cases": len(linked), "impact_known": impact is not None},
    )  # fmt: skip


async def _load(
    session: AsyncSession, tenant_id: str, issue_id: uuid.UUID, *, for_update: bool
) -> Any:
    query = sa.select(structural_issues).where(
        structural_issues.c.tenant_id == tenant_id, structural_issues.c.issue_id == issue_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise IssueNotFound(f"no structural issue {issue_id}")
    return row


async def issue_row(session: AsyncSession, *, tenant_id: str, issue_id: uuid.UUID) -> Any:
    """The issue's row (IssueNotFound otherwise), unlocked: for reading its theme and filters."""
    return await _load(session, tenant_id, issue_id, for_update=False)


async def _history(
    session: AsyncSession,
    tenant_id: str,
    issue_id: uuid.UUID,
    version: int,
    kind: str,
    from_status: IssueStatus | None,
    to_status: IssueStatus,
    actor: str,
    at: datetime,
    details: dict[str, Any],
) -> None:
    await session.execute(
        sa.insert(structural_issue_history).values(
            tenant_id=tenant_id,
            issue_id=issue_id,
            version=version,
            kind=kind,
            from_status=None if from_status is None else from_status.value,
            to_status=to_status.value,
            actor=actor,
            at=at,
            details=details,
        )
    )


async def _write(session: AsyncSession, row: Any, values: dict[str, Any]) -> None:
    result = await session.execute(
        sa.update(structural_issues)
        .where(
            structural_issues.c.tenant_id == row.tenant_id,
            structural_issues.c.issue_id == row.issue_id,
            structural_issues.c.version == row.version,
        )
        .values(version=row.version + 1, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise IssueVersionConflict(expected=row.version, actual=row.version + 1)


async def record_estimate(
    tx: Transaction,
    *,
    tenant_id: str,
    issue_id: uuid.UUID,
    impact: dict[str, Any] | None,
    actor: str,
) -> None:
    """Store a new impact estimate (the issue's next version)."""
    session, at = tx.session, tx.clock.now()
    row = await _load(session, tenant_id, issue_id, for_update=True)
    status = IssueStatus(row.status)
    if status.final:
        raise IssueFinal(f"the issue is {status.value}: its impact is the one it was decided on")
    await _write(session, row, {"impact": impact, "updated_by": actor, "updated_at": at})
    await _history(
        session, tenant_id, issue_id, row.version + 1, "estimated", status, status, actor, at,
        {"impact": impact},
    )  # fmt: skip


async def transition(
    tx: Transaction,
    *,
    tenant_id: str,
    issue_id: uuid.UUID,
    command: IssueCommand,
    expected_version: int,
    actor: str,
    decision: Decision | None = None,
) -> ChangeSummaryV1 | None:
    """Move the issue by `command`; for done and reject, tell customers (the event, returned)."""
    session, at = tx.session, tx.clock.now()
    row = await _load(session, tenant_id, issue_id, for_update=True)
    check_version(expected_version, row.version)
    before = IssueStatus(row.status)
    after = next_status(command, before)
    values: dict[str, Any] = {"status": after.value, "updated_by": actor, "updated_at": at}
    details: dict[str, Any] = {}
    if command in ("done", "reject"):
        assert decision is not None, "done and reject carry a decision"
        check_decision(command, decision)
        values |= {
            "locale": decision.locale,
            "customer_text": {loc: _text_json(t) for loc, t in decision.texts.items()},
            "notify_segment": decision.notify_segment,
            "reason": decision.reason,
            "decided_at": at,
        }
        details = {"reason": decision.reason, "notify_segment": decision.notify_segment}
    await _write(session, row, values)
    await _history(
        session, tenant_id, issue_id, row.version + 1, command, before, after, actor, at, details
    )
    if decision is None:
        return None
    response_ids = await session.scalars(
        sa.select(structural_issue_cases.c.response_id)
        .where(
            structural_issue_cases.c.tenant_id == tenant_id,
            structural_issue_cases.c.issue_id == issue_id,
        )
        .order_by(structural_issue_cases.c.response_id)
    )
    event = change_summary(
        issue_id=issue_id,
        status="done" if after is IssueStatus.DONE else "rejected",
        decision=decision,
        response_ids=list(response_ids),
        filters=row.filters,
        decided_by=actor,
        decided_at=at,
    )
    await tx.emit(event, tenant_id=tenant_id, subject=str(issue_id))
    return event


def _text_json(text: CustomerText) -> dict[str, str]:
    found = {
        "title": text.title,
        "summary": text.summary,
        "reason": text.reason,
        "you_said": text.you_said,
    }
    return {key: value for key, value in found.items() if value is not None}


def change_summary(
    *,
    issue_id: uuid.UUID,
    status: Literal["done", "rejected"],
    decision: Decision,
    response_ids: Sequence[str],
    filters: Mapping[str, str],
    decided_by: str,
    decided_at: datetime,
) -> ChangeSummaryV1:
    """`change.summary.v1` of a decided issue: what to tell, in which languages, and to whom."""
    audience = audience_of(response_ids, filters, notify_segment=decision.notify_segment)

    def text(t: CustomerText) -> ChangeText:
        # A done issue tells what was done, a rejected one why not: never both.
        return ChangeText(
            title=t.title,
            summary=t.summary if status == "done" else None,
            reason=t.reason if status == "rejected" else None,
            you_said=t.you_said,
        )

    return ChangeSummaryV1(
        change_id=str(issue_id),
        status=status,
        locale=decision.locale,
        text=text(decision.texts[decision.locale]),
        translations={
            locale: text(t) for locale, t in decision.texts.items() if locale != decision.locale
        },
        audience=ChangeAudience(
            response_ids=audience.response_ids,
            segment=None if audience.segment is None else ChangeSegment(**audience.segment),
        ),
        decided_by=decided_by,
        decided_at=decided_at,
    )
