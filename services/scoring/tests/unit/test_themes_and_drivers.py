"""Themes in Polish and English comments, and drivers: shares and NPS impact with intervals.

The driver intervals were computed apart from the module (40-digit decimals, the quantile by
bisecting erf)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_scoring.domain.drivers import drivers, proportion_interval
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.themes import ThemeTagger, fold

TAGGER = ThemeTagger(
    {
        "service": ("obsługa", "obsługa klienta", "support"),
        "delivery": ("dostawa", "delivery"),
        "invoicing": ("faktura", "invoice"),
        "website": ("strona",),
    }
)


@pytest.mark.parametrize(
    ("comment", "themes"),
    [
        ("Obsługa była powolna", {"service"}),
        ("Brak obsługi po zakupie", {"service"}),  # genitive
        ("Porozmawiajmy o obsłudze", {"service"}),  # locative: ł -> dz, the lemmatiser knows
        ("obsluga slaba", {"service"}),  # typed without diacritics
        ("obslugi nie ma", {"service"}),  # inflected and without diacritics
        ("Faktury i dostawy zawsze z opóźnieniem", {"invoicing", "delivery"}),
        ("The invoices were wrong and the delivery late", {"invoicing", "delivery"}),
        ("Support never answered", {"service"}),
        ("Na stronie nie działa logowanie", {"website"}),
        ("A strong product", set()),  # an English word is not an uninflected Polish one
        ("Wszystko dobrze", set()),
        ("", set()),
        (None, set()),
    ],
)
def test_a_comment_mentions_the_themes_of_its_words(comment: str | None, themes: set[str]) -> None:
    assert TAGGER.tag(comment) == themes


def test_a_keyword_of_several_words_matches_them_in_a_row() -> None:
    tagger = ThemeTagger({"customer service": ("obsługa klienta",)})
    assert tagger.tag("Obsługa klienta do poprawy") == {"customer service"}
    assert tagger.tag("Obsługi klientów brak") == {"customer service"}
    assert tagger.tag("Klient i obsługa") == frozenset()


def test_a_keyword_without_a_word_is_refused() -> None:
    with pytest.raises(ValueError, match="no word"):
        ThemeTagger({"empty": ("!!",)})


def test_folding_drops_diacritics_and_case() -> None:
    assert fold("Zażółć GĘŚLĄ jaźń") == "zazolc gesla jazn"


def test_drivers_give_shares_and_the_impact_with_its_interval() -> None:
    total = NpsCounts(promoters=100, passives=60, detractors=40)
    found = drivers(
        total,
        {
            "delivery": NpsCounts(promoters=10, passives=6, detractors=30),
            "price": NpsCounts(promoters=0, passives=12, detractors=4),
        },
    )
    delivery, price = found
    assert delivery.theme == "delivery"
    assert (delivery.share_of_detractors, delivery.share_of_passives) == (0.75, 0.1)
    assert delivery.share_of_promoters == 0.1
    assert delivery.nps_impact == 15.0  # NPS 30 -> 45 if those 30 detractors were passives
    assert (delivery.impact_low, delivery.impact_high) == pytest.approx(
        (10.6706, 20.6485), abs=5e-5
    )
    assert (price.theme, price.nps_impact) == ("price", 2.0)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(0, 10, 0.0, 32.0887), (10, 10, 67.9113, 100.0), (1, 3, 5.6275, 79.7558)],
)
def test_proportion_interval_worked_examples(
    successes: int, n: int, low: float, high: float
) -> None:
    found = proportion_interval(successes, n, 0.95)
    assert (100 * found[0], 100 * found[1]) == pytest.approx((low, high), abs=5e-5)


def test_no_answer_has_no_drivers_and_impossible_counts_are_refused() -> None:
    assert drivers(NpsCounts(), {"x": NpsCounts()}) == []
    with pytest.raises(ValueError, match="more mentions"):
        drivers(NpsCounts(1, 1, 1), {"x": NpsCounts(0, 0, 2)})
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(3, 2, 0.95)


@given(st.integers(0, 1000), st.integers(1, 1000), st.floats(0.5, 0.999))
def test_the_impact_interval_holds_the_impact(
    detractors: int, others: int, confidence: float
) -> None:
    total = NpsCounts(promoters=others, passives=0, detractors=detractors)
    (driver,) = drivers(total, {"t": NpsCounts(detractors=detractors)}, confidence=confidence)
    assert 0.0 <= driver.impact_low <= driver.nps_impact <= driver.impact_high <= 100.0
