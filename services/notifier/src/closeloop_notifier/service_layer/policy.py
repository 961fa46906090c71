"""Delivery policy: retries, leases and holds; opt-outs; and the one `notification.failed.v1`.

- `DeliveryPolicy` says when a message is tried again after a failure charged to it
  (`retry_after`), how long a claimed message is left to its dispatcher (`send_lease`), and how
  long the whole queue waits after the SMTP server was down or refused our configuration
  (`hold_after`).
- Opt-outs are keyed by `opt_out_key`: the normalised address (`closeloop_common.emails`),
  lower-cased. An opt-out therefore holds for every spelling of an address (`Anna@Example.PL`,
  `anna@example.pl`, a full-width or IDNA domain), and is wider than the address itself: local
  parts differing only in case are one customer to us, even where a mail server tells them apart.
- `reply_address`: the owner's normalised address for `Reply-To`, left out if it is not valid.
- `failure_of` is the only place a `NotificationFailedV1` is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.events import NotificationFailedV1
from closeloop_notifier.adapters.tables import opt_outs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 6
    first_retry_after: timedelta = timedelta(seconds=30)
    max_retry_after: timedelta = timedelta(hours=1)
    send_lease: timedelta = timedelta(minutes=5)
    first_hold: timedelta = timedelta(seconds=1)
    max_hold: timedelta = timedelta(minutes=1)

    def retry_after(self, attempts: int) -> timedelta:
        """The wait before the next attempt of a message that failed `attempts` times."""
        return _doubling(self.first_retry_after, self.max_retry_after, attempts)

    def hold_after(self, failures: int) -> timedelta:
        """The wait of the whole queue after `failures` server-level failures in a row."""
        return _doubling(self.first_hold, self.max_hold, failures)


def _doubling(first: timedelta, cap: timedelta, count: int) -> timedelta:
    # The exponent is bounded so that many failures cannot overflow timedelta.
    backoff: timedelta = first * 2 ** min(max(0, count - 1), 30)
    return min(cap, backoff)


def opt_out_key(email: str) -> str:
    """The key an opt-out of `email` is stored and looked up by (`InvalidEmailAddress` if the
    address is not valid)."""
    return normalize_email(email).lower()


def reply_address(owner_email: str | None) -> str | None:
    """The owner's address for `Reply-To`, normalised; None if it is not valid (the message
    still goes out, replies then reach the From address)."""
    if owner_email is None:
        return None
    try:
        return normalize_email(owner_email)
    except InvalidEmailAddress:
        log.warning("owner address is not valid; the message goes without Reply-To")
        return None


async def is_opted_out(session: AsyncSession, tenant_id: str, email: str) -> bool:
    """Whether the tenant's customer at `email` (a valid address) asked for no messages."""
    found = await session.scalar(
        sa.select(opt_outs.c.email).where(
            opt_outs.c.tenant_id == tenant_id, opt_outs.c.email == opt_out_key(email)
        )
    )
    return found is not None


async def add_opt_out(*, session: AsyncSession, tenant_id: str, email: str, clock: Clock) -> bool:
    """Stop messages to `email`; False if it was opted out already."""
    created = await session.scalar(
        pg_insert(opt_outs)
        .values(tenant_id=tenant_id, email=opt_out_key(email), created_at=clock.now())
        .on_conflict_do_nothing()
        .returning(opt_outs.c.email)
    )
    return created is not None


async def remove_opt_out(*, session: AsyncSession, tenant_id: str, email: str) -> None:
    """Allow messages to `email` again (whichever spelling the opt-out was made with)."""
    await session.execute(
        sa.delete(opt_outs).where(
            opt_outs.c.tenant_id == tenant_id, opt_outs.c.email == opt_out_key(email)
        )
    )


def failure_of(
    message: sa.Row[Any],
    *,
    reason: Literal["opted_out", "no_recipient", "delivery_failed"],
    attempts: int,
    detail: str | None,
    at: datetime,
) -> NotificationFailedV1:
    """The one construction of `notification.failed.v1`, for a stored `message`."""
    return NotificationFailedV1(
        message_id=message.message_id,
        case_id=message.case_id,
        response_id=message.response_id,
        customer_id=message.customer_id,
        template=message.template,
        channel="email",
        reason=reason,
        detail=detail[:500] if detail else None,
        attempts=attempts,
        failed_at=at,
    )
