"""What every read route uses: the filter and window parameters, the statistics asked for, and
the service they read from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends

from closeloop_common.runtime import ServiceRuntime
from closeloop_scoring import views
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.statistics import Method
from closeloop_scoring.entrypoints.queries import FilterQuery, WindowQuery
from closeloop_scoring.reports import Statistics

Filters = Annotated[FilterQuery, Depends()]
Window = Annotated[WindowQuery, Depends()]
Granularity = Literal["day", "week", "month"]


@dataclass(frozen=True)
class Reads:
    runtime: ServiceRuntime
    settings: ScoringSettings

    @property
    def zone(self) -> ZoneInfo:
        return self.settings.time_zone

    @property
    def scored(self) -> tuple[str, ...]:
        return tuple(self.settings.scoring_attributes)

    def stats_of(self, method: Method, confidence: float) -> Statistics:
        return Statistics(method, confidence, self.settings.scoring_min_responses)

    def days_of(self, window: WindowQuery, default: windows.WindowName = "all") -> views.Days:
        return window.resolve(now=self.runtime.clock.now(), zone=self.zone, default=default)
