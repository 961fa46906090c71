"""Opening cases from responses (the `response.received` handler). Reads: `views.py`."""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.events import CaseOpenedV1, CloudEvent, ResponseReceivedV1
from closeloop_common.handlers import HandlerContext
from closeloop_orchestrator.adapters.tables import cases
from closeloop_orchestrator.domain.rules import CasePolicy, plan_case


async def open_case(
    ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1], *, policy: CasePolicy
) -> uuid.UUID | None:
    """Open the follow-up case of a response; None if that response already has one.

    The case id comes from the tenant and response id (`plan_case`), so a response processed
    again after its case was lost (a replay, a rebuilt schema) opens the same case again."""
    response = event.data
    tenant = event.tenantid
    opened_at = ctx.clock.now()
    plan = plan_case(response, tenant_id=tenant, policy=policy, opened_at=opened_at)
    case_id = plan.case_id
    inserted = await ctx.session.scalar(
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
    await ctx.emit(opened, subject=str(case_id))
    return case_id
