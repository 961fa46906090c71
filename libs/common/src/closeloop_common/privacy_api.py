"""`POST /v1/privacy/export` (admin scope): what one service holds about a respondent (GDPR
article 15), as JSON. Scoring, the orchestrator and the notifier mount it; ingest has its own,
which also resolves linked identifiers and gathers all four (`POST /v1/privacy/exports`).
The body names the person (never the URL): `{"email": ...}`, `{"customer_id": ...}` or the
identifiers ingest resolved (`customer_ids`, `emails`, `response_ids`, `invitation_ids`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import PrivacyService
from closeloop_common.privacy import ExportRequest, SubjectIdentifiers
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import AdminTenant

Export = Callable[..., Awaitable[dict[str, Any]]]
"""`export(session, *, tenant_id, ids) -> JSON`: a service's part of an export."""


def build_export_router(
    runtime: ServiceRuntime, *, service: PrivacyService, export: Export
) -> APIRouter:
    router = APIRouter(prefix="/v1/privacy", tags=["privacy"])

    @router.post(
        "/export",
        summary=f"What {service} holds about a respondent (GDPR article 15)",
        description='`{"email": ...}`, `{"customer_id": ...}`, or the identifiers ingest '
        "resolved. Ingest's `POST /v1/privacy/exports` gathers every service's part.",
    )
    async def post_export(body: ExportRequest, tenant: AdminTenant) -> dict[str, Any]:
        session: AsyncSession
        async with runtime.sessions() as session:
            found = await export(session, tenant_id=tenant, ids=SubjectIdentifiers.of(body))
        return {"service": service, **found}

    return router
