"""The canonical API: `POST /v1/responses` (one response or a batch of up to 1,000),
`GET /v1/responses/{id}`, and `POST /v1/responses/{id}/confirm` for a suspected one.

The body is parsed here rather than by FastAPI so that a batch can be judged entry by entry: one
invalid entry is reported at its index and the others are still accepted. The OpenAPI document
still describes the body (`openapi_extra`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from closeloop_common.group_commit import GroupCommitError
from closeloop_common.web import AdminTenant, Problem, ReadTenant, ResponsesWriteTenant
from closeloop_ingest import views
from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.domain.sources.base import Submission
from closeloop_ingest.entrypoints.answers import outcome_json, status_code_of, summary
from closeloop_ingest.metrics import DELIVERIES, RESPONSES
from closeloop_ingest.service_layer.confirm import NotSuspected, confirm_response
from closeloop_ingest.service_layer.intake import Intake, Outcome
from closeloop_ingest.service_layer.service import Ingest

MAX_BATCH = 1000


class ResponseBatch(BaseModel):
    # `_post_batch` refuses any other key: the document says so.
    model_config = ConfigDict(extra="forbid")

    responses: list[CanonicalResponse] = Field(min_length=1, max_length=MAX_BATCH)


# The body as OpenAPI describes it: the models' JSON Schema, whose definitions `IngestApp` adds to
# the document's components (FastAPI only adds the models routes take as parameters).
_BODY_SCHEMA = TypeAdapter(CanonicalResponse | ResponseBatch).json_schema(
    ref_template="#/components/schemas/{model}"
)
BODY_COMPONENTS: dict[str, Any] = _BODY_SCHEMA.pop("$defs")


def _request_body_schema() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA}},
        }
    }


def database_unavailable(source: str, exc: Exception) -> Problem:
    DELIVERIES.labels(source, "database_unavailable").inc()
    return Problem(
        503,
        "database-unavailable",
        "Database unavailable",
        "nothing was accepted from this request; send it again shortly",
        headers={"Retry-After": "5"},
    )


def build_router(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["responses"])
    clock = ingest.runtime.clock

    @router.post(
        "/responses",
        status_code=202,
        summary="Accept one response, or a batch of up to 1,000 (idempotent by response_id)",
        description="One response: 202 accepted (or `corrected`: a later `updated_at` with other "
        "content), 200 already known (`duplicate`, or `stale`: an older version), 409 the same "
        'version with other content, 422 invalid. A batch (`{"responses": [...]}`) answers 202 '
        "when every entry is new, 200 when every entry was known, 207 when the outcomes are "
        "mixed or some entries are invalid (each entry's `status`, and `errors` for an invalid "
        "one), and 422 when no entry is valid.",
        responses={
            200: {"description": "Already accepted; nothing changed"},
            207: {"description": "A batch with mixed outcomes; see each result"},
            409: {"description": "Already accepted with different content for the same version"},
            422: {"description": "Not a valid response"},
            503: {"description": "Our database is unavailable; nothing was accepted"},
        },
        openapi_extra=_request_body_schema(),
    )
    async def post_responses(request: Request, tenant: ResponsesWriteTenant) -> Response:
        document = _json_body(await request.body())
        if isinstance(document, dict) and "responses" in document:
            return await _post_batch(tenant, document)
        response = _validate(document, ("body",))
        _refuse_future(response, clock.now())
        outcome = await _accept(tenant, [response])
        outcome_one = outcome[0]
        if outcome_one.status == "conflict":
            raise Problem(
                409,
                "response-conflict",
                "Response id already used",
                f"response {outcome_one.response_id} was accepted earlier with different content "
                "for the same version; use a new response_id for a new answer, or a later "
                "updated_at for a correction",
            )
        return JSONResponse(outcome_json(outcome_one, tenant), status_code=status_code_of(outcome))

    async def _post_batch(tenant: str, document: dict[str, Any]) -> Response:
        entries = document.get("responses")
        if set(document) != {"responses"} or not isinstance(entries, list):
            raise RequestValidationError(
                [
                    {
                        "loc": ("body",),
                        "msg": 'a batch is {"responses": [...]} and nothing else',
                        "type": "model_type",
                    }
                ]
            )
        if not 1 <= len(entries) <= MAX_BATCH:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "responses"),
                        "msg": f"a batch holds 1 to {MAX_BATCH} responses, got {len(entries)}",
                        "type": "too_long" if entries else "too_short",
                    }
                ]
            )
        now = clock.now()
        valid: list[tuple[int, CanonicalResponse]] = []
        invalid: dict[int, list[dict[str, Any]]] = {}
        for index, entry in enumerate(entries):
            try:
                response = _validate(entry, ("body", "responses", index))
                _refuse_future(response, now)
                valid.append((index, response))
            except RequestValidationError as exc:
                invalid[index] = [_error_json(e) for e in exc.errors()]
            except Problem as exc:
                invalid[index] = [
                    {
                        "location": ["body", "responses", index, "answered_at"],
                        "message": exc.detail or exc.title,
                        "kind": "answered_in_future",
                    }
                ]
        RESPONSES.labels("api", "invalid").inc(len(invalid))
        if not valid:
            DELIVERIES.labels("api", "invalid_payload").inc()
            errors = [e for index in sorted(invalid) for e in invalid[index]]
            raise RequestValidationError(
                [{"loc": e["location"], "msg": e["message"], "type": e["kind"]} for e in errors]
            )
        outcomes = await _accept(tenant, [r for _, r in valid])
        results: list[dict[str, Any]] = [{} for _ in entries]
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            results[index] = {"index": index, **outcome_json(outcome, tenant)}
        for index, errors in invalid.items():
            results[index] = {"index": index, "status": "invalid", "errors": errors}
        if (
            invalid
            or len({status_code_of([o]) for o in outcomes}) > 1
            or any(o.status == "conflict" for o in outcomes)
        ):
            code = 207
        else:
            code = status_code_of(outcomes)
        return JSONResponse({"results": results}, status_code=code)

    async def _accept(tenant: str, responses: list[CanonicalResponse]) -> list[Outcome]:
        intake = Intake(
            tenant_id=tenant,
            source="api",
            submissions=[Submission(r, user_agent=r.user_agent) for r in responses],
        )
        try:
            result = await ingest.accept(intake)
        except GroupCommitError as exc:
            raise database_unavailable("api", exc) from exc
        for outcome in result.outcomes:
            RESPONSES.labels("api", outcome.status).inc()
        DELIVERIES.labels("api", summary(result.outcomes)).inc()
        return result.outcomes

    @router.get("/responses/{response_id}", summary="An accepted response, as last received")
    async def get_response(response_id: str, tenant: ReadTenant) -> dict[str, Any]:
        async with ingest.runtime.sessions() as session:
            found = await views.response(session=session, tenant_id=tenant, response_id=response_id)
        if found is None:
            raise Problem(404, "not-found", "No such response", f"no response {response_id}")
        return found

    @router.post(
        "/responses/{response_id}/confirm",
        summary="Confirm a response suspected of being automated: it is published as received",
        responses={
            404: {"description": "No such response"},
            409: {"description": "The response is not suspected"},
        },
    )
    async def confirm(response_id: str, tenant: AdminTenant) -> dict[str, Any]:
        try:
            async with ingest.runtime.transaction() as tx:
                outcome = await confirm_response(tx, tenant_id=tenant, response_id=response_id)
        except LookupError as exc:
            raise Problem(
                404, "not-found", "No such response", f"no response {response_id}"
            ) from exc
        except NotSuspected as exc:
            raise Problem(
                409, "not-suspected", "Response is not suspected", f"response {response_id} {exc}"
            ) from exc
        return outcome_json(outcome, tenant)

    return router


def _json_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        DELIVERIES.labels("api", "invalid_payload").inc()
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
        ) from exc


def _validate(document: Any, location: tuple[str | int, ...]) -> CanonicalResponse:
    try:
        return CanonicalResponse.model_validate(document)
    except ValidationError as exc:
        if location == ("body",):
            DELIVERIES.labels("api", "invalid_payload").inc()
        raise RequestValidationError(
            [
                {"loc": (*location, *e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
        ) from exc


def _refuse_future(response: CanonicalResponse, now: datetime) -> None:
    if response.answered_in_future(now):
        raise Problem(
            422,
            "answered-in-future",
            "Answer time is in the future",
            f"answered_at {response.answered_at.isoformat()} is later than now",
        )


def _error_json(error: Any) -> dict[str, Any]:
    return {
        "location": list(error.get("loc", ())),
        "message": error.get("msg", ""),
        "kind": error.get("type", ""),
    }
