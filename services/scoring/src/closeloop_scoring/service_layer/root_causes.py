"""Root causes in the database: the stored tags per response, and the tenant lock that keeps a
case event and the response it is about from being counted past each other.

Why a lock: a response and its case event travel on different topics and may be handled at the
same moment by two scoring replicas. The response's transaction inserts it and reads the stored
root causes; the case's transaction stores root causes and reads the stored response. Under READ
COMMITTED neither sees the other's uncommitted row, so without a lock both could commit having
counted nothing for the tags. So every consumer transaction that handles responses or case
events takes a transaction-scoped advisory lock per tenant (in tenant order, before any row
lock): shared when its batch has no case event, so response batches still run side by side, and
exclusive when it has one, so a case batch runs alone and sees every response committed before
it (and any response batch after it sees its root causes). Scoring registers one batch handler
for all its contracts, so a transaction knows from the start which mode it needs and never has
to upgrade a shared lock (two transactions upgrading at once would deadlock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_scoring.domain.root_causes import RootCauses

# Tags are joined with this to travel as one text per row through `unnest` (as themes are).
TAG_SEPARATOR = "\x1f"

_SHARED_LOCK = sa.text("SELECT pg_advisory_xact_lock_shared(hashtext(:key))")
_EXCLUSIVE_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))")
_OF = (
    "SELECT response_id, case_version, tags FROM scoring.root_causes "
    "WHERE tenant_id = :tenant AND response_id = ANY(CAST(:ids AS text[]))"
)
_TAGS_OF = sa.text(_OF)
_STORED = sa.text(_OF + " ORDER BY response_id FOR UPDATE")
_UPSERT = sa.text(
    "INSERT INTO scoring.root_causes AS t (tenant_id, response_id, case_version, tags) "
    "SELECT :tenant, i, v, string_to_array(g, :sep) FROM unnest("
    "CAST(:ids AS text[]), CAST(:versions AS int[]), CAST(:tags AS text[])) AS u(i, v, g) "
    "ON CONFLICT (tenant_id, response_id) DO UPDATE SET case_version = excluded.case_version, "
    "tags = excluded.tags WHERE t.case_version < excluded.case_version"
)


async def lock_tenant(session: AsyncSession, tenant: str, *, exclusive: bool) -> None:
    """Take the tenant's root-cause lock until the transaction ends (see the docstring)."""
    statement = _EXCLUSIVE_LOCK if exclusive else _SHARED_LOCK
    await session.execute(statement, {"key": f"scoring.root_causes:{tenant}"})


async def tags_of(
    session: AsyncSession, tenant: str, ids: Sequence[str]
) -> dict[str, frozenset[str]]:
    """The stored tags of the responses `ids` that have any."""
    rows = (await session.execute(_TAGS_OF, {"tenant": tenant, "ids": list(ids)})).all()
    return {row.response_id: frozenset(row.tags) for row in rows if row.tags}


async def stored(session: AsyncSession, tenant: str, ids: Sequence[str]) -> dict[str, RootCauses]:
    """The stored root causes of the responses `ids`, locked (in id order)."""
    rows = (await session.execute(_STORED, {"tenant": tenant, "ids": sorted(ids)})).all()
    return {
        row.response_id: RootCauses(row.response_id, row.case_version, frozenset(row.tags))
        for row in rows
    }


async def store(session: AsyncSession, tenant: str, found: Mapping[str, RootCauses]) -> None:
    """Upsert `found` (response id -> root causes), in response id order."""
    rows = [found[i] for i in sorted(found)]
    await session.execute(
        _UPSERT,
        {
            "tenant": tenant,
            "sep": TAG_SEPARATOR,
            "ids": [r.response_id for r in rows],
            "versions": [r.case_version for r in rows],
            "tags": [TAG_SEPARATOR.join(sorted(r.tags)) for r in rows],
        },
    )
