"""From a case to a delivered message: prepare (in the consumer's transaction), then dispatch.

- `prepare_message` runs inside the inbox transaction of `case.opened.v1`: it renders the message
  and stores it as `pending`. The unique (tenant, case, template) key means never twice, however
  often the event is delivered. Opted-out or address-less customers get a final status and a
  `notification.failed.v1` instead.
- `Dispatcher` sends due `pending` messages one per transaction (row locked, SKIP LOCKED so
  replicas share the work), marks them `sent` with `notification.sent.v1` in the same commit, or
  schedules a retry with exponential backoff; after `max_attempts` (or a permanent SMTP refusal)
  the message is `failed`. A crash after the SMTP server accepted a message but before the commit
  re-sends it once; the stable Message-ID lets mail systems drop that copy.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import on_commit, transaction
from closeloop_common.events import (
    CaseOpenedV1,
    CloudEvent,
    NotificationFailedV1,
    NotificationSentV1,
    new_event,
)
from closeloop_common.loop import repeat
from closeloop_common.outbox import Outbox
from closeloop_common.tenants import TenantDirectory
from closeloop_notifier.adapters.smtp import DeliveryError, OutgoingEmail, SmtpSender
from closeloop_notifier.adapters.tables import messages, opt_outs
from closeloop_notifier.domain.templates import MessageContext, render

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 6
    first_retry_after: timedelta = timedelta(seconds=30)
    max_retry_after: timedelta = timedelta(hours=1)

    def retry_after(self, attempts: int) -> timedelta:
        # The exponent is bounded so that many attempts cannot overflow timedelta.
        backoff: timedelta = self.first_retry_after * 2 ** min(max(0, attempts - 1), 30)
        return min(self.max_retry_after, backoff)


async def is_opted_out(session: AsyncSession, tenant_id: str, email: str) -> bool:
    found = await session.scalar(
        sa.select(opt_outs.c.email).where(
            opt_outs.c.tenant_id == tenant_id, opt_outs.c.email == email.lower()
        )
    )
    return found is not None


async def prepare_message(
    *,
    session: AsyncSession,
    outbox: Outbox,
    clock: Clock,
    source: str,
    company_name: str,
    event: CloudEvent[CaseOpenedV1],
    wake: asyncio.Event,
    default_locale: str | None = None,
) -> str:
    """Store the case's message; returns its status (or `duplicate`). `company_name` and
    `default_locale` (for customers of unknown locale) are the tenant's."""
    case = event.data
    tenant = event.tenantid
    now = clock.now()
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
    reason: Literal["no_recipient", "opted_out"] | None
    if recipient is None:
        status, reason = "no_recipient", "no_recipient"
    elif await is_opted_out(session, tenant, recipient):
        status, reason = "suppressed", "opted_out"
    else:
        status, reason = "pending", None
    message_id = uuid.uuid4()
    inserted = await session.scalar(
        pg_insert(messages)
        .values(
            tenant_id=tenant,
            message_id=message_id,
            case_id=case.case_id,
            response_id=case.response_id,
            customer_id=case.customer.id,
            template=rendered.template,
            locale=rendered.locale,
            channel="email",
            recipient=recipient,
            reply_to=case.owner.email,
            subject=rendered.subject,
            body=rendered.body,
            status=status,
            attempts=0,
            next_attempt_at=now if status == "pending" else None,
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[messages.c.tenant_id, messages.c.case_id, messages.c.template]
        )
        .returning(messages.c.message_id)
    )
    if inserted is None:
        return "duplicate"
    if reason is not None:
        failed = NotificationFailedV1(
            message_id=message_id,
            case_id=case.case_id,
            response_id=case.response_id,
            customer_id=case.customer.id,
            template=rendered.template,
            channel="email",
            reason=reason,
            attempts=0,
            failed_at=now,
        )
        await outbox.add(session, new_event(failed, tenant_id=tenant, source=source, clock=clock))
    else:
        on_commit(session, wake.set)
    return status


