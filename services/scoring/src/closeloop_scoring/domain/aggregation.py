"""What one response contributes to the aggregates, and which of its versions counts. Pure.

Scoring keeps, per response, the one version it counts (`Counted`) and the aggregates are sums of
those versions' contributions. Every event about a response (received, corrected, suspected) is a
version of it (`Counted` as well); `supersede` decides whether it replaces the stored one:
- a higher version replaces a lower one: its old contribution (segment, day, category, themes) is
  taken back and the new one added;
- the same version again (a redelivery, a replay) changes nothing, except that a suspicion of that
  version moves it out of the NPS counts into `suspected`, and the comment of a version first seen
  as a suspicion (which carries none) gives it its themes: the state of a version is the same
  whichever of its events came first;
- a lower version (an old correction arriving late) is ignored.
So the effect of any sequence of events is that of its highest version, whatever the order,
repetition or batching: this is what makes the handler idempotent without an inbox.

One event is read by its place in the stream rather than by version: `response.received` carries
no version, and ingest publishes it either first (version 1) or to release a response held back
as suspected (confirmed, or a new version that no longer looks automated). A received event
(`releases`) therefore takes a suspected response back into the NPS at the stored version (or
its own, if higher), with its content; a response's events keep their order in the topic, so a
suspicion is never read after the release that followed it.

A contribution is counted in three aggregates, all per tenant and local day:
- `cell`: the full combination of survey and segment attributes (any combination of filters is
  a sum over the cells that match it);
- `segment`: overall and each single dimension (survey, product, region, channel, touchpoint), so
  the most common queries (no filter, one filter) read one row per day;
- `theme`: per cell and theme mentioned, for drivers.
Suspected responses count in the `suspected` columns only (no theme).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, TypeVar

from closeloop_common.events import SEGMENT_ATTRIBUTES, Category, Segments

OVERALL = ("overall", "all")

# Column of each category in the count tables.
COLUMN: dict[Category, str] = {
    Category.PROMOTER: "promoters",
    Category.PASSIVE: "passives",
    Category.DETRACTOR: "detractors",
}
SUSPECTED = "suspected"
INVITATIONS = "invitations"
COUNT_COLUMNS = ("promoters", "passives", "detractors", SUSPECTED, INVITATIONS)


@dataclass(frozen=True, slots=True)
class Cell:
    """The survey and segment attributes a response is scored under (the account is kept on the
    response itself: it has too many values to be part of a cell)."""

    survey_id: str
    product: str | None = None
    region: str | None = None
    channel: str | None = None
    touchpoint: str | None = None

    @classmethod
    def of(cls, survey_id: str, segments: Segments) -> Cell:
        return cls(
            survey_id, segments.product, segments.region, segments.channel, segments.touchpoint
        )

    def dimensions(self) -> list[tuple[str, str]]:
        """(dimension, segment) of every single-dimension rollup this cell counts in."""
        keys = [OVERALL, ("survey", self.survey_id)]
        for attribute in SEGMENT_ATTRIBUTES:
            value = getattr(self, attribute)
            if value is not None:
                keys.append((attribute, value))
        return keys


@dataclass(frozen=True, slots=True)
class Counted:
    """One version of a response as scoring counts it. `themes` is None when the event carries
    no comment to tag (a suspicion event). `releases` marks a received event (see the module
    docstring); stored versions never carry it."""

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
    if stored is not None and stored.suspected and new.releases:
        return _stored(new, version=max(new.version, stored.version), suspected=False)
    if stored is None or new.version > stored.version:
        return _stored(new)
    if new.version < stored.version:
        return None
    merged = replace(
        stored,
        themes=(stored.themes or frozenset()) | (new.themes or frozenset()),
        suspected=stored.suspected or new.suspected,
    )
    return None if merged == stored else merged


def _stored(new: Counted, **changes: Any) -> Counted:
    """`new` as it is stored: with themes (none known yet for a suspicion), without `releases`."""
    return replace(new, themes=new.themes or frozenset(), releases=False, **changes)


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

    def count(self, version: Counted, sign: int) -> None:
        """Add (`sign` 1) or take back (-1) what `version` contributes."""
        column = SUSPECTED if version.suspected else COLUMN[version.category]
        self._add(self.cells, (version.cell, version.day), column, sign)
        for dimension, segment in version.cell.dimensions():
            self._add(self.segments, (dimension, segment, version.day), column, sign)
        if version.suspected:
            return
        for theme in version.themes or ():
            self._add(self.themes, (version.cell, version.day, theme), column, sign)

    def invite(self, cell: Cell, day: date) -> None:
        self._add(self.cells, (cell, day), INVITATIONS, 1)
        for dimension, segment in cell.dimensions():
            self._add(self.segments, (dimension, segment, day), INVITATIONS, 1)

    def replace(self, stored: Counted | None, new: Counted) -> None:
        if stored is not None:
            self.count(stored, -1)
        self.count(new, 1)

    @staticmethod
    def _add(table: dict[_K, Counter[str]], key: _K, column: str, n: int) -> None:
        counter = table.get(key)
        if counter is None:
            counter = table[key] = Counter()
        counter[column] += n

    def cell_keys(self) -> set[Cell]:
        return {cell for cell, _ in self.cells} | {cell for cell, _, _ in self.themes}
