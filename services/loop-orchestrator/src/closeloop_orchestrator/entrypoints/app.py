"""The orchestrator's consumer (`response.received.v1`) and HTTP API (`GET /v1/cases...`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query

from closeloop_common.clock import Clock
from closeloop_common.events import CloudEvent, ResponseReceivedV1
from closeloop_common.handlers import HandlerContext
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import Problem, ReadTenant, create_app
from closeloop_orchestrator import views
from closeloop_orchestrator.adapters.tables import metadata
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.service_layer.cases import open_case


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
            return await views.list_cases(
                session=session,
                tenant_id=tenant,
                status=status,
                owner_id=owner_id,
                response_id=response_id,
                limit=limit,
            )

    @router.get("/cases/{case_id}", summary="One case")
    async def get_case(case_id: uuid.UUID, tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await views.case(session=session, tenant_id=tenant, case_id=case_id)
        if found is None:
            raise Problem(404, "not-found", "No such case", f"no case {case_id}")
        return found

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
        await open_case(ctx, event, policy=policies.get(event.tenantid, default_policy))

    runtime.on(ResponseReceivedV1, on_response)
    return create_app(
        title="Closeloop loop orchestrator", runtime=runtime, routers=[build_router(runtime)]
    )
