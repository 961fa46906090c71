"""Erasure and export of a respondent in the notifier (real PostgreSQL and SMTP sink): their
pending message is discarded and anonymised, their opt-out and contact go, their address is kept
only as a keyed hash, and a case for them that arrives after the erasure sends nothing; another
customer's message goes out as before."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from closeloop_common.db import transaction
from closeloop_common.events import ErasureCompletedV1, ErasureRequestedV1, new_event
from closeloop_common.handlers import Transaction
from closeloop_common.identifiers import case_id_for
from closeloop_common.privacy import ERASED, SubjectIdentifiers, keyed_hash, pseudonym_of
from closeloop_devtools.mailsink import MailSink
from closeloop_notifier.adapters.tables import (
    case_view,
    contacts,
    erased_recipients,
    messages,
    opt_outs,
)
from closeloop_notifier.service_layer.dispatch import DeliveryPolicy
from closeloop_notifier.service_layer.privacy import Erasure, export
from services.notifier.tests.integration.conftest import SOURCE, Delivery, free_port, mails_of_case

KEY = b"test-erasure-key"
ANNA = "anna.kowalska@klient.example.pl"
JAN = "jan.nowak@klient.example.pl"


async def erase(delivery: Delivery, data: ErasureRequestedV1) -> None:
    event = new_event(
        data, tenant_id=delivery.tenant, source="/closeloop/ingest", clock=delivery.clock
    )
    async with transaction(delivery.sessions) as session:
        tx = Transaction(
            session=session, clock=delivery.clock, source=SOURCE, outbox=delivery.outbox
        )
        await Erasure(KEY).on_requested(tx.context(delivery.tenant), event)
        await tx.flush()


async def rows(delivery: Delivery, table: Any) -> list[Any]:
    async with delivery.sessions() as session:
        found = await session.execute(sa.select(table).where(table.c.tenant_id == delivery.tenant))
        return list(found.all())


async def test_erasure_discards_pending_messages_and_no_later_message_reaches_the_address(
    delivery: Delivery, start_sink: Callable[[int], MailSink]
) -> None:
    sink = start_sink(free_port())
    anna_case = delivery.case_opened(
        email=ANNA, name="Anna Kowalska", comment="Kurier był niemiły."
    )
    jan_case = delivery.case_opened(email=JAN, name="Jan Nowak", comment="Faktura była błędna.")
    await delivery.handle(anna_case)
    await delivery.handle(jan_case)
    await delivery.opt_out(ANNA.upper())
    async with transaction(delivery.sessions) as session:
        for customer, email, name in (
            (anna_case, ANNA, "Anna Kowalska"),
            (jan_case, JAN, "Jan Nowak"),
        ):
            await session.execute(
                sa.insert(contacts).values(
                    tenant_id=delivery.tenant,
                    customer_id=customer.data.customer.id,
                    email=email,
                    name=name,
                    seen_at=delivery.clock.now(),
                )
            )
    async with delivery.sessions() as session:
        before = await export(
            session,
            tenant_id=delivery.tenant,
            ids=SubjectIdentifiers(customer_ids=(anna_case.data.customer.id,), emails=(ANNA,)),
        )
    assert [m["recipient"] for m in before["messages"]] == [ANNA]
    assert [c["name"] for c in before["contacts"]] == ["Anna Kowalska"]
    assert [o["email"] for o in before["opt_outs"]] == [ANNA]
    erasure_id = uuid.uuid4()
    data = ErasureRequestedV1(
        erasure_id=erasure_id,
        customer_ids=(anna_case.data.customer.id,),
        emails=(ANNA,),
        response_ids=(anna_case.data.response_id,),
        invitation_ids=(),
        pseudonym=pseudonym_of(erasure_id),
        requested_at=delivery.clock.now(),
    )

    await erase(delivery, data)

    by_case = {m.case_id: m for m in await rows(delivery, messages)}
    assert len(by_case) == 2  # message counts are kept
    anna, jan = by_case[anna_case.data.case_id], by_case[jan_case.data.case_id]
    assert (anna.status, anna.subject, anna.body, anna.html, anna.recipient) == (
        "discarded",
        ERASED,
        ERASED,
        None,
        None,
    )
    assert anna.customer_id == data.pseudonym
    assert (jan.status, jan.recipient) == ("pending", JAN)
    assert "Faktura była błędna." in jan.body
    assert [c.email for c in await rows(delivery, contacts)] == [JAN]
    assert await rows(delivery, opt_outs) == []
    [remembered] = await rows(delivery, erased_recipients)
    assert remembered.key_hash == keyed_hash(KEY, ANNA)
    events = [
        e for e in await delivery.events(version=1) if e.type == ErasureCompletedV1.EVENT_TYPE
    ]
    [completed] = [e.data for e in events]
    assert completed.rows["messages"] == 1
    assert completed.rows["messages_cancelled"] == 1
    assert (completed.rows["contacts"], completed.rows["opt_outs"]) == (1, 1)

    # A case of Anna's still in flight when the erasure ran: its message is stored, but never sent.
    late = delivery.case_opened(email=ANNA, name="Anna Kowalska")
    await delivery.handle(late)
    await delivery.dispatcher(sink.controller.port, DeliveryPolicy(erasure_key=KEY)).dispatch_all()

    assert mails_of_case(sink, late.data.case_id) == []
    assert len(mails_of_case(sink, jan_case.data.case_id)) == 1
    [late_message] = await delivery.messages_of_case(late.data.case_id)
    assert late_message.status == "suppressed"
    await delivery.finish()


async def test_erasure_anonymises_the_case_view_by_the_derived_case_id(
    delivery: Delivery,
) -> None:
    case_id = case_id_for(tenant_id=delivery.tenant, response_id="r-anna")
    async with transaction(delivery.sessions) as session:
        await session.execute(
            sa.insert(case_view).values(
                tenant_id=delivery.tenant,
                case_id=case_id,
                version=1,
                status="open",
                customer_name="Anna Kowalska",
                category="detractor",
                score=2,
                comment="Kurier był niemiły.",
                key_account=False,
                channel="phone",
                priority="high",
                first_contact_due_at=delivery.clock.now(),
            )
        )
    erasure_id = uuid.uuid4()
    await erase(
        delivery,
        ErasureRequestedV1(
            erasure_id=erasure_id,
            customer_ids=(),
            emails=(),
            response_ids=("r-anna",),
            invitation_ids=(),
            pseudonym=pseudonym_of(erasure_id),
            requested_at=delivery.clock.now(),
        ),
    )
    [row] = await rows(delivery, case_view)
    assert (row.customer_name, row.comment, row.score, row.status) == (None, ERASED, 2, "open")
