"""Counting responses, their corrections and suspicions, the root causes of their cases, and
invitations, a consumer batch at a time (see `domain/aggregation.py` and `domain/root_causes.py`
for the rules).

For the responses of one tenant in a batch, in one transaction (the consumer's):
1. the stored versions of those responses are read and locked (one statement, in id order), and
   their stored root causes read;
2. the batch's versions are folded over them in partition order (`supersede`), which gives the
   versions to store and the changes (`Deltas`) to the counts, root causes included;
3. the changed versions are upserted, then each count table gets one upsert of its deltas, in key
   order (two scoring replicas lock rows in the same order, so they cannot deadlock); rows whose
   counts fell to zero are deleted.
For the case events of the tenant, then: the stored root causes are read and locked, the newest
case version of each response kept, and where the tags changed the response's stored version
(if it has arrived) gives the theme rows to take the old tags back from and add the new ones to.
The handler is idempotent by version (the response's, the case's), so the consumer gives it its
events without the inbox; a tenant lock orders case events against responses (see
`service_layer/root_causes.py`).

Cells (combinations of segment attributes and scored custom attributes) are numbered in a
transaction of their own and cached: a cell is never deleted, and one inserted for a batch that
then fails is simply unused.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.db import transaction
from closeloop_common.events import (
    CaseUpdatedV1,
    Category,
    CloudEvent,
    InvitationSentV1,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseSuspectedV1,
)
from closeloop_common.handlers import Transaction
from closeloop_scoring.domain.aggregation import (
    CATEGORY_COLUMNS,
    COUNT_COLUMNS,
    Cell,
    Counted,
    Deltas,
    supersede,
)
from closeloop_scoring.domain.root_causes import RootCauses
from closeloop_scoring.domain.root_causes import latest as latest_root_causes
from closeloop_scoring.domain.themes import ThemeTagger
from closeloop_scoring.metrics import RESPONSES_AGGREGATED, ROOT_CAUSES_APPLIED
from closeloop_scoring.service_layer import root_causes

log = logging.getLogger(__name__)

ResponseEvent = ResponseReceivedV1 | ResponseCorrectedV1 | ResponseSuspectedV1
RESPONSE_CONTRACTS = (ResponseReceivedV1, ResponseCorrectedV1, ResponseSuspectedV1)
ScoringEvent = ResponseEvent | InvitationSentV1 | CaseUpdatedV1
CONTRACTS = (*RESPONSE_CONTRACTS, InvitationSentV1, CaseUpdatedV1)
"""Every contract scoring consumes, all given to one batch handler (`Aggregator.events`)."""
# Theme names are joined with this to travel as one text per row through `unnest`.
THEME_SEPARATOR = "\x1f"

_STORED = sa.text(
    "SELECT r.response_id, r.version, r.day, r.category, r.account_id, r.themes, r.suspected, "
    "c.survey_id, c.product, c.region, c.channel, c.touchpoint, c.attributes "
    "FROM scoring.responses r JOIN scoring.cells c USING (cell_id) "
    "WHERE r.tenant_id = :tenant AND r.response_id = ANY(CAST(:ids AS text[])) "
    "ORDER BY r.response_id FOR UPDATE OF r"
)
_RESPONSE_ROWS = (
    "INSERT INTO scoring.responses AS r "
    "(tenant_id, response_id, version, cell_id, day, category, account_id, themes, suspected) "
    "SELECT :tenant, i, v, c, d, k, a, string_to_array(th, :sep), s FROM unnest("
    "CAST(:ids AS text[]), CAST(:versions AS int[]), CAST(:cells AS bigint[]), "
    "CAST(:days AS date[]), CAST(:categories AS text[]), CAST(:accounts AS text[]), "
    "CAST(:themes AS text[]), CAST(:suspected AS boolean[])) AS u(i, v, c, d, k, a, th, s) "
)
_INSERT_RESPONSES = sa.text(
    _RESPONSE_ROWS + "ON CONFLICT (tenant_id, response_id) DO NOTHING RETURNING response_id"
)
_UPSERT_RESPONSES = sa.text(
    _RESPONSE_ROWS
    + "ON CONFLICT (tenant_id, response_id) DO UPDATE SET version = excluded.version, "
    "cell_id = excluded.cell_id, day = excluded.day, category = excluded.category, "
    "account_id = excluded.account_id, themes = excluded.themes, suspected = excluded.suspected"
)
_NEW_INVITATIONS = sa.text(
    "INSERT INTO scoring.invitations (tenant_id, invitation_id, cell_id, day, account_id) "
    "SELECT :tenant, i, c, d, a FROM unnest(CAST(:ids AS text[]), CAST(:cells AS bigint[]), "
    "CAST(:days AS date[]), CAST(:accounts AS text[])) AS u(i, c, d, a) "
    "ON CONFLICT DO NOTHING RETURNING invitation_id"
)
_INSERT_CELLS = sa.text(
    "INSERT INTO scoring.cells "
    "(tenant_id, survey_id, product, region, channel, touchpoint, attributes) "
    "SELECT :tenant, s, p, r, ch, tp, CAST(at AS jsonb) FROM unnest(CAST(:surveys AS text[]), "
    "CAST(:products AS text[]), CAST(:regions AS text[]), CAST(:channels AS text[]), "
    "CAST(:touchpoints AS text[]), CAST(:attributes AS text[])) AS u(s, p, r, ch, tp, at) "
    "ON CONFLICT ON CONSTRAINT uq_cells_combination DO NOTHING"
)
# A tenant has at most a few thousand cells: all of them are read into the cache at once.
_TENANT_CELLS = sa.text(
    "SELECT cell_id, survey_id, product, region, channel, touchpoint, attributes "
    "FROM scoring.cells "
    "WHERE tenant_id = :tenant"
)


def _count_upsert(table: str, keys: Sequence[tuple[str, str]], columns: Sequence[str]) -> str:
    """`INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE SET c = c + excluded.c`."""
    key_names = [k for k, _ in keys]
    names = [*key_names, *columns]
    casts = [f"CAST(:{k} AS {t}[])" for k, t in keys] + [f"CAST(:{c} AS int[])" for c in columns]
    updates = ", ".join(f"{c} = t.{c} + excluded.{c}" for c in columns)
    return (
        f"INSERT INTO scoring.{table} AS t (tenant_id, {', '.join(names)}) "
        f"SELECT :tenant, * FROM unnest({', '.join(casts)}) "
        f"ON CONFLICT (tenant_id, {', '.join(key_names)}) DO UPDATE SET {updates}"
    )


def _zero_delete(table: str, keys: Sequence[tuple[str, str]], columns: Sequence[str]) -> str:
    key_names = ", ".join(k for k, _ in keys)
    casts = ", ".join(f"CAST(:{k} AS {t}[])" for k, t in keys)
    zero = " AND ".join(f"{c} = 0" for c in columns)
    return (
        f"DELETE FROM scoring.{table} WHERE tenant_id = :tenant AND ({key_names}) IN "
        f"(SELECT * FROM unnest({casts})) AND {zero}"
    )


class _CountTable:
    """One count table: its key columns (name, SQL type) and count columns, and its statements."""

    def __init__(self, name: str, keys: Sequence[tuple[str, str]], columns: Sequence[str]):
        self.keys = keys
        self.columns = columns
        self.upsert = sa.text(_count_upsert(name, keys, columns))
        self.delete_zeros = sa.text(_zero_delete(name, keys, columns))

    async def apply(
        self,
        session: AsyncSession,
        tenant: str,
        rows: Sequence[tuple[tuple[Any, ...], Counter[str]]],
    ) -> None:
        # A key whose changes cancel out (a response counted and moved away in the same batch)
        # is left alone: upserting it would leave a row of zeros that a replay in other batches
        # does not make.
        rows = [(key, counts) for key, counts in rows if any(counts.values())]
        if not rows:
            return
        params: dict[str, Any] = {"tenant": tenant}
        for i, (name, _) in enumerate(self.keys):
            params[name] = [key[i] for key, _ in rows]
        for column in self.columns:
            params[column] = [counts[column] for _, counts in rows]
        await session.execute(self.upsert, params)
        shrunk = [(key, counts) for key, counts in rows if any(v < 0 for v in counts.values())]
        if shrunk:
            await session.execute(
                self.delete_zeros,
                {
                    "tenant": tenant,
                    **{
                        name: [key[i] for key, _ in shrunk] for i, (name, _) in enumerate(self.keys)
                    },
                },
            )


CELL_DAILY = _CountTable(
    "cell_daily",
    (("cell_id", "bigint"), ("day", "date")),
    COUNT_COLUMNS,
)
SEGMENT_DAILY = _CountTable(
    "segment_daily",
    (("dimension", "text"), ("segment", "text"), ("day", "date")),
    COUNT_COLUMNS,
)
THEME_DAILY = _CountTable(
    "theme_daily",
    (("cell_id", "bigint"), ("day", "date"), ("theme", "text")),
    CATEGORY_COLUMNS,
)


@dataclass
class _TenantBatch:
    """One tenant's events of a batch, by kind (each kind in partition order)."""

    versions: list[Counted] = field(default_factory=list)
    root_causes: list[RootCauses] = field(default_factory=list)
    invitations: dict[str, InvitationSentV1] = field(default_factory=dict)


