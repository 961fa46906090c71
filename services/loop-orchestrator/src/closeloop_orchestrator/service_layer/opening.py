"""Responses in, cases out: the batch handler of `response.received.v1` and `response.corrected.v1`.

Per consumer batch and tenant, in one transaction, a handful of statements:
1. The responses are kept in the orchestrator's own copy (`responses`), the latest version of
   each: an upsert that only a newer version passes (`RETURNING` names those). A first version
   answers its customer's pending invitations to the survey (`silence.mark_answered`). A response seen
   before at this version or a later one (a redelivery, a duplicate, a late older correction)
   changes nothing at all, which is what makes the handler idempotent without an inbox.
2. The cases of those responses are read and locked.
3. A response without a case is decided by the tenant's rules (`case_rules.evaluate`, now) and,
   if they open one, assigned (`assignment.assign`) with the workload read once per batch and
   team (account owners of the batch's accounts, open cases per member, the team's round-robin
   turn, locked) and updated as the batch assigns. The cases are inserted in one statement
   (`ON CONFLICT DO NOTHING` on (tenant, response): a duplicate never opens a second), then their
   history, their SLA timers and `case.opened.v1` events.
4. A correction of a response with an active case re-decides it as of the case's opening and
   re-types it (`lifecycle.Retype`: playbook, priority, deadlines, timers) with the corrected
   answer shown on the case. A settled case (resolved, closed) keeps its type; its answer is
   updated. A correction the rules now give no case to leaves an existing case alone.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    CaseOpenedV1,
    CloudEvent,
    Owner,
    ResponseCorrectedV1,
)
from closeloop_common.handlers import Transaction
from closeloop_orchestrator.adapters import bulk
from closeloop_orchestrator.adapters.tables import (
    ACTIVE_STATUSES,
    account_owners,
    case_history,
    cases,
    responses,
    team_turns,
)
from closeloop_orchestrator.domain.assignment import (
    AssignmentStrategy,
    CaseFacts,
    Team,
    Workload,
    assign,
)
from closeloop_orchestrator.domain.case_rules import Answer, CasePlan, evaluate
from closeloop_orchestrator.domain.lifecycle import (
    ACTIVE,
    NothingToChange,
    apply,
    open_case,
)
from closeloop_orchestrator.domain.setup import TenantSetup
from closeloop_orchestrator.metrics import CASES_OPENED
from closeloop_orchestrator.service_layer import case_store, silence, timers
from closeloop_orchestrator.service_layer.setup_store import SetupStore

log = logging.getLogger(__name__)
SYSTEM = "system"
Versioned = tuple[int, Answer]


def version_of(answer: Answer) -> int:
    return answer.version if isinstance(answer, ResponseCorrectedV1) else 1


class ResponseHandler:
    """The consumer's batch handler; `store` gives each tenant's current set-up."""

    def __init__(self, store: SetupStore) -> None:
        self.store = store

    async def __call__(self, tx: Transaction, events: Sequence[CloudEvent[Any]]) -> None:
        by_tenant: dict[str, dict[str, Versioned]] = defaultdict(dict)
        causes: dict[str, CloudEvent[Any]] = {}
        for event in events:
            answer: Answer = event.data
            latest = by_tenant[event.tenantid]
            seen = latest.get(answer.response_id)
            if seen is None or version_of(answer) > seen[0]:
                latest[answer.response_id] = (version_of(answer), answer)
                causes[event.tenantid + "\x00" + answer.response_id] = event
        for tenant_id in sorted(by_tenant):
            loaded = await self.store.current(tx.session, tenant_id)
            await handle_responses(
                tx,
                tenant_id,
                list(by_tenant[tenant_id].values()),
                loaded.setup,
                causes={rid: causes[tenant_id + "\x00" + rid] for rid in by_tenant[tenant_id]},
            )


Causes = Mapping[str, CloudEvent[Any]]
"""The event of each response id (of the version handled): what a case event follows from, whose
trace it continues (`Transaction.emit(..., caused_by=...)`)."""


async def handle_responses(
    tx: Transaction,
    tenant_id: str,
    answers: list[Versioned],
    setup: TenantSetup,
    *,
    causes: Causes | None = None,
) -> None:
    """Steps 1-4 of the module docstring for one tenant's responses (one version each)."""
    session = tx.session
    fresh = await _keep_newer(session, tenant_id, answers)
    if not fresh:
        return
    await silence.mark_answered(
        session, tenant_id, [a for a in fresh.values() if not isinstance(a, ResponseCorrectedV1)]
    )
    ids = sa.bindparam("ids", sorted(fresh), type_=postgresql.ARRAY(sa.Text))
    existing = {
        row.response_id: row
        for row in await session.execute(
            sa.select(cases)
            .where(cases.c.tenant_id == tenant_id, cases.c.response_id == sa.any_(ids))
            .order_by(cases.c.case_id)
            .with_for_update()
        )
    }
    now = tx.clock.now()
    to_open: list[tuple[Answer, CasePlan]] = []
    for response_id in sorted(fresh, key=lambda rid: (fresh[rid].answered_at, rid)):
        answer = fresh[response_id]
        row = existing.get(response_id)
        if row is not None:
            if isinstance(answer, ResponseCorrectedV1):
                await _correct(tx, row, answer, setup, cause=(causes or {}).get(response_id))
            continue
        plan = _plan(setup, answer, tenant_id=tenant_id, opened_at=now)
        if plan is not None:
            to_open.append((answer, plan))
    if to_open:
        await open_cases(tx, tenant_id, to_open, setup, causes=causes)


