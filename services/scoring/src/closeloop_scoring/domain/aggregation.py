"""What one response contributes to the aggregates, and which of its versions counts. Pure.

Scoring keeps, per response, the one version it counts (`Counted`) and the aggregates are sums of
those versions' contributions. Every event about a response (received, corrected, suspected) is a
version of it (`Counted` as well); `supersede` decides whether it replaces the stored one:
- a higher version replaces a lower one: its old contribution (segment, day, category, themes) is
  taken back and the new one added;
- a `response.received` event replaces a stored suspected version, whatever its number: ingest
  holds a suspected response back (publishing each of its versions as `response.suspected`) and
  publishes it as received, which carries no version, once someone confirms it or a later version
  no longer looks automated. It is counted as the suspected version's number, so the suspicions
  it released stay behind it and the next correction (a higher number) comes after it;
- anything else (the same version again: a redelivery, a replay; a lower version: an old
  correction or suspicion arriving late) is ignored.
So the effect of a response's events is that of its highest version, whatever their repetition
or batching and whatever the order of its corrections: this is what makes the handler idempotent
without an inbox. (A release follows the suspicions it releases on the customer's partition.)

A contribution is counted in three aggregates, all per tenant and local day:
- `cell`: the full combination of survey, segment attributes and the custom attributes scoring is
  configured to score (any combination of filters is a sum over the cells that match it);
- `segment`: overall and each single dimension (survey, product, region, channel, touchpoint, and
  `attr.<name>` for each scored custom attribute), so the most common queries (no filter, one
  filter) read one row per day;
- `theme`: per cell and theme mentioned, for drivers; the root causes agents found in the
  response's case count there too, as themes `rc:<tag>` (see `domain/root_causes.py`). They are
  stored apart from the response (a case event may come before the response, and its version is
  the case's), and each contribution of the response includes them: a correction moves them with
  the rest, and a change of the tags (`recause`) takes the old ones back and adds the new ones.
Suspected responses count in the `suspected` columns only (no theme, no root cause).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import TypeVar

from closeloop_common.events import SEGMENT_ATTRIBUTES, Category, Segments
from closeloop_scoring.domain.root_causes import root_cause_theme

OVERALL = ("overall", "all")

# Column of each category in the count tables.
COLUMN: dict[Category, str] = {
    Category.PROMOTER: "promoters",
    Category.PASSIVE: "passives",
    Category.DETRACTOR: "detractors",
}
ATTRIBUTE_DIMENSION_PREFIX = "attr."
"""A custom attribute's dimension in the single-dimension rollup and in `breakdown?by=`."""

SUSPECTED = "suspected"
INVITATIONS = "invitations"
CATEGORY_COLUMNS = tuple(COLUMN.values())
COUNT_COLUMNS = (*CATEGORY_COLUMNS, SUSPECTED, INVITATIONS)


AttributePairs = tuple[tuple[str, str], ...]
"""Custom attributes as (name, value) pairs sorted by name: hashable, one spelling per set."""


def attribute_dimension(name: str) -> str:
    return f"{ATTRIBUTE_DIMENSION_PREFIX}{name}"


def scored_attributes(attributes: Mapping[str, str], scored: Collection[str]) -> AttributePairs:
    """The pairs of the attributes that are scored; the others are left out, so the number of
    cells stays bounded by what the configuration names."""
    return tuple(sorted((name, value) for name, value in attributes.items() if name in scored))


@dataclass(frozen=True, slots=True)
class Cell:
    """The survey, segment attributes and scored custom attributes a response is scored under
    (the account is kept on the response itself: it has too many values to be part of a cell)."""

    survey_id: str
    product: str | None = None
    region: str | None = None
    channel: str | None = None
    touchpoint: str | None = None
    attributes: AttributePairs = ()

    @classmethod
    def of(
        cls,
        survey_id: str,
        segments: Segments,
        attributes: Mapping[str, str] | None = None,
        *,
        scored: Collection[str] = (),
    ) -> Cell:
        """The cell of a response or invitation; of its custom attributes only the `scored`."""
        return cls(
            survey_id,
            segments.product,
            segments.region,
            segments.channel,
            segments.touchpoint,
            scored_attributes(attributes or {}, scored),
        )

    def sort_key(self) -> tuple[str, str, str, str, str, AttributePairs]:
        return (
            self.survey_id,
            self.product or "",
            self.region or "",
            self.channel or "",
            self.touchpoint or "",
            self.attributes,
        )

    def dimensions(self) -> list[tuple[str, str]]:
        """(dimension, segment) of every single-dimension rollup this cell counts in."""
        keys = [OVERALL, ("survey", self.survey_id)]
        for attribute in SEGMENT_ATTRIBUTES:
            value = getattr(self, attribute)
            if value is not None:
                keys.append((attribute, value))
        keys.extend((attribute_dimension(name), value) for name, value in self.attributes)
        return keys


