"""Addresses that reach the notifier: only one normalised mailbox ever reaches SMTP, a bad one
fails its own message and nothing else, and an opt-out holds for every spelling of an address.

The case contract's pattern lets through addresses that the stdlib cannot put in a `To` header
(`a@[b.c`) or that a `To` header splits into several mailboxes (`anna,boss@…`, `anna<boss@…>`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from closeloop_common.db import transaction
from closeloop_common.events import NotificationFailedV1, NotificationSentV1
from closeloop_notifier.adapters.tables import messages
from services.notifier.tests.integration.conftest import Delivery, fullwidth

BOSS = "boss@klient.example.pl"
UNSENDABLE = [
    "a@[b.c",
    "anna,boss@klient.example.pl",  # a To header makes this "anna" and "boss@…"
    "anna<boss@klient.example.pl>",  # a To header makes this boss@…
    '"anna,boss"@klient.example.pl',
]


@pytest.mark.parametrize("email", UNSENDABLE)
async def test_case_with_an_address_that_is_not_one_mailbox_fails_its_message_at_once(
    delivery: Delivery, start_smtp: Callable[..., Any], email: str
) -> None:
    server = start_smtp()
    await delivery.opt_out(BOSS)
    event = delivery.case_opened(email=email)

    assert await delivery.prepare(event) == "failed"
    assert await delivery.dispatcher(server.port).dispatch_batch() == 0

    assert server.received == []
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 0, None)
    assert "not a valid e-mail address" in row.last_error
    [failed] = await delivery.events()
    assert isinstance(failed.data, NotificationFailedV1)
    assert (failed.data.reason, failed.data.attempts) == ("delivery_failed", 0)
    assert failed.data.message_id == row.message_id


@pytest.mark.parametrize("email", UNSENDABLE)
async def test_stored_message_with_a_bad_address_fails_alone_and_the_queue_moves_on(
    delivery: Delivery, start_smtp: Callable[..., Any], email: str
) -> None:
    """A message stored before addresses were checked (by an older version) is failed when its
    turn comes; the message behind it is still sent."""
    server = start_smtp()
    await delivery.opt_out(BOSS)
    bad, good = delivery.case_opened(), delivery.case_opened()
    assert await delivery.prepare(bad) == "pending"
    delivery.clock.advance(timedelta(seconds=1))
    assert await delivery.prepare(good) == "pending"
    async with transaction(delivery.sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == delivery.tenant, messages.c.case_id == bad.data.case_id)
            .values(recipient=email)
        )
    send = delivery.dispatcher(server.port)

    try:
        assert await send.dispatch_batch() == 2  # one batch: the bad one failed, the other sent
        assert await send.dispatch_batch() == 0
    finally:
        await delivery.finish()

    assert server.recipients == ["anna.nowak@klient.example.pl"]
    bad_row = await delivery.message_of_case(bad.data.case_id)
    assert (bad_row.status, bad_row.attempts) == ("failed", 0)
    assert bad_row.last_error
    assert (await delivery.message_of_case(good.data.case_id)).status == "sent"
    events = await delivery.events()
    assert [(e.type, e.data.message_id) for e in events] == [
        (NotificationFailedV1.EVENT_TYPE, bad_row.message_id),
        (NotificationSentV1.EVENT_TYPE, events[1].data.message_id),
    ]
    assert events[0].data.reason == "delivery_failed"


@pytest.mark.parametrize(
    ("opted_out", "written_in_the_case"),
    [
        ("anna.nowak@klient.example.pl", "Anna.Nowak@KLIENT.example.PL"),
        ("anna.nowak@klient.example.pl", f"anna.nowak@{fullwidth('KLIENT')}.example.pl"),
        ("anna@żółw.pl", "ANNA@XN--W-UGA1V8H.PL"),
        ("ANNA@XN--W-UGA1V8H.PL", "anna@ŻÓŁW.pl"),
    ],
)
async def test_opt_out_suppresses_every_spelling_of_the_address(
    delivery: Delivery, start_smtp: Callable[..., Any], opted_out: str, written_in_the_case: str
) -> None:
    server = start_smtp()
    await delivery.opt_out(opted_out)
    event = delivery.case_opened(email=written_in_the_case)

    assert await delivery.prepare(event) == "suppressed"
    assert await delivery.dispatcher(server.port).dispatch_batch() == 0

    assert server.received == []
    [failed] = await delivery.events()
    assert isinstance(failed.data, NotificationFailedV1)
    assert failed.data.reason == "opted_out"


async def test_message_is_stored_and_sent_to_the_normalised_address(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp()
    event = delivery.case_opened(email=f"Anna.Nowak@{fullwidth('KLIENT')}.Example.PL")

    assert await delivery.prepare(event) == "pending"
    assert (await delivery.message_of_case(event.data.case_id)).recipient == (
        "Anna.Nowak@klient.example.pl"
    )
    assert await delivery.dispatcher(server.port).dispatch_batch() == 1

    assert server.recipients == ["Anna.Nowak@klient.example.pl"]
    [(_, content)] = server.received
    assert b"\r\nTo: Anna.Nowak@klient.example.pl\r\n" in content


async def test_message_that_cannot_be_rendered_fails_alone_and_the_queue_moves_on(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    """A message the channel refuses to build (here a header-injection attempt in its stored
    Reply-To) fails alone, for good, at its first attempt."""
    server = start_smtp()
    broken, good = delivery.case_opened(), delivery.case_opened()
    assert await delivery.prepare(broken) == "pending"
    delivery.clock.advance(timedelta(seconds=1))
    assert await delivery.prepare(good) == "pending"
    async with transaction(delivery.sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(
                messages.c.tenant_id == delivery.tenant, messages.c.case_id == broken.data.case_id
            )
            .values(reply_to="ewa@acme.example\r\nBcc: everyone@klient.example.pl")
        )
    send = delivery.dispatcher(server.port)

    try:
        assert [await send.dispatch_batch() for _ in range(2)] == [2, 0]
    finally:
        await delivery.finish()

    broken_row = await delivery.message_of_case(broken.data.case_id)
    assert (broken_row.status, broken_row.attempts) == ("failed", 1)
    assert broken_row.last_error
    assert (await delivery.message_of_case(good.data.case_id)).status == "sent"
    assert server.recipients == ["anna.nowak@klient.example.pl"]
    # One batch: its outcomes are published together, in no particular order.
    events = await delivery.events()
    [failed] = [e for e in events if e.type == NotificationFailedV1.EVENT_TYPE]
    [sent] = [e for e in events if e.type != NotificationFailedV1.EVENT_TYPE]
    assert isinstance(failed.data, NotificationFailedV1)
    assert (failed.data.reason, failed.data.message_id) == (
        "delivery_failed",
        broken_row.message_id,
    )
    assert sent.type == NotificationSentV1.EVENT_TYPE
