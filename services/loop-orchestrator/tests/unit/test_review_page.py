"""The review pack's page without I/O: which language a request gets, the trend's coordinates,
and a pack rendered in both languages with hostile text escaped."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from closeloop_orchestrator.review_html import chart, render
from closeloop_orchestrator.review_labels import LABELS, language_of


@pytest.mark.parametrize(
    ("lang", "accept", "expected"),
    [
        ("pl", "en", "pl"),
        ("en", "pl-PL", "en"),
        (None, "pl-PL,pl;q=0.9,en-US;q=0.8,en;q=0.7", "pl"),
        (None, "en-GB,en;q=0.9,pl;q=0.8", "en"),
        (None, "de-DE,de;q=0.9,pl;q=0.5,en;q=0.4", "pl"),
        (None, "de, en;q=0.3, pl;q=0.6", "pl"),
        (None, "pl;q=0, en;q=0.1", "en"),
        (None, "PL", "pl"),
        (None, "de-DE", "en"),
        (None, "pl;q=nonsense", "en"),
        (None, None, "en"),
        (None, "", "en"),
        ("de", "pl", "pl"),
    ],
)
def test_the_language_is_lang_else_accept_language_else_english(
    lang: str | None, accept: str | None, expected: str
) -> None:
    assert language_of(lang, accept) == expected


def point(
    month: int, nps: float | None, low: float | None = None, high: float | None = None
) -> dict[str, Any]:
    return {
        "month": f"2026-{month:02}",
        "from": date(2026, month, 1),
        "nps": nps,
        "ci_low": low,
        "ci_high": high,
        "n": 0 if nps is None else 10,
    }


def test_the_trend_is_drawn_on_a_fixed_scale_with_no_line_across_a_gap() -> None:
    drawn = chart([point(1, 100, 80, 100), point(2, 0, -20, 20), point(3, None),
                   point(4, -100, -100, -90)], width=440, height=240)  # fmt: skip
    # Columns of (428 - 44) / 4 = 96 px; NPS 100 at y 12, -100 at y 212, 0 at 112.
    assert [(p.x, p.y) for p in drawn.points] == [(92.0, 12.0), (188.0, 112.0), (380.0, 212.0)]
    assert (drawn.points[1].high, drawn.points[1].low) == (92.0, 132.0)
    assert drawn.lines == ("92.0,12.0 188.0,112.0",)
    assert [x for x, _ in drawn.labels] == [92.0, 188.0, 284.0, 380.0]
    assert dict(drawn.ticks)[0] == 112.0


EN_DASH = "\u2013"
HOSTILE = "<script>alert(1)</script> {{ 7*7 }}"


def pack(**overrides: Any) -> dict[str, Any]:
    figure = {"n": 10, "promoters": 3, "passives": 2, "detractors": 5, "nps": -20.0,
              "ci_low": -52.43, "ci_high": 16.28, "confidence": 0.95,
              "method": "adjusted-wald", "insufficient": True}  # fmt: skip
    found: dict[str, Any] = {
        "tenant_id": "t",
        "generated_at": datetime(2026, 11, 10, 9, 0, tzinfo=UTC),
        "account": {"id": "acme <b>", "revenue_weight": 1250000.0, "key_account": True},
        "quarter": {
            "name": "2026-Q4",
            "from": date(2026, 10, 1),
            "to": date(2027, 1, 1),
            "time_zone": "Europe/Warsaw",
            "previous": {"name": "2026-Q3", "from": date(2026, 7, 1), "to": date(2026, 10, 1)},
        },
        "nps": {"current": figure, "previous": figure | {"nps": 10.0},
                "comparison": {"difference": -30.0, "p_value": 0.2, "significant": False}},
        "trend": {"granularity": "month", "points": [point(10, -20.0, -52.43, 16.28)]},
        "response_rate": {"invitations": 20, "answers": 10, "rate": 0.5},
        "drivers": [{"theme": HOSTILE, "source": "comment", "share_of_detractors": 0.6,
                     "nps_impact": 30.0, "impact_low": 10.0, "impact_high": 55.0,
                     "mentions": {}}],
        "health": {"state": "at_risk", "reasons": [{"code": "x", "text": HOSTILE}]},
        "cases": {
            "opened": {"total": 1, "promoter": 0, "passive": 0, "detractor": 1, "no_response": 0},
            "resolved": 0, "closed": 0, "open_now": 1,
            "first_contact": {"contacted": 1, "judged": 1, "within_sla": 1,
                              "within_sla_share": 1.0, "breaches": 0, "p50_hours": 2.5,
                              "p90_hours": 2.5},
        },
        "actions": {"total": 1, "by_status": {}, "items": [
            {"title": HOSTILE, "description": HOSTILE, "owner": {"id": "x", "name": HOSTILE},
             "due_on": date(2026, 11, 1), "status": "in_progress", "note": HOSTILE,
             "overdue": True},
        ]},
        "issues": [{"title": HOSTILE, "status": "in_progress", "decided_at": None,
                    "account_cases": 2}],
        "unavailable": [],
    }  # fmt: skip
    return found | overrides


def test_a_page_in_polish_has_polish_words_and_numbers_and_escapes_every_text() -> None:
    page = render(pack(), "pl")
    assert '<html lang="pl">' in page
    for label in ("Kwartalny przegląd klienta", "Uzgodnione działania", "Wskaźnik odpowiedzi"):
        assert f"{label}</" in page
    for figure in ("-20,0", "50,0%", "1\xa0250\xa0000", f"1 paź 2026 {EN_DASH} 31 gru 2026"):
        assert figure in page
    for named in ("(po terminie)", "zagrożony", "w toku"):
        assert named in page
    assert "<script>" not in page
    assert "acme <b>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}") == 7
    assert "&lt;b&gt;" in page


def test_a_page_in_english_and_sections_scoring_did_not_answer() -> None:
    page = render(
        pack(nps=None, trend=None, drivers=None, health=None, response_rate=None,
             unavailable=["nps", "trend", "response_rate", "drivers", "health"]),
        "en",
    )  # fmt: skip
    assert '<html lang="en">' in page
    assert "Quarterly account review</h1>" in page
    assert page.count(LABELS["en"]["unavailable"]) == 5
    assert f"Oct 1, 2026 {EN_DASH} Dec 31, 2026" in page
    assert "<svg" not in page
