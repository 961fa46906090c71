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

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from closeloop_common.group_commit import GroupCommitError
from closeloop_common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from closeloop_common.storable import NUL_CHARACTER, NUL_MESSAGE, may_hold_nul, nul_locations
from closeloop_common.web import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    internal_problem,
    validation_problem,
)
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

log = logging.getLogger(__name__)

# Headers never kept with a stored delivery (credentials of whoever sent it).
_NOT_STORED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def build_router(handler: WebhookHandler) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"])

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
        # Reached only without the fast path in front (see `WebhookFastPath`); same handler.
        status, answer = await handler.handle(source, request.headers, await request.body())
        return Response(orjson.dumps(answer), status_code=status, media_type="application/json")

    return router


class WebhookHandler:
    """A delivery in, (status, JSON answer) out; every outcome counted by kind and reason."""

    def __init__(self, ingest: Ingest, *, on_fetch_queued: Callable[[], None]) -> None:
        self._ingest = ingest
        self._clock = ingest.runtime.clock
        self.limit = ingest.settings.webhook_max_body_bytes
        self._on_fetch_queued = on_fetch_queued

    def kind_of(self, path: str) -> str:
        """The kind of the source a webhook path names (a metric label), or `unknown`."""
        tenant_id, _, name = path.removeprefix(WEBHOOK_PREFIX).partition(".")
        definition = self._ingest.sources.get(tenant_id, name)
        return "unknown" if definition is None else definition.kind

    async def handle(
        self, source: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) of an accepted or known delivery; `Problem` otherwise."""
        tenant_id, _, name = source.partition(".")
        definition = self._ingest.sources.get(tenant_id, name)
        if definition is None:
            DELIVERIES.labels("unknown", "unknown_source").inc()
            raise Problem(404, "unknown-source", "No such source", f"no source {source}")
        kind = definition.kind
        if len(body) > self.limit:
            DELIVERIES.labels(kind, "payload_too_large").inc()
            raise payload_too_large(self.limit)
        delivery = Delivery(
            body=body,
            headers=headers,
            content_type=_media_type(headers.get("content-type", "")),
            received_at=self._clock.now(),
        )
        try:
            intake = _understand(ADAPTERS[kind], definition, delivery)
        except DeliveryRejected as exc:
            DELIVERIES.labels(kind, exc.reason).inc()
            raise _problem(exc) from exc
        try:
            result = await self._ingest.accept(intake)
        except GroupCommitError as exc:
            raise database_unavailable(kind, exc) from exc

        if intake.fetch is not None:
            self._on_fetch_queued()
            DELIVERIES.labels(kind, "fetch_queued").inc()
            return 202, {"status": "fetch_queued"}
        if intake.ignored is not None:
            DELIVERIES.labels(kind, "ignored").inc()
            return 200, {"status": "ignored", "reason": intake.ignored}
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
            return status_code_of(outcomes), outcome_json(only, tenant_id)
        return status_code_of(outcomes), {"results": [outcome_json(o, tenant_id) for o in outcomes]}


def payload_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        "Request body too large",
        f"the request body is over {limit} bytes",
        max_bytes=limit,
    )


class WebhookFastPath:
    """Answers `POST /v1/webhooks/{source}` itself, before FastAPI sees the request
    (`IngestApp.__call__`).

    Survey tools post at the highest rates ingest sees, and FastAPI's routing, dependency
    solving and middleware stack cost several times what verifying and storing a delivery
    costs. This path does what that stack would have done for this one route: the body limit
    (413 as soon as it is exceeded), the NUL check (422 like every route), the HTTP metrics
    (same series and route label), and RFC 9457 problems; then the same `WebhookHandler` the
    documented FastAPI route uses.
    """

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    @staticmethod
    def matches(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and path.startswith(WEBHOOK_PREFIX)
            and len(path) > len(WEBHOOK_PREFIX)
            and "/" not in path[len(WEBHOOK_PREFIX) :]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        try:
            status = await self._serve(scope, receive, send, scope["path"])
        finally:
            HTTP_REQUESTS.labels("POST", WEBHOOK_ROUTE, str(status)).inc()
            HTTP_LATENCY.labels("POST", WEBHOOK_ROUTE).observe(time.perf_counter() - started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> int:
        limit = self.handler.limit
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                DELIVERIES.labels(self.handler.kind_of(path), "payload_too_large").inc()
                return await _answer(send, path, payload_too_large(limit), close=True)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if may_hold_nul(body) and (found := _nul_fields(body)):
            return await _answer(send, path, _nul_problem(found))
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        source = path[len(WEBHOOK_PREFIX) :]
        try:
            return await _answer(send, path, await self.handler.handle(source, headers, body))
        except Problem as problem:
            return await _answer(send, path, problem)
        except Exception:
            log.exception("unhandled error", extra={"path": path})
            return await _answer(send, path, internal_problem())


WEBHOOK_PREFIX = "/v1/webhooks/"
WEBHOOK_ROUTE = "/v1/webhooks/{source}"


def _nul_fields(body: bytes) -> list[tuple[str | int, ...]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []  # not JSON: the adapter refuses it, naming the body
    return [("body", *at) for at in nul_locations(document)]


def _nul_problem(found: list[tuple[str | int, ...]]) -> Problem:
    return validation_problem(
        [{"location": list(at), "message": NUL_MESSAGE, "kind": NUL_CHARACTER} for at in found]
    )


async def _answer(
    send: Send,
    path: str,
    answer: tuple[int, dict[str, Any]] | Problem,
    *,
    close: bool = False,
) -> int:
    """Send (status, JSON) or a problem (problem+json); the status sent."""
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(answer, Problem):
        status, body, media = answer.status, answer.body(path), PROBLEM_CONTENT_TYPE.encode()
        # A problem's own headers too: 503 says when to come back (Retry-After).
        extra = [(k.lower().encode(), v.encode()) for k, v in (answer.headers or {}).items()]
    else:
        (status, body), media = answer, b"application/json"
    encoded = orjson.dumps(body)
    headers = [(b"content-type", media), (b"content-length", str(len(encoded)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})
    return status


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
    if any(s.response.answered_in_future(delivery.received_at) for s in parsed.submissions):
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
