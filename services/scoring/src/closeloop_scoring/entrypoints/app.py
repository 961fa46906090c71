"""Scoring's consumer (responses, corrections, suspicions, invitations, case updates) and HTTP
API."""

from __future__ import annotations

from fastapi import FastAPI

from closeloop_common.clock import Clock
from closeloop_common.events import ErasureRequestedV1
from closeloop_common.privacy_api import build_export_router
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import create_app
from closeloop_scoring.adapters.tables import metadata
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain.themes import ThemeTagger
from closeloop_scoring.entrypoints.accounts_api import build_accounts_router
from closeloop_scoring.entrypoints.drivers_api import build_drivers_router
from closeloop_scoring.entrypoints.nps_api import build_nps_router
from closeloop_scoring.entrypoints.reading import Reads
from closeloop_scoring.service_layer import privacy
from closeloop_scoring.service_layer.aggregation import CONTRACTS, Aggregator
from closeloop_scoring.service_layer.headlines import HeadlineWatcher
from closeloop_scoring.service_layer.state import check_time_zone


def create_scoring_app(
    settings: ScoringSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or ScoringSettings()
    runtime = ServiceRuntime(name="scoring", settings=settings, metadata=metadata, clock=clock)
    aggregator = Aggregator(
        sessions=runtime.worker_sessions,
        time_zone=settings.time_zone,
        tagger=ThemeTagger(settings.themes()),
        attributes=settings.scoring_attributes,
    )
    # One handler for every contract, so a batch's transaction takes each tenant's lock once, in
    # the mode the whole batch needs (see `service_layer/root_causes.py`).
    runtime.on_batches(CONTRACTS, aggregator.events, idempotent=True)
    # Erasures: scoring holds no personal data, but reports its part (docs/privacy.md).
    runtime.on(ErasureRequestedV1, privacy.on_erasure_requested)

    async def time_zone_matches() -> None:
        await check_time_zone(runtime.worker_sessions, settings.scoring_time_zone)

    runtime.before_start(time_zone_matches)
    headlines = HeadlineWatcher.configured(runtime, settings)
    if headlines.headlines:
        runtime.add_worker("headlines", headlines.run)
    reads = Reads(runtime, settings)
    app = create_app(
        title="Closeloop scoring",
        runtime=runtime,
        routers=[
            build_nps_router(reads),
            build_drivers_router(reads),
            build_accounts_router(reads),
            build_export_router(runtime, service="scoring", export=privacy.export),
        ],
    )
    app.state.aggregator = aggregator
    app.state.headlines = headlines
    return app
