"""Every service's `/metrics`, after some traffic, passes `promtool check metrics` (Prometheus'
own linter: names, units, `_total`, help text, the exposition format).

The apps run in process against the real database, without their lifespans: the requests
(a health check, a path no route matches, a read that reaches PostgreSQL) make the labelled
HTTP series exist. promtool comes from Debian's `prometheus` package (`make test-tools`
installs it when the tests run as root, as CI does).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.entrypoints.app import create_scoring_app

Bearer = Callable[..., dict[str, str]]

# Each service's app and one of its reads (the route template, as the metric labels it).
READS: dict[str, tuple[Callable[[], FastAPI], str, str]] = {
    "ingest": (create_ingest_app, "/v1/responses/r-metrics", "/v1/responses/{response_id}"),
    "scoring": (create_scoring_app, "/v1/nps", "/v1/nps"),
    "orchestrator": (create_orchestrator_app, "/v1/cases", "/v1/cases"),
    "notifier": (create_notifier_app, "/v1/messages", "/v1/messages"),
}


def promtool() -> str:
    """promtool's path; skips when it is missing and cannot be installed here (not root)."""
    found = shutil.which("promtool")
    if found is None:
        if os.geteuid() != 0:
            pytest.skip(
                "promtool is not installed and only root can install it: "
                "`apt-get install prometheus` (Debian's package), or run `make test-tools` as root"
            )
        pytest.fail("promtool is missing: run `make test-tools` (installs Debian's prometheus)")
    return found


@pytest.mark.parametrize("service", sorted(READS))
async def test_every_services_metrics_pass_promtool_check_metrics(
    infra: dict[str, str], bearer: Bearer, service: str
) -> None:
    checker = promtool()
    factory, read, template = READS[service]
    app = factory()
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/no-such-path")).status_code == 404
            await client.get(read, headers=bearer(f"it-metrics-{service}", "read"))
            scraped = await client.get("/metrics")
    finally:
        await runtime.engine.dispose()
    assert scraped.status_code == 200
    text = scraped.text
    healthy = 'closeloop_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert healthy in text
    assert 'route="unmatched",status="404"' in text
    assert f'route="{template}"' in text

    check = await asyncio.create_subprocess_exec(
        checker,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        complaints, _ = await check.communicate(text.encode())
    assert (check.returncode, complaints.decode()) == (0, "")
