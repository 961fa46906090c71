"""The review's arithmetic: quarters as local days and instants, the trend's span, percentiles,
what is open during a quarter, the figures of an account's cases, and the review's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.domain.review import (
    CaseRow,
    Quarter,
    case_figures,
    open_during,
    percentile,
)

WARSAW = ZoneInfo("Europe/Warsaw")
H = timedelta(hours=1)


def test_a_quarter_is_its_local_days_with_the_next_quarters_first_day_as_its_end() -> None:
    q4 = Quarter.parse("2026-Q4")
    assert (q4.name, q4.first, q4.end, q4.last) == (
        "2026-Q4",
        date(2026, 10, 1),
        date(2027, 1, 1),
        date(2026, 12, 31),
    )
    assert q4.as_json() == {"name": "2026-Q4", "from": date(2026, 10, 1), "to": date(2027, 1, 1)}
    assert (Quarter.parse("2026-Q1").first, Quarter.parse("2026-Q1").end) == (
        date(2026, 1, 1),
        date(2026, 4, 1),
    )


def test_the_previous_quarter_crosses_the_year() -> None:
    assert Quarter(2026, 1).previous() == Quarter(2025, 4)
    assert Quarter(2026, 4).previous() == Quarter(2026, 3)
    assert Quarter(2026, 4).next() == Quarter(2027, 1)
    assert Quarter(2026, 2).back(5) == Quarter(2025, 1)


def test_the_trend_spans_four_quarters_ending_with_the_reviewed_one() -> None:
    assert Quarter(2026, 4).trend_days() == (date(2026, 1, 1), date(2027, 1, 1))
    assert Quarter(2026, 1).trend_days() == (date(2025, 4, 1), date(2026, 4, 1))


@pytest.mark.parametrize("text", ["2026-Q0", "2026-Q5", "2026Q4", "26-Q4", "2026-q4", "1900-Q4"])
def test_a_badly_written_quarter_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quarter"):
        Quarter.parse(text)


def test_the_quarter_of_an_instant_is_that_of_its_local_day() -> None:
    # 31 December 23:30 UTC is already 1 January in Warsaw.
    instant = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert Quarter.at(instant, WARSAW) == Quarter(2027, 1)
    assert Quarter.at(instant, ZoneInfo("UTC")) == Quarter(2026, 4)


def test_a_quarters_bounds_are_local_midnights() -> None:
    start, end = Quarter(2026, 4).bounds(WARSAW)
    # October 1 is summer time (UTC+2), January 1 winter time (UTC+1).
    assert start == datetime(2026, 9, 30, 22, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


@given(st.integers(1920, 9990), st.integers(1, 4), st.integers(0, 40))
def test_going_back_and_forth_by_quarters_agrees(year: int, number: int, steps: int) -> None:
    quarter = Quarter(year, number)
    walked = quarter
    for _ in range(steps):
        walked = walked.previous()
    assert quarter.back(steps) == walked
    for _ in range(steps):
        walked = walked.next()
    assert walked == quarter
    assert quarter.previous().end == quarter.first


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([2.0, 10.0, 4.0], 0.5) == 4.0
    assert percentile([2.0, 4.0, 10.0], 0.9) == pytest.approx(8.8)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    with pytest.raises(ValueError, match="share"):
        percentile([1.0], 1.5)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50), st.floats(0, 1))
def test_a_percentile_lies_between_the_smallest_and_largest(values: list[float], p: float) -> None:
    found = percentile(values, p)
    assert found is not None
    assert min(values) <= found <= max(values)


def test_open_during_means_begun_before_the_end_and_not_finished_before_the_start() -> None:
    start, end = Quarter(2026, 4).bounds(ZoneInfo("UTC"))
    before, inside, after = start - H, start + H, end + H
    assert open_during(begun_at=before, ended_at=None, start=start, end=end)
    assert open_during(begun_at=before, ended_at=inside, start=start, end=end)
    assert open_during(begun_at=before, ended_at=start, start=start, end=end)
    assert open_during(begun_at=inside, ended_at=after, start=start, end=end)
    assert not open_during(begun_at=before - H, ended_at=before, start=start, end=end)
    assert not open_during(begun_at=end, ended_at=None, start=start, end=end)
    assert not open_during(begun_at=after, ended_at=None, start=start, end=end)


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
START, END = Quarter(2026, 4).bounds(ZoneInfo("UTC"))


def case(
    case_type: str = "detractor",
    *,
    status: str = "open",
    opened: datetime = T0,
    due_hours: float = 48,
    contacted_after: float | None = None,
    resolved: datetime | None = None,
    closed: datetime | None = None,
) -> CaseRow:
    return CaseRow(
        case_type=case_type,
        status=status,
        opened_at=opened,
        first_contact_due_at=opened + due_hours * H,
        first_contacted_at=None if contacted_after is None else opened + contacted_after * H,
        resolved_at=resolved,
        closed_at=closed,
    )


def test_case_figures_count_the_quarter_and_judge_first_contacts_as_of_now() -> None:
    now = T0 + 100 * H
    rows = [
        case("detractor", status="closed", contacted_after=2, resolved=T0 + 5 * H,
             closed=T0 + 6 * H),
        case("detractor", status="contacted", contacted_after=10),
        case("passive", status="contacted", contacted_after=60),  # late: a breach
        case("promoter", status="open"),  # never contacted, deadline passed: a breach
        case("promoter", status="open", opened=now - H),  # still within its time: not judged
        case("no_response", status="in_progress", due_hours=24, contacted_after=20),
        # Opened last quarter, resolved in this one; and one still open from then.
        case("detractor", status="resolved", opened=START - 10 * H, contacted_after=1,
             resolved=START + H),
        case("detractor", status="open", opened=START - 10 * H),
    ]  # fmt: skip
    figures = case_figures(rows, start=START, end=END, now=now)
    assert figures.as_json() == {
        "opened": {"total": 6, "promoter": 2, "passive": 1, "detractor": 2, "no_response": 1},
        "resolved": 2,
        "closed": 1,
        "open_now": 6,
        "first_contact": {
            "contacted": 4,
            "judged": 5,
            "within_sla": 3,
            "within_sla_share": 0.6,
            "breaches": 2,
            "p50_hours": 15.0,
            "p90_hours": 48.0,
        },
    }


def test_no_cases_give_zeros_and_no_percentiles() -> None:
    assert case_figures([], start=START, end=END, now=T0).as_json() == {
        "opened": {"total": 0, "promoter": 0, "passive": 0, "detractor": 0, "no_response": 0},
        "resolved": 0,
        "closed": 0,
        "open_now": 0,
        "first_contact": {
            "contacted": 0,
            "judged": 0,
            "within_sla": 0,
            "within_sla_share": None,
            "breaches": 0,
            "p50_hours": None,
            "p90_hours": None,
        },
    }


def test_the_review_time_zone_must_be_a_known_one() -> None:
    settings = OrchestratorSettings(orchestrator_review_time_zone="Europe/Warsaw")
    assert settings.review_time_zone == WARSAW
    with pytest.raises(ValidationError, match="unknown time zone"):
        OrchestratorSettings(orchestrator_review_time_zone="Mars/Olympus")
