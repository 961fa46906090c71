"""Messages to customers, end to end through the case handlers, the dispatcher and a real SMTP
sink: each reply in Polish and English, "what we did" on resolution, the owner's approval of
drafts, hostile customer text, the human delay, quiet hours and the frequency cap.

Real PostgreSQL and SMTP; see conftest.py for the `delivery` harness and the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from closeloop_common.db import transaction
from closeloop_common.events import (
    CaseUpdatedV1,
    CloudEvent,
    NotificationFailedV2,
    NotificationSentV2,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_devtools.mailsink import MailSink, body_text
from closeloop_notifier.domain.tenant_settings import (
    ApprovalRule,
    FrequencyCap,
    QuietHoursSetting,
    ReplyDelay,
)
from closeloop_notifier.domain.unsubscribe import read_token
from closeloop_notifier.service_layer import drafts
from services.notifier.tests.integration.conftest import (
    OWNER,
    SOURCE,
    UNSUBSCRIBE_SECRET,
    Delivery,
    free_port,
    mails_of_case,
)

WARSAW = ZoneInfo("Europe/Warsaw")


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


async def sent_mail(delivery: Delivery, sink: MailSink, event: Any) -> EmailMessage:
    """Handle `event`, dispatch, and the one email of its case in the sink."""
    await delivery.handle(event)
    await delivery.dispatcher(sink.controller.port).dispatch_all()
    [mail] = mails_of_case(sink, event.data.case_id)
    return mail


@pytest.mark.parametrize(
    ("score", "locale", "subject", "greeting", "phrase"),
    [
        (2, "pl-PL", "Przepraszamy i chcemy to naprawić", "Dzień dobry,", "Napisali Państwo:"),
        (2, "en-GB", "We are sorry, and we want to put it right", "Dear Anna,", "You wrote:"),
        (7, "pl", "Co sprawiłoby, że ocenią nas Państwo na 10?", "Dzień dobry,", "jedną lub dwie"),
        (7, "en", "What would make us a 10 for you?", "Dear Anna,", "one or two"),
        (10, "pl-PL", "Dziękujemy za polecenie", "Dzień dobry,", "krótka opinia"),
        (10, "en-US", "Thank you for recommending us", "Dear Anna,", "Write a review"),
    ],
)
async def test_each_reply_reads_naturally_in_polish_and_english(
    delivery: Delivery,
    start_sink: Callable[[int], MailSink],
    score: int,
    locale: str,
    subject: str,
    greeting: str,
    phrase: str,
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(review_url="https://opinie.example.pl/acme")
    event = delivery.case_opened(score=score, locale=locale, comment="Szybka dostawa, ale…")

    mail = await sent_mail(delivery, sink, event)

    assert mail["Subject"] == subject
    assert mail["Content-Language"] == locale.split("-")[0]
    text = body_text(mail)
    assert text.startswith(f"{greeting}\n")
    assert phrase.lower() in text.lower()
    assert "> Szybka dostawa, ale…" in text
    if score == 10:
        assert "https://opinie.example.pl/acme" in text
    html = html_of(mail)
    assert f'lang="{locale.split("-")[0]}"' in html
    assert "Szybka dostawa, ale…" in html
    assert mail["List-Unsubscribe"].startswith("<http://notifier.test/v1/unsubscribe/")


async def test_the_unsubscribe_link_names_the_tenant_and_address_without_showing_it(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    mail = await sent_mail(delivery, sink, delivery.case_opened())

    url = mail["List-Unsubscribe"].strip("<>")
    token = url.rsplit("/", 1)[1]
    assert "anna" not in url
    assert read_token(UNSUBSCRIBE_SECRET, token) == (
        delivery.tenant,
        "anna.nowak@klient.example.pl",
    )
    # The footer carries a link of its own (made when the message was stored).
    footer = body_text(mail).split("http://notifier.test/v1/unsubscribe/")[1].split()[0]
    assert read_token(UNSUBSCRIBE_SECRET, footer) == read_token(UNSUBSCRIBE_SECRET, token)


def resolved(delivery: Delivery, opened: Any, *, note: str) -> CloudEvent[CaseUpdatedV1]:
    case = opened.data
    now = delivery.clock.now()
    data = CaseUpdatedV1(
        case_id=case.case_id,
        response_id=case.response_id,
        customer=case.customer,
        account_id=case.account_id,
        transition="resolved",
        status_before="contacted",
        status="resolved",
        version=4,
        actor=OWNER.id,
        at=now,
        note=note,
        outcome="solved",
        case_type=case.category,
        playbook=case.playbook,
        priority="high",
        channel="phone",
        team_id=None,
        queue=None,
        owner=OWNER,
        first_contact_due_at=case.first_contact_due_at,
        resolution_due_at=None,
        first_contacted_at=now - timedelta(hours=2),
        resolved_at=now,
        closed_at=None,
    )
    return new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/orchestrator", clock=delivery.clock
    )


@pytest.mark.parametrize(
    ("locale", "subject"),
    [("pl-PL", "Co zrobiliśmy w Państwa sprawie"), ("en-GB", "What we did about your feedback")],
)
async def test_resolution_tells_the_customer_what_we_did_when_the_tenant_wants_it(
    delivery: Delivery, start_sink: Callable[[int], MailSink], locale: str, subject: str
) -> None:
    sink = start_sink(free_port())
    opened = delivery.case_opened(locale=locale)
    await delivery.handle(opened)
    note = "Poprawiliśmy fakturę i wysłaliśmy korektę."

    await delivery.handle(resolved(delivery, opened, note=note))
    assert len(await delivery.messages_of_case(opened.data.case_id)) == 1  # not wanted yet

    await delivery.configure(resolution_message=True)
    event = resolved(delivery, opened, note=note)
    await delivery.handle(event)
    await delivery.handle(event)  # redelivered: still one
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    mails = mails_of_case(sink, opened.data.case_id)
    [what_we_did] = [m for m in mails if m["X-Closeloop-Kind"] == "case_resolved"]
    assert what_we_did["Subject"] == subject
    assert note in body_text(what_we_did)
    assert OWNER.name in body_text(what_we_did)


async def test_a_detractor_reply_waits_for_its_owner_who_edits_and_approves_it(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(detractor_approval=(ApprovalRule(mode="approve", key_account=True),))
    key, other = delivery.case_opened(key_account=True), delivery.case_opened()
    assert await delivery.prepare(key) == "draft"
    assert await delivery.prepare(other) == "pending"  # not a key account: sent at once
    send = delivery.dispatcher(sink.controller.port)
    await send.dispatch_all()
    assert mails_of_case(sink, key.data.case_id) == []
    assert len(mails_of_case(sink, other.data.case_id)) == 1

    draft = await delivery.message_of_case(key.data.case_id)
    edited_text = "Dzień dobry,\n\nzadzwonię jutro o 10:00 <i>osobiście</i>.\n\nEwa"
    async with transaction(delivery.sessions) as session:
        tx = Transaction(session, delivery.clock, SOURCE, delivery.outbox)
        await drafts.approve(
            tx,
            delivery.tenant,
            draft.message_id,
            subject="Przepraszamy\r\nBcc: everyone@klient.example.pl",
            text=edited_text,
            actor="ewa",
        )
        await tx.flush()
    await send.dispatch_all()

    [mail] = mails_of_case(sink, key.data.case_id)
    assert mail["Subject"] == "Przepraszamy Bcc: everyone@klient.example.pl"
    assert mail["Bcc"] is None
    assert body_text(mail).startswith(edited_text)
    assert "&lt;i&gt;osobiście&lt;/i&gt;" in html_of(mail)
    row = await delivery.message_of_case(key.data.case_id)
    assert (row.status, row.reviewed_by, row.edited) == ("sent", "ewa", True)

    # Approving twice, or discarding what was sent, is refused.
    async with transaction(delivery.sessions) as session:
        tx = Transaction(session, delivery.clock, SOURCE, delivery.outbox)
        with pytest.raises(drafts.NotADraft):
            await drafts.discard(tx, delivery.tenant, draft.message_id, actor="ewa")


async def test_a_discarded_draft_is_never_sent_and_its_outcome_is_published(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(detractor_approval=(ApprovalRule(mode="approve"),))
    event = delivery.case_opened()
    assert await delivery.prepare(event) == "draft"
    draft = await delivery.message_of_case(event.data.case_id)

    async with transaction(delivery.sessions) as session:
        tx = Transaction(session, delivery.clock, SOURCE, delivery.outbox)
        await drafts.discard(tx, delivery.tenant, draft.message_id, actor="ewa")
        await tx.flush()
    delivery.clock.advance(timedelta(days=2))
    assert await delivery.dispatcher(sink.controller.port).dispatch_all() == 0

    assert mails_of_case(sink, event.data.case_id) == []
    assert (await delivery.message_of_case(event.data.case_id)).status == "discarded"
    [failed] = await delivery.events(version=2)
    assert isinstance(failed.data, NotificationFailedV2)
    assert (failed.data.reason, failed.data.kind) == ("discarded", "apology")
    assert await delivery.events(version=1) == []  # v1 has no such reason


HOSTILE_COMMENT = (
    "{{ 7*7 }} {% raw %}{{ ''.__class__.__mro__ }}{% endraw %} "
    '<script>alert("x")</script> <a href="https://evil.example">kliknij</a>\r\n'
    "Bcc: everyone@klient.example.pl\r\n\r\n.\r\nMAIL FROM:<evil@example.com>"
)


async def test_hostile_comment_and_name_reach_the_customer_as_plain_text(
    delivery: Delivery, start_smtp: Callable[..., Any]
) -> None:
    server = start_smtp()
    event = delivery.case_opened(
        locale="en", name="Eve\r\nBcc: evil@example.com", comment=HOSTILE_COMMENT
    )
    await delivery.handle(event)
    assert await delivery.dispatcher(server.port).dispatch_all() == 1

    # One message, to the customer alone: no header or SMTP command was injected.
    [(recipients, content)] = server.received
    assert recipients == ["anna.nowak@klient.example.pl"]
    mail = message_from_bytes(content, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["Bcc"] is None
    assert mail["Subject"] == "We are sorry, and we want to put it right"
    text = body_text(mail).replace("\r\n", "\n")
    assert text.startswith("Dear Eve,\n")  # the first word of the name, nothing after it
    # The comment's first line, quoted verbatim: nothing in it was evaluated (the test once
    # looked for "49" anywhere, and found it inside the random unsubscribe token).
    first_line = HOSTILE_COMMENT.split("\r\n")[0]
    assert f"> {first_line}" in text
    assert "{{ 7*7 }}" in text
    html = html_of(mail)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert '<a href="https://evil.example">' not in html


async def test_automatic_replies_wait_a_human_delay(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(reply_delay=ReplyDelay(min_minutes=5, max_minutes=30))
    event = delivery.case_opened()
    await delivery.handle(event)
    row = await delivery.message_of_case(event.data.case_id)
    now = delivery.clock.now()
    assert now + timedelta(minutes=5) <= row.next_attempt_at <= now + timedelta(minutes=30)

    send = delivery.dispatcher(sink.controller.port)
    delivery.clock.set(row.next_attempt_at - timedelta(seconds=1))
    assert await send.dispatch_all() == 0
    delivery.clock.set(row.next_attempt_at)
    assert await send.dispatch_all() == 1
    assert len(mails_of_case(sink, event.data.case_id)) == 1


async def test_quiet_hours_defer_a_message_to_the_morning_in_the_recipients_zone(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(quiet_hours=QuietHoursSetting())  # 21:00-08:00
    day = (delivery.clock.now() - timedelta(days=2)).astimezone(WARSAW).date()
    delivery.clock.set(datetime(day.year, day.month, day.day, 22, 30, tzinfo=WARSAW))
    event = delivery.case_opened(locale="pl-PL")
    await delivery.handle(event)
    send = delivery.dispatcher(sink.controller.port)

    assert await send.dispatch_all() == 1  # deferred, not sent
    row = await delivery.message_of_case(event.data.case_id)
    assert (row.status, row.attempts) == ("pending", 0)
    morning = datetime(day.year, day.month, day.day, 8, tzinfo=WARSAW) + timedelta(days=1)
    # At the end of the quiet hours, spread over ten minutes.
    assert morning <= row.next_attempt_at <= morning + timedelta(minutes=10)
    assert mails_of_case(sink, event.data.case_id) == []

    delivery.clock.set(row.next_attempt_at)
    assert await send.dispatch_all() == 1
    assert len(mails_of_case(sink, event.data.case_id)) == 1


async def test_the_frequency_cap_suppresses_more_messages_to_one_address_in_its_window(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(frequency_cap=FrequencyCap(max_messages=1, days=7))
    send = delivery.dispatcher(sink.controller.port)
    first, second = (
        delivery.case_opened(),
        delivery.case_opened(email="ANNA.NOWAK@klient.example.pl"),
    )
    await delivery.handle(first)
    await delivery.handle(second)
    await send.dispatch_all()

    sent_one = [len(mails_of_case(sink, e.data.case_id)) for e in (first, second)]
    assert sorted(sent_one) == [0, 1]  # same address, however written
    [capped_event] = [e for e, n in zip((first, second), sent_one, strict=True) if n == 0]
    capped = await delivery.message_of_case(capped_event.data.case_id)
    assert capped.status == "suppressed"
    failed = [
        e for e in await delivery.events(version=2) if e.type == NotificationFailedV2.EVENT_TYPE
    ]
    assert [(f.data.reason, f.data.message_id) for f in failed] == [
        ("frequency_capped", capped.message_id)
    ]

    delivery.clock.advance(timedelta(days=7, minutes=1))
    third = delivery.case_opened()
    await delivery.handle(third)
    await send.dispatch_all()
    assert len(mails_of_case(sink, third.data.case_id)) == 1
    sent = [e for e in await delivery.events(version=2) if e.type == NotificationSentV2.EVENT_TYPE]
    assert len(sent) == 2
    assert {(e.data.audience, e.data.kind, e.data.channel) for e in sent} == {
        ("customer", "apology", "email")
    }
