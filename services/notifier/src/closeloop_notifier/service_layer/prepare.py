"""From a `case.opened.v1` to a stored message, inside the consumer's inbox transaction.

The message is rendered and stored once: the unique (tenant, case, template) key means never
twice, however often the event is delivered. Its status says what happens next:

- `pending`: the dispatcher sends it (woken when the transaction commits);
- `no_recipient` (the customer has no address), `suppressed` (opted out) or `failed` (the address
  is not one sendable mailbox): final at once, with a `notification.failed.v1`
  (reason `no_recipient`, `opted_out`, `delivery_failed`).

Only the normalised address is stored (`closeloop_common.emails`): the case contract's pattern
lets through addresses a `To` header would break on or split into several mailboxes. An owner
address that is not valid is left out of `Reply-To` (the message still goes out).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Literal

from sqlalchemy.dialects.postgresql import insert as pg_insert

from closeloop_common.db import on_commit
from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.events import CaseOpenedV1, CloudEvent
from closeloop_common.handlers import HandlerContext
from closeloop_notifier.adapters.tables import messages
from closeloop_notifier.domain.templates import MessageContext, render
from closeloop_notifier.service_layer.policy import failure_of, is_opted_out, reply_address

FailureReason = Literal["no_recipient", "opted_out", "delivery_failed"]


async def prepare_message(
    ctx: HandlerContext,
    event: CloudEvent[CaseOpenedV1],
    *,
    company_name: str,
    wake: asyncio.Event,
    default_locale: str | None = None,
) -> str:
    """Store the case's message; returns its status (or `duplicate`). `company_name` and
    `default_locale` (for customers of unknown locale) are the tenant's."""
    session = ctx.session
    case = event.data
    tenant = event.tenantid
    now = ctx.clock.now()
    rendered = render(
        case.playbook,
        case.customer.locale or default_locale,
        MessageContext(
            customer_name=case.customer.name,
            comment=case.comment,
            owner_name=case.owner.name,
            owner_email=case.owner.email,
            company_name=company_name,
        ),
    )
    recipient = case.customer.email
    status: str
    reason: FailureReason | None
    error: str | None = None
    if recipient is None:
        status, reason = "no_recipient", "no_recipient"
    else:
        try:
            recipient = normalize_email(recipient)
        except InvalidEmailAddress as exc:
            status, reason, error = "failed", "delivery_failed", str(exc)
        else:
            if await is_opted_out(session, tenant, recipient):
                status, reason = "suppressed", "opted_out"
            else:
                status, reason = "pending", None
    inserted = await session.execute(
        pg_insert(messages)
        .values(
            tenant_id=tenant,
            message_id=uuid.uuid4(),
            case_id=case.case_id,
            response_id=case.response_id,
            customer_id=case.customer.id,
            template=rendered.template,
            locale=rendered.locale,
            channel="email",
            recipient=recipient,
            reply_to=reply_address(case.owner.email),
            subject=rendered.subject,
            body=rendered.body,
            status=status,
            attempts=0,
            next_attempt_at=now if status == "pending" else None,
            last_error=error,
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[messages.c.tenant_id, messages.c.case_id, messages.c.template]
        )
        .returning(messages)
    )
    message = inserted.one_or_none()
    if message is None:
        return "duplicate"
    if reason is not None:
        await ctx.emit(failure_of(message, reason=reason, attempts=0, detail=error, at=now))
    else:
        on_commit(session, wake.set)
    return status
