"""What-if: the NPS a change would bring, with its interval and the change from today. Pure.

A scenario moves answers between categories of the counts in hand; counts may become fractional
(30 % of 7 detractors), and the interval is computed on the projected counts by the same method
as any NPS (`statistics`). Scenarios:
- `ThemeDetractorsBecomePassives`: the detractors who mentioned a theme (their number comes from
  the drivers) become passives;
- `WinBack`: a share of a segment's detractors become passives (or promoters);
- `SegmentReachesNps`: a segment's NPS moves to a target, its size unchanged. Raising it moves
  detractors to passives first, then passives to promoters; lowering it, promoters to passives
  first, then passives to detractors. A target outside -100..100 is refused.
A segment is given by its own counts, which must be part of the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import (
    DEFAULT_CONFIDENCE,
    Method,
    interval,
    shares_of,
    z_for,
)


@dataclass(frozen=True, slots=True)
class Mix:
    """Counts that may be fractional."""

    promoters: float
    passives: float
    detractors: float

    @classmethod
    def of(cls, counts: NpsCounts) -> Mix:
        return cls(float(counts.promoters), float(counts.passives), float(counts.detractors))

    @property
    def n(self) -> float:
        return self.promoters + self.passives + self.detractors

    def __add__(self, other: Mix) -> Mix:
        return Mix(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )

    def __sub__(self, other: Mix) -> Mix:
        return Mix(
            self.promoters - other.promoters,
            self.passives - other.passives,
            self.detractors - other.detractors,
        )


@dataclass(frozen=True, slots=True)
class ThemeDetractorsBecomePassives:
    detractors_mentioning: int


@dataclass(frozen=True, slots=True)
class WinBack:
    segment: NpsCounts
    share: float  # of the segment's detractors, 0..1
    to: Literal["passive", "promoter"] = "passive"


@dataclass(frozen=True, slots=True)
class SegmentReachesNps:
    segment: NpsCounts
    target: float  # -100..100


Scenario = ThemeDetractorsBecomePassives | WinBack | SegmentReachesNps


class ImpossibleScenario(ValueError):
    """The scenario asks for more than the counts hold."""


@dataclass(frozen=True, slots=True)
class Projection:
    today: float | None
    projected: float | None
    change: float | None
    ci_low: float | None
    ci_high: float | None
    projected_mix: Mix
    confidence: float
    method: Method


def project(
    total: NpsCounts,
    scenario: Scenario,
    *,
    method: Method = "adjusted-wald",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Projection:
    z_for(confidence)  # refuses a confidence out of range before any work
    mix = _apply(Mix.of(total), scenario)
    then = shares_of(mix.promoters, mix.passives, mix.detractors, method)
    today = total.nps
    projected = None if mix.n == 0 else 100.0 * (mix.promoters - mix.detractors) / mix.n
    low, high = (None, None) if then is None else interval(then, confidence)
    return Projection(
        today=today,
        projected=projected,
        change=None if today is None or projected is None else projected - today,
        ci_low=low,
        ci_high=high,
        projected_mix=mix,
        confidence=confidence,
        method=method,
    )


def _apply(mix: Mix, scenario: Scenario) -> Mix:
    if isinstance(scenario, ThemeDetractorsBecomePassives):
        moved = scenario.detractors_mentioning
        if not 0 <= moved <= mix.detractors:
            raise ImpossibleScenario(f"{moved} detractors mention it, of {mix.detractors:g}")
        return Mix(mix.promoters, mix.passives + moved, mix.detractors - moved)
    segment = Mix.of(scenario.segment)
    if (
        segment.promoters > mix.promoters
        or segment.passives > mix.passives
        or segment.detractors > mix.detractors
    ):
        raise ImpossibleScenario("the segment has more answers than the total")
    if isinstance(scenario, WinBack):
        if not 0.0 <= scenario.share <= 1.0:
            raise ImpossibleScenario(f"a share is 0..1, got {scenario.share}")
        moved_back = segment.detractors * scenario.share
        if scenario.to == "passive":
            changed = Mix(
                segment.promoters, segment.passives + moved_back, segment.detractors - moved_back
            )
        else:
            changed = Mix(
                segment.promoters + moved_back, segment.passives, segment.detractors - moved_back
            )
        return mix - segment + changed
    return mix - segment + _reach(segment, scenario.target)


def _reach(segment: Mix, target: float) -> Mix:
    """The segment moved to NPS `target` (see the module docstring)."""
    n = segment.n
    if n == 0:
        raise ImpossibleScenario("the segment has no answer")
    if not -100.0 <= target <= 100.0:
        raise ImpossibleScenario(f"an NPS target is -100..100, got {target}")
    # Each answer moved one category up raises the NPS by 100 / n.
    steps = (target - 100.0 * (segment.promoters - segment.detractors) / n) * n / 100.0
    promoters, passives, detractors = segment.promoters, segment.passives, segment.detractors
    if steps >= 0:
        first = min(steps, detractors)
        detractors, passives, steps = detractors - first, passives + first, steps - first
        second = min(steps, passives)
        passives, promoters = passives - second, promoters + second
    else:
        steps = -steps
        first = min(steps, promoters)
        promoters, passives, steps = promoters - first, passives + first, steps - first
        second = min(steps, passives)
        passives, detractors = passives - second, detractors + second
    # Within -100..100 the two moves always suffice: every answer can go two categories.
    return Mix(promoters, passives, detractors)
