"""The orchestrator's read side: cases and their history as the API answers them. No writes.

The case list is ordered key accounts first, then by the nearest first-contact deadline, then by
case id, and paged by a cursor: the position after the last case of a page (keyset pagination,
through the index `ix_cases_list`), so a page costs the same however deep, and cases opened
meanwhile never shift a page's contents.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_orchestrator.adapters.tables import (
    ACTIVE_STATUSES,
    account_owners,
    case_history,
    cases,
)


class BadCursor(ValueError):
    pass


def case_json(row: Any) -> dict[str, Any]:
    owner = None
    if row.owner_id is not None:
        owner = {"id": row.owner_id, "name": row.owner_name, "email": row.owner_email}
    return {
        "case_id": row.case_id,
        "tenant_id": row.tenant_id,
        "version": row.version,
        "response_id": row.response_id,
        "survey_id": row.survey_id,
        "customer": row.customer,
        "account_id": row.account_id,
        "segments": row.segments,
        "score": row.score,
        "category": row.category,
        "comment": row.comment,
        "case_type": row.case_type,
        "playbook": row.playbook,
        "priority": row.priority,
        "channel": row.channel,
        "rule": row.rule,
        "team_id": row.team_id,
        "queue": row.queue,
        "owner": owner,
        "key_account": row.key_account,
        "status": row.status,
        "opened_at": row.opened_at,
        "updated_at": row.updated_at,
        "first_contact_due_at": row.first_contact_due_at,
        "resolution_due_at": row.resolution_due_at,
        "first_contacted_at": row.first_contacted_at,
        "contact_attempts": row.contact_attempts,
        "resolved_at": row.resolved_at,
        "resolution": row.resolution,
        "closed_at": row.closed_at,
        "resurvey_due_at": row.resurvey_due_at,
        "root_causes": list(row.root_causes),
        "business_hours": row.business_hours,
    }


async def case(
    *, session: AsyncSession, tenant_id: str, case_id: uuid.UUID
) -> dict[str, Any] | None:
    """One case of the tenant, or None."""
    row = (
        await session.execute(
            sa.select(cases).where(cases.c.tenant_id == tenant_id, cases.c.case_id == case_id)
        )
    ).one_or_none()
    return None if row is None else case_json(row)


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Every filter given must hold; None holds for every case."""

    status: Sequence[str] | None = None
    owner_id: str | None = None
    queue: str | None = None
    team_id: str | None = None
    case_type: str | None = None
    priority: Sequence[str] | None = None
    overdue: bool | None = None
    account_id: str | None = None
    survey_id: str | None = None
    response_id: str | None = None
    key_account: bool | None = None
    segments: tuple[tuple[str, str], ...] = ()


def encode_cursor(row: Any) -> str:
    raw = json.dumps(
        [not row.key_account, row.first_contact_due_at.isoformat(), str(row.case_id)]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[bool, datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        not_key, due, case_id = json.loads(raw)
        if not isinstance(not_key, bool):
            raise TypeError("not a flag")
        found = datetime.fromisoformat(due)
        if found.tzinfo is None:
            raise TypeError("not an instant")
        return not_key, found, uuid.UUID(case_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("the cursor is not one this API gave out; start again without it") from exc


async def list_cases(
    *,
    session: AsyncSession,
    tenant_id: str,
    filters: CaseFilter,
    now: datetime,
    limit: int,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of the tenant's cases matching every filter, and the cursor of the next page."""
    c = cases.c
    query = sa.select(cases).where(c.tenant_id == tenant_id)
    if filters.status:
        query = query.where(c.status.in_(filters.status))
    if filters.priority:
        query = query.where(c.priority.in_(filters.priority))
    for column, value in (
        (c.owner_id, filters.owner_id),
        (c.queue, filters.queue),
        (c.team_id, filters.team_id),
        (c.case_type, filters.case_type),
        (c.account_id, filters.account_id),
        (c.survey_id, filters.survey_id),
        (c.response_id, filters.response_id),
        (c.key_account, filters.key_account),
    ):
        if value is not None:
            query = query.where(column == value)
    for dimension, value in filters.segments:
        query = query.where(c.segments[dimension].astext == value)
    if filters.overdue is not None:
        overdue = sa.and_(
            c.status.in_(ACTIVE_STATUSES),
            sa.or_(
                sa.and_(c.first_contacted_at.is_(None), c.first_contact_due_at < now),
                c.resolution_due_at < now,
            ),
        )
        query = query.where(overdue if filters.overdue else sa.not_(overdue))
    order = (sa.not_(c.key_account), c.first_contact_due_at, c.case_id)
    if cursor is not None:
        query = query.where(sa.tuple_(*order) > sa.tuple_(*decode_cursor(cursor)))
    rows = (await session.execute(query.order_by(*order).limit(limit + 1))).all()
    page = rows[:limit]
    return {
        "tenant_id": tenant_id,
        "cases": [case_json(row) for row in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > limit else None,
    }


async def history(
    *, session: AsyncSession, tenant_id: str, case_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The case's transitions, oldest first (empty: no such case)."""
    h = case_history.c
    rows = await session.execute(
        sa.select(case_history)
        .where(h.tenant_id == tenant_id, h.case_id == case_id)
        .order_by(h.version)
    )
    return [
        {
            "version": row.version,
            "transition": row.kind,
            "from_status": row.from_status,
            "status": row.to_status,
            "actor": row.actor,
            "at": row.at,
            "note": row.note,
            "details": row.details,
        }
        for row in rows
    ]


async def account_owners_page(
    *, session: AsyncSession, tenant_id: str, after: str | None, limit: int
) -> dict[str, Any]:
    """Account owners by account id, from after `after`; `next_after` continues."""
    a = account_owners.c
    query = sa.select(a.account_id, a.owner_id, a.updated_at).where(a.tenant_id == tenant_id)
    if after is not None:
        query = query.where(a.account_id > after)
    rows = (await session.execute(query.order_by(a.account_id).limit(limit))).all()
    return {
        "owners": [
            {"account_id": r.account_id, "owner_id": r.owner_id, "updated_at": r.updated_at}
            for r in rows
        ],
        "next_after": rows[-1].account_id if len(rows) == limit else None,
    }
