"""`/v1/cases`: list and read cases and their history (scope `read`), and the lifecycle commands
an agent's tool or a CRM sends (scope `cases:write`).

Optimistic concurrency: a case's `ETag` is its version (`"7"`). Every command must send it back
in `If-Match`; a missing `If-Match` is refused with 428, a stale one with 412 (the current ETag
in the answer's header), so two agents cannot overwrite each other. The actor recorded in the
history is the verified token's subject, never a value the caller puts in the body.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from closeloop_common.events import SEGMENT_ATTRIBUTES
from closeloop_common.openapi import BAD_REQUEST, CONFLICT
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    CasesWriteTenant,
    Problem,
    ReadTenant,
    RequiredIfMatch,
    actor_of,
    expected_version,
)
from closeloop_orchestrator import views
from closeloop_orchestrator.domain.case_commands import (
    MAX_NOTE_CHARS,
    MAX_RESURVEY_DAYS,
    MAX_ROOT_CAUSES,
    MAX_TAG_CHARS,
    MIN_RESURVEY_DAYS,
    AddRootCauses,
    Claim,
    Close,
    Command,
    ContactChannel,
    ContactOutcome,
    InvalidCommand,
    LogContact,
    Priority,
    Reassign,
    Reopen,
    ResolutionOutcome,
    Resolve,
)
from closeloop_orchestrator.domain.lifecycle import (
    CaseStatus,
    InvalidTransition,
    NothingToChange,
    VersionConflict,
)
from closeloop_orchestrator.service_layer.case_store import CaseNotFound
from closeloop_orchestrator.service_layer.commands import run_command
from closeloop_orchestrator.service_layer.setup_store import SetupStore

Note = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTE_CHARS, pattern=r"\S")]
PersonId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"\S")]
Tag = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_TAG_CHARS, pattern=r"^\s*[\w\- ]*\w[\w\- ]*\s*$"
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Body):
    owner_id: PersonId | None = Field(None, description="whom for; default: the caller")
    note: Note | None = None


class ReassignBody(_Body):
    owner_id: PersonId | None = Field(description="the new owner; null: back to the team's queue")
    note: Note


class ContactBody(_Body):
    channel: ContactChannel
    outcome: ContactOutcome
    note: Note | None = Field(None, description="required when the customer was reached")


class RootCausesBody(_Body):
    tags: list[Tag] = Field(min_length=1, max_length=MAX_ROOT_CAUSES)


class ResolveBody(_Body):
    outcome: ResolutionOutcome
    note: Note


class CloseBody(_Body):
    note: Note
    resurvey_after_days: int | None = Field(
        None,
        ge=MIN_RESURVEY_DAYS,
        le=MAX_RESURVEY_DAYS,
        description="ask the customer again this many days after closing",
    )


class ReopenBody(_Body):
    note: Note
    resolution_due_at: AwareDatetime | None = Field(
        None, description="a new resolution deadline; default: the case's previous one"
    )


def build_cases_router(runtime: ServiceRuntime, store: SetupStore) -> APIRouter:
    router = APIRouter(prefix="/v1/cases", tags=["cases"], responses={**BAD_REQUEST, **CONFLICT})

    @router.get("", summary="Cases, key accounts and the nearest first-contact deadline first")
    async def get_cases(
        tenant: ReadTenant,
        status: Annotated[list[CaseStatus] | None, Query(max_length=5)] = None,
        owner_id: Annotated[str | None, Query(max_length=100)] = None,
        queue: Annotated[str | None, Query(max_length=100)] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        case_type: Literal["detractor", "passive", "promoter", "no_response"] | None = None,
        priority: Annotated[list[Priority] | None, Query(max_length=4)] = None,
        overdue: bool | None = None,
        account_id: Annotated[str | None, Query(max_length=200)] = None,
        survey_id: Annotated[str | None, Query(max_length=200)] = None,
        response_id: Annotated[str | None, Query(max_length=200)] = None,
        key_account: bool | None = None,
        product: Annotated[str | None, Query(max_length=100)] = None,
        region: Annotated[str | None, Query(max_length=100)] = None,
        channel: Annotated[str | None, Query(max_length=100)] = None,
        touchpoint: Annotated[str | None, Query(max_length=100)] = None,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        given = {"product": product, "region": region, "channel": channel, "touchpoint": touchpoint}
        filters = views.CaseFilter(
            status=[s.value for s in status] if status else None,
            owner_id=owner_id,
            queue=queue,
            team_id=team_id,
            case_type=case_type,
            priority=[p.value for p in priority] if priority else None,
            overdue=overdue,
            account_id=account_id,
            survey_id=survey_id,
            response_id=response_id,
            key_account=key_account,
            segments=tuple(
                (d, value) for d in SEGMENT_ATTRIBUTES if (value := given[d]) is not None
            ),
        )
        try:
            async with runtime.sessions() as session:
                return await views.list_cases(
                    session=session,
                    tenant_id=tenant,
                    filters=filters,
                    now=runtime.clock.now(),
                    limit=limit,
                    cursor=cursor,
                )
        except views.BadCursor as exc:
            raise Problem(400, "bad-cursor", "Bad cursor", str(exc)) from exc

    @router.get("/{case_id}", summary="One case; its ETag is its version")
    async def get_case(
        case_id: uuid.UUID, tenant: ReadTenant, response: Response
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await views.case(session=session, tenant_id=tenant, case_id=case_id)
        if found is None:
            raise _not_found(case_id)
        response.headers["ETag"] = f'"{found["version"]}"'
        return found

    @router.get("/{case_id}/history", summary="Every transition of a case, oldest first")
    async def get_history(case_id: uuid.UUID, tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            entries = await views.history(session=session, tenant_id=tenant, case_id=case_id)
        if not entries:
            raise _not_found(case_id)
        return {"case_id": case_id, "history": entries}

    async def command(
        request: Request,
        response: Response,
        tenant: str,
        case_id: uuid.UUID,
        if_match: str | None,
        make: Any,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        try:
            order: Command = make()
            async with runtime.transaction() as tx:
                await run_command(
                    tx,
                    store,
                    tenant_id=tenant,
                    case_id=case_id,
                    command=order,
                    expected_version=expected,
                    actor=actor_of(request),
                )
        except CaseNotFound as exc:
            raise _not_found(case_id) from exc
        except VersionConflict as exc:
            raise Problem(
                412,
                "version-conflict",
                "The case changed meanwhile",
                str(exc),
                headers={"ETag": f'"{exc.actual}"'},
                current_version=exc.actual,
            ) from exc
        except NothingToChange as exc:
            raise Problem(409, "nothing-to-change", "Nothing to change", str(exc)) from exc
        except InvalidTransition as exc:
            raise Problem(
                409,
                "invalid-transition",
                "Not allowed now",
                str(exc),
                case_status=exc.status.value,
            ) from exc
        except InvalidCommand as exc:
            raise Problem(422, "invalid-command", "The command is not valid", str(exc)) from exc
        async with runtime.sessions() as session:
            found = await views.case(session=session, tenant_id=tenant, case_id=case_id)
        assert found is not None
        response.headers["ETag"] = f'"{found["version"]}"'
        return found

    @router.post("/{case_id}/claim", summary="Take a case (for yourself, or for `owner_id`)")
    async def claim(
        case_id: uuid.UUID,
        body: ClaimBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        def make() -> Command:
            owner = body.owner_id or request.state.principal.subject
            if owner is None:
                raise InvalidCommand("this token names nobody: send owner_id")
            return Claim(owner_id=owner, note=body.note)

        return await command(request, response, tenant, case_id, if_match, make)

    @router.post("/{case_id}/reassign", summary="Give a case to someone else, or to the queue")
    async def reassign(
        case_id: uuid.UUID,
        body: ReassignBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request,
            response,
            tenant,
            case_id,
            if_match,
            lambda: Reassign(owner_id=body.owner_id, note=body.note),
        )

    @router.post("/{case_id}/contacts", summary="Log a contact attempt (reached stops the clock)")
    async def log_contact(
        case_id: uuid.UUID,
        body: ContactBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request,
            response,
            tenant,
            case_id,
            if_match,
            lambda: LogContact(channel=body.channel, outcome=body.outcome, note=body.note),
        )

    @router.post("/{case_id}/root-causes", summary="Add root-cause tags (they feed drivers)")
    async def add_root_causes(
        case_id: uuid.UUID,
        body: RootCausesBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request, response, tenant, case_id, if_match, lambda: AddRootCauses(tags=body.tags)
        )

    @router.post("/{case_id}/resolve", summary="Record the outcome (stops both clocks)")
    async def resolve(
        case_id: uuid.UUID,
        body: ResolveBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request,
            response,
            tenant,
            case_id,
            if_match,
            lambda: Resolve(outcome=body.outcome, note=body.note),
        )

    @router.post("/{case_id}/close", summary="Close a resolved case; maybe schedule a re-survey")
    async def close(
        case_id: uuid.UUID,
        body: CloseBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request,
            response,
            tenant,
            case_id,
            if_match,
            lambda: Close(note=body.note, resurvey_after_days=body.resurvey_after_days),
        )

    @router.post("/{case_id}/reopen", summary="Reopen a resolved or closed case")
    async def reopen(
        case_id: uuid.UUID,
        body: ReopenBody,
        tenant: CasesWriteTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await command(
            request,
            response,
            tenant,
            case_id,
            if_match,
            lambda: Reopen(note=body.note, resolution_due_at=body.resolution_due_at),
        )

    return router


def _not_found(case_id: uuid.UUID) -> Problem:
    return Problem(404, "not-found", "No such case", f"no case {case_id}")
