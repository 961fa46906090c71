"""Helpers of the orchestrator's integration tests: responses as ingest publishes them, the
consumer's batch handler called as the consumer calls it, the events a test's tenant emitted,
and the set-up a test stores through the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.db import transaction
from closeloop_common.events import (
    CloudEvent,
    Customer,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseVersion,
    Segments,
    categorize,
    decode_event,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator.adapters.tables import metadata
from closeloop_orchestrator.service_layer.opening import ResponseHandler

OUTBOX = metadata.tables["orchestrator.outbox"]
PROBLEM = "application/problem+json"
# Tuesday 10 November 2026, 10:00 in Warsaw (the day before a Polish public holiday).
NOW = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
ALL_SCOPES = ("read", "cases:write", "admin")


def new_tenant() -> str:
    return f"it-orch-{uuid.uuid4().hex[:10]}"


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


def answer(
    response_id: str,
    *,
    score: int = 2,
    account_id: str | None = None,
    comment: str | None = "The delivery was late.",
    locale: str | None = None,
    region: str | None = None,
    answered_at: datetime | None = None,
) -> ResponseReceivedV1:
    at = answered_at or NOW - 5 * timedelta(minutes=1)
    return ResponseReceivedV1(
        response_id=response_id,
        survey_id="relationship-2026",
        customer=Customer(id=f"cust-{response_id}", email="jan@klient.example.pl", locale=locale),
        account_id=account_id,
        score=score,
        category=categorize(score),
        comment=comment,
        answered_at=at,
        received_at=at + timedelta(seconds=1),
        segments=Segments(region=region),
        source="api",
    )


def correction(first: ResponseReceivedV1, *, score: int, version: int = 2) -> ResponseCorrectedV1:
    return ResponseCorrectedV1(
        response_id=first.response_id,
        version=version,
        survey_id=first.survey_id,
        customer=first.customer,
        account_id=first.account_id,
        score=score,
        category=categorize(score),
        comment=first.comment,
        answered_at=first.answered_at,
        updated_at=first.answered_at + timedelta(minutes=version),
        received_at=first.received_at + timedelta(minutes=version),
        segments=first.segments,
        source=first.source,
        previous=ResponseVersion.of(first, version=version - 1),
    )


def event_of(tenant: str, data: Any, clock: FixedClock) -> CloudEvent[Any]:
    made: CloudEvent[Any] = new_event(
        data, tenant_id=tenant, source="/closeloop/ingest", clock=clock
    )
    return made


async def feed(app: FastAPI, tenant: str, *answers: Any) -> None:
    """One consumer batch of these responses and corrections, in one transaction."""
    runtime = runtime_of(app)
    handler: ResponseHandler = app.state.responses
    async with runtime.transaction() as tx:
        await handler(tx, [event_of(tenant, a, runtime.clock) for a in answers])  # type: ignore[arg-type]


async def feed_scoring(scoring_app: FastAPI, tenant: str, answers: Sequence[Any]) -> None:
    """Scoring counts these responses for the tenant (one consumer batch of its aggregator)."""
    runtime = runtime_of(scoring_app)
    events = [
        new_event(a, tenant_id=tenant, source="/closeloop/ingest", clock=runtime.clock)
        for a in answers
    ]
    async with transaction(runtime.worker_sessions) as session:
        tx = Transaction(
            session=session, clock=runtime.clock, source=runtime.source, outbox=runtime.outbox
        )
        await scoring_app.state.aggregator.events(tx, events)
        await tx.flush()


async def emitted(app: FastAPI, tenant: str, event_type: str | None = None) -> list[Any]:
    """The data of the events the tenant's outbox holds, oldest first (of one type if given)."""
    async with runtime_of(app).sessions() as session:
        query = sa.select(OUTBOX.c.payload).where(OUTBOX.c.tenant_id == tenant)
        if event_type is not None:
            query = query.where(OUTBOX.c.event_type == event_type)
        payloads = await session.scalars(query.order_by(OUTBOX.c.seq))
        return [decode_event(p).data for p in payloads]


def team(
    team_id: str,
    members: Sequence[tuple[str, Sequence[str]]],
    *,
    lead: str | None = None,
    manager: str | None = None,
    away: Sequence[str] = (),
) -> dict[str, Any]:
    """A team as the organisation API takes it: (member id, languages) pairs."""
    return {
        "id": team_id,
        "name": f"Team {team_id}",
        "email": f"{team_id}@acme.example",
        "queue": f"{team_id}-queue",
        "lead_id": lead,
        "manager_id": manager,
        "members": [
            {
                "id": member,
                "name": member.title(),
                "email": f"{member}@acme.example",
                "languages": list(languages),
                "away": member in away,
            }
            for member, languages in members
        ],
    }


async def put_setup(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    organisation: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
) -> None:
    """Store the parts given, each at its next version; fails the test if refused."""
    for part, body in (("organisation", organisation), ("rules", rules)):
        if body is None:
            continue
        current = await client.get(f"/v1/setup/{part}", headers=headers)
        assert current.status_code == 200, current.text
        stored = await client.put(
            f"/v1/setup/{part}",
            json=body,
            headers=headers | {"If-Match": current.headers["ETag"]},
        )
        assert stored.status_code == 200, stored.text


async def command(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    case_id: Any,
    name: str,
    body: dict[str, Any],
) -> httpx.Response:
    """POST a lifecycle command with the case's current ETag."""
    current = await client.get(f"/v1/cases/{case_id}", headers=headers)
    assert current.status_code == 200, current.text
    return await client.post(
        f"/v1/cases/{case_id}/{name}",
        json=body,
        headers=headers | {"If-Match": current.headers["ETag"]},
    )


def iso(instant: datetime) -> str:
    """An instant as the API writes it (UTC, `Z`)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
