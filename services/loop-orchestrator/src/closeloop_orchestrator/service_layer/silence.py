"""Invitations in, lack-of-response cases out (see `domain/silence.py`).

- `InvitationHandler` (batch handler of `invitation.sent.v1`) keeps each invitation once
  (`ON CONFLICT DO NOTHING`: a redelivery changes nothing, so no inbox row is needed), with the
  moment it would open a lack-of-response case (`silence_due_at`) when it went to a key contact of
  a key account. An invitation whose answer the orchestrator has already seen (a response of the
  same customer to the same survey, answered at or after the invitation: events of different
  partitions can arrive in either order) is stored answered.
- `mark_answered` (called by the response handler in its transaction) marks the customer's
  unanswered invitations to that survey sent at or before the answer as answered.
- `SilenceWatcher` (a worker on every replica) takes invitations whose silence is due and still
  unanswered, oldest first, with `FOR UPDATE SKIP LOCKED` (replicas share the work; none is
  taken twice), re-checks them against the tenant's set-up of that moment, and opens one case
  per silent contact: owned by the account's owner (`PUT /v1/account-owners`) when that person
  is known, else waiting in the queue of `silence.team_id` (the default team). A contact whose
  lack-of-response case is still active gets no second case: the invitation joins it. The case,
  its history, its first-contact SLA timers and `case.no_response_opened.v1` commit together
  with the invitation's link to it. Time is the runtime's injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    CloudEvent,
    Customer,
    InvitationSentV1,
    NoResponseCaseOpenedV1,
    Owner,
)
from closeloop_common.handlers import Transaction
from closeloop_common.identifiers import NO_RESPONSE_CASE_NAMESPACE
from closeloop_common.loop import repeat
from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator.adapters import bulk
from closeloop_orchestrator.adapters.tables import (
    ACTIVE_STATUSES,
    account_owners,
    case_history,
    cases,
    invitations,
    responses,
)
from closeloop_orchestrator.domain import silence
from closeloop_orchestrator.domain.case_rules import Answer
from closeloop_orchestrator.domain.lifecycle import Outreach, open_case
from closeloop_orchestrator.domain.setup import Organisation
from closeloop_orchestrator.metrics import CASES_OPENED
from closeloop_orchestrator.service_layer import case_store, timers
from closeloop_orchestrator.service_layer.setup_store import SetupStore

log = logging.getLogger(__name__)
SYSTEM = "system"
# Case ids are derived, so a case opened again for the same invitation has the same id.
CASE_NAMESPACE = NO_RESPONSE_CASE_NAMESPACE

_INSERT_INVITATIONS = bulk.insert_rows(
    invitations, then="ON CONFLICT (tenant_id, invitation_id) DO NOTHING"
)


class InvitationHandler:
    """The consumer's batch handler of `invitation.sent.v1`."""

    def __init__(self, store: SetupStore) -> None:
        self.store = store

    async def __call__(self, tx: Transaction, events: Sequence[CloudEvent[Any]]) -> None:
        by_tenant: dict[str, dict[str, InvitationSentV1]] = defaultdict(dict)
        for event in events:
            invitation: InvitationSentV1 = event.data
            by_tenant[event.tenantid].setdefault(invitation.invitation_id, invitation)
        for tenant_id in sorted(by_tenant):
            loaded = await self.store.current(tx.session, tenant_id)
            await store_invitations(
                tx.session,
                tenant_id,
                list(by_tenant[tenant_id].values()),
                loaded.setup.organisation,
            )


