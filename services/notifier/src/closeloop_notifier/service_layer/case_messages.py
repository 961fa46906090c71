"""From case events to stored messages, inside the consumer's inbox transaction.

- `case.opened.v1` (a consumer batch at a time, `on_opened_batch`): the customer's reply by the
  case's playbook (thanks, apology, improvement ask), when the tenant sends replies for that
  category. It goes after a random human delay
  (`reply_delay`), or waits as a draft for its owner when the tenant's approval rules say so for
  a detractor's segment. The owner (or the team's queue mailbox, or the team webhook) hears
  about the new case at once.
- `case.updated.v1`: on `resolved`, the customer's "what we did" when the tenant sends it; on
  `reassigned`, the new owner hears about the case. Every update refreshes the case view the
  overdue digest reads.
- `case.sla_alert.v1`: the warning to the owner, the breach and each escalation step to the
  person the alert names.
- `case.no_response_opened.v1` (a lack-of-response case: a key contact of a key account left a
  survey invitation unanswered): the owner (or the team's queue mailbox) hears about it at once,
  as about any new case; the silent contact gets nothing. `case.no_response_updated.v1`: as
  `case.updated.v1` but never a customer message (the contact answered nothing). Such a case is
  kept in the case view with category `no_response` and no score or comment, so its SLA alerts
  and the digest know it; its templates see what was not answered (`domain.no_response`).

Every message has a dedup key (`domain.kinds`), so a redelivered event stores nothing new.
A batch of opened cases costs one statement per table (the case view, the opt-outs looked up,
the messages stored per tenant), not one per case: the consumer keeps up with the dispatcher.
Customer text reaches templates only as data (never as template source), and the HTML part is
autoescaped.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.db import on_commit
from closeloop_common.events import (
    CaseOpenedV1,
    CaseSlaAlertV1,
    CaseUpdatedV1,
    CloudEvent,
    Customer,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    Owner,
)
from closeloop_common.handlers import HandlerContext, Transaction
from closeloop_notifier.adapters.tables import SCHEMA, case_view, invitations
from closeloop_notifier.domain.kinds import KIND_BY_PLAYBOOK, Kind, alert_key, case_key
from closeloop_notifier.domain.no_response import NO_RESPONSE, Unanswered, invitation_of
from closeloop_notifier.domain.rendering import customer_context
from closeloop_notifier.domain.tenant_settings import MessagingSettings
from closeloop_notifier.domain.timing import human_delay, recipient_zone
from closeloop_notifier.service_layer import policy
from closeloop_notifier.service_layer.compose import Composer
from closeloop_notifier.service_layer.messages import (
    InitialStatus,
    NewMessage,
    customer_address,
    in_current_trace,
    store,
)
from closeloop_notifier.service_layer.policy import reply_address
from closeloop_notifier.service_layer.settings_store import SettingsStore

log = logging.getLogger(__name__)

ViewedCase = CaseOpenedV1 | CaseUpdatedV1 | NoResponseCaseOpenedV1
"""What the case view is kept from (`NoResponseCaseUpdatedV1` is a `CaseUpdatedV1`)."""

ALERT_KINDS: dict[str, Kind] = {
    "warning": Kind.SLA_WARNING,
    "breach": Kind.SLA_BREACH,
    "escalation": Kind.SLA_ESCALATION,
}


def _owner(owner: Owner | None) -> dict[str, Any] | None:
    return None if owner is None else {"id": owner.id, "name": owner.name, "email": owner.email}


def _customer(customer: Customer) -> dict[str, Any]:
    return customer_context(customer.id, customer.name, customer.email)


def case_context(
    event: CaseOpenedV1 | CaseUpdatedV1, *, score: int | None = None
) -> dict[str, Any]:
    """The `case` a template sees (the spec's template context)."""
    common: dict[str, Any] = {
        "id": str(event.case_id),
        # A case waiting in its team's queue has no owner to name yet (its `owner` is the team).
        "owner": None if event.queue else _owner(event.owner),
        "channel": event.channel,
        "first_contact_due_at": event.first_contact_due_at,
        "resolution_due_at": event.resolution_due_at,
        "priority": event.priority,
        "account_id": event.account_id,
    }
    if isinstance(event, CaseOpenedV1):
        return common | {
            "score": event.score,
            "comment": event.comment,
            "category": event.category.value,
            "key_account": event.key_account,
            "note": None,
            "outcome": None,
        }
    return common | {
        "score": score,
        "comment": None,
        "category": event.case_type.value,
        "key_account": False,
        "note": event.note,
        "outcome": event.outcome,
    }


def no_response_context(
    event: NoResponseCaseOpenedV1 | NoResponseCaseUpdatedV1, unanswered: Unanswered
) -> dict[str, Any]:
    """The `case` a template sees for a lack-of-response case: `case_context`'s keys (no
    score, no comment) and what was not answered (`domain.no_response`)."""
    common: dict[str, Any] = {
        "id": str(event.case_id),
        "owner": None if event.queue else _owner(event.owner),
        "channel": event.channel,
        "first_contact_due_at": event.first_contact_due_at,
        "priority": event.priority,
        "account_id": event.account_id,
        "score": None,
        "comment": None,
        "category": NO_RESPONSE,
        **unanswered.context(),
    }
    if isinstance(event, NoResponseCaseOpenedV1):
        return common | {
            "resolution_due_at": None,
            "key_account": event.key_account,
            "note": None,
            "outcome": None,
        }
    return common | {
        "resolution_due_at": event.resolution_due_at,
        # Only a key contact of a key account opens one.
        "key_account": True,
        "note": event.note,
        "outcome": event.outcome,
    }


@dataclass(frozen=True, slots=True)
class CaseMessages:
    """The handlers of case events (see the module docstring)."""

    composer: Composer
    settings: SettingsStore
    rng: random.Random
    wake: Callable[[], None] | None = None
    """Called once a transaction that stored a message due at once commits (the dispatcher's
    wake-up: without it such a message waits for the dispatcher's next idle poll)."""

    async def _store(self, tx: Transaction, tenant: str, new: list[NewMessage]) -> None:
        now = tx.clock.now()
        stored = await store(tx, tenant, new)
        wake = self.wake
        if wake is not None and any(
            row.status == "pending" and row.next_attempt_at <= now for row in stored
        ):
            on_commit(tx.session, wake)

    async def on_opened(self, ctx: HandlerContext, event: CloudEvent[CaseOpenedV1]) -> None:
        """One opened case (`on_opened_batch` of one)."""
        await self.on_opened_batch(ctx.transaction, [event])

    async def on_opened_batch(
        self, tx: Transaction, events: Sequence[CloudEvent[CaseOpenedV1]]
    ) -> None:
        """The opened cases of a consumer batch: one statement per table (module docstring)."""
        await _remember_cases(tx.session, [(e.tenantid, e.data, 1) for e in events])
        customers = [
            (e.tenantid, address.key)
            for e in events
            if (address := customer_address(e.data.customer.email)).key is not None
        ]
        opted_out = await policy.opted_out(tx.session, customers)
        new: dict[str, list[NewMessage]] = {}
        for event in events:
            # In the event's trace (and its log context): its messages are sent in it.
            with tx.handling(event):
                opened = await self._opened(tx.context(event.tenantid), event.data, opted_out)
                new.setdefault(event.tenantid, []).extend(in_current_trace(opened))
        for tenant, messages in new.items():
            await self._store(tx, tenant, messages)

    async def _opened(
        self, ctx: HandlerContext, case: CaseOpenedV1, opted_out: set[tuple[str, str]]
    ) -> list[NewMessage]:
        settings = await self.settings.get(ctx.tenant_id)
        new: list[NewMessage] = []
        if case.category in settings.messages_on:
            kind = KIND_BY_PLAYBOOK[case.playbook]
            mode = (
                settings.approval_mode(
                    survey_id=case.survey_id,
                    account_id=case.account_id,
                    key_account=case.key_account,
                )
                if kind is Kind.APOLOGY
                else "send"
            )
            new.append(
                await self._to_customer(
                    ctx,
                    settings,
                    kind=kind,
                    case=case_context(case),
                    customer=case.customer,
                    reply_to=case.owner.email,
                    case_id=case.case_id,
                    response_id=case.response_id,
                    draft=mode == "approve",
                    opted_out=opted_out,
                )
            )
        if Kind.OWNER_NEW_CASE in settings.team_messages:
            new.append(
                await self._to_team(
                    ctx,
                    settings,
                    kind=Kind.OWNER_NEW_CASE,
                    dedup_key=case_key(case.case_id, Kind.OWNER_NEW_CASE),
                    person=case.owner,
                    extra={"case": case_context(case), "customer": _customer(case.customer)},
                    case_id=case.case_id,
                    response_id=case.response_id,
                    customer_id=case.customer.id,
                )
            )
        return new

    async def on_no_response_opened(
        self, ctx: HandlerContext, event: CloudEvent[NoResponseCaseOpenedV1]
    ) -> None:
        """A lack-of-response case: its owner (or the team's queue mailbox) hears of it, once
        per case; nothing goes to the silent contact."""
        case = event.data
        tenant = event.tenantid
        await _remember_cases(ctx.session, [(tenant, case, 1)])
        settings = await self.settings.get(tenant)
        if Kind.OWNER_NEW_CASE not in settings.team_messages:
            return
        unanswered = Unanswered(
            invitation_id=case.invitation_id,
            survey_id=case.survey_id,
            invited_at=case.invited_at,
            silent_days=case.silent_days,
        )
        message = await self._to_team(
            ctx,
            settings,
            kind=Kind.OWNER_NEW_CASE,
            dedup_key=case_key(case.case_id, Kind.OWNER_NEW_CASE),
            person=case.owner,
            extra={
                "case": no_response_context(case, unanswered),
                "customer": _customer(case.customer),
            },
            case_id=case.case_id,
            response_id=case.response_id,
            customer_id=case.customer.id,
        )
        await self._store(ctx.transaction, tenant, [message])

    async def on_updated(self, ctx: HandlerContext, event: CloudEvent[CaseUpdatedV1]) -> None:
        await self._updated(ctx, event.tenantid, event.data)

    async def on_no_response_updated(
        self, ctx: HandlerContext, event: CloudEvent[NoResponseCaseUpdatedV1]
    ) -> None:
        """As `on_updated`, but its resolution tells the silent contact nothing."""
        await self._updated(ctx, event.tenantid, event.data)

    async def _updated(self, ctx: HandlerContext, tenant: str, case: CaseUpdatedV1) -> None:
        await _remember_cases(ctx.session, [(tenant, case, case.version)])
        settings = await self.settings.get(tenant)
        new: list[NewMessage] = []
        if (
            case.transition == "resolved"
            and settings.resolution_message
            and not isinstance(case, NoResponseCaseUpdatedV1)
        ):
            key = customer_address(case.customer.email).key
            opted_out = await policy.opted_out(ctx.session, [(tenant, key)] if key else [])
            new.append(
                await self._to_customer(
                    ctx,
                    settings,
                    kind=Kind.CASE_RESOLVED,
                    case=case_context(case),
                    customer=case.customer,
                    reply_to=case.owner.email if case.owner else None,
                    case_id=case.case_id,
                    response_id=case.response_id,
                    draft=False,
                    opted_out=opted_out,
                )
            )
        if (
            case.transition == "reassigned"
            and case.owner is not None
            and Kind.OWNER_NEW_CASE in settings.team_messages
        ):
            new.append(
                await self._to_team(
                    ctx,
                    settings,
                    kind=Kind.OWNER_NEW_CASE,
                    # One per owner the case goes to: a case handed back gets no second one.
                    dedup_key=f"{case_key(case.case_id, Kind.OWNER_NEW_CASE)}:{case.owner.id}",
                    person=case.owner,
                    extra={
                        "case": await _updated_context(ctx, case),
                        "customer": _customer(case.customer),
                    },
                    case_id=case.case_id,
                    response_id=case.response_id,
                    customer_id=case.customer.id,
                )
            )
        await self._store(ctx.transaction, tenant, new)

    async def on_sla_alert(self, ctx: HandlerContext, event: CloudEvent[CaseSlaAlertV1]) -> None:
        alert = event.data
        if alert.recipient is None:
            log.warning(
                "SLA alert names nobody; no message",
                extra={"case_id": str(alert.case_id), "to": alert.to, "kind": alert.kind},
            )
            return
        settings = await self.settings.get(event.tenantid)
        kind = ALERT_KINDS[alert.kind]
        if kind not in settings.team_messages:
            return
        case = await _known_case(ctx, alert.case_id)
        if case is None:
            log.warning(
                "SLA alert of an unknown case; no message", extra={"case_id": str(alert.case_id)}
            )
            return
        if case["category"] == NO_RESPONSE:
            case |= (await _unanswered(ctx, invitation_of(alert.response_id))).context()
        case["owner"] = _owner(alert.owner)
        case["priority"] = alert.priority
        key = alert_key(
            alert.case_id, alert.clock, alert.kind, alert.step, alert.deadline.isoformat()
        )
        message = await self._to_team(
            ctx,
            settings,
            kind=kind,
            dedup_key=key,
            person=alert.recipient,
            extra={
                "alert": {
                    "clock": alert.clock,
                    "kind": alert.kind,
                    "step": alert.step,
                    "to": alert.to,
                    "deadline": alert.deadline,
                    "due_at": alert.due_at,
                    "priority": alert.priority,
                    "recipient_name": alert.recipient.name,
                },
                "case": case,
                "customer": _customer(alert.customer),
            },
            case_id=alert.case_id,
            response_id=alert.response_id,
            customer_id=alert.customer.id,
        )
        await self._store(ctx.transaction, event.tenantid, [message])

    # -- building messages -------------------------------------------------------------------

    async def _to_customer(
        self,
        ctx: HandlerContext,
        settings: MessagingSettings,
        *,
        kind: Kind,
        case: dict[str, Any],
        customer: Customer,
        reply_to: str | None,
        case_id: uuid.UUID,
        response_id: str,
        draft: bool,
        opted_out: set[tuple[str, str]],
    ) -> NewMessage:
        """`opted_out`: the (tenant, opt-out key) pairs of the batch's customers that opted out."""
        tenant = ctx.tenant_id
        now = ctx.clock.now()
        locale = self.composer.locale(tenant, customer.locale)
        address = customer_address(customer.email)
        status: InitialStatus
        if address.problem == "no_recipient":
            status = "no_recipient"
        elif address.problem == "invalid":
            status = "failed"
        elif address.key is not None and (tenant, address.key) in opted_out:
            status = "suppressed"
        else:
            status = "draft" if draft else "pending"
        context = {
            "locale": locale,
            "now": now,
            "tenant": self.composer.tenant_context(tenant, settings),
            "customer": _customer(customer),
            "case": case,
            "unsubscribe_url": self.composer.unsubscribe_url(tenant, address.key),
        }
        rendered = await self.composer.compose(ctx.session, tenant, kind, locale, context)
        delay = human_delay(
            self.rng,
            timedelta(minutes=settings.reply_delay.min_minutes),
            timedelta(minutes=settings.reply_delay.max_minutes),
        )
        return NewMessage(
            dedup_key=case_key(case_id, kind),
            kind=kind,
            channel="email",
            locale=locale,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            status=status,
            next_attempt_at=now + delay if status == "pending" else None,
            recipient=address.recipient,
            recipient_key=address.key,
            reply_to=reply_address(reply_to),
            time_zone=recipient_zone(customer.locale, settings.time_zone).key,
            case_id=case_id,
            response_id=response_id,
            customer_id=customer.id,
            last_error=address.detail,
        )

    async def _to_team(
        self,
        ctx: HandlerContext,
        settings: MessagingSettings,
        *,
        kind: Kind,
        dedup_key: str,
        person: Owner,
        extra: Mapping[str, Any],
        case_id: uuid.UUID,
        response_id: str,
        customer_id: str,
    ) -> NewMessage:
        tenant = ctx.tenant_id
        now = ctx.clock.now()
        locale = self.composer.locale(tenant, None)
        context = {
            "locale": locale,
            "now": now,
            "tenant": self.composer.tenant_context(tenant, settings),
            "unsubscribe_url": None,
            **extra,
        }
        rendered = await self.composer.compose(ctx.session, tenant, kind, locale, context)
        channel: Literal["email", "webhook"] = settings.team_channel.kind
        if channel == "webhook" and settings.team_channel.webhook_url is not None:
            recipient: str | None = str(settings.team_channel.webhook_url)
            payload: dict[str, Any] | None = webhook_payload(
                tenant, kind, person, rendered.subject, rendered.text, extra
            )
        else:
            channel = "email"
            recipient, payload = customer_address(person.email).recipient, None
        return NewMessage(
            dedup_key=dedup_key,
            kind=kind,
            channel=channel,
            locale=locale,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html if channel == "email" else None,
            status="pending" if recipient else "no_recipient",
            next_attempt_at=now if recipient else None,
            recipient=recipient,
            case_id=case_id,
            response_id=response_id,
            customer_id=customer_id,
            payload=payload,
        )


def webhook_payload(
    tenant_id: str,
    kind: Kind,
    person: Owner,
    subject: str,
    text: str,
    facts: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON a chat/CRM webhook gets for a team message: the rendered text and the facts."""
    return {
        "type": f"closeloop.team.{kind.value}",
        "tenant_id": tenant_id,
        "to": {"id": person.id, "name": person.name, "email": person.email},
        "subject": subject,
        "text": text,
        **{name: _jsonable(value) for name, value in facts.items()},
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# Newest version wins; rows in key order, so overlapping batches lock them in the same order.
# The answer (category, score, comment, account, key account) is written once, with the case.
_UPSERT_CASES = sa.text(
    f"INSERT INTO {SCHEMA}.case_view AS v (tenant_id, case_id, version, status, owner_id, "
    "owner_name, owner_email, customer_name, channel, priority, first_contact_due_at, "
    "resolution_due_at, first_contacted_at, category, score, comment, account_id, key_account) "
    "SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:cases AS uuid[]), "
    "CAST(:versions AS int[]), CAST(:statuses AS text[]), CAST(:owner_ids AS text[]), "
    "CAST(:owner_names AS text[]), CAST(:owner_emails AS text[]), CAST(:customers AS text[]), "
    "CAST(:channels AS text[]), CAST(:priorities AS text[]), CAST(:first_due AS timestamptz[]), "
    "CAST(:resolution_due AS timestamptz[]), CAST(:contacted AS timestamptz[]), "
    "CAST(:categories AS text[]), CAST(:scores AS int[]), CAST(:comments AS text[]), "
    "CAST(:accounts AS text[]), CAST(:key_accounts AS boolean[])) ORDER BY 1, 2 "
    "ON CONFLICT (tenant_id, case_id) DO UPDATE SET version = excluded.version, "
    "status = excluded.status, owner_id = excluded.owner_id, owner_name = excluded.owner_name, "
    "owner_email = excluded.owner_email, customer_name = excluded.customer_name, "
    "channel = excluded.channel, priority = excluded.priority, "
    "first_contact_due_at = excluded.first_contact_due_at, "
    "resolution_due_at = excluded.resolution_due_at, "
    "first_contacted_at = excluded.first_contacted_at "
    "WHERE v.version < excluded.version"
)


async def _remember_cases(
    session: AsyncSession, cases: Iterable[tuple[str, ViewedCase, int]]
) -> None:
    """Keep each (tenant, case, version) as the digest and the SLA alerts need it, in one
    statement; an older version never overwrites a newer one (within the batch too)."""
    newest: dict[tuple[str, uuid.UUID], tuple[ViewedCase, int]] = {}
    for tenant, case, version in cases:
        known = newest.get((tenant, case.case_id))
        if known is None or known[1] < version:
            newest[(tenant, case.case_id)] = (case, version)
    if not newest:
        return
    rows = [newest[key] for key in sorted(newest)]
    progress = [_progress(case) for case, _ in rows]
    answers = [_answer(case) for case, _ in rows]
    await session.execute(
        _UPSERT_CASES,
        {
            "tenants": [tenant for tenant, _ in sorted(newest)],
            "cases": [case.case_id for case, _ in rows],
            "versions": [version for _, version in rows],
            "statuses": [status for status, _ in progress],
            "owner_ids": [case.owner.id if case.owner else None for case, _ in rows],
            "owner_names": [case.owner.name if case.owner else None for case, _ in rows],
            "owner_emails": [case.owner.email if case.owner else None for case, _ in rows],
            "customers": [case.customer.name for case, _ in rows],
            "channels": [case.channel or "phone" for case, _ in rows],
            "priorities": [case.priority or "normal" for case, _ in rows],
            "first_due": [case.first_contact_due_at for case, _ in rows],
            "resolution_due": [_resolution_due(case) for case, _ in rows],
            "contacted": [contacted for _, contacted in progress],
            "categories": [a[0] for a in answers],
            "scores": [a[1] for a in answers],
            "comments": [a[2] for a in answers],
            "accounts": [case.account_id for case, _ in rows],
            "key_accounts": [a[3] for a in answers],
        },
    )


def _answer(case: ViewedCase) -> tuple[str, int, str | None, bool]:
    """Category, score (-1: unknown), comment and key account, as `case.opened` tells them;
    an update comes first only if `case.opened` was missed (it leads on the case's partition).
    A lack-of-response case has no answer: category `no_response`, score -1, no comment."""
    if isinstance(case, NoResponseCaseOpenedV1):
        return NO_RESPONSE, -1, None, case.key_account
    if isinstance(case, NoResponseCaseUpdatedV1):
        return NO_RESPONSE, -1, None, True
    if isinstance(case, CaseOpenedV1):
        return case.category.value, case.score, case.comment, case.key_account
    return case.case_type.value, -1, None, False


async def _known_case(ctx: HandlerContext, case_id: uuid.UUID) -> dict[str, Any] | None:
    """The `case` of a template context from the case view (None if the case is unknown)."""
    row = (
        await ctx.session.execute(
            sa.select(case_view).where(
                case_view.c.tenant_id == ctx.tenant_id, case_view.c.case_id == case_id
            )
        )
    ).one_or_none()
    if row is None:
        return None
    owner = (
        {"id": row.owner_id, "name": row.owner_name, "email": row.owner_email}
        if row.owner_id
        else None
    )
    return {
        "id": str(case_id),
        "owner": owner,
        "channel": row.channel,
        "first_contact_due_at": row.first_contact_due_at,
        "resolution_due_at": row.resolution_due_at,
        "priority": row.priority,
        "account_id": row.account_id,
        "score": row.score if row.score >= 0 else None,
        "comment": row.comment,
        "category": row.category,
        "key_account": row.key_account,
        "note": None,
        "outcome": None,
    }


def _progress(case: ViewedCase) -> tuple[str, datetime | None]:
    """A case's status and first contact as the view keeps them."""
    if isinstance(case, CaseOpenedV1 | NoResponseCaseOpenedV1):
        return "open", None
    return case.status, case.first_contacted_at


def _resolution_due(case: ViewedCase) -> datetime | None:
    # A lack-of-response case gets its resolution deadline later, if ever (no field when opened).
    return None if isinstance(case, NoResponseCaseOpenedV1) else case.resolution_due_at


async def _updated_context(ctx: HandlerContext, case: CaseUpdatedV1) -> dict[str, Any]:
    """The `case` of an updated case's template context."""
    if isinstance(case, NoResponseCaseUpdatedV1):
        return no_response_context(case, await _unanswered(ctx, case.invitation_id))
    return case_context(case)


async def _unanswered(ctx: HandlerContext, invitation_id: str | None) -> Unanswered:
    """What a lack-of-response case's contact did not answer, as far as the notifier's own copy
    of the invitations (kept for campaigns) knows it."""
    if invitation_id is None:
        return Unanswered()
    row = (
        await ctx.session.execute(
            sa.select(invitations.c.survey_id, invitations.c.invited_at).where(
                invitations.c.tenant_id == ctx.tenant_id,
                invitations.c.invitation_id == invitation_id,
            )
        )
    ).one_or_none()
    if row is None:
        return Unanswered(invitation_id=invitation_id)
    return Unanswered(
        invitation_id=invitation_id, survey_id=row.survey_id, invited_at=row.invited_at
    )
