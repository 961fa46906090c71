"""`/v1/sources/{name}`: a tenant's survey-tool sources (admin scope). Secrets are write-only:
no answer, log line or error ever carries one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from closeloop_common.web import AdminTenant, Problem
from closeloop_ingest.domain.sources.base import SOURCE_NAME_PATTERN, SourceSpec
from closeloop_ingest.service_layer.service import Ingest
from closeloop_ingest.service_layer.sources import StoredSource

SourceName = Annotated[str, Path(pattern=SOURCE_NAME_PATTERN, description="the source's name")]


def build_router(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["sources"])

    def webhook_url(request: Request, tenant: str, name: str) -> str:
        base = ingest.settings.public_base_url or str(request.base_url)
        return f"{base.rstrip('/')}/v1/webhooks/{tenant}.{name}"

    def view(request: Request, stored: StoredSource) -> dict[str, Any]:
        d = stored.definition
        return {
            "name": d.name,
            "webhook_url": webhook_url(request, d.tenant_id, d.name),
            **{k: v for k, v in d.public().items() if k not in ("tenant_id", "name")},
            "revision": stored.revision,
            "created_at": stored.created_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
        }

    @router.put(
        "/sources/{name}",
        summary="Create or replace a survey-tool source; answers with its webhook URL",
        responses={
            200: {"description": "Replaced"},
            201: {"description": "Created"},
            422: {"description": "Not a valid source"},
        },
    )
    async def put_source(
        name: SourceName, spec: SourceSpec, tenant: AdminTenant, request: Request
    ) -> Response:
        stored, created = await ingest.sources.put(tenant, name, spec)
        return JSONResponse(view(request, stored), status_code=201 if created else 200)

    @router.get("/sources", summary="The tenant's sources (without secrets)")
    async def list_sources(tenant: AdminTenant, request: Request) -> dict[str, Any]:
        return {"sources": [view(request, s) for s in ingest.sources.of_tenant(tenant)]}

    @router.get("/sources/{name}", summary="One source (without secrets)")
    async def get_source(name: SourceName, tenant: AdminTenant, request: Request) -> dict[str, Any]:
        stored = ingest.sources.stored(tenant, name)
        if stored is None:
            raise Problem(404, "not-found", "No such source", f"no source {name}")
        return view(request, stored)

    @router.delete(
        "/sources/{name}",
        status_code=204,
        summary="Delete a source: its webhook URL answers 404 from now on",
    )
    async def delete_source(name: SourceName, tenant: AdminTenant) -> Response:
        if not await ingest.sources.delete(tenant, name):
            raise Problem(404, "not-found", "No such source", f"no source {name}")
        return Response(status_code=204)

    return router
