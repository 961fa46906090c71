"""`/v1/accounts/{account_id}/…`: the actions agreed with a B2B account and its quarterly review
pack. Reads need scope `read`; recording and changing actions need `cases:write` (`admin` is
accepted too, as everywhere).

An action's `ETag` is its version; `PATCH` needs it in `If-Match` (428 without, 412 when stale,
with the current ETag), 409 when its status does not allow the change or it would change nothing,
422 for a change the rules refuse (dropping without a note). The actor is the token's subject.

The review pack (`service_layer/review_pack.py`) asks scoring with the caller's own token; what
scoring cannot answer is null and named in `unavailable`, never a 500. `review.html` is the same
pack as a printable page in Polish or English.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import Field, StringConstraints

from closeloop_common.openapi import CONFLICT
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    CasesWriteTenant,
    Problem,
    ReadTenant,
    RequiredIfMatch,
    actor_of,
    expected_version,
)
from closeloop_orchestrator import account_views, review_html
from closeloop_orchestrator.adapters.scoring_client import ScoringClient
from closeloop_orchestrator.domain.account_actions import (
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    ActionChange,
    ActionStatus,
    ActionTransitionRefused,
    ActionVersionConflict,
    InvalidAction,
    NothingToChange,
)
from closeloop_orchestrator.domain.review import QUARTER_PATTERN, Quarter
from closeloop_orchestrator.entrypoints.bodies import Body, OwnerBody
from closeloop_orchestrator.review_labels import language_of
from closeloop_orchestrator.service_layer import account_actions, review_pack
from closeloop_orchestrator.service_layer.account_actions import (
    ActionNotFound,
    NewAction,
    UnknownIssue,
)
from closeloop_orchestrator.service_layer.setup_store import SetupStore

AccountId = Annotated[str, Path(min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS, pattern=r"\S")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]
QuarterQuery = Annotated[
    str | None,
    Query(
        pattern=QUARTER_PATTERN,
        description="the quarter reviewed, e.g. 2026-Q4 (default: the current one)",
    ),
]


class CreateBody(Body):
    title: Title
    description: Text | None = None
    owner: OwnerBody | None = Field(None, description="who carries it out")
    due_on: date | None = Field(None, description="the day it is due")
    issue_id: uuid.UUID | None = Field(
        None, description="the structural issue it answers (one of the tenant's)"
    )


class PatchBody(Body):
    """The fields given are changed (null clears `description`, `owner`, `due_on`, `note`)."""

    title: Title | None = None
    description: Text | None = None
    owner: OwnerBody | None = None
    due_on: date | None = None
    status: ActionStatus | None = Field(
        None, description="agreed → in_progress → done; dropped (with a `note`) from either"
    )
    note: Text | None = Field(None, description="how it went; required to drop an action")

    def change(self) -> ActionChange:
        given = self.model_fields_set - {"status"}
        fields: dict[str, Any] = {
            name: (
                self.owner.model_dump() if name == "owner" and self.owner else getattr(self, name)
            )
            for name in given
        }
        return ActionChange(fields=fields, status=self.status)


def build_accounts_router(
    runtime: ServiceRuntime, store: SetupStore, scoring: ScoringClient, zone: ZoneInfo
) -> APIRouter:
    """The routes; `zone` is the time zone of the reviews' quarters (local days)."""
    router = APIRouter(
        prefix="/v1/accounts/{account_id}", tags=["accounts"], responses={**CONFLICT}
    )

    async def answer_action(
        tenant: str, account_id: str, action_id: uuid.UUID, response: Response
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await account_views.action(
                session=session, tenant_id=tenant, account_id=account_id, action_id=action_id
            )
        if found is None:
            raise _not_found(account_id, action_id)
        response.headers["ETag"] = f'"{found["version"]}"'
        return found

    @router.post("/actions", status_code=201, summary="Record an action agreed with the account")
    async def create_action(
        account_id: AccountId,
        body: CreateBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
    ) -> dict[str, Any]:
        action_id = uuid.uuid4()
        try:
            async with runtime.transaction() as tx:
                await account_actions.create(
                    tx,
                    tenant_id=tenant,
                    account_id=account_id,
                    action_id=action_id,
                    new=NewAction(
                        title=body.title,
                        description=body.description,
                        owner=None if body.owner is None else body.owner.model_dump(),
                        due_on=body.due_on,
                        issue_id=body.issue_id,
                    ),
                    actor=actor_of(request),
                )
        except UnknownIssue as exc:
            raise Problem(422, "unknown-issue", "Unknown structural issue", str(exc)) from exc
        except InvalidAction as exc:
            raise Problem(422, "invalid-action", "The action is not valid", str(exc)) from exc
        # Percent-encoded: a header holds Latin-1 only, an account id any Unicode text (an
        # account id outside Latin-1 was a 500 after the action had been stored).
        response.headers["Location"] = (
            f"/v1/accounts/{quote(account_id, safe='')}/actions/{action_id}"
        )
        return await answer_action(tenant, account_id, action_id, response)

    @router.get("/actions", summary="The account's actions, the earliest agreed first")
    async def get_actions(
        account_id: AccountId,
        tenant: ReadTenant,
        status: Annotated[list[ActionStatus] | None, Query(max_length=4)] = None,
        limit: Annotated[int, Query(ge=1, le=account_views.MAX_LISTED)] = 100,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            return await account_views.list_actions(
                session=session,
                tenant_id=tenant,
                account_id=account_id,
                status=[s.value for s in status] if status else None,
                limit=limit,
            )

    @router.get("/actions/{action_id}", summary="One action; its ETag is its version")
    async def get_action(
        account_id: AccountId, action_id: uuid.UUID, tenant: ReadTenant, response: Response
    ) -> dict[str, Any]:
        return await answer_action(tenant, account_id, action_id, response)

    @router.patch("/actions/{action_id}", summary="Change an action (If-Match: its ETag)")
    async def patch_action(
        account_id: AccountId,
        action_id: uuid.UUID,
        body: PatchBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        try:
            async with runtime.transaction() as tx:
                await account_actions.change(
                    tx,
                    tenant_id=tenant,
                    account_id=account_id,
                    action_id=action_id,
                    change=body.change(),
                    expected_version=expected,
                    actor=actor_of(request),
                )
        except ActionNotFound as exc:
            raise _not_found(account_id, action_id) from exc
        except ActionVersionConflict as exc:
            raise Problem(
                412,
                "version-conflict",
                "The action changed meanwhile",
                str(exc),
                headers={"ETag": f'"{exc.actual}"'},
                current_version=exc.actual,
            ) from exc
        except ActionTransitionRefused as exc:
            raise Problem(
                409, "invalid-transition", "Not allowed now", str(exc),
                action_status=exc.status.value,
            ) from exc  # fmt: skip
        except NothingToChange as exc:
            raise Problem(409, "nothing-to-change", "Nothing to change", str(exc)) from exc
        except InvalidAction as exc:
            raise Problem(422, "invalid-command", "The change is not valid", str(exc)) from exc
        return await answer_action(tenant, account_id, action_id, response)

    async def pack(
        tenant: str, account_id: str, quarter: str | None, request: Request
    ) -> dict[str, Any]:
        try:
            reviewed = (
                Quarter.at(runtime.clock.now(), zone) if quarter is None else Quarter.parse(quarter)
            )
        except ValueError as exc:
            raise Problem(422, "invalid-quarter", "Invalid quarter", str(exc)) from exc
        return await review_pack.gather(
            runtime=runtime,
            store=store,
            scoring=scoring,
            zone=zone,
            review=review_pack.Review(
                tenant_id=tenant,
                account_id=account_id,
                quarter=reviewed,
                authorization=request.headers.get("authorization", ""),
            ),
        )

    @router.get("/review", summary="The account's quarterly review pack")
    async def get_review(
        account_id: AccountId, tenant: ReadTenant, request: Request, quarter: QuarterQuery = None
    ) -> dict[str, Any]:
        return await pack(tenant, account_id, quarter, request)

    @router.get(
        "/review.html",
        summary="The quarterly review pack as a printable page (Polish or English)",
        response_class=HTMLResponse,
    )
    async def get_review_page(
        account_id: AccountId,
        tenant: ReadTenant,
        request: Request,
        quarter: QuarterQuery = None,
        lang: Annotated[
            str | None,
            Query(pattern="^(pl|en)$", description="default: from Accept-Language, else en"),
        ] = None,
        accept_language: Annotated[str | None, Header(max_length=500)] = None,
    ) -> HTMLResponse:
        found = await pack(tenant, account_id, quarter, request)
        language = language_of(lang, accept_language)
        return HTMLResponse(
            review_html.render(found, language),
            headers={"Content-Language": language, "Vary": "Accept-Language"},
        )

    return router


def _not_found(account_id: str, action_id: uuid.UUID) -> Problem:
    return Problem(
        404, "not-found", "No such action", f"no action {action_id} of account {account_id!r}"
    )
