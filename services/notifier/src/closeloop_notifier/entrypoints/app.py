"""The notifier: consumers, workers and HTTP API, wired together.

Consumers (in the notifier's group): case events (`case.opened`, `case.updated`,
`case.sla_alert`, and a lack-of-response case's `case.no_response_opened` and
`case.no_response_updated`) become customer replies and team messages; ingest's responses and invitations
keep the audience; `change.summary` opens a campaign. Workers: the dispatcher (claim, send,
record), the campaign expander, the overdue digest, and a gauge recount. HTTP: messages and
drafts, opt-outs and one-click unsubscribe, templates, settings and campaigns.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.db import on_commit
from closeloop_common.events import (
    CaseOpenedV1,
    CaseSlaAlertV1,
    CaseUpdatedV1,
    ChangeSummaryV1,
    CloudEvent,
    ErasureRequestedV1,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
)
from closeloop_common.handlers import HandlerContext
from closeloop_common.loop import repeat
from closeloop_common.openapi import Link
from closeloop_common.privacy_api import build_export_router
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import create_app
from closeloop_notifier.adapters.email import SmtpPool, SmtpSettings
from closeloop_notifier.adapters.tables import metadata
from closeloop_notifier.adapters.webhook import WebhookChannel
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.rendering import Renderer
from closeloop_notifier.entrypoints.campaigns_api import build_campaigns_router
from closeloop_notifier.entrypoints.messages_api import build_messages_router
from closeloop_notifier.entrypoints.templates_api import build_templates_router
from closeloop_notifier.entrypoints.unsubscribe_api import build_unsubscribe_router
from closeloop_notifier.service_layer import privacy
from closeloop_notifier.service_layer.audience import AUDIENCE_CONTRACTS, keep_audience
from closeloop_notifier.service_layer.campaign_worker import CampaignExpander
from closeloop_notifier.service_layer.campaigns import open_campaign
from closeloop_notifier.service_layer.case_messages import CaseMessages
from closeloop_notifier.service_layer.compose import Composer, Sender
from closeloop_notifier.service_layer.digest import OverdueDigest, recount
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy, Dispatcher
from closeloop_notifier.service_layer.settings_store import SettingsStore

GAUGE_INTERVAL_SECONDS = 30.0


TEMPLATE = "/v1/templates/{kind}/{locale}"
SAME_TEMPLATE = {"kind": "$request.path.kind", "locale": "$request.path.locale"}
ITS_VERSION = {"header.if-match": "$response.header.ETag"}
# How resources chain (OpenAPI links, `closeloop_common.openapi`): a template is stored, then
# read, previewed, stored again and deleted with the ETag its answer gave; an opt-out is
# recorded, then lifted; the settings are read, then written with their ETag.
LINKS = [
    Link(("put", TEMPLATE, "200"), ("get", TEMPLATE), SAME_TEMPLATE),
    Link(("put", TEMPLATE, "200"), ("put", TEMPLATE), SAME_TEMPLATE | ITS_VERSION),
    Link(("put", TEMPLATE, "200"), ("delete", TEMPLATE), SAME_TEMPLATE | ITS_VERSION),
    Link(("put", TEMPLATE, "200"), ("post", f"{TEMPLATE}/preview"), SAME_TEMPLATE),
    Link(("get", TEMPLATE, "200"), ("put", TEMPLATE), SAME_TEMPLATE | ITS_VERSION),
    Link(
        ("post", "/v1/opt-outs", "201"),
        ("delete", "/v1/opt-outs/{email}"),
        {"email": "$request.body#/email"},
    ),
    Link(("get", "/v1/settings", "200"), ("put", "/v1/settings"), ITS_VERSION),
]


def create_notifier_app(
    settings: NotifierSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or NotifierSettings()
    tenants = TenantDirectory.load(settings.tenants_file)
    runtime = ServiceRuntime(name="notifier", settings=settings, metadata=metadata, clock=clock)
    password = settings.notifier_smtp_password
    secret = settings.notifier_unsubscribe_secret.get_secret_value()
    renderer = Renderer()
    composer = Composer(
        renderer=renderer,
        tenants=tenants,
        default_sender=Sender(
            address=settings.notifier_from_address,
            name=settings.notifier_from_name,
            company=settings.notifier_company_name,
        ),
        unsubscribe_secret=secret,
        public_url=settings.notifier_public_url,
    )
    messaging = SettingsStore(runtime.worker_sessions, defaults=settings.notifier_default_messaging)
    email = SmtpPool(
        SmtpSettings(
            host=settings.notifier_smtp_host,
            port=settings.notifier_smtp_port,
            tls=settings.notifier_smtp_tls,
            username=settings.notifier_smtp_username,
            password=password.get_secret_value() if password else None,
            timeout=settings.notifier_smtp_timeout_seconds,
            size=settings.notifier_smtp_pool_size,
        ),
        clock=runtime.clock,
    )
    webhook = WebhookChannel(
        timeout=settings.notifier_webhook_timeout_seconds,
        allow_private=settings.notifier_webhook_allow_private,
        clock=runtime.clock,
    )
    erasure_key = settings.notifier_erasure_key.get_secret_value().encode()
    dispatcher = Dispatcher(
        sessions=runtime.worker_sessions,
        outbox=runtime.outbox,
        channels={"email": email, "webhook": webhook},
        composer=composer,
        settings=messaging,
        clock=runtime.clock,
        source=runtime.source,
        policy=DeliveryPolicy(
            max_attempts=settings.notifier_max_attempts,
            first_retry_after=timedelta(seconds=settings.notifier_first_retry_seconds),
            send_lease=timedelta(seconds=settings.notifier_send_lease_seconds),
            erasure_key=erasure_key,
        ),
        batch_size=settings.notifier_batch_size,
        concurrency={"email": settings.notifier_smtp_pool_size, "webhook": 20},
    )
    cases = CaseMessages(composer, messaging, random.Random(), wake=dispatcher.wake.set)
    digest = OverdueDigest(
        sessions=runtime.worker_sessions,
        outbox=runtime.outbox,
        composer=composer,
        settings=messaging,
        clock=runtime.clock,
        source=runtime.source,
    )

    async def tenant_context(session: AsyncSession, tenant_id: str) -> dict[str, Any]:
        return composer.tenant_context(tenant_id, await messaging.get(tenant_id))

    expander = CampaignExpander(
        sessions=runtime.worker_sessions,
        outbox=runtime.outbox,
        clock=runtime.clock,
        source=runtime.source,
        composer=composer,
        tenant_context=tenant_context,
        dispatcher_wake=dispatcher.wake,
    )

    async def on_change_summary(ctx: HandlerContext, event: CloudEvent[ChangeSummaryV1]) -> None:
        settings_of_tenant = await messaging.get(event.tenantid)
        if await open_campaign(ctx.transaction, event, settings_of_tenant):
            on_commit(ctx.session, expander.wake.set)

    runtime.on_batches(AUDIENCE_CONTRACTS, keep_audience, idempotent=True)
    runtime.on(ChangeSummaryV1, on_change_summary)
    runtime.on_batch(CaseOpenedV1, cases.on_opened_batch)
    runtime.on(CaseUpdatedV1, cases.on_updated)
    runtime.on(CaseSlaAlertV1, cases.on_sla_alert)
    runtime.on(NoResponseCaseOpenedV1, cases.on_no_response_opened)
    runtime.on(NoResponseCaseUpdatedV1, cases.on_no_response_updated)
    # Erasures (GDPR article 17): once each, through the inbox (docs/privacy.md).
    runtime.on(ErasureRequestedV1, privacy.Erasure(erasure_key).on_requested)
    runtime.add_worker("dispatcher", dispatcher.run)
    runtime.add_worker("overdue-digest", digest.run)
    runtime.add_worker("campaign-expander", expander.run)

    async def recount_gauges() -> None:
        async def step() -> bool:
            await recount(runtime.worker_sessions)
            return False

        await repeat(
            step, wake=asyncio.Event(), idle=GAUGE_INTERVAL_SECONDS, name="notifier gauges"
        )

    runtime.add_worker("gauges", recount_gauges)
    runtime.on_stop(email.aclose)
    runtime.on_stop(webhook.aclose)
    return create_app(
        links=LINKS,
        title="Closeloop notifier",
        runtime=runtime,
        routers=[
            build_messages_router(runtime, messaging),
            build_campaigns_router(runtime),
            build_templates_router(runtime, renderer, cache=composer.templates),
            build_unsubscribe_router(runtime, secret),
            build_export_router(runtime, service="notifier", export=privacy.export),
        ],
    )
