"""Custom attributes in scoring: only the configured ones are part of a response's cell and of the
single-dimension rollup (`attr.<name>`), the setting is bounded, and query filters name
configured attributes only."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_common.events import Category, Segments
from closeloop_common.web import Problem
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain.aggregation import Cell, Counted, Deltas
from closeloop_scoring.entrypoints.queries import (
    FilterQuery,
    attribute_pairs,
    breakdown_dimension,
)
from closeloop_scoring.views import Filters

DAY = date(2026, 11, 23)
SCORED = ("plan", "tier")


def counted(cell: Cell, category: Category = Category.PROMOTER) -> Counted:
    return Counted("r-1", 1, cell, DAY, category, None, frozenset(), suspected=False)


# --- cells -----------------------------------------------------------------------------------


def test_a_cell_keeps_only_the_scored_attributes_sorted_by_name() -> None:
    cell = Cell.of(
        "nps",
        Segments(region="PL"),
        {"tier": "smb", "plan": "gold", "colour": "blue"},
        scored=SCORED,
    )

    assert cell == Cell("nps", region="PL", attributes=(("plan", "gold"), ("tier", "smb")))


def test_without_scored_attributes_a_cell_is_what_it_was_before_attributes() -> None:
    cell = Cell.of("nps", Segments(region="PL"), {"plan": "gold"})

    assert cell == Cell("nps", region="PL")
    assert cell.dimensions() == [("overall", "all"), ("survey", "nps"), ("region", "PL")]


@given(st.permutations([("plan", "gold"), ("tier", "smb"), ("seats", "50")]))
def test_the_same_attributes_in_any_order_make_the_same_cell(
    pairs: list[tuple[str, str]],
) -> None:
    scored = ("plan", "tier", "seats")

    assert Cell.of("nps", Segments(), dict(pairs), scored=scored) == Cell.of(
        "nps", Segments(), {"seats": "50", "plan": "gold", "tier": "smb"}, scored=scored
    )


def test_cells_differing_only_in_an_attribute_are_different_cells() -> None:
    gold = Cell.of("nps", Segments(), {"plan": "gold"}, scored=SCORED)
    silver = Cell.of("nps", Segments(), {"plan": "silver"}, scored=SCORED)
    none = Cell.of("nps", Segments(), {}, scored=SCORED)

    assert len({gold, silver, none}) == 3
    assert sorted([silver, none, gold], key=Cell.sort_key) == [none, gold, silver]


def test_a_response_counts_in_the_rollup_of_each_scored_attribute() -> None:
    cell = Cell.of(
        "nps", Segments(product="billing"), {"plan": "gold", "colour": "blue"}, scored=SCORED
    )
    deltas = Deltas.empty()

    deltas.count(counted(cell), 1)

    assert sorted(dimension for dimension, _, _ in deltas.segments) == [
        "attr.plan",
        "overall",
        "product",
        "survey",
    ]
    assert deltas.segments[("attr.plan", "gold", DAY)]["promoters"] == 1


def test_a_correction_of_an_attribute_moves_the_count_between_its_values() -> None:
    gold = Cell.of("nps", Segments(), {"plan": "gold"}, scored=SCORED)
    silver = Cell.of("nps", Segments(), {"plan": "silver"}, scored=SCORED)
    deltas = Deltas.empty()

    deltas.replace(counted(gold), counted(silver))

    assert deltas.segments[("attr.plan", "gold", DAY)]["promoters"] == -1
    assert deltas.segments[("attr.plan", "silver", DAY)]["promoters"] == 1
    assert deltas.segments[("overall", "all", DAY)]["promoters"] == 0


# --- the setting -----------------------------------------------------------------------------


def test_no_attribute_is_scored_by_default() -> None:
    assert ScoringSettings().scoring_attributes == ()


def test_the_scored_attributes_are_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_ATTRIBUTES", '["plan", "tier"]')

    assert ScoringSettings().scoring_attributes == ("plan", "tier")


@pytest.mark.parametrize(
    "attributes",
    [
        tuple(f"a{i}" for i in range(11)),
        ("plan", "plan"),
        ("Plan",),
        ("plan-type",),
    ],
    ids=["eleven", "twice", "upper-case", "dash"],
)
def test_the_scored_attributes_are_at_most_ten_distinct_valid_names(
    attributes: tuple[str, ...],
) -> None:
    with pytest.raises(ValidationError):
        ScoringSettings(scoring_attributes=attributes)


def test_ten_attributes_may_be_scored() -> None:
    names = tuple(f"a{i}" for i in range(10))

    assert ScoringSettings(scoring_attributes=names).scoring_attributes == names


# --- query filters ---------------------------------------------------------------------------


def test_attribute_filters_are_sorted_pairs_and_the_value_may_hold_colons() -> None:
    query = FilterQuery(region="PL", attribute=["tier:smb", "plan:gold:2026"])

    assert query.filters(SCORED) == Filters(
        region="PL", attributes=(("plan", "gold:2026"), ("tier", "smb"))
    )
    assert query.filters(SCORED).given() == {
        "region": "PL",
        "attr.plan": "gold:2026",
        "attr.tier": "smb",
    }


def test_filters_named_by_dimension_are_read_back_as_they_were_given() -> None:
    filters = Filters(survey="nps", attributes=(("plan", "gold"), ("tier", "smb")))

    assert Filters.of(filters.given()) == filters


def test_an_attribute_that_is_not_scored_is_a_problem_naming_the_scored_ones() -> None:
    with pytest.raises(Problem) as refused:
        attribute_pairs(["colour:blue"], SCORED)

    assert refused.value.status == 400
    assert refused.value.type.endswith(":unknown-attribute")
    assert refused.value.detail is not None
    assert "plan, tier" in refused.value.detail
    assert refused.value.extensions["scored_attributes"] == ["plan", "tier"]


@pytest.mark.parametrize("text", ["plan", "plan:", ":gold", "Plan:gold", "plan:" + "x" * 101])
def test_a_malformed_attribute_filter_is_a_problem(text: str) -> None:
    with pytest.raises(Problem) as refused:
        attribute_pairs([text], SCORED)

    assert refused.value.status == 400
    assert refused.value.type.endswith(":invalid-attribute-filter")


def test_one_attribute_with_two_values_is_a_conflict_and_the_same_value_twice_is_not() -> None:
    assert attribute_pairs(["plan:gold", "plan:gold"], SCORED) == (("plan", "gold"),)
    with pytest.raises(Problem) as refused:
        attribute_pairs(["plan:gold", "plan:silver"], SCORED)

    assert refused.value.type.endswith(":conflicting-filters")


def test_a_breakdown_by_an_attribute_needs_it_scored() -> None:
    assert breakdown_dimension("attr.plan", SCORED) == "attr.plan"
    assert breakdown_dimension("region", SCORED) == "region"
    with pytest.raises(Problem) as refused:
        breakdown_dimension("attr.colour", SCORED)

    assert refused.value.status == 400