@dataclass(frozen=True, slots=True)
class Counted:
    """One version of a response as scoring counts it. `themes` is None when the event carries
    no comment to tag (a suspicion event). `releases`: it is a `response.received` event, which
    takes the place of a suspected version (see the module docstring)."""

    response_id: str
    version: int
    cell: Cell
    day: date
    category: Category
    account_id: str | None
    themes: frozenset[str] | None
    suspected: bool
    releases: bool = False


def supersede(stored: Counted | None, new: Counted) -> Counted | None:
    """The version to store instead of `stored` once `new` arrived; None if nothing changes."""
    if stored is None or new.version > stored.version:
        return _stored_form(new, new.version)
    if stored.suspected and new.releases:
        return _stored_form(new, stored.version)
    return None


def _stored_form(version: Counted, number: int) -> Counted:
    """`version` as it is stored: numbered `number`, its themes known (none for a suspicion)."""
    return replace(
        version,
        version=number,
        themes=frozenset() if version.themes is None else version.themes,
        releases=False,
    )


CellDay = tuple[Cell, date]
SegmentDay = tuple[str, str, date]
ThemeDay = tuple[Cell, date, str]
_K = TypeVar("_K", CellDay, SegmentDay, ThemeDay)


@dataclass
class Deltas:
    """Changes to the aggregates of one tenant from a batch, per key and column; applied with one
    statement per table."""

    cells: dict[CellDay, Counter[str]]
    segments: dict[SegmentDay, Counter[str]]
    themes: dict[ThemeDay, Counter[str]]

    @classmethod
    def empty(cls) -> Deltas:
        return cls({}, {}, {})

    def count(
        self, version: Counted, sign: int, root_causes: Collection[str] = frozenset()
    ) -> None:
        """Add (`sign` 1) or take back (-1) what `version` contributes, with the `root_causes`
        (tags) stored for its response."""
        column = SUSPECTED if version.suspected else COLUMN[version.category]
        self._add(self.cells, (version.cell, version.day), column, sign)
        for dimension, segment in version.cell.dimensions():
            self._add(self.segments, (dimension, segment, version.day), column, sign)
        if version.suspected:
            return
        for theme in version.themes or ():
            self._add(self.themes, (version.cell, version.day, theme), column, sign)
        for tag in root_causes:
            self._add(self.themes, (version.cell, version.day, root_cause_theme(tag)), column, sign)

    def recause(self, version: Counted, before: Collection[str], after: Collection[str]) -> None:
        """The root causes of the response counted as `version` changed from the tags `before`
        to `after`: take back those dropped, add those added (nothing for a suspected one)."""
        if version.suspected:
            return
        column = COLUMN[version.category]
        for tag in set(before) - set(after):
            self._add(self.themes, (version.cell, version.day, root_cause_theme(tag)), column, -1)
        for tag in set(after) - set(before):
            self._add(self.themes, (version.cell, version.day, root_cause_theme(tag)), column, 1)

    def invite(self, cell: Cell, day: date) -> None:
        self._add(self.cells, (cell, day), INVITATIONS, 1)
        for dimension, segment in cell.dimensions():
            self._add(self.segments, (dimension, segment, day), INVITATIONS, 1)

    def replace(
        self, stored: Counted | None, new: Counted, root_causes: Collection[str] = frozenset()
    ) -> None:
        """`new` counted in place of `stored`, both with the response's `root_causes`."""
        if stored is not None:
            self.count(stored, -1, root_causes)
        self.count(new, 1, root_causes)

    @staticmethod
    def _add(table: dict[_K, Counter[str]], key: _K, column: str, n: int) -> None:
        counter = table.get(key)
        if counter is None:
            counter = table[key] = Counter()
        counter[column] += n

    def cell_keys(self) -> set[Cell]:
        return {cell for cell, _ in self.cells} | {cell for cell, _, _ in self.themes}
