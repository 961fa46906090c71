"""Drivers: which themes weigh on the NPS, and how much it would rise without them. Pure.

A driver is a theme of the comments (what customers wrote, source `comment`) or a root cause
agents found in a response's case (the theme `rc:<tag>`, source `root_cause`); both are counted
per response and category, so their shares and impacts are computed alike and compare directly.

For a theme t mentioned by D_t of the D detractors (P_t, Pa_t of the promoters and passives) among
n answers:
- its share of each category: D_t / D, Pa_t / Pa, P_t / P (None for a category with no answer);
- its NPS impact: how much the NPS rises if its detractors were passives instead,
  100 (P - (D - D_t)) / n - 100 (P - D) / n = 100 D_t / n;
- the impact's interval: D_t / n is a binomial proportion, given the adjusted-Wald
  (Agresti-Coull) interval, which holds for the small counts a theme often has: p~ = (x + z^2/2) /
  (n + z^2), se = sqrt(p~ (1 - p~) / (n + z^2)), clipped to [0, 100].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.root_causes import is_root_cause
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, z_for

DriverSource = Literal["comment", "root_cause"]


def source_of(theme: str) -> DriverSource:
    """Where a driver comes from: a root cause found in a case, or a theme of the comments."""
    return "root_cause" if is_root_cause(theme) else "comment"


@dataclass(frozen=True, slots=True)
class Driver:
    theme: str
    mentions: NpsCounts
    share_of_detractors: float | None
    share_of_passives: float | None
    share_of_promoters: float | None
    nps_impact: float
    impact_low: float
    impact_high: float
    confidence: float

    @property
    def source(self) -> DriverSource:
        return source_of(self.theme)


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def proportion_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The adjusted-Wald (Agresti-Coull) interval of `successes / n`, within [0, 1]."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = z_for(confidence)
    adjusted_n = n + z * z
    centre = (successes + z * z / 2) / adjusted_n
    half = z * math.sqrt(centre * (1 - centre) / adjusted_n)
    return max(0.0, centre - half), min(1.0, centre + half)


def drivers(
    total: NpsCounts,
    by_theme: Mapping[str, NpsCounts],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[Driver]:
    """Every theme with its shares and impact, the largest impact first (then by name); empty
    when there is no answer at all."""
    n = total.responses
    if n == 0:
        return []
    found: list[Driver] = []
    for theme, mentions in by_theme.items():
        if (
            mentions.promoters > total.promoters
            or mentions.passives > total.passives
            or mentions.detractors > total.detractors
        ):
            raise ValueError(f"theme {theme!r} has more mentions than answers")
        low, high = proportion_interval(mentions.detractors, n, confidence)
        found.append(
            Driver(
                theme=theme,
                mentions=mentions,
                share_of_detractors=_share(mentions.detractors, total.detractors),
                share_of_passives=_share(mentions.passives, total.passives),
                share_of_promoters=_share(mentions.promoters, total.promoters),
                nps_impact=100.0 * mentions.detractors / n,
                impact_low=100.0 * low,
                impact_high=100.0 * high,
                confidence=confidence,
            )
        )
    return sorted(found, key=lambda d: (-d.nps_impact, d.theme))
