"""The structural issues backlog, as pure rules: an issue's lifecycle, what customers must be told
when it ends, who hears about it, and the order issues are worth working in.

Lifecycle: proposed → prioritised → in_progress → done; any status that is not final → rejected.
A rejection carries a reason (for the backlog) and, in every language it is told in, the reason
customers read; `done` carries a summary of what was done in every language it is told in. At
least one language is required either way (the change summary's `locale` and `text`).

Priority is impact per cost: the estimated NPS points (scoring's what-if) over the estimated cost,
with the same ratio at both ends of the impact's interval. Larger first; issues whose impact is
unknown come last, then by age, so nothing unestimated hides a known gain.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

MAX_AUDIENCE_RESPONSES = 10_000
"""The change summary names at most this many responses; a larger group is reached by segment."""
SEGMENT_FILTERS = ("survey", "account", "product", "region", "channel", "touchpoint")
"""Scoring's filter names an issue's segment is given in (in `ChangeSegment`: `survey_id`, ...)."""


class IssueStatus(StrEnum):
    PROPOSED = "proposed"
    PRIORITISED = "prioritised"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self in (IssueStatus.DONE, IssueStatus.REJECTED)


IssueCommand = Literal["prioritise", "start", "done", "reject"]

_MOVES: dict[IssueCommand, tuple[frozenset[IssueStatus], IssueStatus]] = {
    "prioritise": (frozenset({IssueStatus.PROPOSED}), IssueStatus.PRIORITISED),
    "start": (frozenset({IssueStatus.PRIORITISED}), IssueStatus.IN_PROGRESS),
    "done": (frozenset({IssueStatus.IN_PROGRESS}), IssueStatus.DONE),
    "reject": (
        frozenset({IssueStatus.PROPOSED, IssueStatus.PRIORITISED, IssueStatus.IN_PROGRESS}),
        IssueStatus.REJECTED,
    ),
}


class IssueTransitionRefused(ValueError):
    """The issue's status does not allow the command."""

    def __init__(self, command: IssueCommand, status: IssueStatus) -> None:
        allowed = ", ".join(sorted(s.value for s in _MOVES[command][0]))
        super().__init__(f"`{command}` is allowed from {allowed}, the issue is {status.value}")
        self.command = command
        self.status = status


class InvalidDecision(ValueError):
    """A done or rejected issue without what customers must be told."""


@dataclass(frozen=True, slots=True)
class CustomerText:
    """What customers are told in one language."""

    title: str
    summary: str | None = None
    reason: str | None = None
    you_said: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """How an issue ended and what to tell: `texts` maps locale to text, `locale` is the main one."""

    locale: str
    texts: Mapping[str, CustomerText]
    notify_segment: bool = False
    reason: str | None = None  # the backlog's reason for a rejection


def next_status(command: IssueCommand, status: IssueStatus) -> IssueStatus:
    """The status after `command`; IssueTransitionRefused when the status does not allow it."""
    allowed, to = _MOVES[command]
    if status not in allowed:
        raise IssueTransitionRefused(command, status)
    return to


class IssueVersionConflict(ValueError):
    """The caller's copy of the issue is stale: someone else changed it first."""

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"the issue is at version {actual}, not {expected}: reload it and retry")
        self.expected = expected
        self.actual = actual


def check_version(expected: int, actual: int) -> None:
    if expected != actual:
        raise IssueVersionConflict(expected=expected, actual=actual)


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def check_decision(command: Literal["done", "reject"], decision: Decision) -> None:
    """Refuse a decision customers could not be told (see the module docstring)."""
    if decision.locale not in decision.texts:
        raise InvalidDecision(f"no text in the main language {decision.locale!r}")
    for locale, text in decision.texts.items():
        if _blank(text.title):
            raise InvalidDecision(f"{locale}: a title is required")
        if command == "done" and _blank(text.summary):
            raise InvalidDecision(f"{locale}: say what was done (`summary`)")
        if command == "reject" and _blank(text.reason):
            raise InvalidDecision(f"{locale}: say why it was rejected (`reason`)")
    if command == "reject" and _blank(decision.reason):
        raise InvalidDecision("a rejection needs a reason")


# --- impact and priority ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    """Estimated NPS points an issue's fix would bring, with the interval, over `n` answers."""

    points: float
    ci_low: float
    ci_high: float
    n: int


def impact_of_what_if(
    *, today: float | None, projected: float | None, ci_low: float | None, ci_high: float | None
) -> tuple[float, float, float] | None:
    """The change in NPS points and its interval from scoring's what-if answer (which gives the
    projected NPS and its interval): the interval moved by today's NPS. None when scoring had no
    answer to project (no responses in the segment)."""
    if today is None or projected is None or ci_low is None or ci_high is None:
        return None
    return projected - today, ci_low - today, ci_high - today


@dataclass(frozen=True, slots=True)
class PerCost:
    """Impact per unit of cost, at the estimate and at both ends of its interval."""

    value: float
    low: float
    high: float


def per_cost(impact: Impact | None, cost: Decimal) -> PerCost | None:
    if impact is None:
        return None
    if cost <= 0:
        raise ValueError(f"a cost is positive, got {cost}")
    c = float(cost)
    return PerCost(impact.points / c, impact.ci_low / c, impact.ci_high / c)


@dataclass(frozen=True, slots=True)
class Ranked:
    issue_id: uuid.UUID
    created_at: datetime
    impact: Impact | None
    cost: Decimal
    per_cost: PerCost | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_cost", per_cost(self.impact, self.cost))


def prioritised(issues: Iterable[Ranked]) -> list[Ranked]:
    """Largest impact per cost first (then the higher low end, then the oldest); unknown last."""

    def key(r: Ranked) -> tuple[int, float, float, datetime, str]:
        if r.per_cost is None:
            return (1, 0.0, 0.0, r.created_at, str(r.issue_id))
        return (0, -r.per_cost.value, -r.per_cost.low, r.created_at, str(r.issue_id))

    return sorted(issues, key=key)


# --- audience ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audience:
    response_ids: tuple[str, ...]
    segment: dict[str, str] | None  # ChangeSegment's field names
    by_segment_only: bool  # too many responses to name: the segment reaches them


def audience_of(
    response_ids: Sequence[str], filters: Mapping[str, str], *, notify_segment: bool
) -> Audience:
    """Who hears about a decision: the respondents of the issue's cases (at most 10,000, else
    the segment reaches them) and, when chosen, everyone invited in the issue's segment."""
    ids = tuple(dict.fromkeys(response_ids))
    too_many = len(ids) > MAX_AUDIENCE_RESPONSES
    segment = None
    if notify_segment or too_many:
        segment = {
            f"{name}_id" if name in ("survey", "account") else name: filters[name]
            for name in SEGMENT_FILTERS
            if filters.get(name)
        }
    return Audience(() if too_many else ids, segment, too_many)