# Rows in the order given (response ids sorted: concurrent batches lock them in one order).
_KEEP_NEWER = bulk.insert_rows(
    responses,
    then="ON CONFLICT (tenant_id, response_id) DO UPDATE SET version = excluded.version, "
    "answered_at = excluded.answered_at, body = excluded.body "
    "WHERE responses.version < excluded.version RETURNING response_id",
)
_INSERT_CASES = bulk.insert_rows(
    cases, then="ON CONFLICT (tenant_id, response_id) DO NOTHING RETURNING case_id"
).columns(cases.c.case_id)
_INSERT_HISTORY = bulk.insert_rows(case_history)


async def _keep_newer(
    session: AsyncSession, tenant_id: str, answers: list[Versioned]
) -> dict[str, Answer]:
    """Store each response unless its copy is as new already; those stored, by id."""
    ordered = sorted(answers, key=lambda item: item[1].response_id)
    rows = [
        {
            "tenant_id": tenant_id,
            "response_id": answer.response_id,
            "version": version,
            "answered_at": answer.answered_at,
            "body": answer.model_dump(mode="json"),
        }
        for version, answer in ordered
    ]
    stored = set((await session.scalars(_KEEP_NEWER, {"rows": bulk.json_rows(rows)})).all())
    return {a.response_id: a for _, a in ordered if a.response_id in stored}


def _plan(
    setup: TenantSetup, answer: Answer, *, tenant_id: str, opened_at: datetime
) -> CasePlan | None:
    org = setup.organisation
    return evaluate(
        setup.rules,
        answer,
        tenant_id=tenant_id,
        key_accounts=org.key_accounts,
        opened_at=opened_at,
        clock=org.clock(),
        team_clocks=org.team_clocks(),
    )


def answer_columns(answer: Answer) -> dict[str, Any]:
    """What a case shows of its response (the latest version)."""
    return {
        "survey_id": answer.survey_id,
        "customer_id": answer.customer.id,
        "customer": answer.customer.model_dump(mode="json"),
        "account_id": answer.account_id,
        "segments": answer.segments.model_dump(mode="json", exclude_none=True),
        "score": answer.score,
        "category": answer.category.value,
        "comment": answer.comment,
    }


@dataclass
class _TeamState:
    team: Team
    workload: Workload
    turns_start: int


