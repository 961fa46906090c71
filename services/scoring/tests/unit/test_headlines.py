"""Headline segments: when a move is published (the debounced change rule), how headlines are
configured, and the `nps.changed.v1` contract on the wire."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_common.clock import FixedClock
from closeloop_common.events import (
    HeadlineWindow,
    NpsChangedV1,
    SegmentFilter,
    decode_event,
    new_event,
)
from closeloop_scoring.config import MAX_HEADLINES, Headline, ScoringSettings
from closeloop_scoring.domain.headlines import ChangeRule, Published, decide
from closeloop_scoring.service_layer.headlines import window_days
from closeloop_scoring.views import FILTER_NAMES, Days

NOW = datetime(2026, 5, 20, 10, 0, tzinfo=UTC)
RULE = ChangeRule(min_change=1.0, debounce=timedelta(minutes=5))
LONG_AGO = NOW - timedelta(hours=1)


def test_the_first_value_with_answers_is_published() -> None:
    decision = decide(None, 42.123, now=NOW, rule=RULE)
    assert decision.publish
    assert decision.reason == "first"
    assert decision.nps == 42.12
    assert decision.change is None


def test_nothing_is_published_before_a_headline_has_answers() -> None:
    decision = decide(None, None, now=NOW, rule=RULE)
    assert not decision.publish
    assert decision.reason == "no-data"


def test_a_move_below_the_least_change_is_not_published() -> None:
    decision = decide(Published(40.0, LONG_AGO), 40.99, now=NOW, rule=RULE)
    assert not decision.publish
    assert decision.reason == "below-min-change"
    assert decision.change == 0.99


def test_the_same_value_is_not_published_again() -> None:
    decision = decide(Published(40.0, LONG_AGO), 40.001, now=NOW, rule=RULE)
    assert not decision.publish
    assert decision.reason == "unchanged"


def test_a_move_of_the_least_change_is_published_with_the_change() -> None:
    decision = decide(Published(33.33, LONG_AGO), 100 * 1 / 3 + 1, now=NOW, rule=RULE)
    assert decision.publish
    assert decision.reason == "moved"
    assert decision.nps == 34.33
    assert decision.change == 1.0


def test_a_move_inside_the_debounce_waits_and_is_published_once_it_is_over() -> None:
    last = Published(40.0, NOW)
    inside = decide(last, 20.0, now=NOW + timedelta(minutes=4, seconds=59), rule=RULE)
    assert not inside.publish
    assert inside.reason == "debounced"
    over = decide(last, 25.0, now=NOW + timedelta(minutes=5), rule=RULE)
    assert over.publish
    assert over.change == -15.0


def test_a_window_that_empties_is_published_once_and_then_its_refill() -> None:
    emptied = decide(Published(40.0, LONG_AGO), None, now=NOW, rule=RULE)
    assert emptied.publish
    assert emptied.reason == "emptied"
    assert emptied.nps is None
    assert emptied.change is None
    assert not decide(Published(None, LONG_AGO), None, now=NOW, rule=RULE).publish
    refilled = decide(Published(None, LONG_AGO), 10.0, now=NOW, rule=RULE)
    assert refilled.publish
    assert refilled.reason == "refilled"
    assert refilled.change is None


def test_a_window_that_empties_inside_the_debounce_waits_too() -> None:
    decision = decide(Published(40.0, NOW), None, now=NOW + timedelta(seconds=1), rule=RULE)
    assert not decision.publish
    assert decision.reason == "debounced"


def test_no_least_change_publishes_any_change_but_not_the_same_value() -> None:
    rule = ChangeRule(min_change=0.0, debounce=timedelta(0))
    assert decide(Published(40.0, NOW), 40.01, now=NOW, rule=rule).publish
    assert not decide(Published(40.0, NOW), 40.0, now=NOW, rule=rule).publish


def test_a_negative_least_change_or_debounce_is_refused() -> None:
    with pytest.raises(ValueError, match="least change"):
        ChangeRule(min_change=-1.0)
    with pytest.raises(ValueError, match="debounce"):
        ChangeRule(debounce=timedelta(seconds=-1))


NPS = st.one_of(st.none(), st.floats(min_value=-100, max_value=100))


@given(
    last=NPS,
    current=NPS,
    age=st.integers(min_value=-3600, max_value=3600),
    min_change=st.floats(min_value=0, max_value=50),
)
def test_no_event_follows_the_last_one_within_the_debounce(
    last: float | None, current: float | None, age: int, min_change: float
) -> None:
    rule = ChangeRule(min_change=min_change, debounce=timedelta(minutes=5))
    published_at = NOW - timedelta(seconds=age)
    decision = decide(Published(last, published_at), current, now=NOW, rule=rule)
    if decision.publish:
        assert NOW - published_at >= rule.debounce
        assert decision.nps != last
        if decision.change is not None:
            assert abs(decision.change) >= min_change


# Settings


def headline(**fields: Any) -> dict[str, Any]:
    return {"tenant": "acme", "name": "pl-billing", **fields}


def test_headlines_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SCORING_HEADLINES",
        json.dumps(
            [
                headline(filters={"region": "PL", "product": "billing"}, window="90d"),
                headline(name="overall"),
                headline(tenant="globex"),
            ]
        ),
    )
    found = ScoringSettings().headlines()
    assert [(h.tenant, h.name, h.window) for h in found] == [
        ("acme", "pl-billing", "90d"),
        ("acme", "overall", "30d"),  # the default window
        ("globex", "pl-billing", "30d"),
    ]
    assert found[0].filters == {"region": "PL", "product": "billing"}
    assert found[1].filters == {}


def test_the_headline_settings_have_documented_defaults() -> None:
    settings = ScoringSettings()
    assert settings.headlines() == ()
    assert settings.scoring_headline_interval_seconds == 30
    assert settings.scoring_headline_min_change == 1.0
    assert settings.scoring_headline_debounce_seconds == 300


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([headline(), headline(filters={"region": "PL"})], "is twice"),
        ([headline(name=f"h{i}") for i in range(MAX_HEADLINES + 1)], "at most 100"),
        ([headline(name="PL billing")], "name"),
        ([headline(name="x" * 65)], "name"),
        ([headline(name="")], "name"),
        ([headline(tenant="Acme")], "tenant"),
        ([headline(filters={"country": "PL"})], "filters"),
        ([headline(filters={"region": ""})], "filters"),
        ([headline(window="14d")], "window"),
        ([headline(colour="red")], "colour"),
    ],
    ids=[
        "duplicate",
        "too-many",
        "space-in-name",
        "long-name",
        "empty-name",
        "bad-tenant",
        "unknown-filter",
        "empty-filter-value",
        "unknown-window",
        "unknown-field",
    ],
)
def test_invalid_headlines_are_refused(
    monkeypatch: pytest.MonkeyPatch, entries: list[dict[str, Any]], message: str
) -> None:
    monkeypatch.setenv("SCORING_HEADLINES", json.dumps(entries))
    with pytest.raises(ValidationError, match=message):
        ScoringSettings()


def test_exactly_the_most_headlines_are_accepted() -> None:
    entries = [Headline(tenant="acme", name=f"h{i}") for i in range(MAX_HEADLINES)]
    assert len(ScoringSettings(scoring_headlines=tuple(entries)).headlines()) == MAX_HEADLINES


def test_a_headlines_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "headlines.json"
    good.write_text(json.dumps([headline(filters={"survey": "relationship"}, window="month")]))
    (found,) = ScoringSettings(scoring_headlines_file=good).headlines()
    assert (found.name, found.filters, found.window) == (
        "pl-billing",
        {"survey": "relationship"},
        "month",
    )
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([headline(), headline()]))
    with pytest.raises(ValueError, match=r"twice\.json: .*is twice"):
        ScoringSettings(scoring_headlines_file=twice).headlines()
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match=r"broken\.json"):
        ScoringSettings(scoring_headlines_file=broken).headlines()


def test_headlines_come_from_the_environment_or_a_file_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        ScoringSettings(
            scoring_headlines=(Headline(tenant="acme", name="all"),),
            scoring_headlines_file=tmp_path / "headlines.json",
        )


def test_a_changed_filter_or_window_is_a_new_definition() -> None:
    base = Headline(tenant="acme", name="pl", filters={"region": "PL"})
    assert (
        base.definition == Headline(tenant="acme", name="pl", filters={"region": "PL"}).definition
    )
    assert base.definition != base.model_copy(update={"window": "7d"}).definition
    assert base.definition != base.model_copy(update={"filters": {"region": "DE"}}).definition


def test_a_headline_filters_by_the_dimensions_the_read_side_filters_by() -> None:
    assert get_args(SegmentFilter) == FILTER_NAMES


# Windows and the contract

WARSAW = ZoneInfo("Europe/Warsaw")


def test_a_headline_window_is_local_days_of_the_time_zone() -> None:
    late = datetime(2026, 5, 19, 22, 30, tzinfo=UTC)  # 00:30 on 20 May in Warsaw
    assert window_days("7d", now=late, zone=WARSAW) == Days(date(2026, 5, 14), date(2026, 5, 21))
    assert window_days("month", now=late, zone=WARSAW) == Days(date(2026, 5, 1), date(2026, 6, 1))
    assert window_days("all", now=late, zone=WARSAW) == Days(None, None)


def changed(**fields: Any) -> NpsChangedV1:
    values: dict[str, Any] = {
        "headline": "pl-billing",
        "filters": {"product": "billing", "region": "PL"},
        "window": HeadlineWindow.model_validate(
            {"name": "30d", "from": date(2026, 4, 21), "to": date(2026, 5, 21), "time_zone": "UTC"}
        ),
        "n": 4,
        "promoters": 3,
        "passives": 0,
        "detractors": 1,
        "nps": 50.0,
        "ci_low": -10.5,
        "ci_high": 80.25,
        "confidence": 0.95,
        "method": "adjusted-wald",
        "insufficient": True,
        "previous_nps": None,
        "change": None,
        "computed_at": NOW,
    }
    return NpsChangedV1(**{**values, **fields})


def test_nps_changed_travels_with_from_and_to_and_a_headline_key() -> None:
    event = new_event(changed(), tenant_id="acme", source="/unit", clock=FixedClock(NOW))
    wire = json.loads(event.encode())
    assert event.partitionkey == "acme:pl-billing"
    assert wire["type"] == "dev.closeloop.nps.changed.v1"
    assert wire["data"]["window"] == {
        "name": "30d",
        "from": "2026-04-21",
        "to": "2026-05-21",
        "time_zone": "UTC",
    }
    decoded = decode_event(event.encode())
    assert decoded.data == event.data


def test_nps_changed_of_a_window_without_answers_or_bounds_is_valid() -> None:
    empty = changed(
        window=HeadlineWindow(name="all", first=None, end=None, time_zone="UTC"),
        n=0,
        promoters=0,
        detractors=0,
        nps=None,
        ci_low=None,
        ci_high=None,
        previous_nps=50.0,
    )
    wire = json.loads(empty.model_dump_json())
    assert wire["window"]["from"] is None
    assert wire["nps"] is None


def test_nps_changed_refuses_an_unknown_filter() -> None:
    with pytest.raises(ValidationError, match="filters"):
        changed(filters={"country": "PL"})
