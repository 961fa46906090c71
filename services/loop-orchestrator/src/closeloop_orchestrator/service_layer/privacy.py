"""Erasure (GDPR article 17) and export (article 15) of a respondent, the orchestrator's part.

`on_erasure_requested` (one `privacy.erasure_requested.v1`, exactly once through the inbox)
anonymises, never deletes, so case counts, the loop's impact and SLA figures stay as they were:
- `cases`: the customer becomes the erasure's pseudonym (`customer_id`, `customer` = {id}), the
  comment `ERASED`; status, score, category, owner, deadlines and times are kept;
- `case_history`: the notes of those cases become `ERASED` (the transitions stay);
- `responses` (the copy kept for rules and corrections) and `invitations`: the customer becomes
  the pseudonym, a comment `ERASED`;
- `structural_issue_cases`: the customer id becomes the pseudonym;
- `outbox`: published rows keyed by the customer are deleted (retention would in 7 days).
Rows are found by any identifier the event names (customer ids, addresses, response and
invitation ids). Then it emits `privacy.erasure_completed.v1` with the rows touched per table.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import CloudEvent, ErasureRequestedV1
from closeloop_common.handlers import HandlerContext
from closeloop_common.privacy import (
    ERASED,
    SubjectIdentifiers,
    exported_row,
    report_erasure,
    rows_touched,
)

_P = "CAST(:pseudonym AS text)"
_ANONYMISE_CASES = sa.text(
    f"UPDATE orchestrator.cases SET customer_id = {_P}, customer = jsonb_build_object('id', {_P}), "
    "comment = CASE WHEN comment IS NULL THEN NULL ELSE CAST(:erased AS text) END "
    "WHERE tenant_id = :t AND (customer_id = ANY(:cids) OR response_id = ANY(:rids) "
    "OR invitation_id = ANY(:iids) OR lower(customer ->> 'email') = ANY(:emails)) "
    "RETURNING case_id"
)
_ERASE_NOTES = sa.text(
    "UPDATE orchestrator.case_history SET note = CAST(:erased AS text) "
    "WHERE tenant_id = :t AND case_id = ANY(:case_ids) AND note IS NOT NULL "
    "AND note <> CAST(:erased AS text)"
)
_ANONYMISE_RESPONSES = sa.text(
    "UPDATE orchestrator.responses SET body = body "
    f"|| jsonb_build_object('customer', jsonb_build_object('id', {_P})) "
    "|| CASE WHEN body ->> 'comment' IS NULL THEN '{}'::jsonb "
    "ELSE jsonb_build_object('comment', CAST(:erased AS text)) END "
    "WHERE tenant_id = :t AND (response_id = ANY(:rids) "
    "OR (body -> 'customer' ->> 'id') = ANY(:cids) "
    "OR lower(body -> 'customer' ->> 'email') = ANY(:emails))"
)
_ANONYMISE_INVITATIONS = sa.text(
    f"UPDATE orchestrator.invitations SET customer_id = {_P}, "
    f"customer = jsonb_build_object('id', {_P}) "
    "WHERE tenant_id = :t AND (invitation_id = ANY(:iids) OR customer_id = ANY(:cids) "
    "OR lower(customer ->> 'email') = ANY(:emails))"
)
_ANONYMISE_ISSUE_CASES = sa.text(
    f"UPDATE orchestrator.structural_issue_cases SET customer_id = {_P} "
    "WHERE tenant_id = :t AND (customer_id = ANY(:cids) OR response_id = ANY(:rids))"
)
_DELETE_PUBLISHED = sa.text(
    "DELETE FROM orchestrator.outbox WHERE tenant_id = :t AND published_at IS NOT NULL "
    "AND key = ANY(:keys)"
)


def _keys(tenant_id: str, ids: SubjectIdentifiers) -> dict[str, Any]:
    return {
        "t": tenant_id,
        "cids": list(ids.customer_ids),
        "rids": list(ids.response_ids),
        "iids": list(ids.invitation_ids),
        "emails": list(ids.emails),
    }


async def erase(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers, pseudonym: str
) -> dict[str, int]:
    """Anonymise what the orchestrator holds about `ids`; rows touched per table."""
    keys = {**_keys(tenant_id, ids), "pseudonym": pseudonym, "erased": ERASED}
    case_ids = list((await session.scalars(_ANONYMISE_CASES, keys)).all())
    notes = await session.execute(
        _ERASE_NOTES, {"t": tenant_id, "case_ids": case_ids, "erased": ERASED}
    )
    responses = await session.execute(_ANONYMISE_RESPONSES, keys)
    invitations = await session.execute(
        _ANONYMISE_INVITATIONS, {k: v for k, v in keys.items() if k not in ("rids", "erased")}
    )
    issue_cases = await session.execute(
        _ANONYMISE_ISSUE_CASES,
        {"t": tenant_id, "cids": keys["cids"], "rids": keys["rids"], "pseudonym": pseudonym},
    )
    outbox = await session.execute(
        _DELETE_PUBLISHED,
        {"t": tenant_id, "keys": [f"{tenant_id}:{c}" for c in ids.customer_ids]},
    )
    return {
        "cases": len(case_ids),
        "case_history": rows_touched(notes),
        "responses": rows_touched(responses),
        "invitations": rows_touched(invitations),
        "structural_issue_cases": rows_touched(issue_cases),
        "outbox": rows_touched(outbox),
    }


async def on_erasure_requested(ctx: HandlerContext, event: CloudEvent[ErasureRequestedV1]) -> None:
    data = event.data
    rows = await erase(
        ctx.session,
        tenant_id=ctx.tenant_id,
        ids=SubjectIdentifiers.of_event(data),
        pseudonym=data.pseudonym,
    )
    await report_erasure(ctx, data, service="orchestrator", rows=rows)


_CASES = sa.text(
    "SELECT case_id, response_id, survey_id, customer_id, customer, account_id, segments, score, "
    "category, comment, case_type, playbook, priority, channel, status, owner_name, opened_at, "
    "updated_at, first_contacted_at, contact_attempts, resolved_at, resolution, closed_at, "
    "root_causes, invitation_id FROM orchestrator.cases "
    "WHERE tenant_id = :t AND (customer_id = ANY(:cids) OR response_id = ANY(:rids) "
    "OR invitation_id = ANY(:iids) OR lower(customer ->> 'email') = ANY(:emails)) "
    "ORDER BY opened_at, case_id"
)
_HISTORY = sa.text(
    "SELECT case_id, version, kind, from_status, to_status, actor, at, note, details "
    "FROM orchestrator.case_history WHERE tenant_id = :t AND case_id = ANY(:case_ids) "
    "ORDER BY case_id, version"
)
_RESPONSES = sa.text(
    "SELECT response_id, version, answered_at, body FROM orchestrator.responses "
    "WHERE tenant_id = :t AND (response_id = ANY(:rids) "
    "OR (body -> 'customer' ->> 'id') = ANY(:cids) "
    "OR lower(body -> 'customer' ->> 'email') = ANY(:emails)) ORDER BY response_id"
)
_INVITATIONS = sa.text(
    "SELECT invitation_id, survey_id, customer_id, customer, account_id, channel, attributes, "
    "invited_at, answered_at, response_id FROM orchestrator.invitations "
    "WHERE tenant_id = :t AND (invitation_id = ANY(:iids) OR customer_id = ANY(:cids) "
    "OR lower(customer ->> 'email') = ANY(:emails)) ORDER BY invitation_id"
)


async def export(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers
) -> dict[str, Any]:
    """Everything the orchestrator holds about `ids`, as JSON (article 15)."""
    keys = _keys(tenant_id, ids)
    cases = (await session.execute(_CASES, keys)).all()
    history = (
        await session.execute(_HISTORY, {"t": tenant_id, "case_ids": [c.case_id for c in cases]})
    ).all()
    responses = (await session.execute(_RESPONSES, keys)).all()
    invitations = (
        await session.execute(_INVITATIONS, {k: v for k, v in keys.items() if k != "rids"})
    ).all()
    return {
        "service": "orchestrator",
        "cases": [exported_row(c._mapping) for c in cases],
        "case_history": [exported_row(h._mapping) for h in history],
        "responses": [exported_row(r._mapping) for r in responses],
        "invitations": [exported_row(i._mapping) for i in invitations],
    }
