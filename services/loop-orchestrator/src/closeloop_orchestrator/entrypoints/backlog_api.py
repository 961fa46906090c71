"""`/v1/issues`: the structural issues backlog. Reads need scope `read`; changes need
`cases:write` (the people who close the loop work the backlog as they work cases; `admin` is for
the tenant's set-up and is accepted too, as everywhere).

An issue's impact is asked of scoring's what-if with the caller's own token (see
`adapters/scoring_client.py`): when scoring is down or refuses, the issue is still created, with
`impact: null` and `estimate.status` saying why; `POST /{id}/estimate` asks again and answers
503 (unreachable) or 502 (refused) as problem details. Transitions need `If-Match` (the issue's
version; 428 without, 412 when stale); `done` and `reject` carry what customers are told and
queue `change.summary.v1` in the same transaction.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator

from closeloop_common.events import LOCALE_PATTERN
from closeloop_common.openapi import CONFLICT, UPSTREAM_UNAVAILABLE
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    CasesWriteTenant,
    Problem,
    ReadTenant,
    RequiredIfMatch,
    actor_of,
    expected_version,
)
from closeloop_orchestrator import backlog_views
from closeloop_orchestrator.adapters.scoring_client import (
    ScoringClient,
    ScoringError,
    ScoringRefused,
    ScoringUnavailable,
    WhatIfAnswer,
)
from closeloop_orchestrator.domain.backlog import (
    MAX_AUDIENCE_RESPONSES,
    CustomerText,
    Decision,
    InvalidDecision,
    IssueCommand,
    IssueStatus,
    IssueTransitionRefused,
    IssueVersionConflict,
)
from closeloop_orchestrator.entrypoints.bodies import Body, OwnerBody
from closeloop_orchestrator.service_layer import backlog
from closeloop_orchestrator.service_layer.backlog import IssueFinal, IssueNotFound, UnknownCases

Title = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=r"\S")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"\S")]
Segment = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Locale = Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)]
# A cost as the API takes it; the document names the forms that always fit (a whole number, or a
# decimal string with at most 3 places), so generated costs are not refused.
Cost = Annotated[
    Decimal,
    Field(gt=0, le=Decimal("1e9"), max_digits=14, decimal_places=3),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 1_000_000_000},
                {"type": "string", "pattern": r"^[1-9][0-9]{0,8}(\.[0-9]{1,3})?$"},
            ]
        }
    ),
]
Window = Literal[
    "7d", "30d", "90d", "month", "quarter", "previous-month", "previous-quarter", "all"
]


class Filters(Body):
    """The issue's segment, in scoring's filter names."""

    survey: Segment | None = None
    account: Segment | None = None
    product: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    region: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    channel: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    touchpoint: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CreateBody(Body):
    title: Title
    description: LongText | None = None
    source: Literal["theme", "cases"]
    theme: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="the comment theme (required when `source` is `theme`)"
    )
    filters: Filters = Filters()
    window: Window = Field("90d", description="the what-if's window in scoring")
    case_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_AUDIENCE_RESPONSES,
        description="the cases the issue concerns (required when `source` is `cases`)",
    )
    cost: Cost
    cost_unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "person-days"
    owner: OwnerBody | None = None

    # What `_source_given` checks, stated in the document.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"source": {"const": "theme"}}, "required": ["theme"]},
                {
                    "properties": {"source": {"const": "cases"}, "case_ids": {"minItems": 1}},
                    "required": ["case_ids"],
                },
            ]
        }
    )

    @model_validator(mode="after")
    def _source_given(self) -> CreateBody:
        if self.source == "theme" and self.theme is None:
            raise ValueError("an issue from a theme names the theme")
        if self.source == "cases" and not self.case_ids:
            raise ValueError("an issue from cases lists the case ids")
        return self


class EditBody(Body):
    """The fields to change; a field left out is kept (`description` and `owner` may be null)."""

    title: Title | None = None
    description: LongText | None = None
    cost: Cost | None = None
    cost_unit: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    owner: OwnerBody | None = None

    # What `_something` checks, stated in the document: a field at least, never a null title,
    # cost or cost unit.
    model_config = ConfigDict(json_schema_extra=lambda schema: _edit_schema(schema))

    @model_validator(mode="after")
    def _something(self) -> EditBody:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        for name in ("title", "cost", "cost_unit"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"`{name}` cannot be null")
        return self


def _edit_schema(schema: dict[str, Any]) -> None:
    schema["minProperties"] = 1
    for name in ("title", "cost", "cost_unit"):
        field = schema["properties"][name]
        field["anyOf"] = [b for b in field["anyOf"] if b.get("type") != "null"]


class LinkBody(Body):
    add: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_AUDIENCE_RESPONSES)
    remove: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_AUDIENCE_RESPONSES)

    # What `_something` checks, stated in the document.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"add": {"minItems": 1}}, "required": ["add"]},
                {"properties": {"remove": {"minItems": 1}}, "required": ["remove"]},
            ]
        }
    )

    @model_validator(mode="after")
    def _something(self) -> LinkBody:
        if not (self.add or self.remove):
            raise ValueError("name cases to `add` or `remove`")
        return self


class EstimateBody(Body):
    window: Window = "90d"


class TextBody(Body):
    title: Title
    summary: LongText | None = Field(None, description="what was done (done)")
    reason: LongText | None = Field(None, description="why not (reject)")
    you_said: ShortText | None = Field(None, description="what customers asked for")


class DecisionBody(Body):
    locale: Locale = Field(description="the main language; `texts` must hold it")
    texts: dict[Locale, TextBody] = Field(min_length=1, max_length=21)
    notify_segment: bool = Field(
        False, description="tell everyone invited in the issue's segment too, respondents or not"
    )


class RejectBody(DecisionBody):
    reason: LongText = Field(description="why it was rejected, for the backlog")


def _decision(body: DecisionBody, reason: str | None = None) -> Decision:
    return Decision(
        locale=body.locale,
        texts={
            locale: CustomerText(t.title, t.summary, t.reason, t.you_said)
            for locale, t in body.texts.items()
        },
        notify_segment=body.notify_segment,
        reason=reason,
    )


def build_backlog_router(runtime: ServiceRuntime, scoring: ScoringClient) -> APIRouter:
    router = APIRouter(
        prefix="/v1/issues",
        tags=["structural issues"],
        responses={**CONFLICT, **UPSTREAM_UNAVAILABLE},
    )

    async def estimate(
        request: Request, theme: str | None, filters: dict[str, str], window: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the impact to store, what the answer says about it); raises ScoringError."""
        if theme is None:
            return None, {"status": "not_asked", "detail": "no theme to ask scoring about"}
        answer: WhatIfAnswer = await scoring.theme_what_if(
            authorization=request.headers.get("authorization", ""),
            theme=theme,
            filters=filters,
            window=window,
        )
        impact = backlog.impact_json(answer, at=runtime.clock.now())
        if impact is None:
            return None, {"status": "no_data", "detail": "no responses in the segment to project"}
        return impact, {"status": "estimated"}

    async def themed(
        request: Request, theme: str | None, filters: dict[str, str], window: str
    ) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
        """(the responses scoring finds the theme in, or None: unknown; what the answer says)."""
        if theme is None:
            return None, {"status": "not_asked", "detail": "no theme to ask scoring about"}
        try:
            found = await scoring.theme_responses(
                authorization=request.headers.get("authorization", ""),
                theme=theme,
                filters=filters,
                window=window,
            )
        except ScoringError as exc:
            return None, {"status": "unavailable", "detail": str(exc)}
        return found.response_ids, {
            "status": "found",
            "responses": len(found.response_ids),
            "truncated": found.truncated,
        }

    async def answer_issue(tenant: str, issue_id: uuid.UUID, response: Response) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await backlog_views.issue(session=session, tenant_id=tenant, issue_id=issue_id)
        if found is None:
            raise _not_found(issue_id)
        response.headers["ETag"] = f'"{found["version"]}"'
        return found

    @router.post("", status_code=201, summary="Create an issue from a theme or from cases")
    async def create_issue(
        body: CreateBody, tenant: CasesWriteTenant, request: Request, response: Response
    ) -> dict[str, Any]:
        filters = body.filters.given()
        try:
            impact, said = await estimate(request, body.theme, filters, body.window)
        except ScoringError as exc:
            impact, said = None, {"status": "unavailable", "detail": str(exc)}
        responses, found = await themed(request, body.theme, filters, body.window)
        issue_id = uuid.uuid4()
        try:
            async with runtime.transaction() as tx:
                await backlog.create(
                    tx,
                    tenant_id=tenant,
                    issue_id=issue_id,
                    new=backlog.NewIssue(
                        title=body.title,
                        description=body.description,
                        source=body.source,
                        theme=body.theme,
                        filters=filters,
                        cost=body.cost,
                        cost_unit=body.cost_unit,
                        owner=None if body.owner is None else body.owner.model_dump(),
                        case_ids=list(dict.fromkeys(body.case_ids)),
                        theme_responses=responses or (),
                    ),
                    impact=impact,
                    actor=actor_of(request),
                )
        except REFUSED as exc:
            raise _problem(exc, issue_id) from exc
        response.headers["Location"] = f"/v1/issues/{issue_id}"
        return await answer_issue(tenant, issue_id, response) | {
            "estimate": said,
            "theme_search": found,
        }

    @router.get("", summary="Issues, the biggest NPS gain per cost first (with its interval)")
    async def get_issues(
        tenant: ReadTenant,
        status: Annotated[list[IssueStatus] | None, Query(max_length=5)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            return await backlog_views.list_issues(
                session=session,
                tenant_id=tenant,
                status=[s.value for s in status] if status else None,
                limit=limit,
            )

    @router.get("/{issue_id}", summary="One issue with its cases and history; ETag: its version")
    async def get_issue(
        issue_id: uuid.UUID, tenant: ReadTenant, response: Response
    ) -> dict[str, Any]:
        return await answer_issue(tenant, issue_id, response)

    @router.post("/{issue_id}/estimate", summary="Ask scoring's what-if for the impact again")
    async def re_estimate(
        issue_id: uuid.UUID,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        body: EstimateBody | None = None,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            try:
                row = await backlog.issue_row(session, tenant_id=tenant, issue_id=issue_id)
            except IssueNotFound as exc:
                raise _not_found(issue_id) from exc
        if row.theme is None:
            raise Problem(
                409, "no-theme", "Nothing to estimate", "the issue names no theme to ask about"
            )
        window = (body or EstimateBody()).window
        try:
            impact, said = await estimate(request, row.theme, row.filters, window)
        except ScoringUnavailable as exc:
            raise Problem(503, "scoring-unavailable", "Scoring is unavailable", str(exc)) from exc
        except ScoringRefused as exc:
            raise Problem(
                502, "scoring-refused", "Scoring refused the question", str(exc),
                scoring_status=exc.status,
            ) from exc  # fmt: skip
        responses, found = await themed(request, row.theme, row.filters, window)
        try:
            async with runtime.transaction() as tx:
                await backlog.record_estimate(
                    tx,
                    tenant_id=tenant,
                    issue_id=issue_id,
                    impact=impact,
                    actor=actor_of(request),
                    theme_responses=responses,
                )
        except REFUSED as exc:
            raise _problem(exc, issue_id) from exc
        return await answer_issue(tenant, issue_id, response) | {
            "estimate": said,
            "theme_search": found,
        }

    @router.patch(
        "/{issue_id}",
        summary="Edit an open issue's title, description, cost or owner (If-Match)",
    )
    async def edit_issue(
        issue_id: uuid.UUID,
        body: EditBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        changes = {name: getattr(body, name) for name in body.model_fields_set if name != "owner"}
        if "owner" in body.model_fields_set:
            changes["owner"] = None if body.owner is None else body.owner.model_dump()
        try:
            async with runtime.transaction() as tx:
                await backlog.edit(
                    tx,
                    tenant_id=tenant,
                    issue_id=issue_id,
                    expected_version=expected,
                    changes=changes,
                    actor=actor_of(request),
                )
        except REFUSED as exc:
            raise _problem(exc, issue_id) from exc
        return await answer_issue(tenant, issue_id, response)

    @router.post(
        "/{issue_id}/cases",
        summary="Link more cases to an open issue, or unlink some",
        description="Their respondents hear about the decision. Needs no `If-Match`: nothing "
        "the caller wrote is overwritten (the issue's version grows all the same).",
    )
    async def link(
        issue_id: uuid.UUID,
        body: LinkBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
    ) -> dict[str, Any]:
        try:
            async with runtime.transaction() as tx:
                await backlog.link_cases(
                    tx,
                    tenant_id=tenant,
                    issue_id=issue_id,
                    add=list(dict.fromkeys(body.add)),
                    remove=list(dict.fromkeys(body.remove)),
                    actor=actor_of(request),
                )
        except REFUSED as exc:
            raise _problem(exc, issue_id) from exc
        return await answer_issue(tenant, issue_id, response)

    async def move(
        command: IssueCommand,
        issue_id: uuid.UUID,
        tenant: str,
        request: Request,
        response: Response,
        if_match: str | None,
        decision: Decision | None = None,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        try:
            async with runtime.transaction() as tx:
                await backlog.transition(
                    tx,
                    tenant_id=tenant,
                    issue_id=issue_id,
                    command=command,
                    expected_version=expected,
                    actor=actor_of(request),
                    decision=decision,
                )
        except REFUSED as exc:
            raise _problem(exc, issue_id) from exc
        return await answer_issue(tenant, issue_id, response)

    @router.post("/{issue_id}/prioritise", summary="proposed → prioritised")
    async def prioritise(
        issue_id: uuid.UUID,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await move("prioritise", issue_id, tenant, request, response, if_match)

    @router.post("/{issue_id}/start", summary="prioritised → in_progress")
    async def start(
        issue_id: uuid.UUID,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await move("start", issue_id, tenant, request, response, if_match)

    @router.post("/{issue_id}/done", summary="in_progress → done; tells customers what was done")
    async def done(
        issue_id: uuid.UUID,
        body: DecisionBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await move("done", issue_id, tenant, request, response, if_match, _decision(body))

    @router.post("/{issue_id}/reject", summary="Any open status → rejected; tells customers why")
    async def reject(
        issue_id: uuid.UUID,
        body: RejectBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await move(
            "reject", issue_id, tenant, request, response, if_match, _decision(body, body.reason)
        )

    return router


# What the service layer refuses a change of an issue with (`_problem` answers each).
REFUSED = (
    IssueNotFound,
    IssueVersionConflict,
    IssueTransitionRefused,
    IssueFinal,
    UnknownCases,
    InvalidDecision,
)


def _problem(exc: Exception, issue_id: uuid.UUID) -> Problem:
    """The problem details of a refused change of an issue (one mapping for every route)."""
    match exc:
        case IssueNotFound():
            return _not_found(issue_id)
        case IssueVersionConflict():
            return _conflict(exc)
        case IssueTransitionRefused():
            return Problem(
                409, "invalid-transition", "Not allowed now", str(exc),
                issue_status=exc.status.value,
            )  # fmt: skip
        case IssueFinal():
            return Problem(409, "invalid-transition", "Not allowed now", str(exc))
        case UnknownCases():
            return Problem(422, "unknown-cases", "Unknown cases", str(exc))
        case InvalidDecision():
            return Problem(422, "invalid-command", "The command is not valid", str(exc))
    raise TypeError(f"no problem for {type(exc).__name__}") from exc


def _not_found(issue_id: uuid.UUID) -> Problem:
    return Problem(404, "not-found", "No such issue", f"no structural issue {issue_id}")


def _conflict(exc: IssueVersionConflict) -> Problem:
    return Problem(
        412,
        "version-conflict",
        "The issue changed meanwhile",
        str(exc),
        headers={"ETag": f'"{exc.actual}"'},
        current_version=exc.actual,
    )
