"""Every service answers an erasure through its inbox (exactly once in effect: a redelivered
request is skipped by the inbox, not handled twice), ingest collects the answers, and every
service mounts its article-15 export. Built apps are inspected; nothing is started."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from closeloop_common.events import ErasureCompletedV1, ErasureRequestedV1, Topic
from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.entrypoints.app import create_scoring_app


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


@pytest.mark.parametrize(
    "create", [create_scoring_app, create_orchestrator_app, create_notifier_app]
)
def test_each_consumer_service_handles_erasure_requests_through_its_inbox(create: Any) -> None:
    app = create()
    handlers = runtime_of(app).handlers
    registration = handlers.get(ErasureRequestedV1.EVENT_TYPE)
    assert registration is not None
    assert registration.idempotent is False  # the inbox makes it once
    assert Topic.PRIVACY in handlers.topics()
    assert handlers.get(ErasureCompletedV1.EVENT_TYPE) is None
    paths = set(app.openapi()["paths"])
    assert "/v1/privacy/export" in paths


def test_ingest_collects_completions_and_serves_the_privacy_routes() -> None:
    app = create_ingest_app()
    handlers = runtime_of(app).handlers
    registration = handlers.get(ErasureCompletedV1.EVENT_TYPE)
    assert registration is not None
    assert registration.idempotent is False
    assert handlers.topics() == [Topic.PRIVACY]
    paths = set(app.openapi()["paths"])
    assert {
        "/v1/privacy/erasures",
        "/v1/privacy/erasures/{erasure_id}",
        "/v1/privacy/export",
        "/v1/privacy/exports",
    } <= paths
