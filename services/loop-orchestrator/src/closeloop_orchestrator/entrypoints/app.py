"""The orchestrator's consumer (`response.received.v1`) and HTTP API (`GET /v1/cases...`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query
from pydantic import Field

from closeloop_common.clock import Clock
from closeloop_common.events import CloudEvent, Owner, ResponseReceivedV1
from closeloop_common.handlers import HandlerContext
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.tenants import TenantConfig, TenantDirectory
from closeloop_common.web import Problem, ReadTenant, create_app
from closeloop_orchestrator.adapters.tables import cases, metadata
from closeloop_orchestrator.domain.rules import CasePolicy
from closeloop_orchestrator.service_layer.cases import case_json, list_cases, open_case

DEMO_TEAM = (
    Owner(id="agnieszka", name="Agnieszka Wiśniewska", email="agnieszka.wisniewska@example.com"),
    Owner(id="tomasz", name="Tomasz Kowalczyk", email="tomasz.kowalczyk@example.com"),
    Owner(id="emma", name="Emma Clarke", email="emma.clarke@example.com"),
)


class OrchestratorSettings(CommonSettings):
    orchestrator_team: tuple[Owner, ...] = Field(
        DEMO_TEAM, min_length=1, description="JSON list of case owners: id, name, email"
    )
    orchestrator_first_contact_sla_hours: float = Field(48, gt=0, le=24 * 30)
    orchestrator_key_account_sla_hours: float = Field(24, gt=0, le=24 * 30)
    orchestrator_key_accounts: frozenset[str] = Field(
        frozenset(), description="JSON list of account ids"
    )

    def case_policy(self, tenant: TenantConfig | None = None) -> CasePolicy:
        """A tenant's policy: its own settings (TENANTS_FILE) where given, these otherwise."""
        own = tenant or TenantConfig()
        first_contact = own.first_contact_sla_hours or self.orchestrator_first_contact_sla_hours
        key_account = own.key_account_sla_hours or self.orchestrator_key_account_sla_hours
        return CasePolicy(
            team=own.team or self.orchestrator_team,
            first_contact_sla=timedelta(hours=first_contact),
            key_account_sla=timedelta(hours=key_account),
            key_accounts=(
                self.orchestrator_key_accounts if own.key_accounts is None else own.key_accounts
            ),
        )


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["cases"])

    @router.get(
        "/cases", summary="Cases, key accounts and the nearest first-contact deadline first"
    )
    async def get_cases(
        tenant: ReadTenant,
        status: Literal["open", "closed"] | None = None,
        owner_id: str | None = None,
        response_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await list_cases(
                session=session,
                tenant_id=tenant,
                status=status,
                owner_id=owner_id,
                response_id=response_id,
                limit=limit,
            )
        return {"tenant_id": tenant, "cases": found}

    @router.get("/cases/{case_id}", summary="One case")
    async def get_case(case_id: uuid.UUID, tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            row = (
                await session.execute(
                    sa.select(cases).where(cases.c.tenant_id == tenant, cases.c.case_id == case_id)
                )
            ).one_or_none()
        if row is None:
            raise Problem(404, "not-found", "No such case", f"no case {case_id}")
        return case_json(row)

    return router


def create_orchestrator_app(
    settings: OrchestratorSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or OrchestratorSettings()
    tenants = TenantDirectory.load(settings.tenants_file)
    default_policy = settings.case_policy()
    policies = {tenant: settings.case_policy(tenants.of(tenant)) for tenant in tenants}
    runtime = ServiceRuntime(name="orchestrator", settings=settings, metadata=metadata, clock=clock)

    async def on_response(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
        await open_case(
            session=ctx.session,
            outbox=runtime.outbox,
            clock=runtime.clock,
            source=runtime.source,
            policy=policies.get(event.tenantid, default_policy),
            event=event,
        )

    runtime.on(ResponseReceivedV1, on_response)
    return create_app(
        title="Closeloop loop orchestrator", runtime=runtime, routers=[build_router(runtime)]
    )
