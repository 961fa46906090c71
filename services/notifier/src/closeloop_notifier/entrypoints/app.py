"""The notifier's consumer (`case.opened.v1`), SMTP dispatcher and HTTP API (messages, opt-outs).

Addresses in the API (the opt-out body and path) are checked and normalised with
`closeloop_common.emails`; one that is not a single valid mailbox is a 422.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.emails import normalize_email
from closeloop_common.events import CaseOpenedV1, CloudEvent
from closeloop_common.handlers import HandlerContext
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import CasesWriteTenant, ReadTenant, create_app
from closeloop_notifier.adapters.smtp import SmtpSender
from closeloop_notifier.adapters.tables import metadata
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.service_layer.dispatch import Dispatcher
from closeloop_notifier.service_layer.policy import (
    DeliveryPolicy,
    add_opt_out,
    opt_out_key,
    remove_opt_out,
)
from closeloop_notifier.service_layer.prepare import prepare_message
from closeloop_notifier.views import MessageStatus, list_messages, opt_out_view

Email = Annotated[str, Field(max_length=320), AfterValidator(normalize_email)]


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["messages"])

    @router.get("/messages", summary="Messages, newest first")
    async def get_messages(
        tenant: ReadTenant,
        case_id: uuid.UUID | None = None,
        response_id: str | None = None,
        message_status: Annotated[MessageStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            return await list_messages(
                session,
                tenant_id=tenant,
                case_id=case_id,
                response_id=response_id,
                status=message_status,
                limit=limit,
            )

    @router.post(
        "/opt-outs", status_code=status.HTTP_201_CREATED, summary="Stop messages to an address"
    )
    async def post_opt_out(
        body: OptOut, tenant: CasesWriteTenant, response: Response
    ) -> dict[str, str]:
        async with transaction(runtime.sessions) as session:
            created = await add_opt_out(
                session=session, tenant_id=tenant, email=body.email, clock=runtime.clock
            )
        if not created:
            response.status_code = status.HTTP_200_OK
        return opt_out_view(tenant, opt_out_key(body.email))

    @router.delete(
        "/opt-outs/{email}", status_code=status.HTTP_204_NO_CONTENT, summary="Allow messages again"
    )
    async def delete_opt_out(email: Email, tenant: CasesWriteTenant) -> None:
        async with transaction(runtime.sessions) as session:
            await remove_opt_out(session=session, tenant_id=tenant, email=email)

    return router


def create_notifier_app(
    settings: NotifierSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or NotifierSettings()
    tenants = TenantDirectory.load(settings.tenants_file)
    runtime = ServiceRuntime(name="notifier", settings=settings, metadata=metadata, clock=clock)
    password = settings.notifier_smtp_password
    dispatcher = Dispatcher(
        sessions=runtime.worker_sessions,
        outbox=runtime.outbox,
        sender=SmtpSender(
            host=settings.notifier_smtp_host,
            port=settings.notifier_smtp_port,
            username=settings.notifier_smtp_username,
            password=password.get_secret_value() if password else None,
            starttls=settings.notifier_smtp_starttls,
            timeout=settings.notifier_smtp_timeout_seconds,
        ),
        clock=runtime.clock,
        source=runtime.source,
        sender_address=settings.notifier_from_address,
        sender_name=settings.notifier_from_name,
        tenants=tenants,
        policy=DeliveryPolicy(
            max_attempts=settings.notifier_max_attempts,
            first_retry_after=timedelta(seconds=settings.notifier_first_retry_seconds),
            send_lease=timedelta(seconds=settings.notifier_send_lease_seconds),
        ),
    )

    async def on_case_opened(ctx: HandlerContext, event: CloudEvent[CaseOpenedV1]) -> None:
        tenant = tenants.of(event.tenantid)
        await prepare_message(
            ctx,
            event,
            company_name=tenant.company_name or settings.notifier_company_name,
            default_locale=tenant.default_locale,
            wake=dispatcher.wake,
        )

    runtime.on(CaseOpenedV1, on_case_opened)
    runtime.add_worker("smtp-dispatcher", dispatcher.run)
    return create_app(title="Closeloop notifier", runtime=runtime, routers=[build_router(runtime)])
