"""Opening cases from responses, and reading them."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.events import CaseOpenedV1, CloudEvent, ResponseReceivedV1, new_event
from closeloop_common.outbox import Outbox
from closeloop_orchestrator.adapters.tables import cases
from closeloop_orchestrator.domain.rules import CasePolicy, plan_case


async def open_case(
    *,
    session: AsyncSession,
    outbox: Outbox,
    clock: Clock,
    source: str,
    policy: CasePolicy,
    event: CloudEvent[ResponseReceivedV1],
) -> uuid.UUID | None:
    """Open the follow-up case of a response; None if that response already has one."""
    response = event.data
    tenant = event.tenantid
    opened_at = clock.now()
    plan = plan_case(response, tenant_id=tenant, policy=policy, opened_at=opened_at)
    case_id = uuid.uuid4()
    inserted = await session.scalar(
        pg_insert(cases)
        .values(
            tenant_id=tenant,
            case_id=case_id,
            response_id=response.response_id,
            survey_id=response.survey_id,
            customer_id=response.customer.id,
            customer=response.customer.model_dump(mode="json"),
            account_id=response.account_id,
            score=response.score,
            category=response.category.value,
            comment=response.comment,
            playbook=plan.playbook.value,
            owner_id=plan.owner.id,
            owner_name=plan.owner.name,
            owner_email=plan.owner.email,
            key_account=plan.key_account,
            status="open",
            opened_at=opened_at,
            first_contact_due_at=plan.first_contact_due_at,
        )
        .on_conflict_do_nothing(index_elements=[cases.c.tenant_id, cases.c.response_id])
        .returning(cases.c.case_id)
    )
    if inserted is None:
        return None
    opened = CaseOpenedV1(
        case_id=case_id,
        response_id=response.response_id,
        survey_id=response.survey_id,
        customer=response.customer,
        account_id=response.account_id,
        score=response.score,
        category=response.category,
        comment=response.comment,
        playbook=plan.playbook,
        owner=plan.owner,
        key_account=plan.key_account,
        opened_at=opened_at,
        first_contact_due_at=plan.first_contact_due_at,
    )
    await outbox.add(
        session,
        new_event(opened, tenant_id=tenant, source=source, clock=clock, subject=str(case_id)),
    )
    return case_id


def case_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "case_id": row.case_id,
        "tenant_id": row.tenant_id,
        "response_id": row.response_id,
        "survey_id": row.survey_id,
        "customer": row.customer,
        "account_id": row.account_id,
        "score": row.score,
        "category": row.category,
        "comment": row.comment,
        "playbook": row.playbook,
        "owner": {"id": row.owner_id, "name": row.owner_name, "email": row.owner_email},
        "key_account": row.key_account,
        "status": row.status,
        "opened_at": row.opened_at,
        "first_contact_due_at": row.first_contact_due_at,
    }


async def list_cases(
    *,
    session: AsyncSession,
    tenant_id: str,
    status: str | None,
    owner_id: str | None,
    response_id: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Cases, the most urgent first-contact deadline first."""
    query = sa.select(cases).where(cases.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(cases.c.status == status)
    if owner_id is not None:
        query = query.where(cases.c.owner_id == owner_id)
    if response_id is not None:
        query = query.where(cases.c.response_id == response_id)
    query = query.order_by(cases.c.key_account.desc(), cases.c.first_contact_due_at).limit(limit)
    return [case_json(row) for row in (await session.execute(query)).all()]
