"""The SMTP dispatcher: claim a due message, send it with no transaction open, record the result.

One `dispatch_one` step:

1. Claim (one committed transaction). The most overdue message is locked (SKIP LOCKED, so
   replicas share the work): first a `sending` one whose lease ran out (its dispatcher died), else
   a due `pending` one. Then, in the same transaction, it is settled without sending when its
   address is not one sendable mailbox (`failed`), when the customer opted out (`suppressed`,
   checked right before sending), or when a dead dispatcher's claim already used the last attempt
   (`failed`). Otherwise it becomes `sending` with `attempts + 1` and `lease_until = now + lease`.
2. Send over SMTP, outside any transaction (`adapters.smtp`).
3. Record (a new transaction), only if the claim is still ours (same status and attempts):
   - accepted: `sent`, with `notification.sent.v1` in the same commit;
   - refused for now (4xx, connection lost after the message was offered): `pending` again after
     `DeliveryPolicy.retry_after`, or `failed` once `max_attempts` are used;
   - refused for good (5xx to RCPT TO or DATA) or any other exception about this message (it
     cannot be rendered, say): `failed` at once. `failed` always comes with
     `notification.failed.v1` (reason `delivery_failed`), so one message never blocks the queue;
   - the server is down (`SmtpUnavailable`) or refuses our configuration (`SmtpMisconfigured`):
     the message is put back as it was, its attempt not counted, and the whole queue is held for
     `DeliveryPolicy.hold_after` (growing while it lasts). Nothing is failed however long it
     lasts; the `closeloop_notifier_smtp_unreachable` / `_misconfigured` gauges say so (for
     alerts) and a misconfiguration is logged as an error.
   If the record cannot be written (the database went away), the result is kept and written by
   the next step before anything else, without sending again.

Between claim and record the message is sent at most once. A dispatcher that dies or is
cancelled in between leaves a `sending` claim: nobody sends it until the lease runs out, then it
is taken again, and never beyond `max_attempts` in all; the stable Message-ID lets mail systems
drop the copy if the server had accepted the first one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.events import EventData, NotificationSentV1, new_event
from closeloop_common.loop import repeat
from closeloop_common.outbox import Outbox
from closeloop_common.tenants import TenantDirectory
from closeloop_notifier.adapters.smtp import (
    DeliveryError,
    OutgoingEmail,
    SmtpMisconfigured,
    SmtpSender,
    SmtpUnavailable,
)
from closeloop_notifier.adapters.tables import messages
from closeloop_notifier.metrics import DELIVERIES, SMTP_MISCONFIGURED, SMTP_UNREACHABLE
from closeloop_notifier.service_layer.policy import (
    DeliveryPolicy,
    failure_of,
    is_opted_out,
    reply_address,
)

log = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "failed", "outage", "misconfigured"]


@dataclass(frozen=True, slots=True)
class _Result:
    """What became of a claimed message, waiting to be recorded."""

    message: sa.Row[Any]  # as claimed: `sending`, attempts already counted
    outcome: Outcome
    error: str | None = None
    at: datetime | None = None  # when the SMTP server accepted it
    server_answered: bool = True  # False when the message failed before reaching the server


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
        """`sender_address`/`sender_name` are the From of tenants `tenants` gives none."""
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
        self._unrecorded: _Result | None = None
        self._server_failures = 0
        self.held_until: datetime | None = None
        """While set and in the future, the SMTP server is down or refuses our configuration:
        no message is claimed."""
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Dispatch until cancelled; sleeps when nothing is due or the queue is held."""
        await repeat(
            self.dispatch_one, wake=self.wake, idle=self._idle_poll, name="SMTP dispatcher"
        )

    async def dispatch_one(self) -> bool:
        """One step (see the module docstring). False when nothing is due or the queue is held,
        so the caller waits before the next step."""
        if self._unrecorded is not None:
            await self._record(self._unrecorded)
            self._unrecorded = None
            return True
        if self.held_until is not None and self._clock.now() < self.held_until:
            return False
        async with transaction(self._sessions) as session:
            due = await self._next_due(session)
            if due is None:
                return False
            claimed = await self._claim_or_settle(session, due)
        if claimed is None:
            return True
        result = await self._deliver(claimed)
        self._track_server(result)
        self._unrecorded = result
        await self._record(result)
        self._unrecorded = None
        return result.outcome not in ("outage", "misconfigured")

    # -- claim ------------------------------------------------------------------------------

    async def _next_due(self, session: AsyncSession) -> sa.Row[Any] | None:
        now = self._clock.now()
        abandoned = (
            sa.select(messages)
            .where(messages.c.status == "sending", messages.c.lease_until <= now)
            .order_by(messages.c.lease_until)
        )
        pending = (
            sa.select(messages)
            .where(messages.c.status == "pending", messages.c.next_attempt_at <= now)
            .order_by(messages.c.next_attempt_at)
        )
        for query in (abandoned, pending):
            row = (
                await session.execute(query.limit(1).with_for_update(skip_locked=True))
            ).one_or_none()
            if row is not None:
                return row
        return None

    async def _claim_or_settle(
        self, session: AsyncSession, message: sa.Row[Any]
    ) -> sa.Row[Any] | None:
        """Claim `message` for sending and return it, or settle it without sending (None)."""
        if message.status == "sending" and message.attempts >= self._policy.max_attempts:
            await self._fail(
                session,
                message,
                f"the dispatcher of attempt {message.attempts} stopped before recording its "
                "result and its lease expired; that attempt may have been delivered",
            )
            return None
        try:
            recipient = normalize_email(message.recipient or "")
        except InvalidEmailAddress as exc:
            # Stored before addresses were checked, by an older version.
            await self._fail(session, message, str(exc))
            return None
        if await is_opted_out(session, message.tenant_id, recipient):
            # The customer opted out after the message was prepared (say, while it waited for a
            # retry): it is suppressed, not sent.
            await session.execute(
                self._update(message).values(
                    status="suppressed", next_attempt_at=None, lease_until=None
                )
            )
            await self._publish_failed(session, message, "opted_out", None)
            DELIVERIES.labels("suppressed").inc()
            return None
        claim = (
            self._update(message)
            .values(
                status="sending",
                attempts=message.attempts + 1,
                recipient=recipient,
                lease_until=self._clock.now() + self._policy.send_lease,
            )
            .returning(messages)
        )
        claimed: sa.Row[Any] = (await session.execute(claim)).one()
        return claimed

    # -- send -------------------------------------------------------------------------------

    async def _deliver(self, message: sa.Row[Any]) -> _Result:
        """Send with no transaction open; every failure becomes a result, none escapes
        (cancellation aside: the claim's lease covers it)."""
        try:
            await self._sender.send(self._email(message))
        except SmtpUnavailable as exc:
            return _Result(message, "outage", str(exc))
        except SmtpMisconfigured as exc:
            return _Result(message, "misconfigured", str(exc))
        except DeliveryError as exc:
            final = exc.permanent or message.attempts >= self._policy.max_attempts
            return _Result(message, "failed" if final else "retry", str(exc))
        except Exception as exc:
            # Something about this message (it cannot be rendered, say): it fails alone.
            log.exception(
                "message could not be sent", extra={"message_id": str(message.message_id)}
            )
            error = f"{type(exc).__name__}: {exc}"
            return _Result(message, "failed", error, server_answered=False)
        return _Result(message, "sent", at=self._clock.now())

    def _email(self, message: sa.Row[Any]) -> OutgoingEmail:
        tenant = self._tenants.of(message.tenant_id)
        return OutgoingEmail(
            message_id=str(message.message_id),
            sender=tenant.from_address or self._sender_address,
            sender_name=tenant.from_name or self._sender_name,
            recipient=message.recipient,
            reply_to=reply_address(message.reply_to),
            subject=message.subject,
            body=message.body,
            headers=(
                ("X-Closeloop-Case-Id", str(message.case_id)),
                ("X-Closeloop-Template", message.template),
                ("Content-Language", message.locale),
            ),
        )

    # -- record -----------------------------------------------------------------------------

    async def _record(self, result: _Result) -> None:
        message = result.message
        error = result.error[:2000] if result.error else None
        values: dict[str, Any]
        if result.outcome == "sent":
            values = {
                "status": "sent",
                "sent_at": result.at,
                "next_attempt_at": None,
                "last_error": None,
            }
        elif result.outcome == "retry":
            retry_at = self._clock.now() + self._policy.retry_after(message.attempts)
            values = {"status": "pending", "next_attempt_at": retry_at, "last_error": error}
        elif result.outcome == "failed":
            values = {"status": "failed", "next_attempt_at": None, "last_error": error}
        else:
            # Not the message's fault: it goes back as it was, its attempt not counted.
            values = {"status": "pending", "attempts": message.attempts - 1, "last_error": error}
        async with transaction(self._sessions) as session:
            still_ours = await session.scalar(
                self._update(message)
                .where(messages.c.status == "sending", messages.c.attempts == message.attempts)
                .values(lease_until=None, **values)
                .returning(messages.c.message_id)
            )
            if still_ours is None:
                # Our lease ran out and another dispatcher took the message: its record counts.
                log.warning(
                    "claim lost before recording", extra={"message_id": str(message.message_id)}
                )
                return
            if result.outcome == "sent":
                assert result.at is not None
                await self._publish_sent(session, message, result.at)
            elif result.outcome == "failed":
                await self._publish_failed(session, message, "delivery_failed", error)
        DELIVERIES.labels(result.outcome).inc()
        if result.outcome in ("retry", "failed"):
            log.warning(
                "delivery failed",
                extra={
                    "message_id": str(message.message_id),
                    "attempts": message.attempts,
                    "final": result.outcome == "failed",
                    "error": result.error,
                },
            )

    def _track_server(self, result: _Result) -> None:
        """Hold the queue while the server is down or refuses our configuration; the gauges
        say which (only a conversation that reached the message clears them)."""
        if result.outcome in ("outage", "misconfigured"):
            self._server_failures += 1
            hold = self._policy.hold_after(self._server_failures)
            self.held_until = self._clock.now() + hold
            extra = {"error": result.error, "held_for_s": hold.total_seconds()}
            if result.outcome == "outage":
                SMTP_UNREACHABLE.set(1)
                log.warning("SMTP server unreachable; the queue waits", extra=extra)
            else:
                SMTP_UNREACHABLE.set(0)
                SMTP_MISCONFIGURED.set(1)
                log.error("SMTP server refuses our configuration; the queue is held", extra=extra)
            return
        if not result.server_answered:
            return  # says nothing about the server
        self._server_failures = 0
        self.held_until = None
        SMTP_UNREACHABLE.set(0)
        SMTP_MISCONFIGURED.set(0)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _update(message: sa.Row[Any]) -> sa.Update:
        return sa.update(messages).where(
            messages.c.tenant_id == message.tenant_id,
            messages.c.message_id == message.message_id,
        )

    async def _fail(self, session: AsyncSession, message: sa.Row[Any], error: str) -> None:
        await session.execute(
            self._update(message).values(
                status="failed", next_attempt_at=None, lease_until=None, last_error=error[:2000]
            )
        )
        await self._publish_failed(session, message, "delivery_failed", error)
        DELIVERIES.labels("failed").inc()
        log.warning(
            "message failed without sending",
            extra={"message_id": str(message.message_id), "error": error},
        )

    async def _publish_failed(
        self,
        session: AsyncSession,
        message: sa.Row[Any],
        reason: Literal["opted_out", "delivery_failed"],
        detail: str | None,
    ) -> None:
        failed = failure_of(
            message, reason=reason, attempts=message.attempts, detail=detail, at=self._clock.now()
        )
        await self._emit(session, failed, tenant_id=message.tenant_id)

    async def _publish_sent(
        self, session: AsyncSession, message: sa.Row[Any], sent_at: datetime
    ) -> None:
        sent = NotificationSentV1(
            message_id=message.message_id,
            case_id=message.case_id,
            response_id=message.response_id,
            customer_id=message.customer_id,
            template=message.template,
            locale=message.locale,
            channel="email",
            recipient=message.recipient,
            subject=message.subject,
            attempts=message.attempts,
            sent_at=sent_at,
        )
        await self._emit(session, sent, tenant_id=message.tenant_id)

    async def _emit(self, session: AsyncSession, data: EventData, *, tenant_id: str) -> None:
        """Queue `data` as this service's event in `session`'s transaction (its outbox)."""
        event = new_event(data, tenant_id=tenant_id, source=self._source, clock=self._clock)
        await self._outbox.add(session, event)
