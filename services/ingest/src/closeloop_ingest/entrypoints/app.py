"""Ingest's HTTP API: `POST /v1/responses` (canonical JSON) and `GET /v1/responses/{id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Response, status

from closeloop_common.clock import Clock
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import Problem, ReadTenant, ResponsesWriteTenant, create_app
from closeloop_ingest import views
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.service_layer.accept import (
    AnsweredInFuture,
    ResponseConflict,
    accept_response,
)


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["responses"])

    @router.post(
        "/responses",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Accept a survey response (idempotent by response_id)",
        responses={
            200: {"description": "Already accepted with the same content; nothing changed"},
            409: {"description": "Already accepted with different content"},
            422: {"description": "Not a valid response"},
        },
    )
    async def post_response(
        body: CanonicalResponse, tenant: ResponsesWriteTenant, response: Response
    ) -> dict[str, Any]:
        try:
            async with runtime.transaction() as tx:
                accepted = await accept_response(
                    tx=tx, tenant_id=tenant, response=body, source="api"
                )
        except ResponseConflict as exc:
            raise Problem(
                409,
                "response-conflict",
                "Response id already used",
                f"response {exc} was accepted earlier with different content; "
                "use a new response_id for a new answer",
            ) from exc
        except AnsweredInFuture as exc:
            raise Problem(
                422,
                "answered-in-future",
                "Answer time is in the future",
                f"answered_at {exc} is later than now",
            ) from exc
        if accepted.status == "duplicate":
            response.status_code = status.HTTP_200_OK
        return views.accepted_json(accepted)

    @router.get("/responses/{response_id}", summary="An accepted response")
    async def get_response(response_id: str, tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await views.response(session=session, tenant_id=tenant, response_id=response_id)
        if found is None:
            raise Problem(404, "not-found", "No such response", f"no response {response_id}")
        return found

    return router


def create_ingest_app(
    settings: IngestSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    runtime = ServiceRuntime(
        name="ingest",
        settings=settings or IngestSettings(),
        metadata=metadata,
        clock=clock,
        # Ingest's job is to accept into its outbox: a broker outage must not stop it.
        broker_required_for_readiness=False,
    )
    return create_app(title="Closeloop ingest", runtime=runtime, routers=[build_router(runtime)])
