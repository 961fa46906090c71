"""Running an agent's or a CRM's command on a case (the lifecycle API).

In one transaction: the case's row is locked, the tenant's set-up read, the command judged by
`lifecycle.apply` against the version the caller last saw (a stale copy is a `VersionConflict`),
and the transition recorded (`case_store.record`: row, history, timers, `case.updated.v1`).
A new owner must be someone the tenant's organisation knows; a case sent back to the queue
waits in its team's queue.
"""

from __future__ import annotations

import uuid
from typing import Any

from closeloop_common.events import CaseUpdatedV1
from closeloop_common.handlers import Transaction
from closeloop_orchestrator.domain.case_commands import Claim, Command, InvalidCommand, Reassign
from closeloop_orchestrator.domain.lifecycle import TransitionKind, apply
from closeloop_orchestrator.metrics import CASE_TRANSITIONS, FIRST_CONTACT_SECONDS, FIRST_CONTACTS
from closeloop_orchestrator.service_layer import case_store
from closeloop_orchestrator.service_layer.setup_store import SetupStore


async def run_command(
    tx: Transaction,
    store: SetupStore,
    *,
    tenant_id: str,
    case_id: uuid.UUID,
    command: Command,
    expected_version: int,
    actor: str,
) -> CaseUpdatedV1:
    """Apply `command` to the case; the event that publishes the change. Raises CaseNotFound,
    VersionConflict, InvalidTransition (NothingToChange) or InvalidCommand."""
    session = tx.session
    row = await case_store.load(session, tenant_id=tenant_id, case_id=case_id, for_update=True)
    org = (await store.current(session, tenant_id)).setup.organisation
    columns: dict[str, Any] = {}
    if isinstance(command, Claim | Reassign):
        try:
            case_store.owner_columns(org, command.owner_id)
        except ValueError as exc:
            raise InvalidCommand(str(exc)) from exc
        team_id = row.team_id if row.team_id and org.has_team(row.team_id) else None
        columns["queue"] = None if command.owner_id is not None else org.team(team_id).queue
    after, transition = apply(
        case_store.case_of(row),
        command,
        expected_version=expected_version,
        at=tx.clock.now(),
        actor=actor,
    )
    event = await case_store.record(tx, row, after, transition, organisation=org, columns=columns)
    CASE_TRANSITIONS.labels(transition=transition.kind.value).inc()
    if transition.kind == TransitionKind.CONTACT_LOGGED and transition.details.get("first_contact"):
        waited = (transition.at - row.opened_at).total_seconds()
        FIRST_CONTACT_SECONDS.labels(case_type=row.case_type).observe(max(0.0, waited))
        within = "true" if transition.at <= row.first_contact_due_at else "false"
        FIRST_CONTACTS.labels(case_type=row.case_type, within_sla=within).inc()
    return event
