"""Lack-of-response cases (a key contact of a key account left a survey invitation unanswered):
the owner, or the team's mailbox, hears of the case once, in the tenant's language, with the
contact, the account, the survey, the silence and the deadline and no score; SLA alerts and the
digest know the case; the silent contact is never written to, not even when the case resolves.

Real PostgreSQL and SMTP (the dev mail sink); see conftest.py for the `delivery` harness.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
import sqlalchemy as sa

from closeloop_common.db import transaction
from closeloop_common.events import (
    CaseSlaAlertV1,
    CloudEvent,
    Customer,
    InvitationSentV1,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    Owner,
    new_event,
)
from closeloop_common.handlers import Transaction
from closeloop_devtools.mailsink import MailSink, body_text, read_mailbox
from closeloop_notifier.adapters.tables import case_view
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_notifier.service_layer.audience import keep_audience
from closeloop_notifier.service_layer.digest import OverdueDigest
from services.notifier.tests.integration.conftest import (
    CUSTOMER_EMAIL,
    OWNER,
    SOURCE,
    Delivery,
    free_port,
    mails_of_case,
)

ALL_TEAM = frozenset(
    {"owner_new_case", "sla_warning", "sla_breach", "sla_escalation", "overdue_digest"}
)
LEAD = Owner(id="lead-marek", name="Marek Wiśniewski", email="marek.wisniewski@acme.example")
TEAM = Owner(id="queue:key-accounts", name="Key accounts", email="key-accounts@acme.example")
SURVEY = "relationship-2000"
INVITED_AT = datetime(2000, 11, 20, 8, 0, tzinfo=UTC)  # 09:00 in Warsaw
DUE_AT = datetime(2000, 12, 6, 13, 0, tzinfo=UTC)  # 14:00 in Warsaw, the tenant's zone


def no_response_opened(
    delivery: Delivery,
    *,
    owner: Owner = OWNER,
    queue: str | None = None,
    first_contact_due_at: datetime = DUE_AT,
) -> CloudEvent[NoResponseCaseOpenedV1]:
    """A lack-of-response case as the orchestrator opens it: Anna Nowak of the key account
    hurtownia-nowak left the invitation of 20 November 2000 unanswered for 14 days."""
    case_id = uuid.uuid4()
    invitation_id = f"inv-{uuid.uuid4().hex[:12]}"
    data = NoResponseCaseOpenedV1(
        case_id=case_id,
        response_id=f"no-response:{invitation_id}",
        invitation_id=invitation_id,
        survey_id=SURVEY,
        customer=Customer(
            id=f"cust-{uuid.uuid4().hex[:10]}",
            email=CUSTOMER_EMAIL,
            name="Anna Nowak",
            locale="pl-PL",
        ),
        account_id="hurtownia-nowak",
        invited_at=INVITED_AT,
        silent_days=14,
        owner=owner,
        key_account=True,
        priority="high",
        channel="phone",
        opened_at=delivery.clock.now(),
        first_contact_due_at=first_contact_due_at,
        team_id="key-accounts",
        queue=queue,
    )
    return new_event(
        data,
        tenant_id=delivery.tenant,
        source="/closeloop/orchestrator",
        clock=delivery.clock,
        subject=str(case_id),
    )


def no_response_updated(
    delivery: Delivery,
    opened: CloudEvent[NoResponseCaseOpenedV1],
    transition: Literal["resolved", "reassigned"],
    *,
    owner: Owner = OWNER,
    version: int = 2,
) -> CloudEvent[NoResponseCaseUpdatedV1]:
    case = opened.data
    now = delivery.clock.now()
    resolved = transition == "resolved"
    data = NoResponseCaseUpdatedV1(
        case_id=case.case_id,
        response_id=case.response_id,
        invitation_id=case.invitation_id,
        customer=case.customer,
        account_id=case.account_id,
        transition=transition,
        status_before="contacted" if resolved else "open",
        status="resolved" if resolved else "open",
        version=version,
        actor=OWNER.id,
        at=now,
        note="Rozmowa z Anną: ankieta trafiła do spamu, odpowie w tym tygodniu.",
        outcome="explained" if resolved else None,
        case_type="no_response",
        playbook="account_outreach",
        priority="high",
        channel="phone",
        team_id="key-accounts",
        queue=None,
        owner=owner,
        first_contact_due_at=case.first_contact_due_at,
        resolution_due_at=None,
        first_contacted_at=now - timedelta(hours=1) if resolved else None,
        resolved_at=now if resolved else None,
        closed_at=None,
    )
    return new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/orchestrator", clock=delivery.clock
    )


def breach(
    delivery: Delivery, opened: CloudEvent[NoResponseCaseOpenedV1]
) -> CloudEvent[CaseSlaAlertV1]:
    case = opened.data
    data = CaseSlaAlertV1(
        case_id=case.case_id,
        response_id=case.response_id,
        customer=case.customer,
        account_id=case.account_id,
        clock="first_contact",
        kind="breach",
        step=0,
        to="owner",
        recipient=OWNER,
        owner=OWNER,
        priority="high",
        due_at=case.first_contact_due_at,
        deadline=case.first_contact_due_at,
        fired_at=delivery.clock.now(),
    )
    return new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/orchestrator", clock=delivery.clock
    )


async def invited(delivery: Delivery, opened: CloudEvent[NoResponseCaseOpenedV1]) -> None:
    """The case's invitation as the notifier keeps it from ingest's `invitation.sent.v1`."""
    case = opened.data
    event = new_event(
        InvitationSentV1(
            invitation_id=case.invitation_id,
            survey_id=case.survey_id,
            customer=case.customer,
            account_id=case.account_id,
            channel="email",
            invited_at=case.invited_at,
        ),
        tenant_id=delivery.tenant,
        source="/closeloop/ingest",
        clock=delivery.clock,
    )
    async with transaction(delivery.sessions) as session:
        tx = Transaction(
            session=session, clock=delivery.clock, source=SOURCE, outbox=delivery.outbox
        )
        await keep_audience(tx, [event])


def kinds_to(sink: MailSink, case_id: uuid.UUID, address: str) -> list[str]:
    return sorted(
        str(m["X-Closeloop-Kind"]) for m in mails_of_case(sink, case_id) if m["To"] == address
    )


def assert_no_answer_shown(text: str, case_id: uuid.UUID) -> None:
    """No score, no comment: nothing a lack-of-response case does not have (the case id, which
    may hold a "-1", aside)."""
    shown = text.replace(str(case_id), "")
    for never in ("None", "-1", "/10", "Score", "Ocena", "comment", "komentarz"):
        assert never not in shown, (never, text)


@pytest.mark.parametrize(
    ("locale", "subject", "expected"),
    [
        (
            "en",
            "New case: Anna Nowak, no answer to relationship-2000",
            [
                "Hi Ewa,\n\nA new case is yours, for a key account: a key contact has not "
                "answered a survey for 14 days. Please contact them by 2:00\u202fPM on "
                "December 6, 2000.\n",
                "\nContact: Anna Nowak <anna.nowak@klient.example.pl>\n",
                "\nAccount: hurtownia-nowak\n",
                "\nNo answer to relationship-2000 (invited November 20, 2000)\n",
                "\nRecommended channel: phone call\n",
                "\nFirst contact due: Dec 6, 2000, 2:00\u202fPM\n",
            ],
        ),
        (
            "pl-PL",
            "Nowa sprawa: Anna Nowak, brak odpowiedzi na ankietę relationship-2000",
            [
                "Dzień dobry,\n\nmasz nową sprawę kluczowego klienta: kluczowa osoba kontaktowa "
                "od 14 dni nie odpowiada na ankietę. Skontaktuj się z nią najpóźniej 6 grudnia "
                "2000 o godz. 14:00.\n",
                "\nOsoba kontaktowa: Anna Nowak <anna.nowak@klient.example.pl>\n",
                "\nKonto: hurtownia-nowak\n",
                "\nBrak odpowiedzi na ankietę relationship-2000 (zaproszenie z 20 listopada "
                "2000)\n",
                "\nZalecany kanał kontaktu: telefon\n",
                "\nPierwszy kontakt do: 6 gru 2000, 14:00\n",
            ],
        ),
    ],
)
async def test_a_lack_of_response_case_is_announced_to_its_owner_once_in_the_tenants_language(
    delivery: Delivery,
    start_sink: Callable[[int], MailSink],
    locale: str,
    subject: str,
    expected: list[str],
) -> None:
    sink = start_sink(free_port())
    delivery.speak(locale)
    await delivery.configure(team_messages=ALL_TEAM, resolution_message=True)
    opened = no_response_opened(delivery)
    await delivery.handle(opened)
    await delivery.handle(opened)  # redelivered: still one
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    case_id = opened.data.case_id
    [mail] = mails_of_case(sink, case_id)
    assert mail["To"] == OWNER.email
    assert mail["X-Closeloop-Kind"] == "owner_new_case"
    assert mail["Subject"] == subject
    text = body_text(mail)
    for part in expected:
        assert part in text, (part, text)
    assert text.endswith(f"\n\n{'Case' if locale == 'en' else 'Sprawa'} {case_id}\n")
    assert_no_answer_shown(text, case_id)
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert "relationship-2000" in html.get_content()
    assert "/10" not in html.get_content()
    # The silent contact answered nothing: nothing is written to them.
    assert await delivery.messages_of_case(case_id) == []
    assert [m for m in read_mailbox(sink.maildir) if m["To"] == CUSTOMER_EMAIL] == []


async def test_a_lack_of_response_case_in_the_teams_queue_goes_to_the_team_mailbox(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(team_messages=ALL_TEAM)
    opened = no_response_opened(delivery, owner=TEAM, queue="key-accounts")
    await delivery.handle(opened)
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    [mail] = mails_of_case(sink, opened.data.case_id)
    assert mail["To"] == TEAM.email
    assert mail["X-Closeloop-Kind"] == "owner_new_case"
    # Nobody owns it yet: the team is greeted, not a person.
    assert body_text(mail).startswith("Hello,\n\nA new case is yours, for a key account: ")


async def test_no_new_case_message_when_the_tenant_does_not_want_it(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(team_messages=frozenset({"sla_breach"}))
    opened = no_response_opened(delivery)
    await delivery.handle(opened)
    await delivery.dispatcher(sink.controller.port).dispatch_all()
    assert mails_of_case(sink, opened.data.case_id) == []
    # The case is known all the same: its breach is told.
    await delivery.handle(breach(delivery, opened))
    await delivery.dispatcher(sink.controller.port).dispatch_all()
    assert kinds_to(sink, opened.data.case_id, OWNER.email) == ["sla_breach"]


@pytest.mark.parametrize(
    ("known_invitation", "unanswered"),
    [
        (True, "No answer to relationship-2000 (invited November 20, 2000)"),
        (False, "No answer to a survey invitation"),
    ],
)
async def test_an_sla_breach_of_a_lack_of_response_case_is_told_from_the_case_view(
    delivery: Delivery,
    start_sink: Callable[[int], MailSink],
    known_invitation: bool,
    unanswered: str,
) -> None:
    sink = start_sink(free_port())
    delivery.speak("en")
    await delivery.configure(team_messages=ALL_TEAM)
    opened = no_response_opened(delivery)
    if known_invitation:
        await invited(delivery, opened)
    await delivery.handle(opened)
    await delivery.handle(breach(delivery, opened))
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    case_id = opened.data.case_id
    assert kinds_to(sink, case_id, OWNER.email) == ["owner_new_case", "sla_breach"]
    [mail] = [m for m in mails_of_case(sink, case_id) if m["X-Closeloop-Kind"] == "sla_breach"]
    assert mail["Subject"] == "Deadline missed: first contact for Anna Nowak"
    text = body_text(mail)
    assert f"\n{unanswered}\n" in text
    assert "\nCustomer: Anna Nowak <anna.nowak@klient.example.pl>\n" in text
    assert "\nAccount: hurtownia-nowak\n" in text
    assert "\nFirst contact due: Dec 6, 2000, 2:00\u202fPM\n" in text
    assert_no_answer_shown(text, case_id)


async def test_a_resolved_lack_of_response_case_tells_the_silent_contact_nothing(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    await delivery.configure(team_messages=ALL_TEAM, resolution_message=True)
    opened = no_response_opened(delivery)
    await delivery.handle(opened)
    await delivery.handle(no_response_updated(delivery, opened, "resolved", version=4))
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    case_id = opened.data.case_id
    assert kinds_to(sink, case_id, OWNER.email) == ["owner_new_case"]
    assert await delivery.messages_of_case(case_id) == []
    assert [m for m in read_mailbox(sink.maildir) if m["To"] == CUSTOMER_EMAIL] == []
    async with delivery.sessions() as session:
        view = (
            await session.execute(
                sa.select(case_view).where(
                    case_view.c.tenant_id == delivery.tenant, case_view.c.case_id == case_id
                )
            )
        ).one()
    assert (view.status, view.version, view.category, view.score, view.comment) == (
        "resolved",
        4,
        "no_response",
        -1,
        None,
    )
    assert view.key_account is True
    assert view.first_contacted_at is not None


async def test_a_reassigned_lack_of_response_case_is_announced_to_its_new_owner_once(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    delivery.speak("pl-PL")
    await delivery.configure(team_messages=ALL_TEAM)
    opened = no_response_opened(delivery)
    await invited(delivery, opened)
    await delivery.handle(opened)
    event = no_response_updated(delivery, opened, "reassigned", owner=LEAD)
    await delivery.handle(event)
    await delivery.handle(event)  # redelivered: still one
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    case_id = opened.data.case_id
    assert kinds_to(sink, case_id, LEAD.email) == ["owner_new_case"]
    assert kinds_to(sink, case_id, OWNER.email) == ["owner_new_case"]
    [mail] = [m for m in mails_of_case(sink, case_id) if m["To"] == LEAD.email]
    assert mail["Subject"] == (
        "Nowa sprawa: Anna Nowak, brak odpowiedzi na ankietę relationship-2000"
    )
    text = body_text(mail)
    # How long the contact was silent is told when the case opens, not by its updates.
    assert "kluczowa osoba kontaktowa nie odpowiedziała na ankietę. Skontaktuj się z nią" in text
    assert "\nBrak odpowiedzi na ankietę relationship-2000 (zaproszenie z 20 listopada 2000)\n" in (
        text
    )
    assert_no_answer_shown(text, case_id)
    assert await delivery.messages_of_case(case_id) == []


async def test_the_digest_lists_an_overdue_lack_of_response_case_as_unanswered(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    delivery.speak("en")
    await delivery.configure(team_messages=ALL_TEAM, digest_hour=8)
    opened = no_response_opened(
        delivery, first_contact_due_at=delivery.clock.now() + timedelta(days=1)
    )
    await delivery.handle(opened)
    delivery.clock.advance(timedelta(days=1, hours=1))
    digest = OverdueDigest(
        sessions=delivery.sessions,
        outbox=delivery.outbox,
        composer=delivery.composer,
        settings=delivery.settings,
        clock=delivery.clock,
        source=SOURCE,
    )
    assert await digest.make(delivery.tenant, delivery.clock.now().date()) == 1
    await delivery.dispatcher(sink.controller.port).dispatch_all()

    [mail] = [m for m in read_mailbox(sink.maildir) if m["X-Closeloop-Kind"] == "overdue_digest"]
    assert mail["To"] == OWNER.email
    assert mail["Subject"] == "You have 1 overdue case"
    text = body_text(mail)
    assert "\n- Anna Nowak, no answer to a survey invitation: first contact was due " in text
    assert f"\n  Case {opened.data.case_id}\n" in text


def test_the_notifier_consumes_both_lack_of_response_contracts(
    settings: NotifierSettings,
) -> None:
    app = create_notifier_app(settings)
    handlers = app.state.runtime.handlers
    for contract in (NoResponseCaseOpenedV1, NoResponseCaseUpdatedV1):
        registration = handlers.get(contract.EVENT_TYPE)
        assert registration is not None, contract.EVENT_TYPE
        assert registration.contracts == (contract,)
