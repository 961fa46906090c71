"""Open cases with their SLA timers, bulk-loaded for `make bench-orchestrator`'s watcher part.

`load_open_cases` writes cases as the orchestrator stores them, with COPY: each answer of a
`ResponseFeed` is decided by its tenant's rules (`case_rules.decide`: type, priority, channel,
team, SLA lengths), owned by a member of the team in turn, and opened so that its first-contact
deadline is the one asked for (`opened_at` = deadline - the rule's first-contact time, in wall
time). Its timers are those `case_store.opening_timers` makes for the case (warning, breach, two
escalations per clock, counted in the case's calendar); a timer due before `fired_before` is
stored fired (at its due time), as the watcher would have left it. The answers, history and
outbox rows of these cases are not written: the watcher reads none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from closeloop_common.events import ResponseReceivedV1
from closeloop_orchestrator.adapters.tables import SCHEMA, cases, timers
from closeloop_orchestrator.domain.case_rules import decide
from closeloop_orchestrator.domain.lifecycle import open_case
from closeloop_orchestrator.domain.rules import case_id_for
from closeloop_orchestrator.domain.setup import TenantSetup
from closeloop_orchestrator.service_layer import case_store

CHUNK = 20_000
CASE_COLUMNS = [column.name for column in cases.columns]
TIMER_COLUMNS = [column.name for column in timers.columns]


def case_rows(
    n: int, answer: ResponseReceivedV1, tenant: str, setup: TenantSetup, *, deadline: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row of the n-th case (the response id is made unique by `n`) and its timers' rows."""
    org = setup.organisation
    decision = decide(setup.rules, answer, key_accounts=org.key_accounts)
    if decision is None:
        raise ValueError("the bench's rules open a case for every response")
    opened = deadline - decision.first_contact_within
    resolution = decision.resolution_within
    team = org.team(decision.team_id)
    owner = team.members[n % len(team.members)]
    response_id = f"{answer.response_id}-{n}"
    case, _ = open_case(
        case_id=case_id_for(tenant_id=tenant, response_id=response_id),
        tenant_id=tenant,
        playbook=decision.playbook,
        priority=decision.priority,
        owner_id=owner.id,
        first_contact_due_at=deadline,
        resolution_due_at=None if resolution is None else opened + resolution,
        at=opened,
    )
    clock = case_store.clock_of(
        org, team_id=decision.team_id, business_hours=decision.business_hours
    )
    row = {
        "tenant_id": tenant,
        "case_id": case.id,
        "response_id": response_id,
        "survey_id": answer.survey_id,
        "customer_id": answer.customer.id,
        "customer": answer.customer.model_dump_json(),
        "account_id": answer.account_id,
        "segments": answer.segments.model_dump_json(exclude_none=True),
        "score": answer.score,
        "category": answer.category.value,
        "comment": answer.comment,
        "case_type": decision.case_type.value,
        "playbook": decision.playbook.value,
        "priority": decision.priority.value,
        "channel": decision.channel.value,
        "rule": decision.rule,
        "team_id": team.id,
        "business_hours": decision.business_hours,
        "owner_id": owner.id,
        "owner_name": owner.name,
        "owner_email": owner.email,
        "key_account": decision.key_account,
        "status": "open",
        "version": 1,
        "opened_at": opened,
        "updated_at": opened,
        "first_contact_due_at": case.first_contact_due_at,
        "resolution_due_at": case.resolution_due_at,
        "contact_attempts": 0,
        "root_causes": [],
        "first_contact_round": 1,
        "resolution_round": 1,
    }
    timer_rows = [
        {
            "tenant_id": tenant,
            "case_id": case.id,
            "clock": timer.clock.value,
            "kind": timer.kind.value,
            "step": timer.step,
            "round": 1,
            "due_at": timer.due_at,
            "to_role": timer.to,
        }
        for timer in case_store.opening_timers(case, clock=clock, organisation=org)
    ]
    return row, timer_rows


async def load_open_cases(
    conn: asyncpg.Connection,
    answers: Iterable[tuple[ResponseReceivedV1, str]],
    setups: Mapping[str, TenantSetup],
    *,
    deadline: Callable[[int], datetime],
    fired_before: datetime,
) -> tuple[list[uuid.UUID], int]:
    """COPY a case per answer (the n-th due at `deadline(n)`) and its timers; (case ids, timers)."""
    ids: list[uuid.UUID] = []
    case_records: list[tuple[Any, ...]] = []
    timer_records: list[tuple[Any, ...]] = []
    stored = 0

    async def flush() -> None:
        await conn.copy_records_to_table(
            cases.name, schema_name=SCHEMA, columns=CASE_COLUMNS, records=case_records
        )
        await conn.copy_records_to_table(
            timers.name, schema_name=SCHEMA, columns=TIMER_COLUMNS, records=timer_records
        )
        case_records.clear()
        timer_records.clear()

    for n, (answer, tenant) in enumerate(answers):
        row, timer_rows = case_rows(n, answer, tenant, setups[tenant], deadline=deadline(n))
        ids.append(row["case_id"])
        case_records.append(tuple(row.get(name) for name in CASE_COLUMNS))
        for timer in timer_rows:
            due = timer["due_at"]
            timer["fired_at"] = due if due < fired_before else None
            timer_records.append(tuple(timer.get(name) for name in TIMER_COLUMNS))
        stored += len(timer_rows)
        if len(case_records) >= CHUNK:
            await flush()
    await flush()
    return ids, stored
