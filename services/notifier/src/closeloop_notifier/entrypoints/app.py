"""The notifier's consumer (`case.opened.v1`), SMTP dispatcher and HTTP API (messages, opt-outs)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.events import EMAIL_PATTERN, CaseOpenedV1, CloudEvent
from closeloop_common.handlers import HandlerContext
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import CasesWriteTenant, ReadTenant, create_app
from closeloop_notifier.adapters.smtp import SmtpSender
from closeloop_notifier.adapters.tables import messages, metadata, opt_outs
from closeloop_notifier.service_layer.messages import DeliveryPolicy, Dispatcher, prepare_message


class NotifierSettings(CommonSettings):
    notifier_smtp_host: str = "127.0.0.1"
    notifier_smtp_port: int = Field(1025, ge=1, le=65535)
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_starttls: bool = False
    notifier_from_address: str = Field("feedback@example.com", pattern=EMAIL_PATTERN)
    notifier_from_name: str = "Customer Care"
    notifier_company_name: str = Field("Acme", description="the company named in messages")
    notifier_max_attempts: int = Field(6, ge=1, le=50)
    notifier_first_retry_seconds: float = Field(
        30, gt=0, description="doubles per attempt, up to 1 h"
    )


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["messages"])

    @router.get("/messages", summary="Messages, newest first")
    async def get_messages(
        tenant: ReadTenant,
        case_id: uuid.UUID | None = None,
        response_id: str | None = None,
        message_status: Annotated[
            Literal["pending", "sent", "failed", "suppressed", "no_recipient"] | None,
            Query(alias="status"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        query = sa.select(messages).where(messages.c.tenant_id == tenant)
        if case_id is not None:
            query = query.where(messages.c.case_id == case_id)
        if response_id is not None:
            query = query.where(messages.c.response_id == response_id)
        if message_status is not None:
            query = query.where(messages.c.status == message_status)
        query = query.order_by(messages.c.created_at.desc()).limit(limit)
        async with runtime.sessions() as session:
            rows = (await session.execute(query)).all()
        fields = (
            "message_id",
            "case_id",
            "response_id",
            "customer_id",
            "template",
            "locale",
            "channel",
            "recipient",
            "subject",
            "status",
            "attempts",
            "last_error",
            "created_at",
            "sent_at",
        )
        return {"tenant_id": tenant, "messages": [{f: getattr(r, f) for f in fields} for r in rows]}

    @router.post(
        "/opt-outs", status_code=status.HTTP_201_CREATED, summary="Stop messages to an address"
    )
    async def add_opt_out(
        body: OptOut, tenant: CasesWriteTenant, response: Response
    ) -> dict[str, str]:
        async with transaction(runtime.sessions) as session:
            created = await session.scalar(
                pg_insert(opt_outs)
                .values(tenant_id=tenant, email=body.email.lower(), created_at=runtime.clock.now())
                .on_conflict_do_nothing()
                .returning(opt_outs.c.email)
            )
        if created is None:
            response.status_code = status.HTTP_200_OK
        return {"tenant_id": tenant, "email": body.email.lower(), "status": "opted_out"}

    @router.delete(
        "/opt-outs/{email}", status_code=status.HTTP_204_NO_CONTENT, summary="Allow messages again"
    )
    async def remove_opt_out(email: str, tenant: CasesWriteTenant) -> None:
        async with transaction(runtime.sessions) as session:
            await session.execute(
                sa.delete(opt_outs).where(
                    opt_outs.c.tenant_id == tenant, opt_outs.c.email == email.lower()
                )
            )

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
        ),
        clock=runtime.clock,
        source=runtime.source,
        sender_address=settings.notifier_from_address,
        sender_name=settings.notifier_from_name,
        tenants=tenants,
        policy=DeliveryPolicy(
            max_attempts=settings.notifier_max_attempts,
            first_retry_after=timedelta(seconds=settings.notifier_first_retry_seconds),
        ),
    )

    async def on_case_opened(ctx: HandlerContext, event: CloudEvent[CaseOpenedV1]) -> None:
        tenant = tenants.of(event.tenantid)
        await prepare_message(
            session=ctx.session,
            outbox=runtime.outbox,
            clock=runtime.clock,
            source=runtime.source,
            company_name=tenant.company_name or settings.notifier_company_name,
            default_locale=tenant.default_locale,
            event=event,
            wake=dispatcher.wake,
        )

    runtime.on(CaseOpenedV1, on_case_opened)
    runtime.add_worker("smtp-dispatcher", dispatcher.run)
    return create_app(title="Closeloop notifier", runtime=runtime, routers=[build_router(runtime)])
