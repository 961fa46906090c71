"""Which version of a response counts (`supersede`) and what a batch changes (`Deltas`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import Category
from closeloop_scoring.domain.aggregation import Cell, Counted, Deltas, supersede

PL = Cell("relationship", region="PL")
DE = Cell("relationship", region="DE")
DAY = date(2024, 5, 5)


def version(
    number: int,
    category: Category = Category.PROMOTER,
    *,
    cell: Cell = PL,
    kind: str = "corrected",
) -> Counted:
    """A version as the handler reads it from a `received`, `corrected` or `suspected` event."""
    return Counted(
        response_id="r-1",
        version=number,
        cell=cell,
        day=DAY,
        category=category,
        account_id=None,
        themes=None if kind == "suspected" else frozenset({"delivery"}),
        suspected=kind == "suspected",
        releases=kind == "received",
    )


def received(category: Category = Category.PROMOTER, cell: Cell = PL) -> Counted:
    return version(1, category, cell=cell, kind="received")


def suspected(number: int, category: Category = Category.DETRACTOR) -> Counted:
    return version(number, category, kind="suspected")


def fold(events: Sequence[Counted]) -> Counted | None:
    stored: Counted | None = None
    for event in events:
        after = supersede(stored, event)
        if after is not None:
            stored = after
    return stored


def test_a_higher_version_replaces_and_a_lower_or_equal_one_is_ignored() -> None:
    v2 = version(2, Category.DETRACTOR, cell=DE)
    assert supersede(received(), v2) == v2
    assert supersede(v2, received()) is None
    assert supersede(v2, version(2, Category.PASSIVE)) is None


def test_a_received_event_releases_the_suspected_version_it_follows() -> None:
    # Suspected in versions 1 and 2, then confirmed: ingest publishes it as received (no version).
    stored = fold([suspected(1), suspected(2)])
    assert stored is not None
    assert stored.suspected
    released = supersede(stored, received(Category.PROMOTER))
    assert released is not None
    assert (released.version, released.suspected, released.category) == (
        2,
        False,
        Category.PROMOTER,
    )
    assert released.themes == frozenset({"delivery"})
    # The suspicions it released, redelivered, change nothing; the next correction does.
    assert supersede(released, suspected(2)) is None
    assert supersede(released, suspected(1)) is None
    assert supersede(released, version(3, Category.PASSIVE)) is not None


def test_a_suspected_version_counts_in_suspected_only() -> None:
    deltas = Deltas.empty()
    deltas.replace(None, fold([suspected(1)]) or suspected(1))
    assert deltas.cells == {(PL, DAY): Counter({"suspected": 1})}
    assert deltas.themes == {}


def test_a_response_counted_and_moved_in_one_batch_leaves_zero_changes_behind() -> None:
    deltas = Deltas.empty()
    first, moved = received(), version(2, Category.DETRACTOR, cell=DE)
    deltas.replace(None, first)
    deltas.replace(first, moved)
    assert deltas.cells[(PL, DAY)] == Counter({"promoters": 0})
    assert deltas.cells[(DE, DAY)] == Counter({"detractors": 1})


# A response's events in the order ingest publishes them: suspicions, maybe a release, then
# corrections with the versions that follow.
histories = st.one_of(
    st.integers(0, 3).map(lambda k: [received()] + [version(v) for v in range(2, k + 2)]),
    st.tuples(st.integers(1, 3), st.booleans(), st.integers(0, 2)).map(
        lambda t: (
            [suspected(v) for v in range(1, t[0] + 1)]
            + ([received(Category.PASSIVE)] if t[1] else [])
            + (
                [version(v, Category.DETRACTOR) for v in range(t[0] + 1, t[0] + 1 + t[2])]
                if t[1]
                else []
            )
        )
    ),
)


@given(histories, st.data())
def test_redelivering_from_any_earlier_event_changes_nothing(
    history: list[Counted], data: st.DataObject
) -> None:
    """A consumer that dies after its transaction and before its offset commit reads the events
    again from an earlier offset, in order, any number of times."""
    events = list(history)
    for _ in range(data.draw(st.integers(0, 3))):
        cut = data.draw(st.integers(0, len(events)))
        redelivered = data.draw(st.integers(cut, len(events)))
        events = events[:redelivered] + events[cut:]
    assert fold(events) == fold(history)


@given(histories)
def test_versions_corrected_out_of_order_count_as_the_highest(history: list[Counted]) -> None:
    corrections = [e for e in history if not e.suspected and not e.releases]
    start = history[: len(history) - len(corrections)]
    assert fold(start + corrections[::-1]) == fold(history)
