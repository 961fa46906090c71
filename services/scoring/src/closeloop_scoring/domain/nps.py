"""NPS arithmetic over counts. Pure: aggregates store counts, ratios are computed on read.

NPS = %promoters - %detractors, in [-100, 100]. Its margin of error treats each answer as +1
(promoter), 0 (passive) or -1 (detractor): the NPS is 100 x the mean of that variable, whose
variance is p + d - (p - d)^2 (p, d the promoter and detractor shares), so the standard error is
100 x sqrt((p + d - (p - d)^2) / n). This is the normal (Wald) approximation: honest for a few dozen
answers or more, optimistic below that, which is why `responses` is always reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from closeloop_common.events import Category, Dimension, ResponseReceivedV1

OVERALL_SEGMENT = "all"
Z_95 = 1.959964


@dataclass(frozen=True, slots=True)
class NpsCounts:
    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    def __post_init__(self) -> None:
        if min(self.promoters, self.passives, self.detractors) < 0:
            raise ValueError("counts cannot be negative")

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    def add(self, category: Category, n: int = 1) -> NpsCounts:
        return NpsCounts(
            self.promoters + (n if category == Category.PROMOTER else 0),
            self.passives + (n if category == Category.PASSIVE else 0),
            self.detractors + (n if category == Category.DETRACTOR else 0),
        )

    def __add__(self, other: NpsCounts) -> NpsCounts:
        return NpsCounts(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )

    @property
    def nps(self) -> float | None:
        """%promoters - %detractors, or None when there is no response."""
        n = self.responses
        if n == 0:
            return None
        return 100.0 * (self.promoters - self.detractors) / n

    def margin_of_error(self, z: float = Z_95) -> float | None:
        """Half-width of the confidence interval of the NPS (95% by default), in NPS points."""
        n = self.responses
        if n == 0:
            return None
        p, d = self.promoters / n, self.detractors / n
        variance = max(0.0, p + d - (p - d) ** 2)
        return z * 100.0 * math.sqrt(variance / n)


def segment_keys(response: ResponseReceivedV1) -> list[tuple[Dimension, str]]:
    """Every (dimension, segment) a response counts towards, in `DIMENSIONS` order; missing
    attributes are skipped."""
    keys: list[tuple[Dimension, str]] = [
        ("overall", OVERALL_SEGMENT),
        ("survey", response.survey_id),
    ]
    if response.account_id:
        keys.append(("account", response.account_id))
    keys.extend(response.segments.set_attributes())
    return keys
