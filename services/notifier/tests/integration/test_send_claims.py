"""Sending outside the database transaction: claim (committed), send, record.

A dispatcher that dies or is cancelled between its claim and its record leaves the message
`sending` under a lease. Nobody sends it while the lease runs; afterwards it is sent once more,
and never more often than the policy's max attempts in all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.db import make_engine, make_sessionmaker
from closeloop_common.events import NotificationFailedV1, NotificationSentV1
from closeloop_notifier.adapters.channels import Outgoing
from closeloop_notifier.adapters.email import SmtpPool, SmtpSettings
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy
from services.notifier.tests.integration.conftest import Delivery, free_port


class DiesAfterSending(SmtpPool):
    """Sends for real, then the task is cancelled (a stop, a crash) before it records anything."""

    async def send(self, message: Outgoing) -> None:
        await super().send(message)
        raise asyncio.CancelledError


def dying_sender(port: int) -> DiesAfterSending:
    return DiesAfterSending(SmtpSettings(host="127.0.0.1", port=port, timeout=5, size=1))


async def test_message_of_a_dispatcher_stopped_after_sending_is_sent_once_more_after_its_lease(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    clock = delivery.clock
    server = start_smtp()
    policy = DeliveryPolicy(send_lease=timedelta(minutes=10))
    event = delivery.case_opened()
    assert await delivery.prepare(event) == "pending"

    with pytest.raises(asyncio.CancelledError):
        await delivery.dispatcher(
            0, policy, channels={"email": dying_sender(server.port)}
        ).dispatch_batch()

    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts) == ("sending", 1)
    assert row.lease_until == clock.now() + timedelta(minutes=10)
    assert len(server.received) == 1

    # While the lease runs, another dispatcher (a replica) leaves the message alone.
    healthy = delivery.dispatcher(server.port, policy)
    assert await healthy.dispatch_batch() == 0
    clock.advance(timedelta(minutes=9))
    assert await healthy.dispatch_batch() == 0
    clock.advance(timedelta(minutes=2))
    assert await healthy.dispatch_batch() == 1
    assert await healthy.dispatch_batch() == 0

    assert len(server.received) == 2
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.lease_until) == ("sent", 2, None)
    [sent] = await delivery.events()
    assert isinstance(sent.data, NotificationSentV1)
    assert sent.data.attempts == 2


async def test_dispatchers_dying_after_every_send_never_send_more_than_max_attempts(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp()
    policy = DeliveryPolicy(max_attempts=3)
    event = delivery.case_opened()
    assert await delivery.prepare(event) == "pending"

    for _ in range(2 * policy.max_attempts):
        with contextlib.suppress(asyncio.CancelledError):
            await delivery.dispatcher(
                0, policy, channels={"email": dying_sender(server.port)}
            ).dispatch_batch()
        delivery.clock.advance(timedelta(hours=2))

    assert len(server.received) == 3
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.lease_until) == ("failed", 3, None)
    [failed] = await delivery.events()
    assert isinstance(failed.data, NotificationFailedV1)
    assert (failed.data.reason, failed.data.attempts) == ("delivery_failed", 3)
    assert failed.data.detail
    assert "lease" in failed.data.detail


class SwitchableSessions:
    """A session factory whose database can be made unreachable in the middle of a step."""

    def __init__(self, working: async_sessionmaker[AsyncSession]) -> None:
        self.working = working
        self.unreachable = make_sessionmaker(
            make_engine(f"postgresql+asyncpg://closeloop:closeloop@127.0.0.1:{free_port()}/x")
        )
        self.current = working

    def __call__(self) -> AsyncSession:
        return self.current()


async def test_result_that_could_not_be_recorded_is_recorded_later_without_sending_again(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp()
    sessions = SwitchableSessions(delivery.sessions)

    class DatabaseGoesAwayWhileSending(SmtpPool):
        async def send(self, message: Outgoing) -> None:
            await super().send(message)
            sessions.current = sessions.unreachable

    send = delivery.dispatcher(
        0,
        channels={
            "email": DatabaseGoesAwayWhileSending(
                SmtpSettings(host="127.0.0.1", port=server.port, timeout=5, size=1)
            )
        },
        sessions=cast(async_sessionmaker[AsyncSession], sessions),
    )
    event = delivery.case_opened()
    assert await delivery.prepare(event) == "pending"

    with pytest.raises(OSError):  # noqa: PT011 (connection refused, whatever its errno)
        await send.dispatch_batch()
    sessions.current = sessions.working
    assert await send.dispatch_batch() == 1
    assert await send.dispatch_batch() == 0

    assert len(server.received) == 1
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.lease_until) == ("sent", 1, None)
    assert [e.type for e in await delivery.events()] == [NotificationSentV1.EVENT_TYPE]