class Aggregator:
    """The batch handler of scoring's consumer (see the module docstring)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        time_zone: ZoneInfo,
        tagger: ThemeTagger,
        attributes: Collection[str] = (),
    ) -> None:
        self._sessions = sessions
        self._zone = time_zone
        self._tagger = tagger
        self._scored = frozenset(attributes)
        self._cell_ids: dict[tuple[str, Cell], int] = {}

    def forget_cells(self) -> None:
        """Drop the cell cache (after a rebuild emptied the table)."""
        self._cell_ids.clear()

    def counted(self, data: ResponseEvent) -> Counted:
        """The version an event carries, as it is counted."""
        themes: frozenset[str] | None
        if isinstance(data, ResponseSuspectedV1):
            themes, version, suspected = None, data.version, True
        else:
            themes = self._tagger.tag(data.comment) if data.comment else frozenset()
            version = data.version if isinstance(data, ResponseCorrectedV1) else 1
            suspected = False
        # A received event is the first version, or the release of a suspected response.
        releases = isinstance(data, ResponseReceivedV1)
        return Counted(
            response_id=data.response_id,
            version=version,
            cell=Cell.of(data.survey_id, data.segments, data.attributes, scored=self._scored),
            day=data.answered_at.astimezone(self._zone).date(),
            category=data.category,
            account_id=data.account_id,
            themes=themes,
            suspected=suspected,
            releases=releases,
        )

    async def events(self, tx: Transaction, events: Sequence[CloudEvent[ScoringEvent]]) -> None:
        """Scoring's one batch handler, for every contract it consumes (`CONTRACTS`): per tenant,
        in tenant order, the tenant's root-cause lock (see `service_layer/root_causes.py`), then
        its response versions, its case events' root causes and its invitations."""
        batches: dict[str, _TenantBatch] = defaultdict(_TenantBatch)
        for event in events:
            data, batch = event.data, batches[event.tenantid]
            if isinstance(data, InvitationSentV1):
                batch.invitations.setdefault(data.invitation_id, data)
            elif isinstance(data, CaseUpdatedV1):
                found = RootCauses(data.response_id, data.version, frozenset(data.root_causes))
                batch.root_causes.append(found)
            else:
                batch.versions.append(self.counted(data))
        for tenant in sorted(batches):
            batch = batches[tenant]
            if batch.versions or batch.root_causes:
                await root_causes.lock_tenant(tx.session, tenant, exclusive=bool(batch.root_causes))
            if batch.versions:
                changed = await self._apply_versions(tx.session, tenant, batch.versions)
                RESPONSES_AGGREGATED.labels("changed").inc(changed)
                RESPONSES_AGGREGATED.labels("unchanged").inc(len(batch.versions) - changed)
            if batch.root_causes:
                changed = await self._apply_root_causes(tx.session, tenant, batch.root_causes)
                ROOT_CAUSES_APPLIED.labels("changed").inc(changed)
                ROOT_CAUSES_APPLIED.labels("unchanged").inc(len(batch.root_causes) - changed)
            if batch.invitations:
                await self._apply_invitations(tx.session, tenant, batch.invitations)

    async def _apply_invitations(
        self, session: AsyncSession, tenant: str, invited: dict[str, InvitationSentV1]
    ) -> None:
        """Count the invitations not counted before."""
        cells = {
            i: Cell.of(d.survey_id, d.segments, d.attributes, scored=self._scored)
            for i, d in invited.items()
        }
        days = {i: d.invited_at.astimezone(self._zone).date() for i, d in invited.items()}
        ids = await self.cell_ids(tenant, cells.values())
        order = sorted(invited)
        new = (
            await session.execute(
                _NEW_INVITATIONS,
                {
                    "tenant": tenant,
                    "ids": order,
                    "cells": [ids[cells[i]] for i in order],
                    "days": [days[i] for i in order],
                    "accounts": [invited[i].account_id for i in order],
                },
            )
        ).scalars()
        deltas = Deltas.empty()
        for invitation_id in new:
            deltas.invite(cells[invitation_id], days[invitation_id])
        await self._apply_deltas(session, tenant, deltas, ids)

    async def _apply_root_causes(
        self, session: AsyncSession, tenant: str, arrived: list[RootCauses]
    ) -> int:
        """Store the newest root causes of each response and move its counts from the tags
        stored before to the new ones (if the response is counted); how many responses'
        stored root causes changed (a higher case version, even with the same tags)."""
        by_response: dict[str, list[RootCauses]] = defaultdict(list)
        for found in arrived:
            by_response[found.response_id].append(found)
        before = await root_causes.stored(session, tenant, list(by_response))
        newer: dict[str, RootCauses] = {}
        moved: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        for rid in sorted(by_response):
            stored = before.get(rid)
            after = latest_root_causes(stored, by_response[rid])
            if after is None or after == stored:
                continue
            newer[rid] = after
            tags_before = stored.tags if stored is not None else frozenset()
            if after.tags != tags_before:
                moved[rid] = (tags_before, after.tags)
        if newer:
            await root_causes.store(session, tenant, newer)
        if moved:
            counted = await self._stored(session, tenant, sorted(moved))
            deltas = Deltas.empty()
            for rid, (tags_before, tags_after) in moved.items():
                # A response not seen yet counts its root causes when it arrives.
                if (version := counted.get(rid)) is not None:
                    deltas.recause(version, tags_before, tags_after)
            cell_ids = await self.cell_ids(tenant, deltas.cell_keys())
            await self._apply_deltas(session, tenant, deltas, cell_ids)
        return len(newer)

    async def _apply_versions(
        self, session: AsyncSession, tenant: str, versions: list[Counted]
    ) -> int:
        """Fold the versions over the stored ones and write the changes; how many responses
        changed.

        Most responses are new: the batch's result for each response is inserted first (`ON
        CONFLICT DO NOTHING`), and only the responses already stored are read, locked and
        folded again over what is stored."""
        by_response: dict[str, list[Counted]] = defaultdict(list)
        for version in versions:
            by_response[version.response_id].append(version)
        folded = {rid: _fold(None, found) for rid, found in by_response.items()}
        results = {rid: v for rid, v in folded.items() if v is not None}
        # Each contribution includes the response's root causes (stored before its case events
        # of this batch, if any, which are applied next).
        tags = await root_causes.tags_of(session, tenant, sorted(results))
        cell_ids = await self.cell_ids(tenant, [v.cell for v in results.values()])
        inserted = set(
            (await session.execute(_INSERT_RESPONSES, self._rows(tenant, results, cell_ids)))
            .scalars()
            .all()
        )
        deltas = Deltas.empty()
        changed = 0
        for rid in inserted:
            deltas.count(results[rid], 1, tags.get(rid, frozenset()))
            changed += 1
        known = sorted(rid for rid in results if rid not in inserted)
        if known:
            stored = await self._stored(session, tenant, known)
            updates: dict[str, Counted] = {}
            for rid in known:
                before = stored.get(rid)
                after = _fold(before, by_response[rid])
                if after is None or after == before:
                    continue
                found = tags.get(rid, frozenset())
                if before is not None:
                    deltas.count(before, -1, found)
                deltas.count(after, 1, found)
                updates[rid] = after
            if updates:
                # The cells counted back (of the stored versions) as well as the new ones: a
                # process that did not count a response's stored version has not cached its cell.
                cell_ids.update(
                    await self.cell_ids(
                        tenant, {v.cell for v in updates.values()} | deltas.cell_keys()
                    )
                )
                await session.execute(_UPSERT_RESPONSES, self._rows(tenant, updates, cell_ids))
                changed += len(updates)
        # The cells a correction takes its old contribution back from are not the batch's.
        cell_ids.update(await self.cell_ids(tenant, deltas.cell_keys() - cell_ids.keys()))
        await self._apply_deltas(session, tenant, deltas, cell_ids)
        return changed

    @staticmethod
    def _rows(
        tenant: str, versions: dict[str, Counted], cell_ids: dict[Cell, int]
    ) -> dict[str, Any]:
        """The statement parameters of `versions`, in response id order."""
        rows = [versions[i] for i in sorted(versions)]
        return {
            "tenant": tenant,
            "sep": THEME_SEPARATOR,
            "ids": [r.response_id for r in rows],
            "versions": [r.version for r in rows],
            "cells": [cell_ids[r.cell] for r in rows],
            "days": [r.day for r in rows],
            "categories": [r.category.value for r in rows],
            "accounts": [r.account_id for r in rows],
            "themes": [THEME_SEPARATOR.join(sorted(r.themes or ())) for r in rows],
            "suspected": [r.suspected for r in rows],
        }

    async def _stored(
        self, session: AsyncSession, tenant: str, ids: list[str]
    ) -> dict[str, Counted]:
        rows = (await session.execute(_STORED, {"tenant": tenant, "ids": ids})).all()
        return {
            row.response_id: Counted(
                response_id=row.response_id,
                version=row.version,
                cell=_cell_of(row),
                day=row.day,
                category=Category(row.category),
                account_id=row.account_id,
                themes=frozenset(row.themes),
                suspected=row.suspected,
            )
            for row in rows
        }

    async def _apply_deltas(
        self, session: AsyncSession, tenant: str, deltas: Deltas, cell_ids: dict[Cell, int]
    ) -> None:
        cells = sorted(
            ((cell_ids[cell], day), counts) for (cell, day), counts in deltas.cells.items()
        )
        await CELL_DAILY.apply(session, tenant, cells)
        await SEGMENT_DAILY.apply(
            session,
            tenant,
            sorted(
                ((dimension, segment, day), counts)
                for (dimension, segment, day), counts in deltas.segments.items()
            ),
        )
        themes = sorted(
            ((cell_ids[cell], day, theme), counts)
            for (cell, day, theme), counts in deltas.themes.items()
        )
        await THEME_DAILY.apply(session, tenant, themes)

    async def cell_ids(self, tenant: str, cells: Iterable[Cell]) -> dict[Cell, int]:
        """The number of each cell, numbering new ones (committed at once, see the docstring)."""
        wanted = set(cells)
        found = {c: self._cell_ids[(tenant, c)] for c in wanted if (tenant, c) in self._cell_ids}
        missing = sorted((c for c in wanted if c not in found), key=Cell.sort_key)
        if missing:
            params = {
                "tenant": tenant,
                "surveys": [c.survey_id for c in missing],
                "products": [c.product for c in missing],
                "regions": [c.region for c in missing],
                "channels": [c.channel for c in missing],
                "touchpoints": [c.touchpoint for c in missing],
                "attributes": [json.dumps(dict(c.attributes)) for c in missing],
            }
            async with transaction(self._sessions) as session:
                await session.execute(_INSERT_CELLS, params)
                rows = (await session.execute(_TENANT_CELLS, {"tenant": tenant})).all()
            for row in rows:
                cell = _cell_of(row)
                self._cell_ids[(tenant, cell)] = row.cell_id
                if cell in wanted:
                    found[cell] = row.cell_id
        return found


def _cell_of(row: Any) -> Cell:
    """The cell a row of `cells` (or a join with it) describes."""
    return Cell(
        row.survey_id,
        row.product,
        row.region,
        row.channel,
        row.touchpoint,
        tuple(sorted(row.attributes.items())),
    )


def _fold(stored: Counted | None, versions: Iterable[Counted]) -> Counted | None:
    """What is stored after `versions` arrive in this order over `stored` (None: nothing)."""
    current = stored
    for version in versions:
        after = supersede(current, version)
        if after is not None:
            current = after
    return current
