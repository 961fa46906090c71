"""Cases as stored: a row made a lifecycle `Case`, and an accepted transition written back.

`record` is the one place a change of a case is written: in the caller's transaction it updates
the row (guarded by the version it started from, so a concurrent writer that slipped past the
row lock of another path still cannot overwrite), appends the history entry, adjusts the SLA
timers the transition affects, and queues `case.updated.v1` (`case.no_response_updated.v1` for
a lack-of-response case). Timers per transition:
- a first reached contact cancels the first-contact clock's pending timers;
- a resolution cancels both clocks' timers (it stops both);
- a close with a re-survey schedules the re-survey's timer; a reopen cancels it and restarts the
  resolution clock (a new round) towards the case's resolution deadline;
- a retype (a corrected response) restarts each running clock whose deadline moved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    CaseUpdatedV1,
    CloudEvent,
    ContactAttempt,
    Customer,
    NoResponseCaseUpdatedV1,
    Owner,
)
from closeloop_common.handlers import Transaction
from closeloop_orchestrator.adapters.tables import case_history, cases
from closeloop_orchestrator.domain import silence
from closeloop_orchestrator.domain.business_time import Clockwork, WallTime
from closeloop_orchestrator.domain.case_commands import Priority, ResolutionOutcome
from closeloop_orchestrator.domain.lifecycle import (
    Case,
    CaseStatus,
    Transition,
    TransitionKind,
    VersionConflict,
    first_contact_clock_running,
    playbook_of,
    resolution_clock_running,
)
from closeloop_orchestrator.domain.setup import Organisation
from closeloop_orchestrator.domain.sla import ClockName, Timer, TimerKind, deadline_timers
from closeloop_orchestrator.service_layer import timers


class CaseNotFound(LookupError):
    pass


def case_of(row: Any) -> Case:
    """The lifecycle state of a stored case."""
    return Case(
        id=row.case_id,
        tenant_id=row.tenant_id,
        playbook=playbook_of(row.playbook),
        priority=Priority(row.priority),
        owner_id=row.owner_id,
        status=CaseStatus(row.status),
        version=row.version,
        opened_at=row.opened_at,
        first_contact_due_at=row.first_contact_due_at,
        resolution_due_at=row.resolution_due_at,
        first_contacted_at=row.first_contacted_at,
        contact_attempts=row.contact_attempts,
        resolved_at=row.resolved_at,
        resolution=None if row.resolution is None else ResolutionOutcome(row.resolution),
        closed_at=row.closed_at,
        resurvey_due_at=row.resurvey_due_at,
        root_causes=frozenset(row.root_causes),
    )


def state_columns(case: Case) -> dict[str, Any]:
    """The columns that hold a case's lifecycle state."""
    return {
        "playbook": case.playbook.value,
        "priority": case.priority.value,
        "owner_id": case.owner_id,
        "status": case.status.value,
        "version": case.version,
        "first_contact_due_at": case.first_contact_due_at,
        "resolution_due_at": case.resolution_due_at,
        "first_contacted_at": case.first_contacted_at,
        "contact_attempts": case.contact_attempts,
        "resolved_at": case.resolved_at,
        "resolution": None if case.resolution is None else case.resolution.value,
        "closed_at": case.closed_at,
        "resurvey_due_at": case.resurvey_due_at,
        "root_causes": sorted(case.root_causes),
    }


