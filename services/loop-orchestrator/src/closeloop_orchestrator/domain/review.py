"""The quarterly review of a B2B account, as pure arithmetic: quarters of local days, the months
of the trend, and the figures of the account's cases (opened by type, resolved and closed, open
now, first contacts within the SLA, time to first contact p50/p90).

Quarters are ranges of local days `[from, to)` ("2026-Q4" is [2026-10-01, 2027-01-01)), the way
scoring names windows, so the same quarter means the same days on both sides; `bounds` turns
them into instants in the review's time zone for the orchestrator's own timestamps.

Definitions (docs/orchestrator.md, "Account actions and the quarterly review pack"):
- the cases **opened** in the quarter are those whose `opened_at` falls in it, by case type;
  **resolved** and **closed** count the cases whose `resolved_at` / `closed_at` falls in it (opened
  whenever); **open now** counts the account's active cases at the time of the review;
- a first contact is **judged** once its clock stopped (the first reached contact) or its
  deadline passed, as of the review; it is **within SLA** when the contact came by the deadline,
  a **breach** otherwise (late, or still none after the deadline); the share is within / judged;
- **time to first contact** is wall time from opening to the first reached contact, over the
  cases opened in the quarter that were reached (whenever); percentiles by linear interpolation
  between the closest ranks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from closeloop_orchestrator.domain.sla import within_sla

QUARTER_PATTERN: Final = r"^(\d{4})-Q([1-4])$"
_QUARTER = re.compile(QUARTER_PATTERN)
CASE_TYPES: Final = ("promoter", "passive", "detractor", "no_response")
ACTIVE: Final = frozenset({"open", "in_progress", "contacted"})
TREND_QUARTERS: Final = 4
"""The trend shows the months of this many quarters, the reviewed one last."""


@dataclass(frozen=True, slots=True, order=True)
class Quarter:
    year: int
    number: int

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 4:
            raise ValueError(f"a quarter is 1..4, got {self.number}")
        if not 1900 <= self.year <= 9998:
            raise ValueError(f"a quarter's year is 1900..9998, got {self.year}")

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """ "2026-Q4" → Quarter(2026, 4); ValueError otherwise."""
        found = _QUARTER.match(text)
        if found is None:
            raise ValueError(f"a quarter is written like 2026-Q4, not {text!r:.40}")
        year = int(found.group(1))
        if year < 1901:  # its trend reaches three quarters back
            raise ValueError(f"a quarter's year is 1901..9998, got {year}")
        return cls(year, int(found.group(2)))

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def at(cls, instant: datetime, zone: ZoneInfo) -> Quarter:
        """The quarter holding `instant`'s local day in `zone`."""
        return cls.of(instant.astimezone(zone).date())

    @property
    def name(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def first(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The day after the quarter's last (exclusive)."""
        return self.next().first

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    def next(self) -> Quarter:
        return (
            Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)
        )

    def previous(self) -> Quarter:
        return (
            Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)
        )

    def back(self, quarters: int) -> Quarter:
        """The quarter `quarters` before this one."""
        index = self.year * 4 + self.number - 1 - quarters
        return Quarter(index // 4, index % 4 + 1)

    def trend_days(self) -> tuple[date, date]:
        """The local days [from, to) of the trend: `TREND_QUARTERS` quarters, this one last."""
        return self.back(TREND_QUARTERS - 1).first, self.end

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The quarter as instants [start, end) in UTC: local midnights in `zone`."""
        return midnight(self.first, zone), midnight(self.end, zone)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.first, "to": self.end}


def open_during(
    *, begun_at: datetime, ended_at: datetime | None, start: datetime, end: datetime
) -> bool:
    """Whether something begun at `begun_at` and finished at `ended_at` (None: not yet) was open
    at some time in [start, end): begun before the quarter ended, not finished before it began.
    An action agreed with the account (agreed, finished) or a structural issue (created, decided)
    belongs in the quarter's review when it was."""
    return begun_at < end and (ended_at is None or ended_at >= start)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day begins in `zone` (in UTC)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The `share` (0..1) percentile of `values` by linear interpolation between the closest
    ranks (numpy's default); None for no values."""
    if not 0 <= share <= 1:
        raise ValueError(f"a percentile's share is 0..1, got {share}")
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class CaseRow:
    """What the review reads of a case."""

    case_type: str
    status: str
    opened_at: datetime
    first_contact_due_at: datetime
    first_contacted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class FirstContacts:
    """First contacts of the cases opened in a quarter (see the module's definitions)."""

    contacted: int
    judged: int
    within_sla: int
    hours: tuple[float, ...]  # time to first contact of each contacted case

    @property
    def breaches(self) -> int:
        return self.judged - self.within_sla

    @property
    def within_sla_share(self) -> float | None:
        return self.within_sla / self.judged if self.judged else None

    def as_json(self) -> dict[str, Any]:
        return {
            "contacted": self.contacted,
            "judged": self.judged,
            "within_sla": self.within_sla,
            "within_sla_share": _rounded(self.within_sla_share, 4),
            "breaches": self.breaches,
            "p50_hours": _rounded(percentile(self.hours, 0.5), 2),
            "p90_hours": _rounded(percentile(self.hours, 0.9), 2),
        }


@dataclass(frozen=True, slots=True)
class CaseFigures:
    opened: dict[str, int]
    resolved: int
    closed: int
    open_now: int
    first_contact: FirstContacts

    def as_json(self) -> dict[str, Any]:
        return {
            "opened": {"total": sum(self.opened.values()), **self.opened},
            "resolved": self.resolved,
            "closed": self.closed,
            "open_now": self.open_now,
            "first_contact": self.first_contact.as_json(),
        }


def _within(instant: datetime | None, start: datetime, end: datetime) -> bool:
    return instant is not None and start <= instant < end


def case_figures(
    rows: Iterable[CaseRow], *, start: datetime, end: datetime, now: datetime
) -> CaseFigures:
    """The account's case figures for the quarter [start, end), judged as of `now`."""
    opened = dict.fromkeys(CASE_TYPES, 0)
    resolved = closed = open_now = contacted = judged = in_time = 0
    hours: list[float] = []
    for row in rows:
        resolved += _within(row.resolved_at, start, end)
        closed += _within(row.closed_at, start, end)
        open_now += row.status in ACTIVE
        if not _within(row.opened_at, start, end):
            continue
        opened[row.case_type] = opened.get(row.case_type, 0) + 1
        if row.first_contacted_at is not None:
            contacted += 1
            waited = (row.first_contacted_at - row.opened_at).total_seconds() / 3600
            hours.append(max(0.0, waited))
        verdict = within_sla(row.first_contact_due_at, row.first_contacted_at, now)
        if verdict is not None:
            judged += 1
            in_time += verdict
    return CaseFigures(
        opened=opened,
        resolved=resolved,
        closed=closed,
        open_now=open_now,
        first_contact=FirstContacts(contacted, judged, in_time, tuple(hours)),
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
