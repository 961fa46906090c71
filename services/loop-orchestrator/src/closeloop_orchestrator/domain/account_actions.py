"""Actions agreed with a B2B account (in a quarterly review, a call), as pure rules: their
lifecycle, what a change may carry, and when one is overdue.

Lifecycle: agreed → in_progress → done; agreed or in_progress → dropped, with a note saying why.
Done and dropped are final: nothing about the action changes after (the review packs that showed
it stay true). A change is made to the version the caller last saw (`check_version`), and one
that would change nothing is refused, so versions count real changes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final

MAX_TITLE_CHARS: Final = 200
MAX_TEXT_CHARS: Final = 4_000
EDITABLE: Final = ("title", "description", "owner", "due_on", "note")
"""The fields a change may set besides `status` (null clears all but the title)."""


class ActionStatus(StrEnum):
    AGREED = "agreed"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    DROPPED = "dropped"

    @property
    def final(self) -> bool:
        return self in (ActionStatus.DONE, ActionStatus.DROPPED)


_MOVES: Mapping[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.AGREED: frozenset({ActionStatus.IN_PROGRESS, ActionStatus.DROPPED}),
    ActionStatus.IN_PROGRESS: frozenset({ActionStatus.DONE, ActionStatus.DROPPED}),
    ActionStatus.DONE: frozenset(),
    ActionStatus.DROPPED: frozenset(),
}


class ActionTransitionRefused(ValueError):
    """The action's status does not allow the change (a move it cannot make, or it is final)."""

    def __init__(self, status: ActionStatus, to: ActionStatus | None) -> None:
        if status.final or to is None:
            message = f"the action is {status.value}: nothing about it changes any more"
        else:
            allowed = ", ".join(sorted(s.value for s in _MOVES[status])) or "nothing"
            message = f"an action that is {status.value} can become {allowed}, not {to.value}"
        super().__init__(message)
        self.status = status
        self.to = to


class ActionVersionConflict(ValueError):
    """The caller's copy of the action is stale: someone else changed it first."""

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"the action is at version {actual}, not {expected}: reload it and retry")
        self.expected = expected
        self.actual = actual


class InvalidAction(ValueError):
    """A change the rules refuse (a blank title, dropping without a note)."""


class NothingToChange(ValueError):
    """The change would leave the action as it is."""


@dataclass(frozen=True, slots=True)
class ActionState:
    """What a change may touch of a stored action."""

    status: ActionStatus
    title: str
    description: str | None
    owner: Mapping[str, Any] | None
    due_on: date | None
    note: str | None
    version: int


@dataclass(frozen=True, slots=True)
class ActionChange:
    """A caller's change: only the fields given (`fields`, of `EDITABLE`), and maybe a status."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    status: ActionStatus | None = None


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def check_version(expected: int, actual: int) -> None:
    if expected != actual:
        raise ActionVersionConflict(expected=expected, actual=actual)


def check_title(title: str | None) -> str:
    if title is None or _blank(title):
        raise InvalidAction("an action has a title")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidAction(f"a title is at most {MAX_TITLE_CHARS} characters")
    return title


def changed(state: ActionState, change: ActionChange, *, at: datetime) -> dict[str, Any]:
    """The columns `change` sets on the action in `state` (at `at`), `finished_at` included when
    it becomes done or dropped. Raises ActionTransitionRefused, InvalidAction, NothingToChange."""
    unknown = set(change.fields) - set(EDITABLE)
    if unknown:
        raise InvalidAction(f"not a field of an action: {', '.join(sorted(unknown))}")
    if state.status.final:
        raise ActionTransitionRefused(state.status, change.status)
    values = {k: v for k, v in change.fields.items() if getattr(state, k) != v}
    if "title" in change.fields:
        check_title(change.fields["title"])
    for name in ("description", "note"):
        text = change.fields.get(name)
        if text is not None and len(text) > MAX_TEXT_CHARS:
            raise InvalidAction(f"{name} is at most {MAX_TEXT_CHARS} characters")
    to = change.status
    if to is not None and to != state.status:
        if to not in _MOVES[state.status]:
            raise ActionTransitionRefused(state.status, to)
        if to is ActionStatus.DROPPED and _blank(change.fields.get("note")):
            raise InvalidAction("dropping an action needs a note saying why")
        values["status"] = to.value
        if to.final:
            values["finished_at"] = at
    if not values:
        raise NothingToChange("the change leaves the action as it is")
    return values


def overdue(*, status: ActionStatus, due_on: date | None, today: date) -> bool:
    """An unfinished action whose due day has passed."""
    return not status.final and due_on is not None and due_on < today
