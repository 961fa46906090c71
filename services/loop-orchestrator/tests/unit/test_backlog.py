"""The structural issues backlog's rules: the lifecycle, what a decision must tell customers,
impact per cost with its interval, and who hears about a decision."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop_orchestrator.domain.backlog import (
    MAX_AUDIENCE_RESPONSES,
    CustomerText,
    Decision,
    Impact,
    InvalidDecision,
    IssueStatus,
    IssueTransitionRefused,
    IssueVersionConflict,
    Ranked,
    audience_of,
    check_decision,
    check_version,
    impact_of_what_if,
    next_status,
    per_cost,
    prioritised,
)

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
S = IssueStatus


def test_an_issue_goes_proposed_prioritised_in_progress_done() -> None:
    assert next_status("prioritise", S.PROPOSED) is S.PRIORITISED
    assert next_status("start", S.PRIORITISED) is S.IN_PROGRESS
    assert next_status("done", S.IN_PROGRESS) is S.DONE


@pytest.mark.parametrize("status", [S.PROPOSED, S.PRIORITISED, S.IN_PROGRESS])
def test_any_open_issue_can_be_rejected(status: IssueStatus) -> None:
    assert next_status("reject", status) is S.REJECTED


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("start", S.PROPOSED),
        ("done", S.PRIORITISED),
        ("prioritise", S.IN_PROGRESS),
        ("reject", S.DONE),
        ("reject", S.REJECTED),
        ("done", S.DONE),
    ],
)
def test_skipping_a_step_or_leaving_a_final_status_is_refused(command: str, status: S) -> None:
    with pytest.raises(IssueTransitionRefused):
        next_status(command, status)  # type: ignore[arg-type]


def test_a_stale_version_is_a_conflict() -> None:
    check_version(3, 3)
    with pytest.raises(IssueVersionConflict) as found:
        check_version(2, 3)
    assert found.value.actual == 3


def test_a_rejection_needs_a_reason_for_the_backlog_and_in_every_language() -> None:
    told = {"pl": CustomerText("Dostawa", reason="Za drogo."), "en": CustomerText("Delivery", reason="Too costly.")}  # fmt: skip
    check_decision("reject", Decision("pl", told, reason="Cost outweighs gain."))
    with pytest.raises(InvalidDecision, match="reason"):
        check_decision("reject", Decision("pl", told, reason="  "))
    with pytest.raises(InvalidDecision, match="en"):
        check_decision(
            "reject",
            Decision("pl", told | {"en": CustomerText("Delivery")}, reason="Cost."),
        )


def test_done_says_what_was_done_in_the_main_language_at_least() -> None:
    check_decision("done", Decision("pl", {"pl": CustomerText("Dostawa", summary="Nowy kurier.")}))
    with pytest.raises(InvalidDecision, match="summary"):
        check_decision("done", Decision("pl", {"pl": CustomerText("Dostawa")}))
    with pytest.raises(InvalidDecision, match="main language"):
        check_decision("done", Decision("en", {"pl": CustomerText("D", summary="S.")}))


def test_the_impact_interval_is_the_projected_interval_moved_by_today() -> None:
    # Scoring's what-if: today -20, projected 10 in [-30.52, 45.9].
    found = impact_of_what_if(today=-20.0, projected=10.0, ci_low=-30.52, ci_high=45.9)
    assert found == pytest.approx((30.0, -10.52, 65.9))
    assert impact_of_what_if(today=None, projected=None, ci_low=None, ci_high=None) is None


def test_impact_per_cost_divides_the_estimate_and_both_ends() -> None:
    found = per_cost(Impact(6.0, 2.0, 10.0, n=100), Decimal("4"))
    assert found is not None
    assert (found.value, found.low, found.high) == (1.5, 0.5, 2.5)
    assert per_cost(None, Decimal("4")) is None


def test_the_biggest_gain_for_the_least_effort_comes_first_unknown_impact_last() -> None:
    def issue(points: float | None, cost: str, age: int) -> Ranked:
        impact = None if points is None else Impact(points, points - 2, points + 2, n=50)
        return Ranked(uuid.uuid4(), T0 - timedelta(days=age), impact, Decimal(cost))

    cheap_small = issue(3.0, "1", 0)  # 3 per day
    dear_big = issue(10.0, "10", 1)  # 1 per day
    unknown_old = issue(None, "1", 9)
    unknown_new = issue(None, "1", 2)
    middle = issue(4.0, "2", 3)  # 2 per day
    ranked = prioritised([unknown_new, dear_big, unknown_old, middle, cheap_small])
    assert ranked == [cheap_small, middle, dear_big, unknown_old, unknown_new]


def test_respondents_hear_and_the_segment_only_when_chosen() -> None:
    filters = {"survey": "rel", "account": "acme", "region": "PL"}
    alone = audience_of(["r-2", "r-1", "r-2"], filters, notify_segment=False)
    assert (alone.response_ids, alone.segment) == (("r-2", "r-1"), None)
    wide = audience_of(["r-1"], filters, notify_segment=True)
    assert wide.segment == {"survey_id": "rel", "account_id": "acme", "region": "PL"}


def test_more_respondents_than_a_summary_names_are_reached_through_the_segment() -> None:
    many = [f"r-{i}" for i in range(MAX_AUDIENCE_RESPONSES + 1)]
    found = audience_of(many, {"product": "courier"}, notify_segment=False)
    assert (found.response_ids, found.segment, found.by_segment_only) == (
        (),
        {"product": "courier"},
        True,
    )
