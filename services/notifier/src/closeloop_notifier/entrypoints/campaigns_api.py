"""The campaigns API: the tenant's "you said, we did" campaigns, each one's report, and pausing,
resuming and cancelling one (see `service_layer.campaigns` for what each does to its messages).

Errors are problem documents: 404 `not-found` for a campaign the tenant does not have, 409
`campaign-finished` for an action a finished campaign does not allow, 400 `bad-cursor`. Asking
for the state a campaign is in already answers 200 with its report (a retry is harmless).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from closeloop_common.openapi import BAD_REQUEST, CONFLICT
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import CasesWriteTenant, Problem, ReadTenant
from closeloop_notifier.campaign_views import BadCursor, campaign_report, list_campaigns
from closeloop_notifier.domain.change_summary import Action, CampaignStatus, TransitionRefused
from closeloop_notifier.service_layer.campaigns import UnknownCampaign, change_campaign


def _not_found(campaign_id: uuid.UUID) -> Problem:
    return Problem(404, "not-found", "No such campaign", f"no campaign {campaign_id}")


def build_campaigns_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(
        prefix="/v1/campaigns", tags=["campaigns"], responses={**BAD_REQUEST, **CONFLICT}
    )

    @router.get("", summary="The tenant's campaigns, newest first")
    async def get_campaigns(
        tenant: ReadTenant,
        status: CampaignStatus | None = None,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        try:
            async with runtime.sessions() as session:
                return await list_campaigns(
                    session, tenant_id=tenant, status=status, limit=limit, cursor=cursor
                )
        except BadCursor as exc:
            raise Problem(400, "bad-cursor", "Bad cursor", str(exc)) from exc

    @router.get("/{campaign_id}", summary="A campaign's progress, messages by status, time left")
    async def get_campaign(campaign_id: uuid.UUID, tenant: ReadTenant) -> dict[str, Any]:
        return await _report(tenant, campaign_id)

    async def _report(tenant: str, campaign_id: uuid.UUID) -> dict[str, Any]:
        async with runtime.sessions() as session:
            report = await campaign_report(session, tenant, campaign_id, now=runtime.clock.now())
        if report is None:
            raise _not_found(campaign_id)
        return report

    async def _change(tenant: str, campaign_id: uuid.UUID, action: Action) -> dict[str, Any]:
        try:
            async with runtime.transaction() as tx:
                await change_campaign(tx, tenant_id=tenant, campaign_id=campaign_id, action=action)
        except UnknownCampaign as exc:
            raise _not_found(campaign_id) from exc
        except TransitionRefused as exc:
            raise Problem(
                409,
                "campaign-finished",
                "The campaign does not allow this",
                str(exc),
                campaign_status=exc.status,
            ) from exc
        return await _report(tenant, campaign_id)

    @router.post("/{campaign_id}/pause", summary="Stop sending and expanding until resumed")
    async def pause(campaign_id: uuid.UUID, tenant: CasesWriteTenant) -> dict[str, Any]:
        return await _change(tenant, campaign_id, "pause")

    @router.post("/{campaign_id}/resume", summary="Go on from where the campaign was paused")
    async def resume(campaign_id: uuid.UUID, tenant: CasesWriteTenant) -> dict[str, Any]:
        return await _change(tenant, campaign_id, "resume")

    @router.post("/{campaign_id}/cancel", summary="Drop every message not sent yet (final)")
    async def cancel(campaign_id: uuid.UUID, tenant: CasesWriteTenant) -> dict[str, Any]:
        return await _change(tenant, campaign_id, "cancel")

    return router