async def open_cases(
    tx: Transaction,
    tenant_id: str,
    planned: list[tuple[Answer, CasePlan]],
    setup: TenantSetup,
    *,
    causes: Causes | None = None,
) -> int:
    """Assign and open the planned cases (step 3); how many were opened. `causes`: the event
    of each response, when a consumer opens them (an admin run has none)."""
    session = tx.session
    org = setup.organisation
    states = await _team_states(session, tenant_id, planned, setup)
    rows: list[dict[str, Any]] = []
    reasons: dict[uuid.UUID, str] = {}
    opened: dict[str, tuple[Answer, CasePlan, Owner, str | None]] = {}
    for answer, plan in planned:
        decision = plan.decision
        state = states[org.team(decision.team_id).id]
        found = assign(
            decision.assignment,
            team=state.team,
            case=CaseFacts(answer.account_id, answer.customer.locale, answer.comment),
            workload=state.workload,
        )
        counts = dict(state.workload.open_cases)
        if found.owner is not None:
            counts[found.owner.id] = counts.get(found.owner.id, 0) + 1
        state.workload = Workload(
            account_owners=state.workload.account_owners,
            open_cases=counts,
            round_robin_counter=found.round_robin_counter,
            directory=state.workload.directory,
        )
        team = state.team
        owner = team.queue_owner() if found.owner is None else found.owner.owner()
        rows.append(
            {
                "tenant_id": tenant_id,
                "case_id": plan.case_id,
                "response_id": answer.response_id,
                **answer_columns(answer),
                "case_type": decision.case_type.value,
                "playbook": decision.playbook.value,
                "priority": decision.priority.value,
                "channel": decision.channel.value,
                "rule": decision.rule,
                "team_id": team.id,
                "queue": found.queue,
                "business_hours": decision.business_hours,
                "owner_id": None if found.owner is None else found.owner.id,
                "owner_name": None if found.owner is None else found.owner.name,
                "owner_email": None if found.owner is None else found.owner.email,
                "key_account": decision.key_account,
                "status": "open",
                "version": 1,
                "opened_at": plan.opened_at,
                "updated_at": plan.opened_at,
                "first_contact_due_at": plan.first_contact_due_at,
                "resolution_due_at": plan.resolution_due_at,
                "contact_attempts": 0,
                "root_causes": [],
                "first_contact_round": 1,
                "resolution_round": 1,
            }
        )
        opened[answer.response_id] = (answer, plan, owner, found.queue)
        reasons[plan.case_id] = "; ".join(
            [decision.reason, f"assigned: {found.reason}", *found.tried]
        )
    inserted = set((await session.scalars(_INSERT_CASES, {"rows": bulk.json_rows(rows)})).all())
    await _store_turns(session, tenant_id, states)
    history: list[dict[str, Any]] = []
    due: list[timers.Scheduled] = []
    for answer, plan, owner, queue in opened.values():
        if plan.case_id not in inserted:
            continue
        decision = plan.decision
        case, transition = open_case(
            case_id=plan.case_id,
            tenant_id=tenant_id,
            playbook=decision.playbook,
            priority=decision.priority,
            owner_id=None if queue is not None else owner.id,
            first_contact_due_at=plan.first_contact_due_at,
            resolution_due_at=plan.resolution_due_at,
            at=plan.opened_at,
            actor=SYSTEM,
        )
        entry = case_store.history_row(transition)
        entry["details"] |= {
            "case_type": decision.case_type.value,
            "channel": decision.channel.value,
            "rule": decision.rule,
            "team_id": org.team(decision.team_id).id,
            "queue": queue,
            "reason": reasons[plan.case_id],
        }
        history.append(entry)
        clock = case_store.clock_of(
            org, team_id=decision.team_id, business_hours=decision.business_hours
        )
        due.append(
            timers.Scheduled(
                tenant_id,
                plan.case_id,
                case_store.opening_timers(case, clock=clock, organisation=org),
            )
        )
        await tx.emit(
            CaseOpenedV1(
                case_id=plan.case_id,
                response_id=answer.response_id,
                survey_id=answer.survey_id,
                customer=answer.customer,
                account_id=answer.account_id,
                score=answer.score,
                category=answer.category,
                comment=answer.comment,
                playbook=decision.playbook,
                owner=owner,
                key_account=decision.key_account,
                opened_at=plan.opened_at,
                first_contact_due_at=plan.first_contact_due_at,
                case_type=decision.case_type,
                priority=decision.priority.value,
                channel=decision.channel.value,
                resolution_due_at=plan.resolution_due_at,
                team_id=org.team(decision.team_id).id,
                queue=queue,
            ),
            tenant_id=tenant_id,
            subject=str(plan.case_id),
            caused_by=(causes or {}).get(answer.response_id),
        )
        CASES_OPENED.labels(case_type=decision.case_type.value).inc()
    if history:
        await session.execute(_INSERT_HISTORY, {"rows": bulk.json_rows(history)})
        await timers.schedule_many(session, due)
    return len(history)