async def store_invitations(
    session: AsyncSession,
    tenant_id: str,
    sent: Sequence[InvitationSentV1],
    organisation: Organisation,
) -> None:
    answers = await _answers_seen(session, tenant_id, sent)
    rows = []
    for invitation in sorted(sent, key=lambda i: i.invitation_id):
        answer = _first_answer(answers.get(invitation.customer.id, ()), invitation)
        rows.append(
            {
                "tenant_id": tenant_id,
                "invitation_id": invitation.invitation_id,
                "survey_id": invitation.survey_id,
                "customer_id": invitation.customer.id,
                "customer": invitation.customer.model_dump(mode="json"),
                "account_id": invitation.account_id,
                "channel": invitation.channel,
                "attributes": dict(invitation.attributes),
                "invited_at": invitation.invited_at,
                "answered_at": None if answer is None else answer[1],
                "response_id": None if answer is None else answer[2],
                "silence_due_at": silence.silence_due(
                    organisation.silence,
                    key_accounts=organisation.key_accounts,
                    account_id=invitation.account_id,
                    attributes=invitation.attributes,
                    invited_at=invitation.invited_at,
                ),
                "silence_case_id": None,
            }
        )
    await session.execute(_INSERT_INVITATIONS, {"rows": bulk.json_rows(rows)})


Seen = tuple[str, datetime, str]  # survey, answered at, response id
# Written as the index `ix_responses_customer` is (constants, not parameters), so it is used.
_RESPONSE_CUSTOMER = sa.literal_column("(body -> 'customer' ->> 'id')", sa.Text)


async def _answers_seen(
    session: AsyncSession, tenant_id: str, sent: Sequence[InvitationSentV1]
) -> dict[str, list[Seen]]:
    """The responses already kept of the invitations' customers, by customer."""
    customers = sorted({i.customer.id for i in sent})
    found = await session.execute(
        sa.select(
            _RESPONSE_CUSTOMER.label("customer_id"),
            sa.literal_column("(body ->> 'survey_id')").label("survey_id"),
            responses.c.answered_at,
            responses.c.response_id,
        ).where(
            responses.c.tenant_id == tenant_id,
            sa.any_(sa.bindparam("customers", customers, type_=postgresql.ARRAY(sa.Text)))
            == _RESPONSE_CUSTOMER,
        )
    )
    by_customer: dict[str, list[Seen]] = defaultdict(list)
    for row in found:
        by_customer[row.customer_id].append((row.survey_id, row.answered_at, row.response_id))
    return by_customer


def _first_answer(seen: Sequence[Seen], invitation: InvitationSentV1) -> Seen | None:
    after = [s for s in seen if s[0] == invitation.survey_id and s[1] >= invitation.invited_at]
    return min(after, key=lambda s: (s[1], s[2]), default=None)


async def mark_answered(session: AsyncSession, tenant_id: str, answers: Sequence[Answer]) -> None:
    """The customers' unanswered invitations to the answers' surveys, sent at or before each
    answer, are answered by it (one statement for the batch)."""
    if not answers:
        return
    ordered = sorted(answers, key=lambda a: (a.answered_at, a.response_id))
    unnested = (
        sa.select(
            sa.func.unnest(sa.bindparam("c", type_=postgresql.ARRAY(sa.Text))).label("customer_id"),
            sa.func.unnest(sa.bindparam("s", type_=postgresql.ARRAY(sa.Text))).label("survey_id"),
            sa.func.unnest(
                sa.bindparam("t", type_=postgresql.ARRAY(sa.DateTime(timezone=True)))
            ).label("answered_at"),
            sa.func.unnest(sa.bindparam("r", type_=postgresql.ARRAY(sa.Text))).label("response_id"),
        )
    ).subquery("given")
    # The earliest answer after each invitation answers it.
    first = (
        sa.select(
            invitations.c.invitation_id,
            unnested.c.answered_at,
            unnested.c.response_id,
        )
        .ext(postgresql.distinct_on(invitations.c.invitation_id))
        .join(
            unnested,
            sa.and_(
                invitations.c.customer_id == unnested.c.customer_id,
                invitations.c.survey_id == unnested.c.survey_id,
                invitations.c.invited_at <= unnested.c.answered_at,
            ),
        )
        .where(invitations.c.tenant_id == tenant_id, invitations.c.answered_at.is_(None))
        .order_by(invitations.c.invitation_id, unnested.c.answered_at, unnested.c.response_id)
    ).subquery("first")
    await session.execute(
        sa.update(invitations)
        .where(
            invitations.c.tenant_id == tenant_id,
            invitations.c.invitation_id == first.c.invitation_id,
        )
        .values(answered_at=first.c.answered_at, response_id=first.c.response_id),
        {
            "c": [a.customer.id for a in ordered],
            "s": [a.survey_id for a in ordered],
            "t": [a.answered_at for a in ordered],
            "r": [a.response_id for a in ordered],
        },
    )


