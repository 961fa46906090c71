""" "You said, we did" campaigns against the real PostgreSQL, driven step by step with a FixedClock:
who is reached (respondents, everyone invited in a segment, each once), in which language, when
(the throttle), after a crash mid-expansion, and under pause, resume and cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from closeloop_common.db import transaction
from closeloop_common.events import ChangeSegment, CloudEvent, NotificationFailedV2
from closeloop_notifier.adapters.tables import campaigns, messages
from closeloop_notifier.campaign_views import campaign_report
from closeloop_notifier.domain.change_summary import TransitionRefused, campaign_id_of
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.service_layer import expansion
from closeloop_notifier.service_layer.campaign_worker import CampaignExpander
from closeloop_notifier.service_layer.campaigns import (
    UnknownCampaign,
    change_campaign,
)
from closeloop_notifier.service_layer.messages import store
from services.notifier.tests.integration.campaign_support import (
    COMPOSER,
    Audience,
    PageComposer,
    audience,
    change_summary,
    clock,
    customer,
    infra,
    invited,
    received,
    render,
    tenant_context,
)

__all__ = ["audience", "clock", "infra"]  # fixtures

IN_SEGMENT = ChangeSegment(product="faktury")


def by_customer(rows: Sequence[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for row in rows:
        assert row.customer_id not in found, f"{row.customer_id} has two messages"
        found[row.customer_id] = row
    return found


async def change(audience: Audience, action: str, campaign_id: uuid.UUID) -> str:
    async with transaction(audience.sessions) as session:
        tx = audience.transaction_of(session)
        status = await change_campaign(
            tx,
            tenant_id=audience.tenant,
            campaign_id=campaign_id,
            action=action,  # type: ignore[arg-type]
        )
        await tx.flush()
        return status


async def report(audience: Audience, campaign_id: uuid.UUID) -> dict[str, Any]:
    async with audience.sessions() as session:
        found = await campaign_report(
            session, audience.tenant, campaign_id, now=audience.clock.now()
        )
    assert found is not None
    return found


def campaign_of(audience: Audience, event: CloudEvent[Any]) -> uuid.UUID:
    return campaign_id_of(audience.tenant, event.id)


async def test_a_campaign_to_respondents_reaches_each_once_in_their_language(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    anna = customer("anna", name="Anna Nowak", locale="pl-PL")
    await audience.handle(
        [
            received(t, "r-1", anna, at=now),
            received(t, "r-2", anna, at=now),  # she answered twice
            received(t, "r-3", customer("john", name="John Smith", locale="en-GB"), at=now),
            received(t, "r-4", customer("hans", name="Hans Müller", locale="de"), at=now),
            received(t, "r-5", customer("nina", locale="pl"), at=now),  # not listed
        ]
    )
    event = change_summary(t, at=now, response_ids=["r-1", "r-2", "r-3", "r-4", "r-unknown"])
    assert await audience.open(event)
    assert await audience.expand_all(audience.expander()) == 1

    sent = by_customer(await audience.messages(campaign_of(audience, event)))
    assert set(sent) == {"anna", "john", "hans"}
    assert (sent["anna"].locale, sent["anna"].subject) == ("pl", "[pl] Czytelne faktury")
    assert sent["anna"].body.startswith("Dzień dobry,\nNowy układ faktury")
    assert sent["anna"].html is not None
    assert sent["anna"].response_id == "r-1"
    assert (sent["john"].locale, sent["john"].subject) == ("en", "[en] Readable invoices")
    assert sent["john"].body.startswith("Dear John,\nThe new invoice")
    # No German text: the event's own (Polish) text, with a Polish salutation.
    assert (sent["hans"].locale, sent["hans"].subject) == ("pl", "[pl] Czytelne faktury")
    for row in sent.values():
        assert (row.status, row.kind, row.audience, row.channel) == (
            "pending",
            "change_summary",
            "customer",
            "email",
        )
        assert row.recipient == f"{row.customer_id}@klient.example.pl"
        assert row.dedup_key == f"campaign:{row.campaign_id}:{row.recipient_key}"
    campaign = await audience.campaign(campaign_of(audience, event))
    assert (campaign.status, campaign.recipients, campaign.respondents_done) == ("sending", 3, 5)
    assert campaign.expanded_at == now


async def test_a_campaign_to_a_segment_reaches_respondents_and_everyone_invited_once(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    month_ago = now - timedelta(days=30)
    family = "rodzina@klient.example.pl"
    await audience.handle(
        [
            received(t, "r-1", customer("anna", locale="pl"), at=now),
            invited(t, "inv-01", customer("anna"), at=now - timedelta(days=3)),
            invited(t, "inv-02", customer("bob"), at=now - timedelta(days=2)),
            invited(t, "inv-03", customer("bob"), at=now - timedelta(days=1)),
            invited(t, "inv-04", customer("cecil"), at=now, product="sklep"),
            invited(t, "inv-05", customer("dora"), at=now - timedelta(days=60)),
            invited(t, "inv-06", customer("ewa"), at=now),
            invited(t, "inv-07", customer("filip", email=None), at=now),
            invited(t, "inv-08", customer("gosia", email="gosia@host.local"), at=now),
            invited(t, "inv-09", customer("hubert", email=family), at=now),
            invited(t, "inv-10", customer("hanna", email=family), at=now),
            invited(f"{t}-other", "inv-11", customer("olga"), at=now),
        ]
    )
    await audience.opt_out("EWA@klient.example.pl")
    event = change_summary(
        t,
        at=now,
        response_ids=["r-1"],
        segment=ChangeSegment(product="faktury", invited_since=month_ago),
    )
    await audience.open(event)
    pages = await audience.expand_all(audience.expander(page_size=2))
    assert pages == 1 + 6  # the respondent, then ten invitations two at a time (the last empty)

    sent = by_customer(await audience.messages(campaign_of(audience, event)))
    assert set(sent) == {"anna", "bob", "ewa", "filip", "gosia", "hubert"}
    assert {c: row.status for c, row in sent.items()} == {
        "anna": "pending",
        "bob": "pending",
        "ewa": "suppressed",
        "filip": "no_recipient",
        "gosia": "failed",
        "hubert": "pending",  # hanna shares the address: one message to it
    }
    assert sent["anna"].response_id == "r-1"
    assert sent["bob"].response_id is None
    assert sent["gosia"].last_error
    campaign = await audience.campaign(campaign_of(audience, event))
    assert (campaign.status, campaign.recipients) == ("sending", 6)
    assert campaign.invitations_done
    failures = {
        e.data.customer_id: e.data.reason
        for e in await audience.events()
        if isinstance(e.data, NotificationFailedV2)
    }
    assert failures == {"ewa": "opted_out", "filip": "no_recipient", "gosia": "delivery_failed"}


async def test_a_template_that_fails_for_one_customer_fails_their_message_alone(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    await audience.handle(
        [
            received(t, "r-1", customer("anna", name="Anna"), at=now),
            received(t, "r-2", customer("bob", name="{{ broken"), at=now),
        ]
    )

    def fragile(kind: Kind, language: str, context: Mapping[str, Any]) -> Any:
        if context["customer"]["name"].startswith("{{"):
            raise ValueError("unexpected end of template")
        return render(kind, language, context)

    event = change_summary(t, at=now, response_ids=["r-1", "r-2"])
    await audience.open(event)
    expander = CampaignExpander(
        sessions=audience.sessions,
        outbox=audience.outbox,
        clock=audience.clock,
        source="/closeloop/notifier",
        composer=PageComposer(fragile),
        tenant_context=tenant_context,
    )
    await audience.expand_all(expander)

    sent = by_customer(await audience.messages(campaign_of(audience, event)))
    assert sent["anna"].status == "pending"
    assert (sent["bob"].status, sent["bob"].next_attempt_at) == ("failed", None)
    assert "unexpected end of template" in sent["bob"].last_error
    campaign = await audience.campaign(campaign_of(audience, event))
    assert campaign.next_slot_at == now + timedelta(seconds=1 / 50)  # one slot used


async def test_due_times_follow_the_rate_and_restart_from_now_when_late(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    who = ["c1", "c2", "nobody", "c3", "c4", "c5", "c6"]
    await audience.handle(
        [
            received(t, f"r-{c}", customer(c, email=None if c == "nobody" else "auto"), at=now)
            for c in who
        ]
    )
    event = change_summary(t, at=now, response_ids=[f"r-{c}" for c in who])
    await audience.open(event, rate_per_second=4)
    expander = audience.expander(page_size=4)
    assert await expander.expand_page()

    first = await audience.messages(campaign_of(audience, event))
    due = {row.customer_id: row.next_attempt_at for row in first}
    quarter = timedelta(seconds=0.25)
    # A message that cannot be sent takes no slot.
    assert due == {"c1": now, "c2": now + quarter, "c3": now + 2 * quarter, "nobody": None}
    campaign = await audience.campaign(campaign_of(audience, event))
    assert campaign.next_slot_at == now + 3 * quarter

    audience.clock.advance(timedelta(minutes=5))  # the expander was away: no burst afterwards
    later = audience.clock.now()
    assert await expander.expand_page()
    due = {row.customer_id: row.next_attempt_at for row in await audience.messages()}
    assert [due[c] for c in ("c4", "c5", "c6")] == [later, later + quarter, later + 2 * quarter]


async def _crash_after_storing(*args: Any, **kwargs: Any) -> Any:
    await _real_store(*args, **kwargs)
    raise RuntimeError("the process died here")


async def _cancelled_after_storing(*args: Any, **kwargs: Any) -> Any:
    await _real_store(*args, **kwargs)
    raise asyncio.CancelledError


_real_store = store


async def test_a_crash_mid_expansion_neither_skips_nor_repeats_anyone(
    audience: Audience, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    respondents = [f"c-{n:04d}" for n in range(1500)]
    invited_in_segment = [f"c-{n:04d}" for n in range(1000, 3000)]  # 500 also respondents
    events: list[CloudEvent[Any]] = [
        received(t, f"r-{c}", customer(c), at=now) for c in respondents
    ]
    events += [
        invited(t, f"inv-{n:05d}", customer(c), at=now) for n, c in enumerate(invited_in_segment)
    ]
    events += [
        invited(t, f"inv-{n:05d}", customer(f"out-{n}"), at=now, product="sklep")
        for n in range(3000, 3300)
    ]
    for start in range(0, len(events), 1000):
        await audience.handle(events[start : start + 1000])
    event = change_summary(
        t, at=now, response_ids=[f"r-{c}" for c in respondents], segment=IN_SEGMENT
    )
    await audience.open(event, rate_per_second=100)
    campaign_id = campaign_of(audience, event)
    expander = audience.expander(page_size=1000)

    assert await expander.expand_page()
    assert len(await audience.messages(campaign_id)) == 1000

    for crash, error in (
        (_crash_after_storing, RuntimeError),
        (_cancelled_after_storing, asyncio.CancelledError),
    ):
        monkeypatch.setattr(expansion, "store", crash)
        with pytest.raises(error):
            await expander.expand_page()
        monkeypatch.setattr(expansion, "store", _real_store)
        assert len(await audience.messages(campaign_id)) == 1000
        campaign = await audience.campaign(campaign_id)
        assert (campaign.respondents_done, campaign.recipients) == (1000, 1000)

    # Restarted (a new expander, as after a restart): the rest, once.
    pages = await audience.expand_all(audience.expander(page_size=1000))
    assert pages == 1 + 3  # 500 respondents, then 2,300 invitations a thousand at a time

    rows = await audience.messages(campaign_id)
    assert len(rows) == 3000
    assert set(by_customer(rows)) == {f"c-{n:04d}" for n in range(3000)}
    campaign = await audience.campaign(campaign_id)
    assert (campaign.status, campaign.recipients) == ("sending", 3000)
    # One schedule at 100/s: every slot used once, none skipped.
    assert [row.next_attempt_at for row in rows] == [
        now + timedelta(seconds=n / 100) for n in range(3000)
    ]
    assert campaign.next_slot_at == now + timedelta(seconds=30)


async def test_concurrent_expanders_never_expand_a_campaign_twice(audience: Audience) -> None:
    now = audience.clock.now()
    t = audience.tenant
    people = [f"c-{n:03d}" for n in range(60)]
    await audience.handle([invited(t, f"inv-{c}", customer(c), at=now) for c in people])
    first = change_summary(t, at=now, segment=IN_SEGMENT)
    second = change_summary(t, at=now, segment=IN_SEGMENT)
    await audience.open(first)
    await audience.open(second)

    async def drain() -> None:
        await audience.expand_all(audience.expander(page_size=7))

    await asyncio.gather(drain(), drain())

    for event in (first, second):
        rows = await audience.messages(campaign_of(audience, event))
        assert set(by_customer(rows)) == set(people)


async def test_a_redelivered_change_summary_is_the_same_campaign(audience: Audience) -> None:
    now = audience.clock.now()
    await audience.handle([received(audience.tenant, "r-1", customer("anna"), at=now)])
    event = change_summary(audience.tenant, at=now, response_ids=["r-1"])

    assert await audience.open(event) is True
    await audience.expand_all(audience.expander())
    assert await audience.open(event) is False
    assert await audience.expand_all(audience.expander()) == 0

    async with audience.sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count())
            .select_from(campaigns)
            .where(campaigns.c.tenant_id == audience.tenant)
        )
    assert count == 1
    assert len(await audience.messages()) == 1


async def test_pause_holds_messages_and_resume_spreads_them_from_now(audience: Audience) -> None:
    now = audience.clock.now()
    t = audience.tenant
    people = ["c1", "c2", "c3", "c4"]
    await audience.handle([received(t, f"r-{c}", customer(c), at=now) for c in people])
    event = change_summary(t, at=now, response_ids=[f"r-{c}" for c in people])
    await audience.open(event, rate_per_second=2)
    campaign_id = campaign_of(audience, event)
    expander = audience.expander(page_size=2)
    assert await expander.expand_page()

    assert await change(audience, "pause", campaign_id) == "paused"
    assert await change(audience, "pause", campaign_id) == "paused"  # asked twice: no change
    assert {r.status for r in await audience.messages(campaign_id)} == {"held"}
    assert await expander.expand_page() is False  # a paused campaign is not expanded

    # A message that was with the mail server at the pause comes back for a retry.
    async with transaction(audience.sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == t, messages.c.customer_id == "c1")
            .values(status="pending")
        )
    await expander.maintain()
    assert {r.status for r in await audience.messages(campaign_id)} == {"held"}
    assert (await report(audience, campaign_id))["estimated_seconds_left"] is None

    audience.clock.advance(timedelta(hours=1))
    later = audience.clock.now()
    assert await change(audience, "resume", campaign_id) == "expanding"
    assert await change(audience, "resume", campaign_id) == "expanding"
    await audience.expand_all(expander)

    rows = await audience.messages(campaign_id)
    assert [(r.customer_id, r.status, r.next_attempt_at) for r in rows] == [
        ("c1", "pending", later),
        ("c2", "pending", later + timedelta(seconds=0.5)),
        ("c3", "pending", later + timedelta(seconds=1)),
        ("c4", "pending", later + timedelta(seconds=1.5)),
    ]
    campaign = await audience.campaign(campaign_id)
    assert campaign.status == "sending"

    # Paused again once expanded: resuming goes back to sending.
    assert await change(audience, "pause", campaign_id) == "paused"
    assert await change(audience, "resume", campaign_id) == "sending"


async def test_cancel_discards_what_was_not_sent_and_publishes_each_outcome(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    people = ["c1", "c2", "c3", "c4"]
    await audience.handle([received(t, f"r-{c}", customer(c), at=now) for c in people])
    event = change_summary(t, at=now, response_ids=[f"r-{c}" for c in people])
    await audience.open(event)
    campaign_id = campaign_of(audience, event)
    expander = audience.expander(page_size=2)
    assert await expander.expand_page()
    async with transaction(audience.sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == t, messages.c.customer_id == "c1")
            .values(status="sent", next_attempt_at=None, sent_at=now)
        )

    assert await change(audience, "cancel", campaign_id) == "cancelled"
    assert await change(audience, "cancel", campaign_id) == "cancelled"
    with pytest.raises(TransitionRefused):
        await change(audience, "resume", campaign_id)
    with pytest.raises(TransitionRefused):
        await change(audience, "pause", campaign_id)
    with pytest.raises(UnknownCampaign):
        await change(audience, "pause", uuid.uuid4())
    assert await expander.expand_page() is False
    # Out of the dispatcher's reach at once; discarded, each with its event, by the expander.
    statuses = {r.customer_id: r.status for r in await audience.messages(campaign_id)}
    assert statuses == {"c1": "sent", "c2": "held"}
    assert (await audience.campaign(campaign_id)).finished_at is None

    audience.clock.advance(timedelta(seconds=5))
    assert await expander.step() is False  # discarded in one chunk; then maintenance
    statuses = {r.customer_id: r.status for r in await audience.messages(campaign_id)}
    assert statuses == {"c1": "sent", "c2": "discarded"}
    discarded = [
        e.data
        for e in await audience.events()
        if isinstance(e.data, NotificationFailedV2) and e.data.reason == "discarded"
    ]
    assert [(d.customer_id, d.campaign_id) for d in discarded] == [("c2", campaign_id)]
    campaign = await audience.campaign(campaign_id)
    assert (campaign.status, campaign.finished_at) == ("cancelled", audience.clock.now())
    found = await report(audience, campaign_id)
    assert found["messages"]["sent"] == 1
    assert found["messages"]["discarded"] == 1
    assert found["estimated_seconds_left"] == 0


async def test_a_large_cancelled_campaign_is_discarded_a_bounded_chunk_at_a_time(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    people = [f"c-{n}" for n in range(7)]
    await audience.handle([received(t, f"r-{c}", customer(c), at=now) for c in people])
    event = change_summary(t, at=now, response_ids=[f"r-{c}" for c in people])
    await audience.open(event)
    campaign_id = campaign_of(audience, event)
    expander = CampaignExpander(
        sessions=audience.sessions,
        outbox=audience.outbox,
        clock=audience.clock,
        source="/closeloop/notifier",
        composer=COMPOSER,
        tenant_context=tenant_context,
        discard_chunk=3,
    )
    await audience.expand_all(expander)
    assert await change(audience, "cancel", campaign_id) == "cancelled"

    assert [await expander.discard_cancelled() for _ in range(4)] == [True, True, False, False]
    assert {r.status for r in await audience.messages(campaign_id)} == {"discarded"}
    await expander.maintain()
    assert (await audience.campaign(campaign_id)).finished_at == now


async def test_the_report_counts_messages_and_a_campaign_is_done_when_none_is_left(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    t = audience.tenant
    people = [f"c-{n}" for n in range(10)]
    await audience.handle(
        [received(t, f"r-{c}", customer(c), at=now) for c in people]
        + [invited(t, "inv-1", customer("x", email=None), at=now)]
    )
    await audience.opt_out("c-9@klient.example.pl")
    event = change_summary(t, at=now, response_ids=[f"r-{c}" for c in people], segment=IN_SEGMENT)
    await audience.open(event, rate_per_second=2)
    campaign_id = campaign_of(audience, event)
    expander = audience.expander(page_size=5)
    pending_before = REGISTRY.get_sample_value(
        "closeloop_notifier_campaign_recipients_total", {"status": "pending"}
    )

    assert await expander.expand_page()
    early = await report(audience, campaign_id)
    assert early["status"] == "expanding"
    assert early["recipients"] == 5
    assert early["left_to_expand"] == 5 + 1  # five listed responses and one invitation
    assert early["estimated_seconds_left"] == pytest.approx(2.5 + 6 / 2)

    await audience.expand_all(expander)
    full = await report(audience, campaign_id)
    assert full["status"] == "sending"
    assert full["recipients"] == 11
    assert full["messages"] == {
        "pending": 9,
        "sending": 0,
        "sent": 0,
        "held": 0,
        "suppressed": 1,
        "discarded": 0,
        "failed": 0,
        "no_recipient": 1,
    }
    assert full["estimated_seconds_left"] == pytest.approx(4.5)
    assert full["title"] == "Czytelne faktury"
    pending_after = REGISTRY.get_sample_value(
        "closeloop_notifier_campaign_recipients_total", {"status": "pending"}
    )
    assert (pending_after or 0) - (pending_before or 0) == 9

    await expander.maintain()
    assert (await audience.campaign(campaign_id)).status == "sending"
    async with transaction(audience.sessions) as session:
        await session.execute(
            sa.update(messages)
            .where(messages.c.tenant_id == t, messages.c.status == "pending")
            .values(status="sent", next_attempt_at=None, sent_at=now)
        )
    audience.clock.advance(timedelta(minutes=1))
    await expander.maintain()

    done = await report(audience, campaign_id)
    assert (done["status"], done["finished_at"]) == ("done", audience.clock.now())
    assert done["messages"]["sent"] == 9
    assert done["estimated_seconds_left"] == 0
    assert REGISTRY.get_sample_value("closeloop_notifier_campaigns", {"status": "done"})
