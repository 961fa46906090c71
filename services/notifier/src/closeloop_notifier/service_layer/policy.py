"""Opt-outs and reply addresses.

- Opt-outs are keyed by `opt_out_key`: the normalised address (`closeloop_common.emails`),
  lower-cased. An opt-out therefore holds for every spelling of an address (`Anna@Example.PL`,
  `anna@example.pl`, a full-width or IDNA domain), and is wider than the address itself: local
  parts differing only in case are one customer to us, even where a mail server tells them apart.
- An erased respondent's address counts as opted out for good: `erased_recipients` keeps its
  keyed hash (`closeloop_common.privacy.keyed_hash`), never the address (docs/privacy.md).
- `reply_address`: the owner's normalised address for `Reply-To`, left out if it is not valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.privacy import keyed_hash
from closeloop_notifier.adapters.tables import erased_recipients, opt_outs

log = logging.getLogger(__name__)


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


_OPTED_OUT = sa.text(
    "SELECT o.tenant_id, o.email FROM notifier.opt_outs AS o "
    "JOIN unnest(CAST(:tenants AS text[]), CAST(:emails AS text[])) AS k(tenant_id, email) "
    "USING (tenant_id, email)"
)


_ERASED = sa.text(
    "SELECT e.tenant_id, e.key_hash FROM notifier.erased_recipients AS e "
    "JOIN unnest(CAST(:tenants AS text[]), CAST(:hashes AS text[])) AS k(tenant_id, key_hash) "
    "USING (tenant_id, key_hash)"
)


async def opted_out(
    session: AsyncSession,
    keys: Iterable[tuple[str, str | None]],
    *,
    erasure_key: bytes | None = None,
) -> set[tuple[str, str]]:
    """Which of the (tenant, opt-out key) pairs opted out, in one query (keys that are None,
    customers without an address, are left out); with `erasure_key`, also those erased."""
    wanted = sorted({(tenant, key) for tenant, key in keys if key is not None})
    if not wanted:
        return set()
    rows = await session.execute(
        _OPTED_OUT, {"tenants": [t for t, _ in wanted], "emails": [e for _, e in wanted]}
    )
    found = {(row.tenant_id, row.email) for row in rows}
    if erasure_key is not None:
        by_hash = {(t, erased_key_hash(erasure_key, k)): (t, k) for t, k in wanted}
        erased = await session.execute(
            _ERASED,
            {"tenants": [t for t, _ in by_hash], "hashes": [h for _, h in by_hash]},
        )
        found |= {by_hash[(row.tenant_id, row.key_hash)] for row in erased}
    return found


def erased_key_hash(erasure_key: bytes, key: str) -> str:
    """The hash `erased_recipients` keeps of an opt-out key."""
    return keyed_hash(erasure_key, key)


async def remember_erased(
    *, session: AsyncSession, tenant_id: str, keys: Iterable[str], erasure_key: bytes, clock: Clock
) -> int:
    """Suppress every future message to these opt-out keys, keeping only their hashes."""
    hashes = sorted({erased_key_hash(erasure_key, k) for k in keys})
    if not hashes:
        return 0
    created = await session.scalars(
        pg_insert(erased_recipients)
        .values(
            [{"tenant_id": tenant_id, "key_hash": h, "created_at": clock.now()} for h in hashes]
        )
        .on_conflict_do_nothing()
        .returning(erased_recipients.c.key_hash)
    )
    return len(created.all())


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
