"""Events to feed scoring's batch handlers (one transaction per call, as the consumer does) and
reading its API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI

from closeloop_common.clock import SystemClock
from closeloop_common.db import transaction
from closeloop_common.events import (
    CaseTransitionName,
    CaseUpdatedV1,
    Category,
    CloudEvent,
    Customer,
    InvitationSentV1,
    Playbook,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseSuspectedV1,
    ResponseVersion,
    Segments,
    categorize,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_common.runtime import ServiceRuntime
from closeloop_scoring.service_layer.aggregation import Aggregator

PROBLEM = "application/problem+json"
CLOCK = SystemClock()
WARSAW = ZoneInfo("Europe/Warsaw")
# What the app's clock says: Wednesday 15 April 2026, 12:00 in Warsaw (UTC+2 since 29 March).
NOW = datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
COUNTS = ("n", "promoters", "passives", "detractors", "suspected", "invitations")


def new_tenant() -> str:
    return f"it-sc-{uuid.uuid4().hex[:12]}"


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


def aggregator_of(app: FastAPI) -> Aggregator:
    aggregator = app.state.aggregator
    assert isinstance(aggregator, Aggregator)
    return aggregator


class SegmentArgs(TypedDict, total=False):
    """The segment attributes the builders take as keywords."""

    product: str
    region: str
    channel: str
    touchpoint: str


def received(
    score: int,
    at: datetime,
    *,
    response_id: str | None = None,
    survey: str = "relationship",
    account: str | None = None,
    comment: str | None = None,
    attributes: dict[str, str] | None = None,
    **segments: Unpack[SegmentArgs],
) -> ResponseReceivedV1:
    rid = response_id or f"r-{uuid.uuid4().hex}"
    return ResponseReceivedV1(
        response_id=rid,
        survey_id=survey,
        customer=Customer(id=f"c-{rid}"),
        account_id=account,
        score=score,
        category=categorize(score),
        comment=comment,
        answered_at=at,
        received_at=at,
        segments=Segments(**segments),
        attributes=attributes or {},
        source="api",
    )


def corrected(original: ResponseReceivedV1, version: int, **changes: Any) -> ResponseCorrectedV1:
    """Version `version` of `original` with `changes` (score, answered_at, segments,
    attributes, ...)."""
    fields = original.model_dump()
    fields.update(changes)
    score = fields["score"]
    previous = ResponseVersion.of(original, version=version - 1)
    return ResponseCorrectedV1(
        response_id=original.response_id,
        version=version,
        survey_id=fields["survey_id"],
        customer=original.customer,
        account_id=fields["account_id"],
        score=score,
        category=categorize(score),
        comment=fields["comment"],
        answered_at=fields["answered_at"],
        updated_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        segments=Segments.model_validate(fields["segments"]),
        attributes=fields.get("attributes", {}),
        source="api",
        previous=previous,
    )


def suspected(original: ResponseReceivedV1, version: int = 1) -> ResponseSuspectedV1:
    return ResponseSuspectedV1(
        response_id=original.response_id,
        version=version,
        survey_id=original.survey_id,
        customer=original.customer,
        account_id=original.account_id,
        score=original.score,
        category=original.category,
        answered_at=original.answered_at,
        received_at=original.received_at,
        segments=original.segments,
        attributes=original.attributes,
        source="api",
        reasons=("link_scanner_user_agent",),
    )


def case_updated(
    response: ResponseReceivedV1,
    version: int,
    *root_causes: str,
    transition: CaseTransitionName | None = None,
) -> CaseUpdatedV1:
    """Version `version` of the case of `response`, whose root causes are then `root_causes`
    (the orchestrator publishes the full set after each change)."""
    at = response.received_at
    return CaseUpdatedV1(
        case_id=uuid.uuid5(uuid.NAMESPACE_URL, response.response_id),
        response_id=response.response_id,
        customer=response.customer,
        account_id=response.account_id,
        transition=transition or "root_causes_added",
        status_before="in_progress",
        status="in_progress",
        version=version,
        actor="agent-1",
        at=at,
        case_type=Category.DETRACTOR,
        playbook=Playbook.APOLOGY_CALLBACK,
        priority="normal",
        channel="phone",
        team_id=None,
        queue="support",
        owner=None,
        root_causes=tuple(sorted(root_causes)),
        first_contact_due_at=at,
        resolution_due_at=None,
        first_contacted_at=None,
        resolved_at=None,
        closed_at=None,
    )


def invited(
    at: datetime,
    *,
    invitation_id: str | None = None,
    survey: str = "relationship",
    account: str | None = None,
    attributes: dict[str, str] | None = None,
    **segments: Unpack[SegmentArgs],
) -> InvitationSentV1:
    return InvitationSentV1(
        invitation_id=invitation_id or f"i-{uuid.uuid4().hex}",
        survey_id=survey,
        customer=Customer(id=f"c-{uuid.uuid4().hex[:8]}"),
        account_id=account,
        channel="email",
        invited_at=at,
        segments=Segments(**segments),
        attributes=attributes or {},
    )


async def feed(app: FastAPI, tenant: str, items: Sequence[Any]) -> None:
    """Give `items` to the handler in one transaction, in order, as one consumer batch."""
    runtime = runtime_of(app)
    events: list[CloudEvent[Any]] = [
        new_event(i, tenant_id=tenant, source="/closeloop/ingest", clock=CLOCK) for i in items
    ]
    async with transaction(runtime.worker_sessions) as session:
        tx = Transaction(session=session, clock=CLOCK, source=runtime.source, outbox=runtime.outbox)
        await aggregator_of(app).events(tx, events)
        await tx.flush()


async def get(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any
) -> dict[str, Any]:
    answer = await client.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]
) -> dict[str, Any]:
    answer = await client.post(path, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def assert_problem(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """`answer` is an RFC 9457 problem of `status` and type `urn:closeloop:problem:<kind>`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["type"] == f"urn:closeloop:problem:{kind}"
    assert body["status"] == status
    return body


def counts(figures: dict[str, Any]) -> dict[str, Any]:
    """The counts of an NPS figure, its NPS and response rate: what tests compare exactly."""
    return {k: figures[k] for k in (*COUNTS, "nps", "response_rate")}
