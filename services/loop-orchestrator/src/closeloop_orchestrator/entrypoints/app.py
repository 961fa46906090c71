"""The orchestrator: its consumer (responses and their corrections open and re-type cases), its
SLA watcher and gauges, and its HTTP API (cases and their lifecycle; the admin set-up)."""

from __future__ import annotations

from fastapi import FastAPI

from closeloop_common.clock import Clock
from closeloop_common.events import ResponseCorrectedV1, ResponseReceivedV1
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.tenants import TenantDirectory
from closeloop_common.web import create_app
from closeloop_orchestrator.adapters.tables import metadata
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.admin_api import build_admin_router
from closeloop_orchestrator.entrypoints.cases_api import build_cases_router
from closeloop_orchestrator.service_layer.opening import ResponseHandler
from closeloop_orchestrator.service_layer.setup_store import SetupStore
from closeloop_orchestrator.service_layer.watcher import SlaWatcher, run_gauges

RESPONSE_CONTRACTS = (ResponseReceivedV1, ResponseCorrectedV1)


def create_orchestrator_app(
    settings: OrchestratorSettings | None = None, clock: Clock | None = None
) -> FastAPI:
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

    async def gauges() -> None:
        await run_gauges(runtime, settings.orchestrator_gauge_interval_seconds)

    runtime.add_worker("case-gauges", gauges)
    app = create_app(
        title="Closeloop loop orchestrator",
        runtime=runtime,
        routers=[build_cases_router(runtime, store), build_admin_router(runtime, store)],
    )
    app.state.setup_store = store
    app.state.watcher = watcher
    app.state.responses = handler
    return app
