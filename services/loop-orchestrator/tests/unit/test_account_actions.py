"""The rules of actions agreed with an account: agreed → in_progress → done, dropped with a note
from either, done and dropped final; a change that changes nothing is refused; overdue."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from closeloop_orchestrator.domain.account_actions import (
    ActionChange,
    ActionState,
    ActionStatus,
    ActionTransitionRefused,
    ActionVersionConflict,
    InvalidAction,
    NothingToChange,
    changed,
    check_title,
    check_version,
    overdue,
)

AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
S = ActionStatus


def state(status: ActionStatus = S.AGREED, **kw: Any) -> ActionState:
    values: dict[str, Any] = {
        "status": status,
        "title": "Quarterly delivery report",
        "description": None,
        "owner": {"id": "anna", "name": "Anna", "email": None},
        "due_on": date(2026, 12, 15),
        "note": None,
        "version": 3,
    }
    return ActionState(**(values | kw))


def test_an_action_goes_agreed_in_progress_done_and_is_finished_when_done() -> None:
    started = changed(state(), ActionChange(status=S.IN_PROGRESS), at=AT)
    assert started == {"status": "in_progress"}
    done = changed(
        state(S.IN_PROGRESS), ActionChange(status=S.DONE, fields={"note": "Sent."}), at=AT
    )
    assert done == {"status": "done", "note": "Sent.", "finished_at": AT}


@pytest.mark.parametrize("status", [S.AGREED, S.IN_PROGRESS])
def test_an_unfinished_action_can_be_dropped_with_a_note(status: ActionStatus) -> None:
    dropped = changed(
        state(status), ActionChange(status=S.DROPPED, fields={"note": "Not needed."}), at=AT
    )
    assert dropped == {"status": "dropped", "note": "Not needed.", "finished_at": AT}


@pytest.mark.parametrize("note", [None, "   "])
def test_dropping_without_a_note_is_refused(note: str | None) -> None:
    fields = {} if note is None else {"note": note}
    with pytest.raises(InvalidAction, match="note"):
        changed(state(), ActionChange(status=S.DROPPED, fields=fields), at=AT)


def test_an_agreed_action_is_started_before_it_is_done() -> None:
    with pytest.raises(ActionTransitionRefused) as refused:
        changed(state(), ActionChange(status=S.DONE), at=AT)
    assert (refused.value.status, refused.value.to) == (S.AGREED, S.DONE)
    assert "in_progress" in str(refused.value)


@pytest.mark.parametrize("status", [S.DONE, S.DROPPED])
@pytest.mark.parametrize(
    "change",
    [
        ActionChange(status=S.IN_PROGRESS),
        ActionChange(fields={"title": "Another"}),
        ActionChange(fields={"note": "More."}),
    ],
)
def test_done_and_dropped_are_final(status: ActionStatus, change: ActionChange) -> None:
    with pytest.raises(ActionTransitionRefused, match="nothing about it changes"):
        changed(state(status), change, at=AT)


def test_fields_change_without_the_status_and_null_clears_them() -> None:
    change = ActionChange(
        fields={"title": "Monthly report", "owner": None, "due_on": None, "description": "x"}
    )
    assert changed(state(), change, at=AT) == {
        "title": "Monthly report",
        "owner": None,
        "due_on": None,
        "description": "x",
    }


def test_only_what_differs_is_written_and_no_difference_is_nothing_to_change() -> None:
    same = {"title": "Quarterly delivery report", "due_on": date(2026, 12, 15)}
    assert changed(state(), ActionChange(fields=same | {"note": "n"}), at=AT) == {"note": "n"}
    with pytest.raises(NothingToChange):
        changed(state(), ActionChange(fields=same, status=S.AGREED), at=AT)
    with pytest.raises(NothingToChange):
        changed(state(), ActionChange(), at=AT)


@pytest.mark.parametrize("title", [None, "", "  ", "x" * 201])
def test_a_title_is_required_and_bounded(title: str | None) -> None:
    with pytest.raises(InvalidAction):
        check_title(title)
    with pytest.raises(InvalidAction):
        changed(state(), ActionChange(fields={"title": title}), at=AT)


def test_a_field_that_is_not_an_actions_is_refused() -> None:
    with pytest.raises(InvalidAction, match="agreed_at"):
        changed(state(), ActionChange(fields={"agreed_at": AT}), at=AT)


def test_a_stale_version_is_a_conflict_naming_the_current_one() -> None:
    check_version(3, 3)
    with pytest.raises(ActionVersionConflict) as conflict:
        check_version(2, 3)
    assert (conflict.value.expected, conflict.value.actual) == (2, 3)


def test_overdue_is_an_unfinished_action_past_its_due_day() -> None:
    today = date(2026, 11, 10)
    assert overdue(status=S.AGREED, due_on=date(2026, 11, 9), today=today)
    assert overdue(status=S.IN_PROGRESS, due_on=date(2026, 11, 9), today=today)
    assert not overdue(status=S.AGREED, due_on=today, today=today)
    assert not overdue(status=S.AGREED, due_on=None, today=today)
    assert not overdue(status=S.DONE, due_on=date(2026, 1, 1), today=today)
    assert not overdue(status=S.DROPPED, due_on=date(2026, 1, 1), today=today)
