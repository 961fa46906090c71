"""Root causes of cases as drivers: which case version counts, what a change of the tags moves,
and how they are told apart from comment themes."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import Category, Topic
from closeloop_common.kafka.topics import RETENTION_MS
from closeloop_scoring.adapters.tables import root_causes
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain.aggregation import Cell, Counted, Deltas
from closeloop_scoring.domain.drivers import drivers, source_of
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.root_causes import RootCauses, latest, root_cause_theme, supersede
from closeloop_scoring.service_layer.rebuild import EMPTIED, TOPICS

PL = Cell("relationship", region="PL")
DE = Cell("relationship", region="DE")
DAY, NEXT_DAY = date(2024, 5, 5), date(2024, 5, 6)


def response(
    category: Category = Category.DETRACTOR,
    *,
    version: int = 1,
    cell: Cell = PL,
    day: date = DAY,
    suspected: bool = False,
) -> Counted:
    return Counted(
        response_id="r-1",
        version=version,
        cell=cell,
        day=day,
        category=category,
        account_id=None,
        themes=frozenset({"delivery"}),
        suspected=suspected,
    )


def case(version: int, *tags: str) -> RootCauses:
    return RootCauses("r-1", version, frozenset(tags))


def theme_counts(deltas: Deltas) -> dict[tuple[Cell, date, str], Counter[str]]:
    """The theme changes that are not zero."""
    return {
        key: Counter({column: n for column, n in counts.items() if n})
        for key, counts in deltas.themes.items()
        if any(counts.values())
    }


def test_a_higher_case_version_replaces_and_the_same_or_an_older_one_is_ignored() -> None:
    stored = case(3, "billing error")
    assert supersede(None, case(2, "late courier")) == case(2, "late courier")
    assert supersede(stored, case(4, "billing error")) == case(4, "billing error")
    assert supersede(stored, case(3, "billing error")) is None
    assert supersede(stored, case(2, "late courier")) is None


@given(
    st.lists(
        st.tuples(st.integers(2, 8), st.frozensets(st.sampled_from("abcd"))),
        min_size=1,
        max_size=10,
        unique_by=lambda pair: pair[0],
    ),
    st.randoms(),
    st.integers(0, 5),
)
def test_whatever_the_order_and_repetition_the_highest_case_version_is_kept(
    versions: list[tuple[int, frozenset[str]]], rng: random.Random, repeats: int
) -> None:
    events = [case(v, *tags) for v, tags in versions]
    delivered = events + [rng.choice(events) for _ in range(repeats)]
    rng.shuffle(delivered)
    highest = max(events, key=lambda e: e.case_version)
    assert latest(None, delivered) == highest
    # Delivered again over what is stored (a replay), nothing changes.
    assert latest(highest, delivered) == highest


def test_a_response_counts_its_root_causes_as_rc_themes_of_its_cell_day_and_category() -> None:
    deltas = Deltas.empty()
    deltas.count(response(), 1, frozenset({"billing error", "late courier"}))
    assert theme_counts(deltas) == {
        (PL, DAY, "delivery"): Counter({"detractors": 1}),
        (PL, DAY, "rc:billing error"): Counter({"detractors": 1}),
        (PL, DAY, "rc:late courier"): Counter({"detractors": 1}),
    }


def test_a_suspected_response_counts_no_root_cause() -> None:
    deltas = Deltas.empty()
    deltas.count(response(suspected=True), 1, frozenset({"billing error"}))
    deltas.recause(response(suspected=True), frozenset(), frozenset({"late courier"}))
    assert deltas.themes == {}


def test_a_change_of_root_causes_takes_the_dropped_back_and_adds_the_new() -> None:
    deltas = Deltas.empty()
    deltas.recause(response(Category.PASSIVE), frozenset({"a", "b"}), frozenset({"b", "c"}))
    assert theme_counts(deltas) == {
        (PL, DAY, "rc:a"): Counter({"passives": -1}),
        (PL, DAY, "rc:c"): Counter({"passives": 1}),
    }
    unchanged = Deltas.empty()
    unchanged.recause(response(), frozenset({"a"}), frozenset({"a"}))
    assert unchanged.themes == {}


def test_a_correction_moves_the_root_causes_with_the_rest() -> None:
    deltas = Deltas.empty()
    first = response()
    moved = response(Category.PROMOTER, version=2, cell=DE, day=NEXT_DAY)
    deltas.count(first, 1, frozenset({"billing error"}))
    deltas.replace(first, moved, frozenset({"billing error"}))
    assert theme_counts(deltas) == {
        (DE, NEXT_DAY, "delivery"): Counter({"promoters": 1}),
        (DE, NEXT_DAY, "rc:billing error"): Counter({"promoters": 1}),
    }


@given(
    st.lists(
        st.tuples(st.integers(2, 8), st.frozensets(st.sampled_from("abcd"))),
        min_size=1,
        max_size=8,
    ),
)
def test_the_changes_of_any_sequence_of_case_events_sum_to_counting_the_last_tags_once(
    events: list[tuple[int, frozenset[str]]],
) -> None:
    """What the handler does per event (store the newer version, move the tags) adds up to the
    newest version's tags counted once, whatever came in between."""
    deltas = Deltas.empty()
    counted = response()
    stored: RootCauses | None = None
    for v, tags in events:
        after = supersede(stored, case(v, *tags))
        if after is None:
            continue
        deltas.recause(counted, stored.tags if stored else frozenset(), after.tags)
        stored = after
    assert stored is not None
    expected = Deltas.empty()
    for tag in stored.tags:
        expected.themes[(PL, DAY, root_cause_theme(tag))] = Counter({"detractors": 1})
    assert theme_counts(deltas) == theme_counts(expected)


def test_root_causes_are_drivers_of_their_own_source() -> None:
    assert source_of("rc:billing error") == "root_cause"
    assert source_of("delivery") == "comment"
    found = drivers(
        NpsCounts(promoters=2, passives=1, detractors=2),
        {"delivery": NpsCounts(0, 0, 1), "rc:late courier": NpsCounts(0, 0, 2)},
    )
    assert [(d.theme, d.source, d.nps_impact) for d in found] == [
        ("rc:late courier", "root_cause", 40.0),
        ("delivery", "comment", 20.0),
    ]


def test_a_theme_dictionary_may_not_name_a_theme_like_a_root_cause(tmp_path: Path) -> None:
    themes = tmp_path / "themes.json"
    themes.write_text(json.dumps({"rc:delivery": ["kurier"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="root causes"):
        ScoringSettings(scoring_themes_file=themes).themes()


def test_a_rebuild_empties_the_root_causes_and_counts_them_again_from_the_kept_cases() -> None:
    assert root_causes in EMPTIED
    assert TOPICS == (Topic.RESPONSES, Topic.CASES)
    assert RETENTION_MS[Topic.CASES] == RETENTION_MS[Topic.RESPONSES] == -1