class Dispatcher:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        sender: SmtpSender,
        clock: Clock,
        source: str,
        sender_address: str,
        sender_name: str,
        tenants: TenantDirectory | None = None,
        policy: DeliveryPolicy = DeliveryPolicy(),
        idle_poll: float = 1.0,
    ) -> None:
        """`sender_address`/`sender_name` are the From of tenants that `tenants` gives none."""
        self._sessions = sessions
        self._outbox = outbox
        self._sender = sender
        self._clock = clock
        self._source = source
        self._sender_address = sender_address
        self._sender_name = sender_name
        self._tenants = tenants or TenantDirectory()
        self._policy = policy
        self._idle_poll = idle_poll
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Dispatch until cancelled; sleeps when nothing is due, wakes on new messages."""
        await repeat(
            self.dispatch_one, wake=self.wake, idle=self._idle_poll, name="SMTP dispatcher"
        )

    async def dispatch_one(self) -> bool:
        """Try to deliver the most overdue pending message; False when none is due."""
        now = self._clock.now()
        async with transaction(self._sessions) as session:
            row = (
                await session.execute(
                    sa.select(messages)
                    .where(messages.c.status == "pending", messages.c.next_attempt_at <= now)
                    .order_by(messages.c.next_attempt_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if row is None:
                return False
            if await is_opted_out(session, row.tenant_id, row.recipient):
                # The customer opted out after the message was prepared (say, while it waited for
                # a retry): it is suppressed, not sent.
                await self._suppress(session, row)
                return True
            attempts = row.attempts + 1
            try:
                await self._sender.send(self._email(row))
            except DeliveryError as exc:
                await self._record_failure(session, row, attempts, exc)
                return True
            sent_at = self._clock.now()
            await session.execute(
                sa.update(messages)
                .where(
                    messages.c.tenant_id == row.tenant_id, messages.c.message_id == row.message_id
                )
                .values(
                    status="sent",
                    attempts=attempts,
                    sent_at=sent_at,
                    next_attempt_at=None,
                    last_error=None,
                )
            )
            sent = NotificationSentV1(
                message_id=row.message_id,
                case_id=row.case_id,
                response_id=row.response_id,
                customer_id=row.customer_id,
                template=row.template,
                locale=row.locale,
                channel="email",
                recipient=row.recipient,
                subject=row.subject,
                attempts=attempts,
                sent_at=sent_at,
            )
            await self._outbox.add(
                session,
                new_event(sent, tenant_id=row.tenant_id, source=self._source, clock=self._clock),
            )
        return True

    def _email(self, row: sa.Row[Any]) -> OutgoingEmail:
        tenant = self._tenants.of(row.tenant_id)
        return OutgoingEmail(
            message_id=str(row.message_id),
            sender=tenant.from_address or self._sender_address,
            sender_name=tenant.from_name or self._sender_name,
            recipient=row.recipient,
            reply_to=row.reply_to,
            subject=row.subject,
            body=row.body,
            headers=(
                ("X-Closeloop-Case-Id", str(row.case_id)),
                ("X-Closeloop-Template", row.template),
                ("Content-Language", row.locale),
            ),
        )

    async def _suppress(self, session: AsyncSession, row: sa.Row[Any]) -> None:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == row.tenant_id, messages.c.message_id == row.message_id)
            .values(status="suppressed", next_attempt_at=None)
        )
        await self._publish_failed(session, row, "opted_out", attempts=row.attempts)

    async def _publish_failed(
        self,
        session: AsyncSession,
        row: sa.Row[Any],
        reason: Literal["opted_out", "delivery_failed"],
        *,
        attempts: int,
        detail: str | None = None,
    ) -> None:
        failed = NotificationFailedV1(
            message_id=row.message_id,
            case_id=row.case_id,
            response_id=row.response_id,
            customer_id=row.customer_id,
            template=row.template,
            channel="email",
            reason=reason,
            detail=detail,
            attempts=attempts,
            failed_at=self._clock.now(),
        )
        await self._outbox.add(
            session,
            new_event(failed, tenant_id=row.tenant_id, source=self._source, clock=self._clock),
        )

    async def _record_failure(
        self, session: AsyncSession, row: sa.Row[Any], attempts: int, exc: DeliveryError
    ) -> None:
        now = self._clock.now()
        final = exc.permanent or attempts >= self._policy.max_attempts
        log.warning(
            "delivery failed",
            extra={
                "message_id": str(row.message_id),
                "attempts": attempts,
                "final": final,
                "error": str(exc),
            },
        )
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == row.tenant_id, messages.c.message_id == row.message_id)
            .values(
                status="failed" if final else "pending",
                attempts=attempts,
                last_error=str(exc)[:2000],
                next_attempt_at=None if final else now + self._policy.retry_after(attempts),
            )
        )
        if final:
            await self._publish_failed(
                session, row, "delivery_failed", attempts=attempts, detail=str(exc)[:500]
            )
