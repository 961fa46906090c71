"""What the admin API changes: a tenant's stored set-up (versioned), who is away, the account
owners a CRM syncs, and retroactive rule runs.

- `save_part` stores a new version of the organisation or the rules, after checking it against
  the other part as it is now (`TenantSetup`), if the caller's version is still the stored one.
  The consumer picks it up at its next batch (`SetupStore.current`).
- `set_away` changes one person's `away` flag in the organisation (a new version of it).
- `run_rules` runs the rules over the responses answered since a date (`domain/retroactive.py`)
  in pages of `RETRO_PAGE` responses, each its own transaction: the dry run only counts; the real
  run opens, page by page, the cases that do not exist yet (`opening.open_cases`, deadlines from
  now), so a run interrupted half-way is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import ResponseCorrectedV1, ResponseReceivedV1
from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator.adapters.tables import account_owners, cases, responses, tenant_setup
from closeloop_orchestrator.domain.case_rules import Answer, CasePlan, RuleSet, evaluate
from closeloop_orchestrator.domain.retroactive import RetroItem, retroactive
from closeloop_orchestrator.domain.setup import Organisation, TenantSetup
from closeloop_orchestrator.service_layer.opening import open_cases
from closeloop_orchestrator.service_layer.setup_store import Part, SetupStore

RETRO_PAGE = 1_000
SAMPLE = 100  # responses a run report lists


class StaleVersion(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"the stored version is {current}: reload it and retry")
        self.current = current


class SetupRefused(ValueError):
    """The part does not fit the tenant's other part (a rule naming an unknown team...)."""


async def save_part(
    session: AsyncSession,
    store: SetupStore,
    *,
    tenant_id: str,
    part: Part,
    body: Organisation | RuleSet,
    expected_version: int,
    actor: str,
    now: datetime,
) -> int:
    """Store `body` as the next version of `part` if `expected_version` is the current one (0: none
    stored yet); the new version."""
    current = await session.scalar(
        sa.select(tenant_setup.c.version)
        .where(tenant_setup.c.tenant_id == tenant_id, tenant_setup.c.kind == part)
        .with_for_update()
    )
    if (current or 0) != expected_version:
        raise StaleVersion(current or 0)
    loaded = await store.current(session, tenant_id)
    other = {"organisation": loaded.setup.organisation, "rules": loaded.setup.rules}
    other[part] = body
    try:
        TenantSetup.model_validate(other)
    except ValidationError as exc:
        raise SetupRefused(_first_error(exc)) from exc
    version = expected_version + 1
    statement = pg_insert(tenant_setup).values(
        tenant_id=tenant_id,
        kind=part,
        version=version,
        body=body.model_dump(mode="json"),
        updated_at=now,
        updated_by=actor,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[tenant_setup.c.tenant_id, tenant_setup.c.kind],
            set_={
                "version": statement.excluded.version,
                "body": statement.excluded.body,
                "updated_at": statement.excluded.updated_at,
                "updated_by": statement.excluded.updated_by,
            },
        )
    )
    return version


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


async def set_away(
    session: AsyncSession,
    store: SetupStore,
    *,
    tenant_id: str,
    person_id: str,
    away: bool,
    actor: str,
    now: datetime,
) -> int | None:
    """Mark a person away or back in every team and among the people; the organisation's new
    version, or None when nobody has that id."""
    loaded = await store.current(session, tenant_id)
    org = loaded.setup.organisation
    if person_id not in org.directory:
        return None
    data = org.model_dump(mode="json")
    for member in (*data["people"], *(m for team in data["teams"] for m in team["members"])):
        if member["id"] == person_id:
            member["away"] = away
    return await save_part(
        session,
        store,
        tenant_id=tenant_id,
        part="organisation",
        body=Organisation.model_validate(data),
        expected_version=loaded.versions["organisation"],
        actor=actor,
        now=now,
    )


