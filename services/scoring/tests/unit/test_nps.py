"""NPS arithmetic over counts, and the segments a response counts towards."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import Category, Customer, ResponseReceivedV1, Segments
from closeloop_scoring.domain.nps import Z_95, NpsCounts, segment_keys

counts_st = st.builds(
    NpsCounts,
    promoters=st.integers(min_value=0, max_value=10**6),
    passives=st.integers(min_value=0, max_value=10**6),
    detractors=st.integers(min_value=0, max_value=10**6),
)
nonempty_counts_st = counts_st.filter(lambda c: c.responses > 0)


# --- nps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "nps"),
    [
        (NpsCounts(promoters=50, passives=30, detractors=20), 30.0),
        (NpsCounts(promoters=7), 100.0),
        (NpsCounts(detractors=3), -100.0),
        (NpsCounts(passives=12), 0.0),
        (NpsCounts(promoters=1, passives=2, detractors=1), 0.0),
        (NpsCounts(promoters=1, passives=0, detractors=3), -50.0),
    ],
)
def test_nps_is_percent_promoters_minus_percent_detractors(counts: NpsCounts, nps: float) -> None:
    assert counts.nps == pytest.approx(nps)


def test_nps_and_margin_are_none_without_responses() -> None:
    empty = NpsCounts()
    assert empty.responses == 0
    assert empty.nps is None
    assert empty.margin_of_error() is None


@given(nonempty_counts_st)
def test_nps_stays_within_plus_minus_100_and_the_margin_is_never_negative(
    counts: NpsCounts,
) -> None:
    assert counts.nps is not None
    assert -100 <= counts.nps <= 100
    margin = counts.margin_of_error()
    assert margin is not None
    assert margin >= 0


# --- margin of error -------------------------------------------------------------------------


def test_margin_of_error_uses_the_variance_of_the_plus_one_zero_minus_one_score() -> None:
    counts = NpsCounts(promoters=50, passives=30, detractors=20)
    expected = 1.959964 * 100 * math.sqrt((0.5 + 0.2 - (0.3) ** 2) / 100)
    assert counts.margin_of_error() == pytest.approx(expected)


def test_margin_of_error_scales_with_z() -> None:
    counts = NpsCounts(promoters=50, passives=30, detractors=20)
    margin_95 = counts.margin_of_error()
    assert margin_95 is not None
    assert counts.margin_of_error(z=2 * Z_95) == pytest.approx(2 * margin_95)


@pytest.mark.parametrize(
    "counts", [NpsCounts(promoters=40), NpsCounts(detractors=40), NpsCounts(passives=40)]
)
def test_margin_of_error_is_zero_when_everyone_answers_alike(counts: NpsCounts) -> None:
    assert counts.margin_of_error() == 0


@given(nonempty_counts_st)
def test_margin_of_error_shrinks_when_the_same_mix_has_more_answers(counts: NpsCounts) -> None:
    bigger = counts + counts + counts + counts
    small, large = counts.margin_of_error(), bigger.margin_of_error()
    assert small is not None
    assert large is not None
    assert large == pytest.approx(small / 2, abs=1e-9)


# --- adding ----------------------------------------------------------------------------------


@given(counts_st, counts_st)
def test_adding_counts_adds_each_category(a: NpsCounts, b: NpsCounts) -> None:
    total = a + b
    assert total.promoters == a.promoters + b.promoters
    assert total.passives == a.passives + b.passives
    assert total.detractors == a.detractors + b.detractors
    assert total.responses == a.responses + b.responses


@given(counts_st, st.sampled_from(Category), st.integers(min_value=0, max_value=1000))
def test_add_of_a_category_agrees_with_adding_counts_of_that_category(
    counts: NpsCounts, category: Category, n: int
) -> None:
    one_category = NpsCounts(
        promoters=n if category is Category.PROMOTER else 0,
        passives=n if category is Category.PASSIVE else 0,
        detractors=n if category is Category.DETRACTOR else 0,
    )
    assert counts.add(category, n) == counts + one_category


@given(st.lists(st.sampled_from(Category), max_size=50))
def test_adding_answers_one_by_one_counts_each_category(categories: list[Category]) -> None:
    counts = NpsCounts()
    for category in categories:
        counts = counts.add(category)
    assert counts.promoters == categories.count(Category.PROMOTER)
    assert counts.passives == categories.count(Category.PASSIVE)
    assert counts.detractors == categories.count(Category.DETRACTOR)


@pytest.mark.parametrize(
    "fields",
    [{"promoters": -1}, {"passives": -1}, {"detractors": -5}],
)
def test_negative_counts_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="negative"):
        NpsCounts(**fields)


def test_taking_away_more_than_there_is_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        NpsCounts(promoters=1).add(Category.PROMOTER, -2)


# --- segment_keys ----------------------------------------------------------------------------


def response_in(*, account_id: str | None, segments: Segments) -> ResponseReceivedV1:
    return ResponseReceivedV1(
        response_id="r-1",
        survey_id="s-2024",
        customer=Customer(id="c-42"),
        account_id=account_id,
        score=9,
        category=Category.PROMOTER,
        answered_at=datetime(2024, 5, 6, 9, 0, tzinfo=UTC),
        received_at=datetime(2024, 5, 6, 9, 1, tzinfo=UTC),
        segments=segments,
        source="api",
    )


def test_segment_keys_lists_every_set_attribute_in_dimension_order() -> None:
    response = response_in(
        account_id="acc-7",
        segments=Segments(product="api", region="eu", channel="email", touchpoint="onboarding"),
    )
    assert segment_keys(response) == [
        ("overall", "all"),
        ("survey", "s-2024"),
        ("account", "acc-7"),
        ("product", "api"),
        ("region", "eu"),
        ("channel", "email"),
        ("touchpoint", "onboarding"),
    ]


def test_segment_keys_skips_the_account_and_segments_that_are_not_set() -> None:
    response = response_in(account_id=None, segments=Segments(region="eu", touchpoint="renewal"))
    assert segment_keys(response) == [
        ("overall", "all"),
        ("survey", "s-2024"),
        ("region", "eu"),
        ("touchpoint", "renewal"),
    ]


def test_segment_keys_of_a_bare_response_are_overall_and_survey() -> None:
    response = response_in(account_id=None, segments=Segments())
    assert segment_keys(response) == [("overall", "all"), ("survey", "s-2024")]
