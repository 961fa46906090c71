"""Which version of a response counts, and what it contributes: `supersede` and `Deltas`."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date
from typing import Any

from closeloop_common.events import Category
from closeloop_scoring.domain.aggregation import Cell, Counted, Deltas, supersede

BILLING_PL = Cell("relationship", product="billing", region="PL")
APP_DE = Cell("relationship", product="app", region="DE", channel="email")
ONBOARDING = Cell("onboarding", touchpoint="signup")
MAY_5, MAY_6 = date(2026, 5, 5), date(2026, 5, 6)


def version(
    v: int = 1,
    *,
    rid: str = "r-1",
    cell: Cell = BILLING_PL,
    day: date = MAY_5,
    category: Category = Category.PROMOTER,
    account: str | None = "acme",
    themes: frozenset[str] | None = frozenset({"price"}),
    suspected: bool = False,
) -> Counted:
    return Counted(rid, v, cell, day, category, account, themes, suspected)


def suspicion(of: Counted) -> Counted:
    """The suspicion event of a version: the same content, no comment to tag."""
    return replace(of, themes=None, suspected=True)


def released(of: Counted) -> Counted:
    """A `response.received` event: it carries no version of its own (counted as 1)."""
    return replace(of, version=1, releases=True)


# --- supersede: examples ---------------------------------------------------------------------


def test_the_first_version_of_a_response_is_stored_as_it_is() -> None:
    first = version()
    assert supersede(None, first) == first


def test_a_suspicion_first_is_stored_suspected_without_themes() -> None:
    assert supersede(None, suspicion(version())) == version(themes=frozenset(), suspected=True)


def test_a_higher_version_replaces_the_stored_one_whole() -> None:
    stored = version(1)
    later = version(3, cell=APP_DE, day=MAY_6, category=Category.DETRACTOR, themes=frozenset())
    assert supersede(stored, later) == later


def test_the_same_version_again_changes_nothing() -> None:
    assert supersede(version(2), version(2)) is None


def test_an_older_version_arriving_late_is_ignored() -> None:
    stored = version(3)
    assert supersede(stored, version(2, category=Category.DETRACTOR)) is None
    assert supersede(stored, suspicion(version(2))) is None


def test_a_suspicion_of_a_higher_version_replaces_the_stored_one() -> None:
    later = version(2, category=Category.DETRACTOR)
    assert supersede(version(1), suspicion(later)) == replace(
        later, themes=frozenset(), suspected=True
    )


def test_a_received_event_releases_a_suspected_response_at_its_version() -> None:
    held = supersede(None, suspicion(version(3, category=Category.DETRACTOR)))
    assert held is not None
    confirmed = released(version(3, category=Category.DETRACTOR, themes=frozenset({"price"})))
    after = supersede(held, confirmed)
    assert after == version(3, category=Category.DETRACTOR)
    # Redelivered, the release changes nothing; a later correction replaces it as usual.
    assert after is not None
    assert supersede(after, confirmed) is None
    assert supersede(after, version(4)) == version(4)


def test_a_received_event_does_not_undo_a_newer_correction() -> None:
    assert supersede(version(2), released(version(1, category=Category.DETRACTOR))) is None


# --- supersede + Deltas: any order, any repetition --------------------------------------------

RESPONSES = ("r-1", "r-2", "r-3")
CELLS = (BILLING_PL, APP_DE, ONBOARDING, Cell("relationship"))
DAYS = (MAY_5, MAY_6, date(2026, 6, 1))
THEMES = ("price", "delivery", "customer service")


def nonzero(deltas: Deltas) -> dict[str, dict[Any, dict[str, int]]]:
    def clean(table: dict[Any, Counter[str]]) -> dict[Any, dict[str, int]]:
        kept = {key: {c: n for c, n in counts.items() if n} for key, counts in table.items()}
        return {key: counts for key, counts in kept.items() if counts}

    return {
        "cells": clean(deltas.cells),
        "segments": clean(deltas.segments),
        "themes": clean(deltas.themes),
    }


# --- Deltas ----------------------------------------------------------------------------------


def test_a_version_counts_in_its_cell_every_single_dimension_and_its_themes() -> None:
    deltas = Deltas.empty()
    deltas.count(version(themes=frozenset({"price", "delivery"})), 1)
    assert deltas.cells == {(BILLING_PL, MAY_5): Counter(promoters=1)}
    assert deltas.segments == {
        ("overall", "all", MAY_5): Counter(promoters=1),
        ("survey", "relationship", MAY_5): Counter(promoters=1),
        ("product", "billing", MAY_5): Counter(promoters=1),
        ("region", "PL", MAY_5): Counter(promoters=1),
    }
    assert deltas.themes == {
        (BILLING_PL, MAY_5, "price"): Counter(promoters=1),
        (BILLING_PL, MAY_5, "delivery"): Counter(promoters=1),
    }


def test_a_suspected_version_counts_as_suspected_only_and_without_themes() -> None:
    deltas = Deltas.empty()
    deltas.count(version(suspected=True, category=Category.DETRACTOR), 1)
    assert deltas.cells == {(BILLING_PL, MAY_5): Counter(suspected=1)}
    assert deltas.segments[("overall", "all", MAY_5)] == Counter(suspected=1)
    assert deltas.themes == {}


def test_replacing_a_version_takes_its_contribution_back() -> None:
    deltas = Deltas.empty()
    before = version(themes=frozenset({"price"}))
    after = version(2, cell=APP_DE, day=MAY_6, category=Category.DETRACTOR, themes=frozenset())
    deltas.replace(before, after)
    assert nonzero(deltas)["cells"] == {
        (BILLING_PL, MAY_5): {"promoters": -1},
        (APP_DE, MAY_6): {"detractors": 1},
    }
    assert nonzero(deltas)["themes"] == {(BILLING_PL, MAY_5, "price"): {"promoters": -1}}
    assert nonzero(deltas)["segments"][("overall", "all", MAY_5)] == {"promoters": -1}
    assert nonzero(deltas)["segments"][("channel", "email", MAY_6)] == {"detractors": 1}
    assert deltas.cell_keys() == {BILLING_PL, APP_DE}


def test_an_invitation_counts_in_its_cell_and_single_dimensions() -> None:
    deltas = Deltas.empty()
    deltas.invite(ONBOARDING, MAY_5)
    assert deltas.cells == {(ONBOARDING, MAY_5): Counter(invitations=1)}
    assert set(deltas.segments) == {
        ("overall", "all", MAY_5),
        ("survey", "onboarding", MAY_5),
        ("touchpoint", "signup", MAY_5),
    }
