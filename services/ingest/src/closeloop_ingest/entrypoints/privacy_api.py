"""Erasure (GDPR article 17) and export (article 15) of a respondent: admin scope only.

- `POST /v1/privacy/erasures` `{"email": ...}` or `{"customer_id": ...}`: ingest erases its copy and
  asks every service for theirs (`privacy.erasure_requested.v1`); 202 with the erasure's id.
- `GET /v1/privacy/erasures/{erasure_id}`: each service's part, `pending` until it reported.
- `POST /v1/privacy/export` (what ingest holds) and `POST /v1/privacy/exports` (what all four
  hold, in one document; a service that does not answer is listed under `unavailable`).
The person is named in POST bodies only, never in a URL: URLs reach access logs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from closeloop_common.events import PrivacyService
from closeloop_common.privacy import ErasureSubject, ExportRequest, SubjectIdentifiers
from closeloop_common.web import AdminTenant, Problem, actor_of
from closeloop_ingest.adapters.privacy_peers import PeerExports
from closeloop_ingest.service_layer import privacy
from closeloop_ingest.service_layer.service import Ingest


class ErasureAccepted(BaseModel):
    erasure_id: uuid.UUID
    status: Literal["in_progress"]


class ServicePart(BaseModel):
    status: Literal["pending", "completed"]
    rows: dict[str, int] | None = Field(None, description="table -> rows erased or anonymised")
    completed_at: datetime | None = None


class ErasureStatus(BaseModel):
    erasure_id: uuid.UUID
    requested_at: datetime
    status: Literal["in_progress", "completed"]
    services: dict[PrivacyService, ServicePart]


ERASURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Ingest's part is done; the other services follow through the broker",
        "model": ErasureAccepted,
    },
    422: {"description": "Not valid, or more records than one erasure may name"},
}


def build_router(ingest: Ingest, peers: PeerExports) -> APIRouter:
    router = APIRouter(prefix="/v1/privacy", tags=["privacy"])
    runtime = ingest.runtime

    @router.post(
        "/erasures",
        status_code=202,
        summary="Erase a respondent (GDPR article 17) in every service",
        description='`{"email": ...}` or `{"customer_id": ...}`, exactly one. Ingest erases '
        "its copy at once (stored responses, invitations, raw webhook deliveries) and asks every "
        "service to erase or anonymise theirs; counts and aggregates are kept. Poll "
        "`GET /v1/privacy/erasures/{erasure_id}` for each service's part.",
        responses=ERASURE_RESPONSES,
    )
    async def post_erasure(
        body: ErasureSubject, request: Request, tenant: AdminTenant
    ) -> JSONResponse:
        try:
            async with runtime.transaction() as tx:
                erasure_id = await privacy.request_erasure(
                    tx, tenant_id=tenant, subject=body, requested_by=actor_of(request)
                )
        except privacy.TooManyIdentifiers:
            raise Problem(
                422,
                "too-many-identifiers",
                "Too many records for one erasure",
                "the person has more than 10,000 responses or invitations; nothing was erased",
            ) from None
        return JSONResponse(
            {"erasure_id": str(erasure_id), "status": "in_progress"},
            status_code=202,
            headers={"Location": f"/v1/privacy/erasures/{erasure_id}"},
        )

    @router.get(
        "/erasures/{erasure_id}",
        response_model=ErasureStatus,
        response_model_exclude_none=True,
        summary="An erasure's progress: each service's part and the rows it touched",
        responses={404: {"description": "No such erasure for this tenant"}},
    )
    async def get_erasure(erasure_id: uuid.UUID, tenant: AdminTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            status = await privacy.erasure_status(session, tenant_id=tenant, erasure_id=erasure_id)
        if status is None:
            raise Problem(
                404, "not-found", "No such erasure", "no erasure of this tenant has that id"
            )
        return status

    @router.post(
        "/export",
        summary="What ingest holds about a respondent (GDPR article 15)",
        description='`{"email": ...}`, `{"customer_id": ...}`, or the identifiers another '
        "service resolved (`customer_ids`, `emails`, `response_ids`, `invitation_ids`).",
    )
    async def post_export(body: ExportRequest, tenant: AdminTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            ids = await _identifiers(session, tenant, body)
            return {
                "service": "ingest",
                **await privacy.export_own(session, tenant_id=tenant, ids=ids),
            }

    @router.post(
        "/exports",
        summary="Everything every service holds about a respondent, as one JSON document",
        description='`{"email": ...}` or `{"customer_id": ...}`. Ingest resolves the '
        "respondent's identifiers and asks each service for its part with the caller's token; "
        "a service that does not answer is listed under `unavailable`. Events already on the "
        "broker's topics are not included (see docs/privacy.md).",
    )
    async def post_exports(
        body: ErasureSubject, request: Request, tenant: AdminTenant
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            ids = await privacy.resolve(session, tenant_id=tenant, subject=body)
            own = await privacy.export_own(session, tenant_id=tenant, ids=ids)
        services, unavailable = await peers.gather(
            ids, authorization=request.headers["authorization"]
        )
        return {
            "tenant_id": tenant,
            "identifiers": ids.model_dump(mode="json"),
            "services": {"ingest": {"service": "ingest", **own}, **services},
            "unavailable": unavailable,
        }

    return router


async def _identifiers(session: Any, tenant: str, body: ExportRequest) -> SubjectIdentifiers:
    if isinstance(body, SubjectIdentifiers):
        return SubjectIdentifiers.of(body)
    return await privacy.resolve(session, tenant_id=tenant, subject=body)