async def load(
    session: AsyncSession, *, tenant_id: str, case_id: uuid.UUID, for_update: bool
) -> Any:
    """The case's row (locked for the transaction when `for_update`); CaseNotFound otherwise."""
    query = sa.select(cases).where(cases.c.tenant_id == tenant_id, cases.c.case_id == case_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


def history_row(transition: Transition) -> dict[str, Any]:
    return {
        "tenant_id": transition.tenant_id,
        "case_id": transition.case_id,
        "version": transition.version,
        "kind": transition.kind.value,
        "from_status": None if transition.from_status is None else transition.from_status.value,
        "to_status": transition.to_status.value,
        "actor": transition.actor,
        "at": transition.at,
        "note": transition.note,
        "details": {key: _plain(value) for key, value in transition.details.items()},
    }


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def clock_of(organisation: Organisation, *, team_id: str | None, business_hours: bool) -> Clockwork:
    """How a case's clocks count: its team's calendar, the tenant's, or wall time."""
    if not business_hours:
        return WallTime()
    own = organisation.team_clocks().get(team_id or "")
    return own if own is not None else organisation.clock()


@dataclass(frozen=True, slots=True)
class OwnerColumns:
    owner_id: str | None
    owner_name: str | None
    owner_email: str | None


def owner_columns(organisation: Organisation, owner_id: str | None) -> OwnerColumns:
    """The owner's name and address as the case shows them (ValueError: not a known person)."""
    if owner_id is None:
        return OwnerColumns(None, None, None)
    member = organisation.directory.get(owner_id)
    if member is None:
        raise ValueError(f"{owner_id!r} is not a member of any team or a known person")
    return OwnerColumns(member.id, member.name, member.email)


def opening_timers(case: Case, *, clock: Clockwork, organisation: Organisation) -> list[Timer]:
    """The timers of a new case's clocks."""
    policy = organisation.sla.policy()
    found = deadline_timers(
        ClockName.FIRST_CONTACT,
        started_at=case.opened_at,
        deadline=case.first_contact_due_at,
        clock=clock,
        policy=policy,
    )
    if case.resolution_due_at is not None:
        found += deadline_timers(
            ClockName.RESOLUTION,
            started_at=case.opened_at,
            deadline=case.resolution_due_at,
            clock=clock,
            policy=policy,
        )
    return found


async def record(
    tx: Transaction,
    row: Any,
    after: Case,
    transition: Transition,
    *,
    organisation: Organisation,
    columns: dict[str, Any] | None = None,
    caused_by: CloudEvent[Any] | None = None,
) -> CaseUpdatedV1:
    """Write `transition` of the stored case `row` (see the module docstring); its event
    (following from `caused_by` when an event being handled made the change)."""
    session = tx.session
    values = state_columns(after) | {"updated_at": transition.at} | (columns or {})
    if after.owner_id != row.owner_id:
        owner = owner_columns(organisation, after.owner_id)
        values |= {
            "owner_id": owner.owner_id,
            "owner_name": owner.owner_name,
            "owner_email": owner.owner_email,
        }
    rounds = await _adjust_timers(session, row, after, transition, organisation)
    values |= rounds
    result = await session.execute(
        sa.update(cases)
        .where(
            cases.c.tenant_id == row.tenant_id,
            cases.c.case_id == row.case_id,
            cases.c.version == transition.version - 1,
        )
        .values(**values)
        .returning(*cases.c)
    )
    stored = result.one_or_none()
    if stored is None:
        raise VersionConflict(expected=transition.version - 1, actual=row.version + 1)
    await session.execute(sa.insert(case_history).values(history_row(transition)))
    event = updated_event(stored, transition)
    await tx.emit(event, tenant_id=row.tenant_id, subject=str(row.case_id), caused_by=caused_by)
    return event


async def _adjust_timers(
    session: AsyncSession,
    row: Any,
    after: Case,
    transition: Transition,
    organisation: Organisation,
) -> dict[str, int]:
    """Cancel and schedule the timers `transition` affects; the clock rounds to store."""
    tenant, case_id, at = row.tenant_id, row.case_id, transition.at

    async def cancel(*clocks: ClockName) -> None:
        for name in clocks:
            await timers.cancel(session, tenant_id=tenant, case_id=case_id, clock=name, at=at)

    clock = clock_of(organisation, team_id=row.team_id, business_hours=row.business_hours)
    policy = organisation.sla.policy()
    rounds: dict[str, int] = {}
    match transition.kind:
        case TransitionKind.CONTACT_LOGGED if transition.details.get("first_contact"):
            await cancel(ClockName.FIRST_CONTACT)
        case TransitionKind.RESOLVED:
            await cancel(ClockName.FIRST_CONTACT, ClockName.RESOLUTION)
        case TransitionKind.CLOSED if after.resurvey_due_at is not None:
            due = Timer(ClockName.RESURVEY, TimerKind.DUE, 0, after.resurvey_due_at, "customer")
            await timers.schedule(
                session, tenant_id=tenant, case_id=case_id, found=[due], clock_round=after.version
            )
        case TransitionKind.REOPENED:
            await cancel(ClockName.RESURVEY)
            if after.resolution_due_at is not None:
                rounds["resolution_round"] = row.resolution_round + 1
                await timers.schedule(
                    session,
                    tenant_id=tenant,
                    case_id=case_id,
                    found=deadline_timers(
                        ClockName.RESOLUTION,
                        started_at=at,
                        deadline=after.resolution_due_at,
                        clock=clock,
                        policy=policy,
                    ),
                    clock_round=rounds["resolution_round"],
                )
        case TransitionKind.RETYPED:
            restarts = (
                (
                    ClockName.FIRST_CONTACT,
                    "first_contact_round",
                    after.first_contact_due_at,
                    row.first_contact_due_at,
                    first_contact_clock_running(after),
                ),
                (
                    ClockName.RESOLUTION,
                    "resolution_round",
                    after.resolution_due_at,
                    row.resolution_due_at,
                    resolution_clock_running(after) or after.resolution_due_at is None,
                ),
            )
            for name, round_column, deadline, before, running in restarts:
                if deadline == before or not running:
                    continue
                await cancel(name)
                if deadline is None:
                    continue
                rounds[round_column] = getattr(row, round_column) + 1
                await timers.schedule(
                    session,
                    tenant_id=tenant,
                    case_id=case_id,
                    found=deadline_timers(
                        name,
                        started_at=after.opened_at,
                        deadline=deadline,
                        clock=clock,
                        policy=policy,
                    ),
                    clock_round=rounds[round_column],
                )
        case _:
            pass
    return rounds


def owner_of(row: Any) -> Owner | None:
    if row.owner_id is None:
        return None
    return Owner(id=row.owner_id, name=row.owner_name, email=row.owner_email)


def updated_event(row: Any, transition: Transition) -> CaseUpdatedV1:
    """`case.updated.v1` of a transition, with the case as stored after it (`row`)."""
    contact = None
    if transition.kind == TransitionKind.CONTACT_LOGGED:
        contact = ContactAttempt(
            channel=str(transition.details["channel"]),
            outcome=str(transition.details["outcome"]),
        )
    assert transition.from_status is not None
    fields: dict[str, Any] = {"case_type": row.case_type, "playbook": row.playbook}
    contract: type[CaseUpdatedV1] = CaseUpdatedV1
    if row.case_type == silence.CASE_TYPE:
        contract = NoResponseCaseUpdatedV1
        fields["invitation_id"] = row.invitation_id
    return contract(
        **fields,
        case_id=row.case_id,
        response_id=row.response_id,
        customer=Customer.model_validate(row.customer),
        account_id=row.account_id,
        transition=transition.kind.value,
        status_before=transition.from_status.value,
        status=row.status,
        version=row.version,
        actor=transition.actor,
        at=transition.at,
        note=transition.note,
        contact=contact,
        outcome=row.resolution,
        priority=row.priority,
        channel=row.channel,
        team_id=row.team_id,
        queue=row.queue,
        owner=owner_of(row),
        root_causes=tuple(row.root_causes),
        first_contact_due_at=row.first_contact_due_at,
        resolution_due_at=row.resolution_due_at,
        first_contacted_at=row.first_contacted_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        resurvey_due_at=row.resurvey_due_at,
    )
