"""Scoring's read side: counts for any combination of segment filters over a range of local days.
No writes happen here.

Filters and breakdowns are named by dimension: the built-in ones (`FILTER_NAMES`) and
`attr.<name>` for a scored custom attribute (a key of the cells' `attributes`).

Where the counts are read from (the same numbers whichever path; tests compare them):
- an account filter, or a breakdown by account: the stored responses of the account(s)
  (`responses`, indexed by account and day) and `invitations`;
- at most one other filter and no breakdown, or a breakdown with no filter: the single-dimension
  rollup (`segment_daily`), one row per day;
- otherwise: the cells matching every filter (`cells`) and their days (`cell_daily`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_scoring.adapters.tables import (
    cell_daily,
    cells,
    invitations,
    responses,
    root_causes,
    segment_daily,
    theme_daily,
)
from closeloop_scoring.domain.aggregation import (
    ATTRIBUTE_DIMENSION_PREFIX,
    CATEGORY_COLUMNS,
    COUNT_COLUMNS,
    OVERALL,
    AttributePairs,
    attribute_dimension,
)
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.root_causes import ROOT_CAUSE_PREFIX
from closeloop_scoring.domain.windows import Granularity

FilterName = Literal["survey", "account", "product", "region", "channel", "touchpoint"]
FILTER_NAMES: tuple[FilterName, ...] = (
    "survey",
    "account",
    "product",
    "region",
    "channel",
    "touchpoint",
)
_CELL_COLUMN = {"survey": "survey_id"}


@dataclass(frozen=True, slots=True)
class Filters:
    """Segment filters; None means any value. `attributes`: the custom attributes asked for, as
    (name, value) pairs sorted by name."""

    survey: str | None = None
    account: str | None = None
    product: str | None = None
    region: str | None = None
    channel: str | None = None
    touchpoint: str | None = None
    attributes: AttributePairs = ()

    def given(self) -> dict[str, str]:
        """Every filter given, by dimension (`region`, `attr.plan`)."""
        found: dict[str, str] = {
            name: v for name in FILTER_NAMES if (v := getattr(self, name)) is not None
        }
        found.update((attribute_dimension(name), value) for name, value in self.attributes)
        return found

    @classmethod
    def of(cls, given: Mapping[str, str] | Mapping[FilterName, str]) -> Filters:
        """The filters `given` names by dimension (the inverse of `given()`)."""
        prefix = ATTRIBUTE_DIMENSION_PREFIX
        attributes = sorted(
            (d.removeprefix(prefix), v) for d, v in given.items() if d.startswith(prefix)
        )
        built_in = {d: v for d, v in given.items() if not d.startswith(prefix)}
        return cls(**built_in, attributes=tuple(attributes))

    def without_account(self) -> dict[str, str]:
        return {k: v for k, v in self.given().items() if k != "account"}


@dataclass(frozen=True, slots=True)
class Days:
    """Local days [first, end); None on a side means unbounded."""

    first: date | None = None
    end: date | None = None

    def where(self, column: sa.ColumnElement[date]) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.first is not None:
            clauses.append(column >= self.first)
        if self.end is not None:
            clauses.append(column < self.end)
        return clauses


@dataclass(frozen=True, slots=True)
class Tally:
    counts: NpsCounts
    suspected: int = 0
    invitations: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.counts + other.counts,
            self.suspected + other.suspected,
            self.invitations + other.invitations,
        )


EMPTY = Tally(NpsCounts())


def _bucket(column: sa.ColumnElement[date], granularity: Granularity | None) -> Any:
    if granularity is None or granularity == "day":
        return column
    return sa.cast(sa.func.date_trunc(granularity, column), sa.Date)


def _cell_column(dimension: str) -> sa.ColumnElement[Any]:
    """The column of `cells` holding a dimension's value (a custom attribute's as text)."""
    if dimension.startswith(ATTRIBUTE_DIMENSION_PREFIX):
        name = dimension.removeprefix(ATTRIBUTE_DIMENSION_PREFIX)
        value: sa.ColumnElement[Any] = cells.c.attributes[name].astext
        return value
    return cells.c[_CELL_COLUMN.get(dimension, dimension)]


def _cell_filters(given: dict[str, str]) -> list[sa.ColumnElement[bool]]:
    return [_cell_column(name) == value for name, value in given.items()]


def _sums(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    return [sa.func.coalesce(sa.func.sum(table.c[name]), 0).label(name) for name in COUNT_COLUMNS]


def _tally(row: Any) -> Tally:
    return Tally(
        NpsCounts(int(row.promoters), int(row.passives), int(row.detractors)),
        int(row.suspected),
        int(row.invitations),
    )


async def tallies(
    session: AsyncSession,
    tenant: str,
    filters: Filters,
    days: Days,
    *,
    by: str | None = None,
    granularity: Granularity | None = None,
) -> dict[tuple[Any, ...], Tally]:
    """Counts grouped by (breakdown value, bucket start) — either part left out when not asked
    for, so the plain total is the one key `()`."""
    if filters.account is not None or by == "account":
        return await _from_responses(session, tenant, filters, days, by, granularity)
    given = filters.given()
    if len(given) <= 1 and (by is None or not given):
        return await _from_segments(session, tenant, given, days, by, granularity)
    return await _from_cells(session, tenant, given, days, by, granularity)


async def tally(session: AsyncSession, tenant: str, filters: Filters, days: Days) -> Tally:
    return (await tallies(session, tenant, filters, days)).get((), EMPTY)


async def _grouped(
    session: AsyncSession, query: sa.Select[Any], keys: Sequence[Any]
) -> dict[tuple[Any, ...], Tally]:
    """Run `query` grouped by `keys` (none: one total row): counts by key values."""
    if keys:
        query = query.group_by(*keys)
    rows = (await session.execute(query)).all()
    return {tuple(row[: len(keys)]): _tally(row) for row in rows}


def most_answered(found: Mapping[tuple[Any, ...], Tally]) -> list[tuple[Any, Tally]]:
    """Breakdown rows (key value, tally), most answers first, then by value."""
    return sorted(
        ((key[0], tally) for key, tally in found.items()),
        key=lambda row: (-row[1].counts.responses, str(row[0])),
    )


async def _from_segments(
    session: AsyncSession,
    tenant: str,
    given: dict[str, str],
    days: Days,
    by: str | None,
    granularity: Granularity | None,
) -> dict[tuple[Any, ...], Tally]:
    t = segment_daily
    keys: list[Any] = []
    where = [t.c.tenant_id == tenant, *days.where(t.c.day)]
    if by is not None:
        keys.append(t.c.segment)
        where.append(t.c.dimension == by)
    elif given:
        ((dimension, segment),) = given.items()
        where += [t.c.dimension == dimension, t.c.segment == segment]
    else:
        where += [t.c.dimension == OVERALL[0], t.c.segment == OVERALL[1]]
    if granularity is not None:
        keys.append(_bucket(t.c.day, granularity))
    query = sa.select(*keys, *_sums(t)).where(*where)
    return await _grouped(session, query, keys)


async def _from_cells(
    session: AsyncSession,
    tenant: str,
    given: dict[str, str],
    days: Days,
    by: str | None,
    granularity: Granularity | None,
) -> dict[tuple[Any, ...], Tally]:
    t = cell_daily
    keys: list[Any] = []
    if by is not None:
        keys.append(_cell_column(by))
    if granularity is not None:
        keys.append(_bucket(t.c.day, granularity))
    query = (
        sa.select(*keys, *_sums(t))
        .select_from(t.join(cells, t.c.cell_id == cells.c.cell_id))
        .where(
            t.c.tenant_id == tenant,
            cells.c.tenant_id == tenant,
            *_cell_filters(given),
            *days.where(t.c.day),
        )
    )
    if by is not None:
        query = query.where(_cell_column(by).is_not(None))
    return await _grouped(session, query, keys)


async def _from_responses(
    session: AsyncSession,
    tenant: str,
    filters: Filters,
    days: Days,
    by: str | None,
    granularity: Granularity | None,
) -> dict[tuple[Any, ...], Tally]:
    """Counts of the stored responses (an account's are few), and invitations likewise."""
    others = filters.without_account()
    found: dict[tuple[Any, ...], Tally] = {}
    for table, counting in ((responses, True), (invitations, False)):
        keys: list[Any] = []
        where = [table.c.tenant_id == tenant, *days.where(table.c.day)]
        if by is not None:
            by_column = table.c.account_id if by == "account" else _cell_column(by)
            keys.append(by_column)
            # Answers without the attribute are in no row (as on the other paths).
            where.append(by_column.is_not(None))
        if granularity is not None:
            keys.append(_bucket(table.c.day, granularity))
        if counting:
            r = responses
            normal = sa.not_(r.c.suspected)
            measures = [
                sa.func.count().filter(normal, r.c.category == c).label(c + "s")
                for c in ("promoter", "passive", "detractor")
            ] + [
                sa.func.count().filter(r.c.suspected).label("suspected"),
                sa.literal(0).label("invitations"),
            ]
        else:
            measures = [
                *(sa.literal(0).label(n) for n in CATEGORY_COLUMNS),
                sa.literal(0).label("suspected"),
                sa.func.count().label("invitations"),
            ]
        where.append(
            table.c.account_id == filters.account
            if filters.account is not None
            else table.c.account_id.is_not(None)
        )
        source: Any = table
        if others or (by is not None and by != "account"):
            source = table.join(cells, table.c.cell_id == cells.c.cell_id)
            where += _cell_filters(others)
        query = sa.select(*keys, *measures).select_from(source).where(*where)
        for key, part in (await _grouped(session, query, keys)).items():
            found[key] = found.get(key, EMPTY) + part
    return found


async def theme_tallies(
    session: AsyncSession, tenant: str, filters: Filters, days: Days
) -> dict[str, NpsCounts]:
    """Counts of the responses mentioning each theme, root causes (`rc:<tag>`) included
    (suspected responses left out)."""
    if filters.account is not None:
        r = responses
        where = [
            r.c.tenant_id == tenant,
            r.c.account_id == filters.account,
            sa.not_(r.c.suspected),
            *_cell_filters(filters.without_account()),
            *days.where(r.c.day),
        ]
        with_cells = r.join(cells, r.c.cell_id == cells.c.cell_id)
        mentioned = sa.select(sa.func.unnest(r.c.themes).label("theme"), r.c.category)
        found = sa.func.unnest(root_causes.c.tags)
        caused = sa.select(
            (sa.literal(ROOT_CAUSE_PREFIX) + found).label("theme"), r.c.category
        ).select_from(
            with_cells.join(
                root_causes,
                sa.and_(
                    root_causes.c.tenant_id == r.c.tenant_id,
                    root_causes.c.response_id == r.c.response_id,
                ),
            )
        )
        inner = sa.union_all(
            mentioned.select_from(with_cells).where(*where), caused.where(*where)
        ).subquery()
        query = sa.select(
            inner.c.theme,
            *(
                sa.func.count().filter(inner.c.category == c).label(c + "s")
                for c in ("promoter", "passive", "detractor")
            ),
        ).group_by(inner.c.theme)
    else:
        t = theme_daily
        query = (
            sa.select(
                t.c.theme,
                *(sa.func.sum(t.c[n]).label(n) for n in CATEGORY_COLUMNS),
            )
            .select_from(t.join(cells, t.c.cell_id == cells.c.cell_id))
            .where(t.c.tenant_id == tenant, *_cell_filters(filters.given()), *days.where(t.c.day))
            .group_by(t.c.theme)
        )
    rows = (await session.execute(query)).all()
    return {
        row.theme: NpsCounts(int(row.promoters), int(row.passives), int(row.detractors))
        for row in rows
    }


async def theme_responses(
    session: AsyncSession,
    tenant: str,
    filters: Filters,
    days: Days,
    *,
    theme: str,
    categories: Sequence[str],
    limit: int,
) -> list[str]:
    """The ids of the responses (of these categories, not suspected) that mention `theme`, or
    whose case has the root cause `rc:<tag>`; newest day first, at most `limit`."""
    r = responses
    where = [
        r.c.tenant_id == tenant,
        sa.not_(r.c.suspected),
        r.c.category.in_(list(categories)),
        *days.where(r.c.day),
        *_cell_filters(filters.without_account()),
    ]
    if filters.account is not None:
        where.append(r.c.account_id == filters.account)
    source: Any = r.join(cells, r.c.cell_id == cells.c.cell_id)
    if theme.startswith(ROOT_CAUSE_PREFIX):
        source = source.join(
            root_causes,
            sa.and_(
                root_causes.c.tenant_id == r.c.tenant_id,
                root_causes.c.response_id == r.c.response_id,
            ),
        )
        where.append(root_causes.c.tags.contains([theme.removeprefix(ROOT_CAUSE_PREFIX)]))
    else:
        where.append(r.c.themes.contains([theme]))
    query = (
        sa.select(r.c.response_id)
        .select_from(source)
        .where(*where)
        .order_by(r.c.day.desc(), r.c.response_id)
        .limit(limit)
    )
    return list(await session.scalars(query))
