"""Ingest's HTTP app: the canonical responses API, survey-tool webhooks, sources, invitations."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from closeloop_common import tracing
from closeloop_common.clock import Clock
from closeloop_common.events import ErasureCompletedV1
from closeloop_common.openapi import Link
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import create_app
from closeloop_ingest.adapters.privacy_peers import PeerExports
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.config import IngestSettings
from closeloop_ingest.entrypoints import (
    invitations_api,
    privacy_api,
    responses_api,
    sources_api,
    webhooks_api,
)
from closeloop_ingest.service_layer import privacy
from closeloop_ingest.service_layer.fetcher import Fetcher
from closeloop_ingest.service_layer.service import Ingest


class IngestApp(FastAPI):
    """Ingest's app: survey tools' webhooks go to `WebhookFastPath` before FastAPI's own
    machinery (its routing, dependencies and middleware stack); everything else as usual."""

    fast_path: webhooks_api.WebhookFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and self.fast_path.matches(scope):
            if tracing.enabled():  # FastAPI's middleware (TracingMiddleware) is not in the way
                await tracing.serve_traced(
                    self.fast_path, scope, receive, send, route=webhooks_api.WEBHOOK_ROUTE
                )
            else:
                await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the schemas of bodies the routes parse themselves."""
        if self.openapi_schema is None:
            document = super().openapi()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in responses_api.BODY_COMPONENTS.items():
                schemas.setdefault(name, schema)
        return self.openapi_schema or super().openapi()


SOURCE = "/v1/sources/{name}"
RESPONSE = "/v1/responses/{response_id}"
# How resources chain (OpenAPI links, `closeloop_common.openapi`): a source is registered, then
# read, registered again and removed; a response is accepted, then read and confirmed.
LINKS = [
    Link(("put", SOURCE, "201"), ("get", SOURCE), {"name": "$request.path.name"}),
    Link(("put", SOURCE, "201"), ("put", SOURCE), {"name": "$request.path.name"}),
    Link(("put", SOURCE, "201"), ("delete", SOURCE), {"name": "$request.path.name"}),
    Link(
        ("post", "/v1/responses", "202"),
        ("get", RESPONSE),
        {"response_id": "$request.body#/response_id"},
    ),
    Link(
        ("post", "/v1/responses", "202"),
        ("post", f"{RESPONSE}/confirm"),
        {"response_id": "$request.body#/response_id"},
    ),
]


def create_ingest_app(
    settings: IngestSettings | None = None, clock: Clock | None = None
) -> IngestApp:
    settings = settings or IngestSettings()
    runtime = ServiceRuntime(
        name="ingest",
        settings=settings,
        metadata=metadata,
        clock=clock,
        # Ingest's job is to accept into its outbox: a broker outage must not stop it.
        broker_required_for_readiness=False,
    )
    ingest = Ingest(runtime, settings)
    fetcher = Fetcher(ingest)
    runtime.add_worker("vendor-fetches", fetcher.run)
    webhooks = webhooks_api.WebhookHandler(ingest, on_fetch_queued=fetcher.wake.set)
    # Ingest's one consumer: the services' reports on erasures (docs/privacy.md).
    runtime.on(ErasureCompletedV1, privacy.record_completion)
    peers = PeerExports(
        {
            "scoring": settings.ingest_scoring_url,
            "orchestrator": settings.ingest_orchestrator_url,
            "notifier": settings.ingest_notifier_url,
        },
        timeout=settings.ingest_privacy_timeout_seconds,
    )
    runtime.on_stop(peers.aclose)
    app = create_app(
        links=LINKS,
        app_class=IngestApp,
        title="Closeloop ingest",
        runtime=runtime,
        routers=[
            responses_api.build_router(ingest),
            webhooks_api.build_router(webhooks),
            sources_api.build_router(ingest),
            invitations_api.build_router(ingest),
            privacy_api.build_router(ingest, peers),
        ],
    )
    assert isinstance(app, IngestApp)
    app.fast_path = webhooks_api.WebhookFastPath(webhooks)
    app.state.ingest = ingest
    app.state.fetcher = fetcher
    return app
