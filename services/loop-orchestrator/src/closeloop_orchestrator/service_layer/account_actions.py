"""Actions agreed with an account as stored: recording one and changing it (the rules are in
`domain/account_actions.py`).

Each change is written in the caller's transaction, guarded by the version it started from: the
row is locked, the caller's version checked, the change judged by the domain's rules and written
as the next version.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa

from closeloop_common.handlers import Transaction
from closeloop_orchestrator.adapters.tables import account_actions, structural_issues
from closeloop_orchestrator.domain.account_actions import (
    ActionChange,
    ActionState,
    ActionStatus,
    ActionVersionConflict,
    changed,
    check_title,
    check_version,
)


class ActionNotFound(LookupError):
    pass


class UnknownIssue(ValueError):
    """The structural issue an action names is not the tenant's."""


@dataclass(frozen=True, slots=True)
class NewAction:
    title: str
    description: str | None
    owner: Mapping[str, str | None] | None
    due_on: date | None
    issue_id: uuid.UUID | None


async def create(
    tx: Transaction,
    *,
    tenant_id: str,
    account_id: str,
    action_id: uuid.UUID,
    new: NewAction,
    actor: str,
) -> None:
    """Record an action agreed now (UnknownIssue: it names an issue the tenant does not have)."""
    session, at = tx.session, tx.clock.now()
    check_title(new.title)
    if new.issue_id is not None:
        found = await session.scalar(
            sa.select(structural_issues.c.issue_id).where(
                structural_issues.c.tenant_id == tenant_id,
                structural_issues.c.issue_id == new.issue_id,
            )
        )
        if found is None:
            raise UnknownIssue(f"no structural issue {new.issue_id}")
    await session.execute(
        sa.insert(account_actions).values(
            tenant_id=tenant_id,
            action_id=action_id,
            account_id=account_id,
            title=new.title,
            description=new.description,
            owner=None if new.owner is None else dict(new.owner),
            due_on=new.due_on,
            status=ActionStatus.AGREED.value,
            note=None,
            issue_id=new.issue_id,
            version=1,
            agreed_at=at,
            created_by=actor,
            updated_by=actor,
            updated_at=at,
            finished_at=None,
        )
    )


async def change(
    tx: Transaction,
    *,
    tenant_id: str,
    account_id: str,
    action_id: uuid.UUID,
    change: ActionChange,
    expected_version: int,
    actor: str,
) -> None:
    """Apply `change` to the action (ActionNotFound, ActionVersionConflict, and the domain's
    refusals: ActionTransitionRefused, InvalidAction, NothingToChange)."""
    session, at = tx.session, tx.clock.now()
    row = (
        await session.execute(
            sa.select(account_actions)
            .where(
                account_actions.c.tenant_id == tenant_id,
                account_actions.c.account_id == account_id,
                account_actions.c.action_id == action_id,
            )
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise ActionNotFound(f"no action {action_id} of account {account_id!r}")
    check_version(expected_version, row.version)
    state = ActionState(
        status=ActionStatus(row.status),
        title=row.title,
        description=row.description,
        owner=row.owner,
        due_on=row.due_on,
        note=row.note,
        version=row.version,
    )
    values: dict[str, Any] = changed(state, change, at=at)
    if "owner" in values and values["owner"] is not None:
        values["owner"] = dict(values["owner"])
    result = await session.execute(
        sa.update(account_actions)
        .where(
            account_actions.c.tenant_id == tenant_id,
            account_actions.c.action_id == action_id,
            account_actions.c.version == row.version,
        )
        .values(version=row.version + 1, updated_by=actor, updated_at=at, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ActionVersionConflict(expected=row.version, actual=row.version + 1)
