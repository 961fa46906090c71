"""Schemathesis fuzzes every service's API, as its OpenAPI documents it: with a token of a real
tenant holding every scope, and with no token. No answer is a server error (5xx) or breaks the
documented status codes, content types or response schemas.

The apps are served in this process (`fuzzing.ServedApps`) against the test database and this
run's topics; each test reads the OpenAPI the app serves, so new routes are fuzzed without an edit
here. Deterministic: hypothesis derandomized, no example database. `FUZZ_SCALE` (the `make fuzz`
target) multiplies the examples per operation and the chains.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from closeloop_common.services import SERVICES
from closeloop_devtools.mailsink import MailSink
from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .fuzzing import ServedApps, Tally, fuzz, fuzz_stateful, load

# Schemathesis' strategies use `random` inside (its deprecation warning, not ours).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

ALL_SCOPES = ("responses:write", "read", "cases:write", "admin")
# Per operation: valid requests with a token, invalid ones, requests without a token; chains of
# calls per service. `make fuzz` multiplies them by FUZZ_SCALE; `make test` keeps the run at
# about a minute on a 2-core machine.
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
EXAMPLES = 6 * SCALE
NEGATIVE_EXAMPLES = 3 * SCALE
ANONYMOUS_EXAMPLES = 1 * SCALE  # the token is checked before anything else
STATEFUL_SCENARIOS = 8 * SCALE
SERVICE_NAMES = ("ingest", "scoring", "orchestrator", "notifier")
SERVED_WITH_LIFESPAN = ("ingest", "notifier")


@pytest.fixture(scope="module")
def tenant() -> str:
    return f"fuzz-{uuid.uuid4().hex[:10]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApps]:
    """The four apps as their integration tests create them, served over HTTP in this process;
    the notifier delivers to an SMTP sink of its own."""
    sink_sock_port = _free_port()
    sink = MailSink(tmp_path_factory.mktemp("fuzz-mail"), port=sink_sock_port)
    sink.start()
    apps = ServedApps(SERVICE_NAMES)
    notifier_settings = NotifierSettings(notifier_smtp_port=sink_sock_port)
    # The orchestrator asks scoring over HTTP: the served scoring app.
    orchestrator_settings = OrchestratorSettings(orchestrator_scoring_url=apps.urls["scoring"])
    apps.start(
        {
            "ingest": (create_ingest_app(), "ingest" in SERVED_WITH_LIFESPAN),
            # Scoring the attribute its OpenAPI example names (`plan:gold`).
            "scoring": (
                create_scoring_app(ScoringSettings(scoring_attributes=("plan",))),
                "scoring" in SERVED_WITH_LIFESPAN,
            ),
            "orchestrator": (
                create_orchestrator_app(orchestrator_settings),
                "orchestrator" in SERVED_WITH_LIFESPAN,
            ),
            "notifier": (
                create_notifier_app(notifier_settings),
                "notifier" in SERVED_WITH_LIFESPAN,
            ),
        }
    )
    yield apps
    apps.stop()
    sink.stop()


@pytest.fixture(scope="module", autouse=True)
def _outbox_marked_sent(served: ServedApps, tenant: str) -> Iterator[None]:
    """Scoring and the orchestrator run no relay here: their events for the fuzzing tenant are
    marked sent afterwards, so no later relay publishes them to this run's deleted topics."""
    yield
    asyncio.run(_mark_sent(tenant))


async def _mark_sent(tenant: str) -> None:
    engine = create_async_engine(os.environ["DATABASE_URL"])
    try:
        async with engine.begin() as conn:
            for schema in (s.schema for s in SERVICES):
                await conn.execute(
                    sa.text(
                        f"UPDATE {schema}.outbox SET published_at = now() "
                        "WHERE (tenant_id = :tenant OR tenant_id LIKE :chains) "
                        "AND published_at IS NULL"
                    ),
                    {"tenant": tenant, "chains": f"{tenant}-%"},
                )
    finally:
        await engine.dispose()


def _unready_probe(service: str) -> Callable[[str], bool]:
    """Scoring and the orchestrator are served without their workers, as in their integration
    tests: their readiness (and liveness) probes answer 503 by design, so they are not fuzzed."""
    if service in SERVED_WITH_LIFESPAN:
        return lambda _: False
    return lambda label: label in ("GET /healthz", "GET /readyz")


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_server_error_with_a_token_of_every_scope(
    served: ServedApps, service: str, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    tally = Tally()
    fuzz(
        load(served.urls[service]),
        headers=bearer(tenant, *ALL_SCOPES, subject="fuzzer", ttl_seconds=3600),
        examples=EXAMPLES,
        negative=NEGATIVE_EXAMPLES,
        tally=tally,
        skip=_unready_probe(service),
    )
    print(f"\n{service} with a token: {tally.summary()}")
    for operation, counts in sorted(tally.by_operation.items()):
        print(f"  {operation}: {dict(counts)}")
    for operation, text in sorted(tally.rejections.items()):
        print(f"  {operation} REJECTED {text}")
    assert tally.failures == {}, tally.report()


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_server_error_without_a_token(served: ServedApps, service: str) -> None:
    tally = Tally()
    fuzz(
        load(served.urls[service]),
        headers={},
        examples=ANONYMOUS_EXAMPLES,
        tally=tally,
        skip=_unready_probe(service),
    )
    print(f"\n{service} without a token: {tally.summary()}")
    assert tally.failures == {}, tally.report()


@pytest.mark.parametrize("service", ["ingest", "orchestrator", "notifier"])
def test_chains_of_calls_along_the_links_find_no_error(
    served: ServedApps, service: str, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    """Create, then read and change what was created (the OpenAPI links), with the answers'
    ids and ETags; a deleted resource is gone."""
    tally = Tally()
    fuzz_stateful(
        load(served.urls[service]),
        headers_for=lambda n: bearer(f"{tenant}-{n}", *ALL_SCOPES, subject="fuzzer"),
        scenarios=STATEFUL_SCENARIOS,
        steps=8,
        tally=tally,
    )
    print(f"\n{service} chains: {tally.summary()}")
    for operation, counts in sorted(tally.by_operation.items()):
        print(f"  {operation}: {dict(counts)}")
    for operation, text in sorted(tally.rejections.items()):
        print(f"  {operation} REJECTED {text}")
