"""Admin API (scope `admin`): a tenant's set-up (organisation and case rules, versioned, with
ETags), people away and back, the account-owner mapping a CRM syncs, and retroactive rule runs.

`GET /v1/setup/{part}` answers the part in force and where it comes from (`api`, `file`,
`settings`), with the stored version as ETag (`"0"`: none stored yet). `PUT` stores a new
version if `If-Match` names the current one (428 without it, 412 when stale); a part that does
not fit the other (a rule naming an unknown team) is refused with 422. The consumer applies a
saved part from its next batch on, in every replica: no restart.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    AdminTenant,
    Problem,
    ReadTenant,
    RequiredIfMatch,
    actor_of,
    expected_version,
)
from closeloop_orchestrator import views
from closeloop_orchestrator.domain.case_rules import RuleName, RuleSet
from closeloop_orchestrator.domain.setup import Organisation
from closeloop_orchestrator.service_layer import admin
from closeloop_orchestrator.service_layer.setup_store import Part, SetupStore

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PersonId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AwayBody(_Body):
    away: bool


class AccountOwner(_Body):
    account_id: AccountId
    owner_id: PersonId | None = Field(description="null removes the account's owner")


class AccountOwnersBody(_Body):
    owners: list[AccountOwner] = Field(min_length=1, max_length=10_000)


class RunBody(_Body):
    since: AwareDatetime = Field(description="responses answered at or after this")
    rule: RuleName | None = Field(None, description="only what this rule decides")
    dry_run: bool = Field(True, description="report what would open, open nothing")


def build_admin_router(runtime: ServiceRuntime, store: SetupStore) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["admin"])

    async def read_part(tenant: str, part: Part, response: Response) -> dict[str, Any]:
        async with runtime.sessions() as session:
            loaded = await store.current(session, tenant)
        response.headers["ETag"] = f'"{loaded.versions[part]}"'
        body = getattr(loaded.setup, part)
        return {
            part: body.model_dump(mode="json"),
            "version": loaded.versions[part],
            "source": loaded.sources[part],
        }

    async def write_part(
        tenant: str,
        part: Part,
        body: Organisation | RuleSet,
        if_match: str | None,
        request: Request,
        response: Response,
    ) -> dict[str, Any]:
        expected = expected_version(if_match)
        try:
            async with runtime.transaction() as tx:
                version = await admin.save_part(
                    tx.session,
                    store,
                    tenant_id=tenant,
                    part=part,
                    body=body,
                    expected_version=expected,
                    actor=actor_of(request),
                    now=tx.clock.now(),
                )
        except admin.StaleVersion as exc:
            raise Problem(
                412,
                "version-conflict",
                "The set-up changed meanwhile",
                str(exc),
                headers={"ETag": f'"{exc.current}"'},
                current_version=exc.current,
            ) from exc
        except admin.SetupRefused as exc:
            raise Problem(422, "setup-refused", "The set-up does not fit", str(exc)) from exc
        response.headers["ETag"] = f'"{version}"'
        return {part: body.model_dump(mode="json"), "version": version, "source": "api"}

    @router.get("/setup/organisation", summary="Teams, people, calendars, SLA escalation")
    async def get_organisation(tenant: AdminTenant, response: Response) -> dict[str, Any]:
        return await read_part(tenant, "organisation", response)

    @router.put("/setup/organisation", summary="Store a new version of the organisation")
    async def put_organisation(
        body: Organisation,
        tenant: AdminTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await write_part(tenant, "organisation", body, if_match, request, response)

    @router.get("/setup/rules", summary="The case rules in force")
    async def get_rules(tenant: AdminTenant, response: Response) -> dict[str, Any]:
        return await read_part(tenant, "rules", response)

    @router.put("/setup/rules", summary="Store a new version of the case rules")
    async def put_rules(
        body: RuleSet,
        tenant: AdminTenant,
        request: Request,
        response: Response,
        if_match: RequiredIfMatch = None,
    ) -> dict[str, Any]:
        return await write_part(tenant, "rules", body, if_match, request, response)

    @router.post(
        "/setup/rules/run",
        summary="Run the rules over past responses (dry run: report what would open)",
    )
    async def run_rules(body: RunBody, tenant: AdminTenant) -> dict[str, Any]:
        report = await admin.run_rules(
            runtime, store, tenant_id=tenant, since=body.since, rule=body.rule, dry_run=body.dry_run
        )
        return report.json()

    @router.put("/people/{person_id}/away", summary="Mark someone away (skipped) or back")
    async def put_away(
        person_id: PersonId, body: AwayBody, tenant: AdminTenant, request: Request
    ) -> dict[str, Any]:
        async with runtime.transaction() as tx:
            version = await admin.set_away(
                tx.session,
                store,
                tenant_id=tenant,
                person_id=person_id,
                away=body.away,
                actor=actor_of(request),
                now=tx.clock.now(),
            )
        if version is None:
            raise Problem(404, "not-found", "No such person", f"nobody has the id {person_id!r}")
        return {"person_id": person_id, "away": body.away, "organisation_version": version}

    @router.put("/account-owners", summary="Set or remove account owners (a CRM's sync)")
    async def put_account_owners(body: AccountOwnersBody, tenant: AdminTenant) -> dict[str, Any]:
        async with runtime.transaction() as tx:
            kept, removed = await admin.sync_account_owners(
                tx.session,
                tenant_id=tenant,
                owners=[(o.account_id, o.owner_id) for o in body.owners],
                now=tx.clock.now(),
            )
        return {"set": kept, "removed": removed}

    @router.get("/account-owners", summary="Account owners, by account id")
    async def get_account_owners(
        tenant: ReadTenant,
        after: Annotated[AccountId | None, Query(description="the last account id seen")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            return await views.account_owners_page(
                session=session, tenant_id=tenant, after=after, limit=limit
            )

    return router
