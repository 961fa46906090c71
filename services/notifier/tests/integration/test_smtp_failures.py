"""How the dispatcher treats each kind of SMTP failure, against real SMTP servers:

- outage (connection refused, no answer): the queue waits; no message is charged an attempt;
- configuration (535 on AUTH, 5xx on MAIL FROM): the queue is held; nothing is failed;
- recipient- or content-level 5xx: that one message fails; 4xx: retried, counted as an attempt.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from closeloop_common.events import NotificationFailedV1, NotificationSentV1
from closeloop_devtools.mailsink import MailSink
from closeloop_notifier.adapters.email import SmtpPool, SmtpSettings
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy
from services.notifier.tests.integration.conftest import Delivery, free_port, mails_of_case

LONGER_THAN_ANY_HOLD = timedelta(hours=2)


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def statuses(delivery: Delivery, events: list[Any]) -> list[tuple[str, int]]:
    rows = [await delivery.message_of_case(e.data.case_id) for e in events]
    return [(row.status, row.attempts) for row in rows]


async def prepare_cases(delivery: Delivery, count: int) -> list[Any]:
    """`count` pending messages, due one second apart (so they are taken in this order)."""
    events = []
    for _ in range(count):
        event = delivery.case_opened()
        assert await delivery.prepare(event) == "pending"
        events.append(event)
        delivery.clock.advance(timedelta(seconds=1))
    return events


async def test_smtp_outage_longer_than_max_attempts_fails_nothing_and_all_go_out_when_it_ends(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    port = free_port()  # nothing listens here until the sink starts below
    policy = DeliveryPolicy(max_attempts=2)
    send = delivery.dispatcher(port, policy)
    cases = await prepare_cases(delivery, 3)

    for _ in range(3 * policy.max_attempts):
        assert await send.dispatch_batch() == 0
        assert gauge("closeloop_notifier_smtp_unreachable") == 1
        # Held as a whole: nothing is tried again before the hold passes.
        assert send.held_until["email"] > delivery.clock.now()
        assert await send.dispatch_batch() == 0
        delivery.clock.advance(LONGER_THAN_ANY_HOLD)

    assert await statuses(delivery, cases) == [("pending", 0)] * 3
    assert await delivery.events() == []

    sink = start_sink(port)
    assert [await send.dispatch_batch() for _ in range(2)] == [3, 0]

    assert await statuses(delivery, cases) == [("sent", 1)] * 3
    assert all(len(mails_of_case(sink, e.data.case_id)) == 1 for e in cases)
    assert [e.type for e in await delivery.events()] == [NotificationSentV1.EVENT_TYPE] * 3
    assert gauge("closeloop_notifier_smtp_unreachable") == 0
    assert send.held_until == {}


async def test_smtp_server_that_accepts_the_connection_but_never_answers_is_an_outage(
    delivery: Delivery,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        sender = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=silent.getsockname()[1], timeout=0.5, size=1)
        )
        send = delivery.dispatcher(0, DeliveryPolicy(max_attempts=1), channels={"email": sender})
        [case] = await prepare_cases(delivery, 1)
        try:
            assert await send.dispatch_batch() == 0
            row = await delivery.message_of_case(case.data.case_id)
            assert (row.status, row.attempts) == ("pending", 0)
            assert gauge("closeloop_notifier_smtp_unreachable") == 1
        finally:
            await delivery.finish()


async def test_refused_login_holds_the_queue_fails_nothing_and_alerts(
    delivery: Delivery, start_smtp: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_smtp(password="right")
    wrong = SmtpPool(
        SmtpSettings(
            host="127.0.0.1", port=server.port, username="closeloop", password="wrong", timeout=5
        )
    )
    send = delivery.dispatcher(0, DeliveryPolicy(max_attempts=1), channels={"email": wrong})
    cases = await prepare_cases(delivery, 2)

    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert await send.dispatch_batch() == 0
            assert gauge("closeloop_notifier_smtp_misconfigured") == 1
            assert await send.dispatch_batch() == 0  # held
            delivery.clock.advance(LONGER_THAN_ANY_HOLD)

    assert await statuses(delivery, cases) == [("pending", 0)] * 2
    assert await delivery.events() == []
    assert server.received == []
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert alerts
    assert all("535" in str(getattr(r, "error", "")) for r in alerts)

    # The operator fixes the password: the held queue goes out.
    right = SmtpPool(
        SmtpSettings(
            host="127.0.0.1", port=server.port, username="closeloop", password="right", timeout=5
        )
    )
    fixed = delivery.dispatcher(0, DeliveryPolicy(max_attempts=1), channels={"email": right})
    assert [await fixed.dispatch_batch() for _ in range(2)] == [2, 0]
    assert await statuses(delivery, cases) == [("sent", 1)] * 2
    assert len(server.received) == 2
    assert gauge("closeloop_notifier_smtp_misconfigured") == 0


async def test_sender_address_refused_with_5xx_holds_the_queue_and_fails_nothing(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp(mail="550 5.7.1 Sender address rejected: not owned by user")
    send = delivery.dispatcher(server.port, DeliveryPolicy(max_attempts=1))
    cases = await prepare_cases(delivery, 2)

    try:
        for _ in range(3):
            assert await send.dispatch_batch() == 0
            delivery.clock.advance(LONGER_THAN_ANY_HOLD)

        assert await statuses(delivery, cases) == [("pending", 0)] * 2
        assert await delivery.events() == []
        assert gauge("closeloop_notifier_smtp_misconfigured") == 1
    finally:
        await delivery.finish()


async def test_sender_address_refused_for_now_is_retried_and_counted(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp(mail="451 4.3.0 Temporary local problem")
    send = delivery.dispatcher(server.port)
    [case] = await prepare_cases(delivery, 1)

    try:
        assert await send.dispatch_batch() == 1
        row = await delivery.message_of_case(case.data.case_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at > delivery.clock.now()
    finally:
        await delivery.finish()


@pytest.mark.parametrize(
    "script",
    [
        {"refuse_recipients": ("anna.nowak@klient.example.pl",)},
        {"data": "554 5.6.0 Message content rejected"},
    ],
    ids=["recipient-5xx", "data-5xx"],
)
async def test_permanent_refusal_of_a_message_fails_that_message_at_its_first_attempt(
    delivery: Delivery, start_smtp: Callable[..., Any], script: dict[str, Any]
) -> None:
    server = start_smtp(**script)
    send = delivery.dispatcher(server.port, DeliveryPolicy(max_attempts=5))
    [case] = await prepare_cases(delivery, 1)

    assert await send.dispatch_batch() == 1

    row = await delivery.message_of_case(case.data.case_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    [failed] = await delivery.events()
    assert isinstance(failed.data, NotificationFailedV1)
    assert (failed.data.reason, failed.data.attempts) == ("delivery_failed", 1)
    assert failed.data.detail
    assert "55" in failed.data.detail
    assert send.held_until == {}
    assert gauge("closeloop_notifier_smtp_unreachable") == 0
    assert gauge("closeloop_notifier_smtp_misconfigured") == 0


async def test_refused_recipient_does_not_stop_the_next_message(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp(refuse_recipients=("gone@klient.example.pl",))
    send = delivery.dispatcher(server.port)
    gone, anna = delivery.case_opened(email="gone@klient.example.pl"), delivery.case_opened()
    assert await delivery.prepare(gone) == "pending"
    delivery.clock.advance(timedelta(seconds=1))
    assert await delivery.prepare(anna) == "pending"

    assert [await send.dispatch_batch() for _ in range(2)] == [2, 0]

    assert (await delivery.message_of_case(gone.data.case_id)).status == "failed"
    assert (await delivery.message_of_case(anna.data.case_id)).status == "sent"
    assert server.recipients == ["anna.nowak@klient.example.pl"]
