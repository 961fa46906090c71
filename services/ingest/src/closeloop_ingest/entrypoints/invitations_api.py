"""`POST /v1/invitations`: who was asked to answer, one or a batch of up to 1,000."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from closeloop_common.web import ResponsesWriteTenant
from closeloop_ingest.metrics import INVITATIONS
from closeloop_ingest.service_layer.invitations import CanonicalInvitation, record_invitations
from closeloop_ingest.service_layer.service import Ingest

MAX_BATCH = 1000


class InvitationBatch(BaseModel):
    invitations: list[CanonicalInvitation] = Field(min_length=1, max_length=MAX_BATCH)


def build_router(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["invitations"])

    @router.post(
        "/invitations",
        status_code=202,
        summary="Record invitations (who was asked, when, by which survey and channel)",
        description='One invitation or `{"invitations": [...]}` (up to 1,000), validated as a '
        "whole (422 names each invalid field). Each result says `accepted`, `duplicate` (the "
        "same invitation again) or `conflict` (the id was used for another invitation). 202 when "
        "something was accepted, 200 when all were known, 207 when some conflict.",
        responses={
            200: {"description": "All known already"},
            207: {"description": "Some conflict; see each result"},
            409: {
                "description": "One invitation (not a batch) whose id was used for another; "
                "its result, not a problem",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["status", "invitation_id"],
                            "properties": {
                                "status": {"const": "conflict"},
                                "invitation_id": {"type": "string"},
                                "event_id": {"type": ["string", "null"]},
                            },
                        }
                    }
                },
            },
            422: {"description": "Not valid"},
        },
    )
    async def post_invitations(
        body: CanonicalInvitation | InvitationBatch, tenant: ResponsesWriteTenant
    ) -> Response:
        invitations = body.invitations if isinstance(body, InvitationBatch) else [body]
        async with ingest.runtime.transaction() as tx:
            outcomes = await record_invitations(tx, tenant_id=tenant, invitations=invitations)
        for outcome in outcomes:
            INVITATIONS.labels(outcome.status).inc()
        results: list[dict[str, Any]] = [
            {"status": o.status, "invitation_id": o.invitation_id, "event_id": o.event_id}
            for o in outcomes
        ]
        statuses = {o.status for o in outcomes}
        code = 207 if "conflict" in statuses else 202 if "accepted" in statuses else 200
        if isinstance(body, InvitationBatch):
            return JSONResponse({"results": results}, status_code=code)
        return JSONResponse(results[0], status_code=409 if code == 207 else code)

    return router
