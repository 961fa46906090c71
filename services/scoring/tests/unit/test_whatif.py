"""What-if projections: worked scenarios and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import estimate
from closeloop_scoring.domain.whatif import (
    ImpossibleScenario,
    SegmentReachesNps,
    ThemeDetractorsBecomePassives,
    WinBack,
    project,
)

TOTAL = NpsCounts(promoters=100, passives=60, detractors=40)  # NPS 30


def test_a_theme_s_detractors_becoming_passives() -> None:
    found = project(TOTAL, ThemeDetractorsBecomePassives(detractors_mentioning=30))
    assert (found.today, found.projected, found.change) == (30.0, 45.0, 15.0)
    expected = estimate(NpsCounts(100, 90, 10))  # the projected counts, as any NPS
    assert (found.ci_low, found.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))


def test_winning_back_a_share_of_a_segment_s_detractors() -> None:
    segment = NpsCounts(promoters=10, passives=10, detractors=20)
    to_passives = project(TOTAL, WinBack(segment, share=0.25))
    to_promoters = project(TOTAL, WinBack(segment, share=0.25, to="promoter"))
    assert to_passives.projected == pytest.approx(32.5)  # 5 of 200 answers up one category
    assert to_promoters.projected == pytest.approx(35.0)  # ... and 5 up two
    assert to_passives.projected_mix.detractors == pytest.approx(35.0)


def test_a_segment_reaching_a_target_nps() -> None:
    segment = NpsCounts(promoters=10, passives=10, detractors=20)  # NPS -25 over 40 answers
    up = project(TOTAL, SegmentReachesNps(segment, target=0.0))
    # 10 answers one category up (detractors to passives): +10 of 200 answers = +5 points.
    assert up.change == pytest.approx(5.0)
    assert up.projected_mix.passives == pytest.approx(70.0)
    top = project(TOTAL, SegmentReachesNps(segment, target=100.0))
    assert top.projected_mix.detractors == pytest.approx(20.0)  # the segment's all went
    assert top.change == pytest.approx(25.0)  # the segment from -25 to 100: 50 of 200 answers
    down = project(TOTAL, SegmentReachesNps(segment, target=-50.0))
    assert down.change == pytest.approx(-5.0)


@pytest.mark.parametrize(
    "scenario",
    [
        ThemeDetractorsBecomePassives(detractors_mentioning=41),
        WinBack(NpsCounts(0, 0, 50), share=0.5),
        WinBack(NpsCounts(0, 0, 10), share=1.5),
        SegmentReachesNps(NpsCounts(1, 1, 1), target=120.0),
        SegmentReachesNps(NpsCounts(), target=10.0),
    ],
)
def test_an_impossible_scenario_is_refused(
    scenario: ThemeDetractorsBecomePassives | WinBack | SegmentReachesNps,
) -> None:
    with pytest.raises(ImpossibleScenario):
        project(TOTAL, scenario)


segments = st.builds(NpsCounts, st.integers(0, 100), st.integers(0, 60), st.integers(0, 40)).filter(
    lambda c: c.responses > 0
)


@given(segments, st.floats(-100, 100))
def test_a_segment_reaching_a_target_ends_at_that_target_and_keeps_its_size(
    segment: NpsCounts, target: float
) -> None:
    found = project(TOTAL, SegmentReachesNps(segment, target=target))
    mix = found.projected_mix
    assert mix.n == pytest.approx(TOTAL.responses)
    assert min(mix.promoters, mix.passives, mix.detractors) >= -1e-9
    rest = TOTAL.responses - segment.responses
    segment_after = (
        100 * (mix.promoters - (TOTAL.promoters - segment.promoters))
        - 100 * (mix.detractors - (TOTAL.detractors - segment.detractors))
    ) / segment.responses
    assert segment_after == pytest.approx(target, abs=1e-6)
    assert rest >= 0
    assert found.ci_low is not None
    assert found.ci_high is not None
    assert -100 <= found.ci_low <= found.ci_high <= 100
