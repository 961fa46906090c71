"""How the consumer treats failures: outages are waited out, poison and bugs are dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from aiokafka import ConsumerRecord

from closeloop_common.clock import SystemClock
from closeloop_common.events import (
    Customer,
    ResponseReceivedV1,
    UndecodableEvent,
    categorize,
    decode_event,
    new_event,
)
from closeloop_common.kafka import consumer as consumer_module
from closeloop_common.kafka.consumer import EventConsumer, is_transient


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        ConnectionRefusedError(111, "Connection refused"),
        sa.exc.DBAPIError(
            "SELECT 1", None, asyncpg.exceptions.CannotConnectNowError("starting up")
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_infrastructure_errors_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a handler bug"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        sa.exc.DBAPIError("INSERT", None, asyncpg.exceptions.NotNullViolationError("null value")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_the_message_or_code_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"type": ' + b"9" * 5000 + b"}", b"\xff\xfe", b"{"],
    ids=["deep-nesting", "huge-integer", "bad-utf8", "truncated"],
)
def test_any_unparseable_value_is_undecodable_not_a_crash(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode_event(raw)


class ScriptedConsumer(EventConsumer):
    """The consumer's failure handling with its database step replaced by a script of outcomes."""

    def __init__(self, outcomes: list[BaseException | None], max_attempts: int) -> None:
        super().__init__(
            group_id="unit",
            topics=["t"],
            handlers={ResponseReceivedV1.EVENT_TYPE: self._noop},
            sessions=None,  # type: ignore[arg-type]
            inbox=sa.Table("inbox", sa.MetaData()),
            producer=None,  # type: ignore[arg-type]
            bootstrap_servers="unused:9092",
            topic_prefix="unit",
            clock=SystemClock(),
            max_attempts=max_attempts,
        )
        self.outcomes = outcomes
        self.calls = 0
        self.dead_letters: list[str] = []

    @staticmethod
    async def _noop(*_: Any) -> None:
        return None

    async def _handle_once(self, *_: Any) -> bool:
        outcome = self.outcomes[self.calls]
        self.calls += 1
        if outcome is not None:
            raise outcome
        return True

    async def _dead_letter(self, record: Any, reason: str, error: str) -> None:
        self.dead_letters.append(reason)


def a_record() -> ConsumerRecord[bytes, bytes]:
    now = datetime.now(UTC)
    data = ResponseReceivedV1(
        response_id="r",
        survey_id="s",
        customer=Customer(id="c"),
        score=5,
        category=categorize(5),
        answered_at=now,
        received_at=now,
        source="unit",
    )
    value = new_event(data, tenant_id="t", source="/unit", clock=SystemClock()).encode()
    return ConsumerRecord("t", 0, 7, 0, 0, b"t:c", value, None, len(b"t:c"), len(value), ())


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "backoff", lambda *_a, **_k: 0.0)


async def test_a_long_outage_does_not_use_up_the_attempts() -> None:
    outage = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    consumer = ScriptedConsumer([outage] * 20 + [None], max_attempts=3)
    await consumer._process(a_record())
    assert consumer.calls == 21
    assert consumer.dead_letters == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_max_attempts() -> None:
    outage = asyncpg.exceptions.CannotConnectNowError("starting up")
    bug = ValueError("bug")
    consumer = ScriptedConsumer([bug, outage, bug, outage, bug, None], max_attempts=3)
    await consumer._process(a_record())
    assert consumer.calls == 5  # three errors (outages in between do not count), then given up
    assert consumer.dead_letters == ["handler_failed"]