async def _team_states(
    session: AsyncSession,
    tenant_id: str,
    planned: list[tuple[Answer, CasePlan]],
    setup: TenantSetup,
) -> dict[str, _TeamState]:
    """Each team's workload for the batch, read once: account owners of the batch's accounts,
    open cases per member (when a strategy counts them), the round-robin turn (row locked)."""
    org = setup.organisation
    teams: dict[str, Team] = {}
    strategies: dict[str, set[AssignmentStrategy]] = defaultdict(set)
    for _, plan in planned:
        team = org.team(plan.decision.team_id)
        teams[team.id] = team
        strategies[team.id] |= set(plan.decision.assignment)
    accounts = sorted({a.account_id for a, _ in planned if a.account_id is not None})
    owners: dict[str, str] = {}
    if accounts and any(AssignmentStrategy.ACCOUNT_OWNER in s for s in strategies.values()):
        found = await session.execute(
            sa.select(account_owners.c.account_id, account_owners.c.owner_id).where(
                account_owners.c.tenant_id == tenant_id,
                account_owners.c.account_id.in_(accounts),
            )
        )
        owners = {row.account_id: row.owner_id for row in found}
    counting = {AssignmentStrategy.LEAST_LOADED, AssignmentStrategy.LANGUAGE_MATCH}
    members = sorted(
        {m.id for tid, team in teams.items() if strategies[tid] & counting for m in team.members}
    )
    load: dict[str, int] = {}
    if members:
        found = await session.execute(
            sa.select(cases.c.owner_id, sa.func.count())
            .where(
                cases.c.tenant_id == tenant_id,
                cases.c.owner_id.in_(members),
                cases.c.status.in_(ACTIVE_STATUSES),
            )
            .group_by(cases.c.owner_id)
        )
        load = {row[0]: int(row[1]) for row in found}
    turns: dict[str, int] = {}
    rotating = sorted(t for t in teams if AssignmentStrategy.ROUND_ROBIN in strategies[t])
    if rotating:
        await session.execute(
            pg_insert(team_turns)
            .values([{"tenant_id": tenant_id, "team_id": t, "turns": 0} for t in rotating])
            .on_conflict_do_nothing()
        )
        found = await session.execute(
            sa.select(team_turns.c.team_id, team_turns.c.turns)
            .where(team_turns.c.tenant_id == tenant_id, team_turns.c.team_id.in_(rotating))
            .order_by(team_turns.c.team_id)
            .with_for_update()
        )
        turns = {row.team_id: int(row.turns) for row in found}
    return {
        team_id: _TeamState(
            team=team,
            workload=Workload(
                account_owners=owners,
                open_cases=load,
                round_robin_counter=turns.get(team_id, 0),
                directory=org.directory,
            ),
            turns_start=turns.get(team_id, 0),
        )
        for team_id, team in teams.items()
    }


async def _store_turns(
    session: AsyncSession, tenant_id: str, states: dict[str, _TeamState]
) -> None:
    for team_id, state in sorted(states.items()):
        if state.workload.round_robin_counter != state.turns_start:
            await session.execute(
                sa.update(team_turns)
                .where(team_turns.c.tenant_id == tenant_id, team_turns.c.team_id == team_id)
                .values(turns=state.workload.round_robin_counter)
            )


async def _correct(
    tx: Transaction,
    row: Any,
    answer: ResponseCorrectedV1,
    setup: TenantSetup,
    *,
    cause: CloudEvent[Any] | None,
) -> None:
    """Step 4: re-type an active case to its corrected response, or only show the answer."""
    columns = answer_columns(answer)
    case = case_store.case_of(row)
    plan = _plan(setup, answer, tenant_id=row.tenant_id, opened_at=row.opened_at)
    if plan is not None and case.status in ACTIVE:
        decision = plan.decision
        note = (
            f"the customer corrected the answer: score {row.score} -> {answer.score}; "
            f"{decision.reason}"
        )
        try:
            after, transition = apply(
                case,
                plan.retype(note[:4000]),
                expected_version=case.version,
                at=tx.clock.now(),
                actor=SYSTEM,
            )
        except NothingToChange:
            pass
        else:
            columns |= {
                "case_type": decision.case_type.value,
                "channel": decision.channel.value,
                "rule": decision.rule,
                "key_account": decision.key_account,
            }
            await case_store.record(
                tx,
                row,
                after,
                transition,
                organisation=setup.organisation,
                columns=columns,
                caused_by=cause,
            )
            return
    await tx.session.execute(
        sa.update(cases)
        .where(cases.c.tenant_id == row.tenant_id, cases.c.case_id == row.case_id)
        .values(**columns)
    )