async def sync_account_owners(
    session: AsyncSession,
    *,
    tenant_id: str,
    owners: Sequence[tuple[str, str | None]],
    now: datetime,
) -> tuple[int, int]:
    """Set (owner id) or remove (None) each account's owner; (set, removed)."""
    ordered = sorted(dict(owners).items())
    kept = [(a, o) for a, o in ordered if o is not None]
    gone = [a for a, o in ordered if o is None]
    if kept:
        statement = pg_insert(account_owners).values(
            [
                {"tenant_id": tenant_id, "account_id": a, "owner_id": o, "updated_at": now}
                for a, o in kept
            ]
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[account_owners.c.tenant_id, account_owners.c.account_id],
                set_={
                    "owner_id": statement.excluded.owner_id,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
    if gone:
        await session.execute(
            sa.delete(account_owners).where(
                account_owners.c.tenant_id == tenant_id, account_owners.c.account_id.in_(gone)
            )
        )
    return len(kept), len(gone)


@dataclass
class RunReport:
    since: datetime
    dry_run: bool
    rule: str | None
    would_open: int = 0
    sample: list[RetroItem] = field(default_factory=list)  # the first SAMPLE of them
    opened: int = 0
    already_have_case: int = 0
    no_case_by_rule: int = 0
    other_rule: int = 0
    examined: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "dry_run": self.dry_run,
            "rule": self.rule,
            "examined": self.examined,
            "would_open": self.would_open,
            "opened": self.opened,
            "already_have_case": self.already_have_case,
            "no_case_by_rule": self.no_case_by_rule,
            "other_rule": self.other_rule,
            "sample": [
                {
                    "response_id": item.response_id,
                    "answered_at": item.answered_at,
                    "rule": item.decision.rule,
                    "case_type": item.decision.case_type.value,
                    "priority": item.decision.priority.value,
                    "reason": item.decision.reason,
                }
                for item in self.sample
            ],
        }


def _answer(body: dict[str, Any]) -> Answer:
    if "previous" in body:
        return ResponseCorrectedV1.model_validate(body)
    return ResponseReceivedV1.model_validate(body)


async def run_rules(
    runtime: ServiceRuntime,
    store: SetupStore,
    *,
    tenant_id: str,
    since: datetime,
    rule: str | None,
    dry_run: bool,
) -> RunReport:
    """Run the tenant's current rules (or only `rule`) over its responses since `since`."""
    report = RunReport(since=since, dry_run=dry_run, rule=rule)
    position: tuple[datetime, str] | None = None
    while True:
        async with runtime.transaction() as tx:
            session = tx.session
            query = sa.select(responses.c.response_id, responses.c.answered_at, responses.c.body)
            query = query.where(
                responses.c.tenant_id == tenant_id, responses.c.answered_at >= since
            )
            if position is not None:
                query = query.where(
                    sa.tuple_(responses.c.answered_at, responses.c.response_id)
                    > sa.tuple_(*position)
                )
            page = (
                await session.execute(
                    query.order_by(responses.c.answered_at, responses.c.response_id).limit(
                        RETRO_PAGE
                    )
                )
            ).all()
            if not page:
                return report
            position = (page[-1].answered_at, page[-1].response_id)
            answers = [_answer(row.body) for row in page]
            have = set(
                (
                    await session.scalars(
                        sa.select(cases.c.response_id).where(
                            cases.c.tenant_id == tenant_id,
                            cases.c.response_id.in_([a.response_id for a in answers]),
                        )
                    )
                ).all()
            )
            setup = (await store.current(session, tenant_id)).setup
            org = setup.organisation
            plan = retroactive(
                setup.rules, answers, have, since, key_accounts=org.key_accounts, rule=rule
            )
            report.examined += len(answers)
            report.would_open += len(plan.would_open)
            report.sample += plan.would_open[: SAMPLE - len(report.sample)]
            report.already_have_case += plan.already_have_case
            report.no_case_by_rule += plan.no_case_by_rule
            report.other_rule += plan.other_rule
            if dry_run or not plan.would_open:
                continue
            now = tx.clock.now()
            by_id = {a.response_id: a for a in answers}
            planned: list[tuple[Answer, CasePlan]] = []
            for item in plan.would_open:
                answer = by_id[item.response_id]
                found = evaluate(
                    setup.rules,
                    answer,
                    tenant_id=tenant_id,
                    key_accounts=org.key_accounts,
                    opened_at=now,
                    clock=org.clock(),
                    team_clocks=org.team_clocks(),
                )
                if found is not None:
                    planned.append((answer, found))
            report.opened += await open_cases(tx, tenant_id, planned, setup)
