"""The fault run's poison records are what they claim to be for the real decoder, and its
expectations (dead letters, lag series) are computed right."""

from __future__ import annotations

import pytest

from closeloop_common.events import Topic, UndecodableEvent, UnknownEventType, decode_event
from closeloop_devtools.faults_checks import Check, check
from closeloop_devtools.faults_poison import Poison, expected_dead_letters, poison_values
from closeloop_devtools.faults_stream import parse_lag


@pytest.mark.parametrize("topic", [Topic.RESPONSES, Topic.CASES, Topic.CHANGES])
def test_poison_is_undecodable_but_an_unknown_type_is_only_unknown(topic: Topic) -> None:
    values = poison_values(topic, "tenant-a", "tenant-a:poison")
    assert set(values) == {"not_json", "wrong_shape", "unknown_type", "oversized"}
    for kind in ("not_json", "wrong_shape", "oversized"):
        with pytest.raises(UndecodableEvent):
            decode_event(values[kind])
    with pytest.raises(UnknownEventType):
        decode_event(values["unknown_type"])
    assert 900_000 < len(values["oversized"]) < 1_000_000  # under the broker's 1 MB limit


def test_each_undecodable_record_is_dead_lettered_once_per_consuming_group() -> None:
    fed = [
        Poison("not_json", Topic.RESPONSES, 0, 10),
        Poison("unknown_type", Topic.RESPONSES, 1, 11),
        Poison("oversized", Topic.CASES, 2, 12),
        Poison("wrong_shape", Topic.CHANGES, 0, 13),
    ]
    assert expected_dead_letters(fed, "p") == {
        ("p.responses", 0, 10, "p.scoring"),
        ("p.responses", 0, 10, "p.orchestrator"),
        ("p.responses", 0, 10, "p.notifier"),
        ("p.cases", 2, 12, "p.scoring"),
        ("p.cases", 2, 12, "p.notifier"),
        ("p.changes", 0, 13, "p.notifier"),
    }


def test_lag_series_are_read_from_the_metrics_text() -> None:
    text = (
        "# HELP closeloop_consumer_lag_records Records not yet consumed\n"
        'closeloop_consumer_lag_records{group="p.scoring",partition="0",topic="responses"} 3.0\n'
        'closeloop_consumer_lag_records{group="p.scoring",partition="1",topic="cases"} 0.0\n'
        'closeloop_events_consumed_total{group="p.scoring"} 7.0\n'
    )
    assert parse_lag(text) == {
        ("p.scoring", "responses", "0"): 3.0,
        ("p.scoring", "cases", "1"): 0.0,
    }


def test_a_long_check_is_shown_by_size_and_first_differences() -> None:
    expected = [f"r{n}" for n in range(20)]
    assert check("cases", expected, expected) == Check("cases", "20 items", "20 items", True)
    found = check("cases", expected, [*expected[1:], "stray"])
    assert not found.ok
    assert found.found == "20 items; missing 'r0', unexpected 'stray'"
