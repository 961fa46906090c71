"""`POST /v1/webhooks/{source}`: survey tools post here, each in its own format.

`{source}` is `<tenant>.<source name>` (the URL the sources API returns): it names the tenant and
the source, and the tool's signature over the raw bytes authenticates the delivery (no bearer
token: survey tools cannot send one). The order of checks, each with its own answer:
unknown source 404, body over `WEBHOOK_MAX_BODY_BYTES` 413, wrong content type 415, bad or
missing signature 401, unusable payload 422 naming the field, our database down 503. Then 202
(something new accepted, or ids queued for fetching), 200 (a repeat, a stale version, or an event
that is not a response), 409 (the same version with other content).

Nothing unauthenticated is stored. An accepted delivery is stored raw with its outcome, in the
transaction that stores its response and queues its event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from closeloop_common.group_commit import GroupCommitError
from closeloop_common.web import Problem
from closeloop_ingest.domain.responses import FUTURE_TOLERANCE
from closeloop_ingest.domain.sources.base import (
    BadSignature,
    Delivery,
    DeliveryRejected,
    FetchLater,
    Ignored,
    InvalidPayload,
    SourceAdapter,
    SourceDefinition,
    UnsupportedContentType,
)
from closeloop_ingest.domain.sources.registry import ADAPTERS
from closeloop_ingest.entrypoints.answers import outcome_json, status_code_of, summary
from closeloop_ingest.entrypoints.responses_api import database_unavailable
from closeloop_ingest.metrics import DELIVERIES, RESPONSES
from closeloop_ingest.service_layer.intake import Intake, RawDelivery
from closeloop_ingest.service_layer.service import Ingest

# Headers never kept with a stored delivery (credentials of whoever sent it).
_NOT_STORED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def build_router(ingest: Ingest, *, on_fetch_queued: Callable[[], None]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"])
    clock = ingest.runtime.clock
    limit = ingest.settings.webhook_max_body_bytes

    @router.post(
        "/webhooks/{source}",
        status_code=202,
        summary="A survey tool's webhook (Typeform, Delighted, Formbricks, Tally, SurveyMonkey, "
        "Qualtrics, Standard Webhooks, or a source configured by JSON paths)",
        description="Authenticated by the tool's own signature over the raw body; the body is "
        "the tool's documented payload. See `PUT /v1/sources/{name}` for the URL.",
        responses={
            200: {"description": "A repeat, a stale version, or an event that is no response"},
            401: {"description": "Signature missing, wrong, or out of the time tolerance"},
            404: {"description": "No such source"},
            409: {"description": "The same version of the response with other content"},
            413: {"description": "Body over the webhook limit"},
            415: {"description": "Not the content type the tool posts"},
            422: {"description": "Not a usable payload; `field` names where"},
            503: {"description": "Our database is unavailable; nothing was accepted"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                },
            }
        },
    )
    async def post_webhook(source: str, request: Request) -> Response:
        tenant_id, _, name = source.partition(".")
        definition = ingest.sources.get(tenant_id, name)
        if definition is None:
            DELIVERIES.labels("unknown", "unknown_source").inc()
            raise Problem(404, "unknown-source", "No such source", f"no source {source}")
        kind = definition.kind
        adapter = ADAPTERS[kind]
        body = await request.body()
        if len(body) > limit:
            DELIVERIES.labels(kind, "payload_too_large").inc()
            raise Problem(
                413,
                "payload-too-large",
                "Request body too large",
                f"the request body is over {limit} bytes",
                max_bytes=limit,
            )
        delivery = Delivery(
            body=body,
            headers={k: v for k, v in request.headers.items()},
            content_type=_media_type(request.headers.get("content-type", "")),
            received_at=clock.now(),
        )
        try:
            intake = _understand(adapter, definition, delivery)
        except DeliveryRejected as exc:
            DELIVERIES.labels(kind, exc.reason).inc()
            raise _problem(exc) from exc
        try:
            result = await ingest.accept(intake)
        except GroupCommitError as exc:
            raise database_unavailable(kind, exc) from exc

        if intake.fetch is not None:
            on_fetch_queued()
            DELIVERIES.labels(kind, "fetch_queued").inc()
            return JSONResponse({"status": "fetch_queued"}, status_code=202)
        if intake.ignored is not None:
            DELIVERIES.labels(kind, "ignored").inc()
            return JSONResponse({"status": "ignored", "reason": intake.ignored}, status_code=200)
        outcomes = result.outcomes
        for outcome in outcomes:
            RESPONSES.labels(kind, outcome.status).inc()
        DELIVERIES.labels(kind, summary(outcomes)).inc()
        if len(outcomes) == 1:
            only = outcomes[0]
            if only.status == "conflict":
                raise Problem(
                    409,
                    "response-conflict",
                    "Response id already used",
                    f"response {only.response_id} was accepted earlier with different content "
                    "and the same update time",
                )
            return JSONResponse(outcome_json(only, tenant_id), status_code=status_code_of(outcomes))
        return JSONResponse(
            {"results": [outcome_json(o, tenant_id) for o in outcomes]},
            status_code=status_code_of(outcomes),
        )

    return router


def _understand(adapter: SourceAdapter, definition: SourceDefinition, delivery: Delivery) -> Intake:
    """Verify and parse a delivery into what to write (raises `DeliveryRejected`)."""
    if delivery.content_type not in adapter.content_types:
        raise UnsupportedContentType(
            f"{delivery.content_type or 'no content type'}: this source posts "
            + " or ".join(sorted(adapter.content_types))
        )
    adapter.verify(delivery, definition)
    parsed = adapter.parse(delivery, definition)
    raw = RawDelivery(
        delivery_id=parsed.delivery_id,
        received_at=delivery.received_at,
        content_type=delivery.content_type,
        headers={k: v for k, v in delivery.headers.items() if k not in _NOT_STORED},
        body=delivery.body,
    )
    common: dict[str, Any] = {
        "tenant_id": definition.tenant_id,
        "source": definition.name,
        "delivery": raw,
    }
    if isinstance(parsed, FetchLater):
        return Intake(**common, fetch=parsed)
    if isinstance(parsed, Ignored):
        return Intake(**common, ignored=parsed.reason)
    latest = delivery.received_at + FUTURE_TOLERANCE
    for submission in parsed.submissions:
        if submission.response.answered_at > latest:
            raise InvalidPayload("answered_at", "the answer time is in the future")
    return Intake(**common, submissions=parsed.submissions)


def _problem(exc: DeliveryRejected) -> Problem:
    if isinstance(exc, BadSignature):
        return Problem(
            401,
            "bad-signature",
            "Signature not verified",
            exc.detail,
            reason=exc.reason,
        )
    if isinstance(exc, InvalidPayload):
        return Problem(422, "invalid-payload", "Payload not usable", exc.detail, field=exc.field)
    return Problem(exc.status, exc.reason.replace("_", "-"), "Delivery refused", exc.detail)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
