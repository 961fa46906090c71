"""Messages to the team: a new case to its owner, SLA warnings to the owner, breaches and
escalations to the person the alert names, reassignment, the daily overdue digest, and the
tenant's chat/CRM webhook instead of email (signed with Standard Webhooks, checked by a real
receiver on loopback).

Real PostgreSQL, SMTP and HTTP; see conftest.py for the `delivery` harness and the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, Literal

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from closeloop_common.events import (
    CaseSlaAlertV1,
    CaseUpdatedV1,
    CloudEvent,
    NotificationSentV2,
    Owner,
    new_event,
)
from closeloop_devtools.mailsink import MailSink, body_text, read_mailbox
from closeloop_notifier.adapters.webhook import WebhookChannel
from closeloop_notifier.domain.tenant_settings import TeamChannel
from closeloop_notifier.service_layer.digest import OverdueDigest
from services.notifier.tests.integration.conftest import (
    OWNER,
    SOURCE,
    Delivery,
    free_port,
    mails_of_case,
)
from services.notifier.tests.integration.test_webhook_channel import Receiver, serve

ALL_TEAM = frozenset(
    {"owner_new_case", "sla_warning", "sla_breach", "sla_escalation", "overdue_digest"}
)
LEAD = Owner(id="lead-marek", name="Marek Wiśniewski", email="marek.wisniewski@acme.example")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def alert(
    delivery: Delivery,
    opened: Any,
    kind: Literal["warning", "breach", "escalation"],
    *,
    step: int = 0,
    recipient: Owner | None = OWNER,
    to: str = "owner",
) -> CloudEvent[CaseSlaAlertV1]:
    case = opened.data
    data = CaseSlaAlertV1(
        case_id=case.case_id,
        response_id=case.response_id,
        customer=case.customer,
        account_id=case.account_id,
        clock="first_contact",
        kind=kind,
        step=step,
        to=to,
        recipient=recipient,
        owner=OWNER,
        priority="high",
        due_at=delivery.clock.now(),
        deadline=case.first_contact_due_at,
        fired_at=delivery.clock.now(),
    )
    return new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/orchestrator", clock=delivery.clock
    )


def kinds_to(sink: MailSink, case_id: uuid.UUID, address: str) -> list[str]:
    return sorted(
        str(m["X-Closeloop-Kind"]) for m in mails_of_case(sink, case_id) if m["To"] == address
    )


@pytest.mark.parametrize(
    ("locale", "new_case_subject"),
    [("pl-PL", "Nowa sprawa: Anna Nowak, ocena 2"), ("en", "New case: Anna Nowak, score 2")],
)
async def test_owner_hears_of_a_new_case_and_its_sla_alerts_in_the_tenants_language(
    delivery: Delivery,
    start_sink: Callable[[int], MailSink],
    locale: str,
    new_case_subject: str,
) -> None:
    sink = start_sink(free_port())
    delivery.speak(locale)
    await delivery.configure(team_messages=ALL_TEAM)
    opened = delivery.case_opened()
    await delivery.handle(opened)
    for event in (
        alert(delivery, opened, "warning"),
        alert(delivery, opened, "breach"),
        alert(delivery, opened, "breach"),  # redelivered: one message
        alert(delivery, opened, "escalation", step=1, recipient=LEAD, to="team_lead"),
        alert(delivery, opened, "escalation", step=2, recipient=None, to="manager"),  # nobody
    ):
        await delivery.handle(event)
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    case_id = opened.data.case_id
    assert kinds_to(sink, case_id, OWNER.email) == ["owner_new_case", "sla_breach", "sla_warning"]
    assert kinds_to(sink, case_id, LEAD.email) == ["sla_escalation"]
    [new_case] = [
        m for m in mails_of_case(sink, case_id) if m["X-Closeloop-Kind"] == "owner_new_case"
    ]
    assert new_case["Subject"] == new_case_subject
    assert new_case["List-Unsubscribe"] is None  # work mail: no unsubscribe
    text = body_text(new_case)
    assert "Faktura znowu była błędna." in text
    assert str(case_id) in text
    [escalation] = [m for m in mails_of_case(sink, case_id) if m["To"] == LEAD.email]
    assert body_text(escalation).startswith("Dzień dobry," if locale == "pl-PL" else "Hi Marek,")


async def test_team_messages_the_tenant_does_not_want_are_not_made(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(team_messages=frozenset({"sla_breach"}))
    opened = delivery.case_opened()
    await delivery.handle(opened)
    await delivery.handle(alert(delivery, opened, "warning"))
    await delivery.handle(alert(delivery, opened, "breach"))
    await delivery.dispatcher(sink.controller.port).dispatch_all()
    assert kinds_to(sink, opened.data.case_id, OWNER.email) == ["sla_breach"]


def reassigned(delivery: Delivery, opened: Any, to: Owner) -> CloudEvent[CaseUpdatedV1]:
    case = opened.data
    data = CaseUpdatedV1(
        case_id=case.case_id,
        response_id=case.response_id,
        customer=case.customer,
        account_id=case.account_id,
        transition="reassigned",
        status_before="open",
        status="open",
        version=2,
        actor="lead-marek",
        at=delivery.clock.now(),
        note="Ewa jest na urlopie.",
        case_type=case.category,
        playbook=case.playbook,
        priority="high",
        channel="phone",
        team_id=None,
        queue=None,
        owner=to,
        first_contact_due_at=case.first_contact_due_at,
        resolution_due_at=None,
        first_contacted_at=None,
        resolved_at=None,
        closed_at=None,
    )
    return new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/orchestrator", clock=delivery.clock
    )


async def test_a_reassigned_case_is_announced_to_its_new_owner_once(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(team_messages=ALL_TEAM)
    opened = delivery.case_opened()
    await delivery.handle(opened)
    event = reassigned(delivery, opened, LEAD)
    await delivery.handle(event)
    await delivery.handle(event)
    await delivery.dispatcher(sink.controller.port).dispatch_all()
    assert kinds_to(sink, opened.data.case_id, LEAD.email) == ["owner_new_case"]
    assert kinds_to(sink, opened.data.case_id, OWNER.email) == ["owner_new_case"]


@pytest.mark.parametrize(
    ("locale", "count", "subject"),
    [
        ("pl-PL", 1, "Masz 1 zaległą sprawę"),
        ("pl-PL", 3, "Masz 3 zaległe sprawy"),
        ("pl-PL", 5, "Masz 5 zaległych spraw"),
        ("en", 1, "You have 1 overdue case"),
        ("en", 3, "You have 3 overdue cases"),
    ],
)
async def test_the_daily_digest_lists_each_owners_overdue_cases_once_a_day(
    delivery: Delivery,
    start_sink: Callable[[int], MailSink],
    locale: str,
    count: int,
    subject: str,
) -> None:
    sink = start_sink(free_port())
    delivery.speak(locale)
    await delivery.configure(team_messages=ALL_TEAM, digest_hour=8)
    for _ in range(count):
        await delivery.handle(delivery.case_opened())
    delivery.clock.advance(timedelta(days=1, hours=1))  # the first ones are late now
    not_late = delivery.case_opened()
    await delivery.handle(not_late)
    digest = OverdueDigest(
        sessions=delivery.sessions,
        outbox=delivery.outbox,
        composer=delivery.composer,
        settings=delivery.settings,
        clock=delivery.clock,
        source=SOURCE,
    )
    day = delivery.clock.now().date()

    assert await digest.make(delivery.tenant, day) == 1
    assert await digest.make(delivery.tenant, day) == 0  # once a day, whoever runs it
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    [mail] = [m for m in read_mailbox(sink.maildir) if m["X-Closeloop-Kind"] == "overdue_digest"]
    assert mail["To"] == OWNER.email
    assert mail["Subject"] == subject
    text = body_text(mail)
    assert text.count("\n- ") == count
    assert str(not_late.data.case_id) not in text


@pytest.fixture(scope="module")
def chat() -> Iterator[Receiver]:
    yield from serve(Receiver())


async def test_team_messages_go_to_the_tenants_webhook_signed_with_standard_webhooks(
    delivery: Delivery, chat: Receiver
) -> None:
    chat.requests.clear()
    url = f"http://127.0.0.1:{chat.base}/hooks/closeloop"
    await delivery.configure(
        team_messages=ALL_TEAM,
        team_channel=TeamChannel(kind="webhook", webhook_url=url, webhook_secret=SecretStr(SECRET)),
        messages_on=frozenset(),  # no customer reply: only the team's messages
    )
    opened = delivery.case_opened()
    await delivery.handle(opened)
    await delivery.handle(alert(delivery, opened, "breach"))
    send = delivery.dispatcher(free_port())  # no SMTP server: nothing may go by email
    assert await send.dispatch_all() == 2

    assert len(chat.requests) == 2
    bodies = []
    for request in chat.requests:
        assert request.path == "/hooks/closeloop"
        # Verified as a receiver would: signature, id and timestamp.
        verified = Webhook(SECRET).verify(request.body, request.headers)
        bodies.append(verified)
    assert sorted(b["type"] for b in bodies) == [
        "closeloop.team.owner_new_case",
        "closeloop.team.sla_breach",
    ]
    breach = next(b for b in bodies if b["type"] == "closeloop.team.sla_breach")
    assert breach["tenant_id"] == delivery.tenant
    assert breach["to"]["id"] == OWNER.id
    assert breach["case"]["id"] == str(opened.data.case_id)
    assert breach["alert"]["kind"] == "breach"
    assert breach["text"]
    ids = {request.headers["webhook-id"] for request in chat.requests}
    sent = [e for e in await delivery.events(version=2) if e.type == NotificationSentV2.EVENT_TYPE]
    assert {str(e.data.message_id) for e in sent} == ids
    assert {(e.data.channel, e.data.recipient, e.data.audience) for e in sent} == {
        ("webhook", "127.0.0.1", "team")
    }


async def test_a_webhook_target_on_a_private_network_is_refused_unless_allowed(
    delivery: Delivery, chat: Receiver
) -> None:
    chat.requests.clear()
    url = f"http://127.0.0.1:{chat.base}/hooks/closeloop"
    await delivery.configure(
        team_messages=ALL_TEAM,
        team_channel=TeamChannel(kind="webhook", webhook_url=url, webhook_secret=SecretStr(SECRET)),
        messages_on=frozenset(),  # no customer reply: only the team's messages
    )
    opened = delivery.case_opened()
    await delivery.handle(opened)
    send = delivery.dispatcher(0, channels={"webhook": WebhookChannel(timeout=5)})
    assert await send.dispatch_all() == 1

    assert chat.requests == []
    [row] = await delivery.messages_of_case(opened.data.case_id, audience="team")
    assert row.status == "failed"
    assert "127.0.0.1" in row.last_error
