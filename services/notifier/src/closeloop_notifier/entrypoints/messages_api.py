"""The notifier's HTTP API: messages and drafts, opt-outs, and the tenant's messaging settings.

- `GET /v1/messages` (filters), `GET /v1/messages/{id}` (with its parts).
- Drafts (`status=draft`): `GET /v1/drafts`, `PATCH /v1/drafts/{id}` (edit subject and text),
  `POST /v1/drafts/{id}/approve` (optionally with a last edit), `POST /v1/drafts/{id}/discard`.
  Scope `cases:write`; the reviewer recorded is the token's subject. A message that is no longer
  a draft answers 409.
- Opt-outs: `POST /v1/opt-outs`, `DELETE /v1/opt-outs/{email}` (addresses checked and
  normalised; one that is not a single valid mailbox is a 422).
- `GET /v1/settings`, `PUT /v1/settings` (scope `admin`, versioned: `If-Match` with the ETag,
  428 without it, 412 when stale). A field the body leaves out takes the service's default
  (`NOTIFIER_DEFAULT_MESSAGING`). The webhook secret is write-only.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from closeloop_common.db import transaction
from closeloop_common.emails import normalize_email
from closeloop_common.openapi import CONFLICT
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    AdminTenant,
    CasesWriteTenant,
    Problem,
    ReadTenant,
    RequiredIfMatch,
    actor_of,
    expected_version,
)
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.tenant_settings import MessagingSettings
from closeloop_notifier.service_layer import drafts, settings_store
from closeloop_notifier.service_layer.policy import add_opt_out, opt_out_key, remove_opt_out
from closeloop_notifier.service_layer.settings_store import SettingsStore, StaleSettings
from closeloop_notifier.views import (
    MessageStatus,
    list_messages,
    message_detail,
    message_view,
    opt_out_view,
)

Email = Annotated[
    str,
    Field(max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(normalize_email),
]


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email


class DraftEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(None, min_length=1, max_length=250, pattern=r"^[^\x00]*$")
    text: str | None = Field(None, min_length=1, max_length=20_000, pattern=r"^[^\x00]*$")


def _draft_problem(exc: Exception) -> Problem:
    if isinstance(exc, drafts.NotADraft):
        return Problem(409, "not-a-draft", "Not a draft", str(exc), current_status=exc.status)
    return Problem(404, "not-found", "No such draft", "no draft of this tenant has that id")


def build_messages_router(runtime: ServiceRuntime, settings: SettingsStore) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["messages"], responses={**CONFLICT})

    @router.get("/messages", summary="Messages, newest first")
    async def get_messages(
        tenant: ReadTenant,
        case_id: uuid.UUID | None = None,
        response_id: Annotated[str | None, Query(max_length=200)] = None,
        campaign_id: uuid.UUID | None = None,
        kind: Kind | None = None,
        message_status: Annotated[MessageStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            return await list_messages(
                session,
                tenant_id=tenant,
                case_id=case_id,
                response_id=response_id,
                status=message_status,
                kind=kind.value if kind else None,
                campaign_id=campaign_id,
                limit=limit,
            )

    @router.get("/messages/{message_id}", summary="One message with its subject, text and HTML")
    async def get_message(message_id: uuid.UUID, tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await message_detail(session, tenant_id=tenant, message_id=message_id)
        if found is None:
            raise Problem(
                404, "not-found", "No such message", "no message of this tenant has that id"
            )
        return found

    @router.get("/drafts", summary="Replies waiting for their owner's approval, oldest first")
    async def get_drafts(
        tenant: ReadTenant, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await list_messages(session, tenant_id=tenant, status="draft", limit=limit)
        found["messages"].reverse()
        return found

    @router.patch("/drafts/{message_id}", summary="Edit a draft's subject or text")
    async def patch_draft(
        message_id: uuid.UUID, body: DraftEdit, tenant: CasesWriteTenant, request: Request
    ) -> dict[str, Any]:
        try:
            async with runtime.transaction() as tx:
                row = await drafts.edit(
                    tx,
                    tenant,
                    message_id,
                    subject=body.subject,
                    text=body.text,
                    actor=actor_of(request),
                )
        except (drafts.DraftNotFound, drafts.NotADraft) as exc:
            raise _draft_problem(exc) from exc
        return message_view(row)

    @router.post("/drafts/{message_id}/approve", summary="Send a draft (optionally edited)")
    async def approve_draft(
        message_id: uuid.UUID,
        tenant: CasesWriteTenant,
        request: Request,
        body: DraftEdit | None = None,
    ) -> dict[str, Any]:
        edit = body or DraftEdit()
        try:
            async with runtime.transaction() as tx:
                row = await drafts.approve(
                    tx,
                    tenant,
                    message_id,
                    subject=edit.subject,
                    text=edit.text,
                    actor=actor_of(request),
                )
        except (drafts.DraftNotFound, drafts.NotADraft) as exc:
            raise _draft_problem(exc) from exc
        return message_view(row)

    @router.post("/drafts/{message_id}/discard", summary="Throw a draft away: nothing is sent")
    async def discard_draft(
        message_id: uuid.UUID, tenant: CasesWriteTenant, request: Request
    ) -> dict[str, Any]:
        try:
            async with runtime.transaction() as tx:
                row = await drafts.discard(tx, tenant, message_id, actor=actor_of(request))
        except (drafts.DraftNotFound, drafts.NotADraft) as exc:
            raise _draft_problem(exc) from exc
        return message_view(row)

    @router.post(
        "/opt-outs",
        status_code=status.HTTP_201_CREATED,
        summary="Stop messages to an address",
        responses={200: {"description": "The address had opted out already"}},
    )
    async def post_opt_out(
        body: OptOut, tenant: CasesWriteTenant, response: Response
    ) -> dict[str, str]:
        async with transaction(runtime.sessions) as session:
            created = await add_opt_out(
                session=session, tenant_id=tenant, email=body.email, clock=runtime.clock
            )
        if not created:
            response.status_code = status.HTTP_200_OK
        return opt_out_view(tenant, opt_out_key(body.email))

    @router.delete(
        "/opt-outs/{email}", status_code=status.HTTP_204_NO_CONTENT, summary="Allow messages again"
    )
    async def delete_opt_out(email: Email, tenant: CasesWriteTenant) -> None:
        async with transaction(runtime.sessions) as session:
            await remove_opt_out(session=session, tenant_id=tenant, email=email)

    @router.get("/settings", summary="The tenant's messaging settings")
    async def get_settings(tenant: AdminTenant, response: Response) -> dict[str, Any]:
        async with runtime.sessions() as session:
            current, version = await settings_store.load(session, tenant, settings.defaults)
        response.headers["ETag"] = f'"{version}"'
        return {"settings": settings_store.public_form(current), "version": version}

    @router.put("/settings", summary="Store a new version of the messaging settings")
    async def put_settings(
        body: MessagingSettings,
        tenant: AdminTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        # What the body leaves out takes the service's defaults (NOTIFIER_DEFAULT_MESSAGING).
        given = {name: getattr(body, name) for name in body.model_fields_set}
        wanted = settings.defaults.model_copy(update=given)
        try:
            async with runtime.transaction() as tx:
                saved, version = await settings_store.save(
                    tx.session,
                    tenant_id=tenant,
                    settings=wanted,
                    expected_version=expected,
                    actor=actor_of(request),
                    now=tx.clock.now(),
                    defaults=settings.defaults,
                )
        except StaleSettings as exc:
            raise Problem(
                412,
                "version-conflict",
                "The settings changed meanwhile",
                str(exc),
                headers={"ETag": f'"{exc.current}"'},
                current_version=exc.current,
            ) from exc
        settings.forget(tenant)
        response.headers["ETag"] = f'"{version}"'
        return {"settings": settings_store.public_form(saved), "version": version}

    return router
