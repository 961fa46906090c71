"""When a headline segment's NPS is worth an event: the debounced change rule. Pure.

A headline is a segment and a window named in `SCORING_HEADLINES`; scoring recomputes its NPS
periodically and asks `decide` whether to publish `nps.changed.v1`, given the last value it
published for that headline (kept in the database, so a restart publishes nothing again):
- nothing published yet: the first value with answers is published; a window without answers
  publishes nothing (there is no figure to announce);
- otherwise, only when the value moved since the last one published, which means
  - both are figures and they differ by at least `min_change` NPS points (any difference when
    `min_change` is 0), or
  - one of them is "no data" (n = 0) and the other is not: the window emptied, or filled again;
- and never sooner than `debounce` after the last publication: at most one event per headline
  per debounce. A move inside the debounce is not lost; once the debounce is over it is compared
  with the last published value again, so the event then carries the value of that moment.
Values are compared as they are published: rounded to 2 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

DECIMALS = 2

Reason = Literal[
    "first",  # published: the first value with answers
    "moved",  # published: moved by at least the least change
    "emptied",  # published: no answers in the window any more
    "refilled",  # published: answers again after an event that had none
    "no-data",  # not published: nothing published yet and no answers
    "unchanged",  # not published: the same value as the last one published
    "below-min-change",  # not published: moved less than the least change
    "debounced",  # not published yet: moved, but the last event is younger than the debounce
]


@dataclass(frozen=True, slots=True)
class Published:
    """The last event published for a headline: its NPS (None: it had no answers) and time."""

    nps: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRule:
    """How far a headline's NPS must move (NPS points), and how long events stay apart."""

    min_change: float = 1.0
    debounce: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.min_change < 0:
            raise ValueError("the least change is 0 or more NPS points")
        if self.debounce < timedelta(0):
            raise ValueError("the debounce is not negative")


@dataclass(frozen=True, slots=True)
class Decision:
    publish: bool
    reason: Reason
    nps: float | None
    """The value to publish (rounded), or that was judged."""
    change: float | None
    """`nps` minus the last published NPS, when both are figures."""


def as_published(nps: float | None) -> float | None:
    return None if nps is None else round(nps, DECIMALS)


def decide(
    last: Published | None, nps: float | None, *, now: datetime, rule: ChangeRule
) -> Decision:
    """Whether the current NPS (None: no answers in the window) is published (module docstring)."""
    current = as_published(nps)
    if last is None:
        if current is None:
            return Decision(False, "no-data", None, None)
        return Decision(True, "first", current, None)
    change = None
    if current is None and last.nps is None:
        return Decision(False, "unchanged", None, None)
    if current is None:
        reason: Reason = "emptied"
    elif last.nps is None:
        reason = "refilled"
    else:
        change = round(current - last.nps, DECIMALS)
        if change == 0:
            return Decision(False, "unchanged", current, change)
        if abs(change) < rule.min_change:
            return Decision(False, "below-min-change", current, change)
        reason = "moved"
    if now - last.at < rule.debounce:
        return Decision(False, "debounced", current, change)
    return Decision(True, reason, current, change)
