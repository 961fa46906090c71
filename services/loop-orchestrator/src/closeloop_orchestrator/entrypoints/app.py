"""The orchestrator: its consumer (responses and their corrections open and re-type cases;
invitations are kept for silence and the loop's impact), its SLA and silence watchers and
gauges, and its HTTP API (cases and their lifecycle; the admin set-up; the structural issues
backlog; actions agreed with accounts and their quarterly review packs; the loop's impact)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from closeloop_common.clock import Clock
from closeloop_common.events import (
    ErasureRequestedV1,
    InvitationSentV1,
    ResponseCorrectedV1,
    ResponseReceivedV1,
)
from closeloop_common.openapi import Link
from closeloop_common.privacy_api import build_export_router
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import create_app
from closeloop_orchestrator.adapters.scoring_client import ScoringClient
from closeloop_orchestrator.adapters.tables import metadata
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.accounts_api import build_accounts_router
from closeloop_orchestrator.entrypoints.admin_api import build_admin_router
from closeloop_orchestrator.entrypoints.backlog_api import build_backlog_router
from closeloop_orchestrator.entrypoints.cases_api import build_cases_router
from closeloop_orchestrator.entrypoints.impact_api import build_impact_router
from closeloop_orchestrator.service_layer import impact_gauges, privacy
from closeloop_orchestrator.service_layer.opening import ResponseHandler
from closeloop_orchestrator.service_layer.setup_store import SetupStore
from closeloop_orchestrator.service_layer.silence import InvitationHandler, SilenceWatcher
from closeloop_orchestrator.service_layer.watcher import SlaWatcher, run_gauges

RESPONSE_CONTRACTS = (ResponseReceivedV1, ResponseCorrectedV1)


ISSUE = "/v1/issues/{issue_id}"
ACTION = "/v1/accounts/{account_id}/actions/{action_id}"
NEW_ISSUE = {"issue_id": "$response.body#/issue_id"}
NEW_ACTION = {"account_id": "$request.path.account_id", "action_id": "$response.body#/action_id"}
SAME_ISSUE = {"issue_id": "$request.path.issue_id"}
SAME_ACTION = {"account_id": "$request.path.account_id", "action_id": "$request.path.action_id"}
ITS_VERSION = {"header.if-match": "$response.header.ETag"}
# How resources chain (OpenAPI links, `closeloop_common.openapi`): a structural issue or an
# account action is created, then read and changed with the ETag its answer gave; the settings
# are read, then written with theirs.
LINKS = [
    Link(("post", "/v1/issues", "201"), ("get", ISSUE), NEW_ISSUE),
    Link(("post", "/v1/issues", "201"), ("patch", ISSUE), NEW_ISSUE | ITS_VERSION),
    Link(("post", "/v1/issues", "201"), ("post", f"{ISSUE}/estimate"), NEW_ISSUE),
    Link(("post", "/v1/issues", "201"), ("post", f"{ISSUE}/cases"), NEW_ISSUE),
    *(
        Link(("post", "/v1/issues", "201"), ("post", f"{ISSUE}/{step}"), NEW_ISSUE | ITS_VERSION)
        for step in ("prioritise", "start", "done", "reject")
    ),
    Link(("get", ISSUE, "200"), ("patch", ISSUE), SAME_ISSUE | ITS_VERSION),
    Link(("patch", ISSUE, "200"), ("get", ISSUE), SAME_ISSUE),
    *(
        Link(("get", ISSUE, "200"), ("post", f"{ISSUE}/{step}"), SAME_ISSUE | ITS_VERSION)
        for step in ("prioritise", "start", "done", "reject")
    ),
    Link(("post", "/v1/accounts/{account_id}/actions", "201"), ("get", ACTION), NEW_ACTION),
    Link(
        ("post", "/v1/accounts/{account_id}/actions", "201"),
        ("patch", ACTION),
        NEW_ACTION | ITS_VERSION,
    ),
    Link(("get", ACTION, "200"), ("patch", ACTION), SAME_ACTION | ITS_VERSION),
    Link(("patch", ACTION, "200"), ("get", ACTION), SAME_ACTION),
    Link(("get", "/v1/setup/rules", "200"), ("put", "/v1/setup/rules"), ITS_VERSION),
    Link(("get", "/v1/setup/organisation", "200"), ("put", "/v1/setup/organisation"), ITS_VERSION),
]


def create_orchestrator_app(
    settings: OrchestratorSettings | None = None,
    clock: Clock | None = None,
    scoring_http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The app; `scoring_http` replaces the HTTP client to scoring (a test's ASGI transport)."""
    settings = settings or OrchestratorSettings()
    store = SetupStore(settings, TenantDirectory.load(settings.tenants_file))
    runtime = ServiceRuntime(name="orchestrator", settings=settings, metadata=metadata, clock=clock)
    handler = ResponseHandler(store)
    # Idempotent by the responses' versions (`opening.py`): no inbox row per event.
    runtime.on_batches(RESPONSE_CONTRACTS, handler, idempotent=True)
    watcher = SlaWatcher(
        runtime,
        store,
        limit=settings.orchestrator_watch_batch,
        interval=settings.orchestrator_watch_interval_seconds,
        tick=settings.orchestrator_watch_tick_seconds,
    )
    runtime.add_worker("sla-watcher", watcher.run)
    # Invitations: kept once each (ON CONFLICT DO NOTHING), so idempotent too.
    runtime.on_batches((InvitationSentV1,), InvitationHandler(store), idempotent=True)
    silence = SilenceWatcher(
        runtime,
        store,
        limit=settings.orchestrator_silence_batch,
        interval=settings.orchestrator_silence_interval_seconds,
    )
    runtime.add_worker("silence-watcher", silence.run)
    # Erasures (GDPR article 17): once each, through the inbox (docs/privacy.md).
    runtime.on(ErasureRequestedV1, privacy.on_erasure_requested)

    async def gauges() -> None:
        await run_gauges(runtime, settings.orchestrator_gauge_interval_seconds)

    runtime.add_worker("case-gauges", gauges)

    async def loop_gauges() -> None:
        await impact_gauges.run_gauges(runtime, settings.orchestrator_impact_interval_seconds)

    runtime.add_worker("loop-impact-gauges", loop_gauges)
    scoring = ScoringClient(
        settings.orchestrator_scoring_url,
        timeout=settings.orchestrator_scoring_timeout_seconds,
        client=scoring_http,
    )
    if scoring_http is None:  # ours to close (a test closes its own)
        runtime.on_stop(scoring.aclose)
    app = create_app(
        links=LINKS,
        title="Closeloop loop orchestrator",
        runtime=runtime,
        routers=[
            build_cases_router(runtime, store),
            build_admin_router(runtime, store),
            build_backlog_router(runtime, scoring),
            build_accounts_router(runtime, store, scoring, settings.review_time_zone),
            build_impact_router(runtime, scoring),
            build_export_router(runtime, service="orchestrator", export=privacy.export),
        ],
    )
    app.state.scoring = scoring
    app.state.setup_store = store
    app.state.watcher = watcher
    app.state.silence = silence
    app.state.responses = handler
    return app