class SilenceWatcher:
    """Opens the lack-of-response cases that are due (see the module docstring)."""

    def __init__(
        self, runtime: ServiceRuntime, store: SetupStore, *, limit: int, interval: float
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.limit = limit
        self.interval = interval

    async def run(self) -> None:
        await repeat(self.step_more, wake=asyncio.Event(), idle=self.interval, name="silence")

    async def step_more(self) -> bool:
        return await self.step() >= self.limit

    async def step(self) -> int:
        """Handle up to `limit` due invitations; how many were taken."""
        async with self.runtime.worker_transaction() as tx:
            session = tx.session
            now = self.runtime.clock.now()
            due = (
                await session.execute(
                    sa.select(invitations)
                    .where(
                        invitations.c.silence_due_at <= now,
                        invitations.c.silence_due_at.is_not(None),
                        invitations.c.answered_at.is_(None),
                        invitations.c.silence_case_id.is_(None),
                    )
                    .order_by(invitations.c.silence_due_at, invitations.c.invitation_id)
                    .limit(self.limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            by_tenant: dict[str, list[Any]] = defaultdict(list)
            for row in due:
                by_tenant[row.tenant_id].append(row)
            for tenant_id, rows in sorted(by_tenant.items()):
                loaded = await self.store.current(session, tenant_id)
                await open_silence_cases(tx, tenant_id, rows, loaded.setup.organisation, now)
        return len(due)


async def open_silence_cases(
    tx: Transaction, tenant_id: str, due: Sequence[Any], org: Organisation, now: datetime
) -> int:
    """Open a case for each silent contact among `due` (invitation rows, locked); how many."""
    session = tx.session
    spec = org.silence
    still = [
        row
        for row in due
        if silence.silence_due(
            spec,
            key_accounts=org.key_accounts,
            account_id=row.account_id,
            attributes=row.attributes,
            invited_at=row.invited_at,
        )
        is not None
    ]
    dropped = sorted({row.invitation_id for row in due} - {row.invitation_id for row in still})
    if dropped:  # no longer a key contact of a key account, or silence turned off
        await _link(session, tenant_id, dropped, None, clear_due=True)
    active = await _active_cases(session, tenant_id, sorted({r.customer_id for r in still}))
    owners = await _account_owners(session, tenant_id, sorted({r.account_id for r in still}))
    opened = 0
    for row in still:
        joined = active.get(row.customer_id)
        if joined is not None:
            await _link(session, tenant_id, [row.invitation_id], joined)
            continue
        case_id = uuid.uuid5(CASE_NAMESPACE, f"{tenant_id}:{row.invitation_id}")
        await _open(tx, row, case_id, org, owners.get(row.account_id), now)
        await _link(session, tenant_id, [row.invitation_id], case_id)
        active[row.customer_id] = case_id
        opened += 1
    return opened


async def _open(
    tx: Transaction,
    row: Any,
    case_id: uuid.UUID,
    org: Organisation,
    account_owner: str | None,
    now: datetime,
) -> None:
    spec = org.silence
    team = org.team(spec.team_id)
    member = None if account_owner is None else org.directory.get(account_owner)
    owner: Owner = team.queue_owner() if member is None else member.owner()
    queue = team.queue if member is None else None
    due_at = now + timedelta(hours=spec.first_contact_hours)
    case, transition = open_case(
        case_id=case_id,
        tenant_id=row.tenant_id,
        playbook=Outreach.ACCOUNT_OUTREACH,
        priority=spec.priority,
        owner_id=None if member is None else member.id,
        first_contact_due_at=due_at,
        resolution_due_at=None,
        at=now,
        actor=SYSTEM,
    )
    response_id = silence.response_id_of(row.invitation_id)
    customer = Customer.model_validate(row.customer)
    await tx.session.execute(
        sa.insert(cases).values(
            tenant_id=row.tenant_id,
            case_id=case_id,
            response_id=response_id,
            survey_id=row.survey_id,
            customer_id=row.customer_id,
            customer=row.customer,
            account_id=row.account_id,
            segments={},
            score=None,
            category=None,
            comment=None,
            case_type=silence.CASE_TYPE,
            rule="silence",
            team_id=team.id,
            queue=queue,
            business_hours=False,
            owner_name=None if member is None else member.name,
            owner_email=None if member is None else member.email,
            key_account=True,
            channel=spec.channel.value,
            opened_at=now,
            updated_at=now,
            invitation_id=row.invitation_id,
            **case_store.state_columns(case),
        )
    )
    entry = case_store.history_row(transition)
    entry["details"] |= {
        "case_type": silence.CASE_TYPE,
        "channel": spec.channel.value,
        "rule": "silence",
        "team_id": team.id,
        "queue": queue,
        "reason": f"invitation {row.invitation_id} to {row.survey_id} unanswered for "
        f"{spec.after_days:g} days by a key contact of key account {row.account_id}",
    }
    await tx.session.execute(sa.insert(case_history).values(entry))
    await timers.schedule(
        tx.session,
        tenant_id=row.tenant_id,
        case_id=case_id,
        found=case_store.opening_timers(
            case,
            clock=case_store.clock_of(org, team_id=team.id, business_hours=False),
            organisation=org,
        ),
    )
    await tx.emit(
        NoResponseCaseOpenedV1(
            case_id=case_id,
            response_id=response_id,
            invitation_id=row.invitation_id,
            survey_id=row.survey_id,
            customer=customer,
            account_id=row.account_id,
            invited_at=row.invited_at,
            silent_days=spec.after_days,
            owner=owner,
            key_account=True,
            priority=spec.priority.value,
            channel=spec.channel.value,
            opened_at=now,
            first_contact_due_at=due_at,
            team_id=team.id,
            queue=queue,
        ),
        tenant_id=row.tenant_id,
        subject=str(case_id),
    )
    CASES_OPENED.labels(case_type=silence.CASE_TYPE).inc()


async def _link(
    session: AsyncSession,
    tenant_id: str,
    invitation_ids: Sequence[str],
    case_id: uuid.UUID | None,
    *,
    clear_due: bool = False,
) -> None:
    values: dict[str, Any] = {"silence_due_at": None} if clear_due else {"silence_case_id": case_id}
    await session.execute(
        sa.update(invitations)
        .where(
            invitations.c.tenant_id == tenant_id,
            invitations.c.invitation_id.in_(invitation_ids),
        )
        .values(**values)
    )


async def _active_cases(
    session: AsyncSession, tenant_id: str, customers: Sequence[str]
) -> dict[str, uuid.UUID]:
    if not customers:
        return {}
    found = await session.execute(
        sa.select(cases.c.customer_id, cases.c.case_id)
        .where(
            cases.c.tenant_id == tenant_id,
            cases.c.case_type == silence.CASE_TYPE,
            cases.c.customer_id.in_(customers),
            cases.c.status.in_(ACTIVE_STATUSES),
        )
        .order_by(cases.c.opened_at)
    )
    return {row.customer_id: row.case_id for row in found}


async def _account_owners(
    session: AsyncSession, tenant_id: str, accounts: Sequence[str]
) -> dict[str, str]:
    if not accounts:
        return {}
    found = await session.execute(
        sa.select(account_owners.c.account_id, account_owners.c.owner_id).where(
            account_owners.c.tenant_id == tenant_id, account_owners.c.account_id.in_(accounts)
        )
    )
    return {row.account_id: row.owner_id for row in found}
