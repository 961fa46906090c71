"""Dead-letter selection and replay guards, without a broker."""

from __future__ import annotations

import pytest

from closeloop_common.kafka.deadletter import DeadLetter, Selection, replay
from closeloop_common.settings import CommonSettings


def letter(position: str, **dlq: str) -> DeadLetter:
    """A dead letter at `partition:offset` with `closeloop.dlq.<name>` headers."""
    partition, offset = (int(part) for part in position.split(":"))
    headers = (
        ("content-type", b"application/cloudevents+json"),
        *((f"closeloop.dlq.{name}", value.encode()) for name, value in dlq.items()),
    )
    return DeadLetter(partition, offset, b"t:c-1", b'{"id": "e-1"}', headers)


def test_every_given_criterion_must_hold() -> None:
    failed = letter("0:7", reason="handler_failed", group="scoring")
    assert Selection(frozenset({"0:7"})).matches(failed)
    assert Selection(reason="handler_failed", group="scoring").matches(failed)
    assert not Selection(frozenset({"0:7"}), reason="undecodable").matches(failed)
    assert not Selection(group="notifier").matches(failed)
    assert Selection().empty


def test_a_replayed_record_keeps_its_own_headers_only() -> None:
    failed = letter("0:7", topic="closeloop.responses", reason="handler_failed")
    assert failed.original_headers == [("content-type", b"application/cloudevents+json")]


def test_listing_shows_no_value_unless_asked() -> None:
    failed = letter("1:3", topic="closeloop.responses", partition="2", offset="40")
    assert "value" not in failed.describe(show_value=False)
    shown = failed.describe(show_value=True)
    assert shown["value"] == '{"id": "e-1"}'
    assert (shown["topic"], shown["partition"], shown["offset"]) == ("closeloop.responses", 2, 40)


@pytest.mark.parametrize("topic", [None, "other-deployment.responses", "closeloopx.responses"])
async def test_replay_refuses_a_target_outside_this_deployment(topic: str | None) -> None:
    stray = letter("0:1") if topic is None else letter("0:1", topic=topic)
    good = letter("0:2", topic="closeloop.responses")
    with pytest.raises(ValueError, match="0:1"):
        # The check comes before any connection: nothing of the batch is published.
        await replay(CommonSettings(kafka_bootstrap_servers="127.0.0.1:1"), [good, stray])
