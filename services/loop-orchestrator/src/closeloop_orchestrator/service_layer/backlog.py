"""Structural issues as stored: creating one (with the cases it concerns: those given, and those of
the responses scoring found its theme in), editing it, linking and unlinking cases, recording a
new impact estimate, and each transition of its lifecycle (`domain/backlog.py`).

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
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
    """A done or rejected issue is not changed again: it is kept as it was decided."""


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
    theme_responses: Sequence[str] = ()


EDITABLE = ("title", "description", "cost", "cost_unit", "owner")
"""What `edit` may change; the theme and filters are what the impact was estimated on."""


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
    """Store a new proposed issue and link its cases: those given (UnknownCases: some are not
    the tenant's) and those of its theme's responses."""
    session, at = tx.session, tx.clock.now()
    given = await _cases_named(session, tenant_id, new.case_ids)
    found = await _cases_of_responses(session, tenant_id, new.theme_responses)
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
            theme_responses=list(new.theme_responses),
            version=1,
            created_by=actor,
            created_at=at,
            updated_by=actor,
            updated_at=at,
        )
    )
    linked = await _link(session, tenant_id, issue_id, [*given, *found])
    await _history(
        session, tenant_id, issue_id, 1, "created", None, IssueStatus.PROPOSED, actor, at,
        {"cases": linked, "theme_responses": len(new.theme_responses),
         "impact_known": impact is not None},
    )  # fmt: skip


_CASE_COLUMNS = (cases.c.case_id, cases.c.response_id, cases.c.customer_id, cases.c.account_id)


async def _cases_named(
    session: AsyncSession, tenant_id: str, case_ids: Sequence[uuid.UUID]
) -> list[Any]:
    """The tenant's cases of these ids; UnknownCases when some are not."""
    if not case_ids:
        return []
    wanted = set(case_ids)
    found = list(
        await session.execute(
            sa.select(*_CASE_COLUMNS).where(
                cases.c.tenant_id == tenant_id, cases.c.case_id.in_(wanted)
            )
        )
    )
    missing = wanted - {row.case_id for row in found}
    if missing:
        shown = ", ".join(sorted(str(m) for m in missing)[:10])
        raise UnknownCases(f"{len(missing)} case(s) not found: {shown}")
    return found


async def _cases_of_responses(
    session: AsyncSession, tenant_id: str, response_ids: Sequence[str]
) -> list[Any]:
    """The cases of these responses (a response without a case has none)."""
    if not response_ids:
        return []
    ids = sa.bindparam("ids", list(response_ids), type_=postgresql.ARRAY(sa.Text))
    return list(
        await session.execute(
            sa.select(*_CASE_COLUMNS).where(
                cases.c.tenant_id == tenant_id, cases.c.response_id == sa.any_(ids)
            )
        )
    )


async def _link(
    session: AsyncSession, tenant_id: str, issue_id: uuid.UUID, rows: Sequence[Any]
) -> int:
    """Link these cases to the issue (those linked already stay as they are); how many new."""
    if not rows:
        return 0
    result = await session.execute(
        pg_insert(structural_issue_cases)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "issue_id": issue_id,
                    "case_id": row.case_id,
                    "response_id": row.response_id,
                    "customer_id": row.customer_id,
                    "account_id": row.account_id,
                }
                for row in {row.case_id: row for row in rows}.values()
            ]
        )
        .on_conflict_do_nothing()
        .returning(structural_issue_cases.c.case_id)
    )
    return len(result.all())


async def link_cases(
    tx: Transaction,
    *,
    tenant_id: str,
    issue_id: uuid.UUID,
    add: Sequence[uuid.UUID],
    remove: Sequence[uuid.UUID],
    actor: str,
) -> None:
    """Link more cases to an open issue and unlink others (the issue's next version)."""
    session, at = tx.session, tx.clock.now()
    row = await _load(session, tenant_id, issue_id, for_update=True)
    status = _open_status(row)
    added = await _link(session, tenant_id, issue_id, await _cases_named(session, tenant_id, add))
    removed = 0
    if remove:
        result = await session.execute(
            sa.delete(structural_issue_cases).where(
                structural_issue_cases.c.tenant_id == tenant_id,
                structural_issue_cases.c.issue_id == issue_id,
                structural_issue_cases.c.case_id.in_(set(remove)),
            )
        )
        removed = result.rowcount  # type: ignore[attr-defined]
    await _write(session, row, {"updated_by": actor, "updated_at": at})
    await _history(
        session, tenant_id, issue_id, row.version + 1, "cases_linked", status, status, actor, at,
        {"added": added, "removed": removed},
    )  # fmt: skip


async def edit(
    tx: Transaction,
    *,
    tenant_id: str,
    issue_id: uuid.UUID,
    expected_version: int,
    changes: Mapping[str, Any],
    actor: str,
) -> None:
    """Change what `EDITABLE` names on an open issue (the issue's next version)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    session, at = tx.session, tx.clock.now()
    row = await _load(session, tenant_id, issue_id, for_update=True)
    check_version(expected_version, row.version)
    status = _open_status(row)
    changed = {name: value for name, value in changes.items() if getattr(row, name) != value}
    await _write(session, row, {**changed, "updated_by": actor, "updated_at": at})
    await _history(
        session, tenant_id, issue_id, row.version + 1, "edited", status, status, actor, at,
        {"fields": sorted(changed)},
    )  # fmt: skip


def _open_status(row: Any) -> IssueStatus:
    status = IssueStatus(row.status)
    if status.final:
        raise IssueFinal(f"the issue is {status.value}: it is kept as it was decided")
    return status


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
    theme_responses: Sequence[str] | None = None,
) -> None:
    """Store a new impact estimate (the issue's next version) and, when given, the responses its
    theme is found in now (their cases are linked; none is unlinked)."""
    session, at = tx.session, tx.clock.now()
    row = await _load(session, tenant_id, issue_id, for_update=True)
    status = _open_status(row)
    values: dict[str, Any] = {"impact": impact, "updated_by": actor, "updated_at": at}
    details: dict[str, Any] = {"impact": impact}
    if theme_responses is not None:
        values["theme_responses"] = list(theme_responses)
        found = await _cases_of_responses(session, tenant_id, theme_responses)
        details |= {
            "theme_responses": len(theme_responses),
            "cases": await _link(session, tenant_id, issue_id, found),
        }
    await _write(session, row, values)
    await _history(
        session, tenant_id, issue_id, row.version + 1, "estimated", status, status, actor, at,
        details,
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
        response_ids=sorted({*response_ids, *row.theme_responses}),
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
