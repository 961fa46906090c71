"""The campaign audience kept from ingest's events, against the real PostgreSQL: idempotent (an
event seen again writes nothing) and newest-wins (an older event never overwrites newer data),
whatever the batching."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from closeloop_common.events import CloudEvent
from closeloop_notifier.adapters.tables import contacts, invitations, respondents
from services.notifier.tests.integration.campaign_support import (
    Audience,
    audience,
    clock,
    corrected,
    customer,
    infra,
    invited,
    received,
)

__all__ = ["audience", "clock", "infra"]  # fixtures


async def rows(helper: Audience, table: sa.Table, *, tenant: str | None = None) -> dict[str, Any]:
    """The tenant's rows of `table` by their key, with `xmin` (a row written again changes it)."""
    key = table.primary_key.columns.values()[1]
    async with helper.sessions() as session:
        found = await session.execute(
            sa.select(table, sa.literal_column("xmin::text").label("xmin")).where(
                table.c.tenant_id == (tenant or helper.tenant)
            )
        )
        return {row._mapping[key.name]: row for row in found}


async def test_audience_keeps_contacts_invitations_and_respondents(audience: Audience) -> None:
    now = audience.clock.now()
    anna = customer("anna", name="Anna Nowak", locale="pl-PL")
    john = customer("john", name="John Smith", locale="en")
    await audience.handle(
        [
            invited(audience.tenant, "inv-1", anna, at=now),
            invited(audience.tenant, "inv-2", john, at=now, product=None, region="mazowieckie"),
            received(audience.tenant, "r-1", anna, at=now + timedelta(hours=1)),
        ]
    )

    people = await rows(audience, contacts)
    assert set(people) == {"anna", "john"}
    assert (people["anna"].email, people["anna"].name, people["anna"].locale) == (
        "anna@klient.example.pl",
        "Anna Nowak",
        "pl-PL",
    )
    assert people["anna"].seen_at == now + timedelta(hours=1)
    sent = await rows(audience, invitations)
    assert (sent["inv-1"].customer_id, sent["inv-1"].product, sent["inv-1"].region) == (
        "anna",
        "faktury",
        "pomorskie",
    )
    assert (sent["inv-2"].product, sent["inv-2"].region) == (None, "mazowieckie")
    assert sent["inv-1"].invited_at == now
    answered = await rows(audience, respondents)
    assert (answered["r-1"].customer_id, answered["r-1"].responded_at) == (
        "anna",
        now + timedelta(hours=1),
    )


async def test_events_seen_again_write_nothing(audience: Audience) -> None:
    now = audience.clock.now()
    anna = customer("anna", name="Anna Nowak")
    batch: list[CloudEvent[Any]] = [
        invited(audience.tenant, "inv-1", anna, at=now),
        received(audience.tenant, "r-1", anna, at=now + timedelta(minutes=5)),
    ]
    await audience.handle(batch)
    before = [await rows(audience, t) for t in (contacts, invitations, respondents)]

    await audience.handle(batch)
    await audience.handle(batch[::-1])
    await audience.handle(batch[1:])

    after = [await rows(audience, t) for t in (contacts, invitations, respondents)]
    assert after == before  # the same values and the same xmin: not even rewritten


async def test_an_older_event_never_overwrites_newer_data(audience: Audience) -> None:
    now = audience.clock.now()
    old = customer("anna", email="anna.old@klient.example.pl", name="Anna Kowalska")
    new = customer("anna", email="anna.new@klient.example.pl", name="Anna Nowak", locale="pl")
    await audience.handle(
        [
            received(audience.tenant, "r-2", new, at=now + timedelta(days=2)),
            invited(audience.tenant, "inv-1", new, at=now + timedelta(days=1), product="sklep"),
        ]
    )
    # Late: an older response and an older sending of the same invitation.
    await audience.handle(
        [
            received(audience.tenant, "r-1", old, at=now),
            invited(audience.tenant, "inv-1", old, at=now, product="faktury"),
        ]
    )

    person = (await rows(audience, contacts))["anna"]
    assert (person.email, person.name, person.seen_at) == (
        "anna.new@klient.example.pl",
        "Anna Nowak",
        now + timedelta(days=2),
    )
    invitation = (await rows(audience, invitations))["inv-1"]
    assert (invitation.product, invitation.invited_at) == ("sklep", now + timedelta(days=1))
    assert set(await rows(audience, respondents)) == {"r-1", "r-2"}


async def test_within_one_batch_the_newest_event_wins_whatever_its_place(
    audience: Audience,
) -> None:
    now = audience.clock.now()
    old = customer("anna", email="anna.old@klient.example.pl")
    new = customer("anna", email="anna.new@klient.example.pl")
    await audience.handle(
        [
            invited(audience.tenant, "inv-1", new, at=now + timedelta(days=1), product="sklep"),
            invited(audience.tenant, "inv-1", old, at=now, product="faktury"),
        ]
    )
    assert (await rows(audience, contacts))["anna"].email == "anna.new@klient.example.pl"
    assert (await rows(audience, invitations))["inv-1"].product == "sklep"


async def test_a_newer_event_without_an_address_keeps_the_address(audience: Audience) -> None:
    now = audience.clock.now()
    await audience.handle([received(audience.tenant, "r-1", customer("anna", name="Anna"), at=now)])
    await audience.handle(
        [
            received(
                audience.tenant,
                "r-2",
                customer("anna", email=None, name="Anna Nowak", locale="pl"),
                at=now + timedelta(days=1),
            )
        ]
    )
    person = (await rows(audience, contacts))["anna"]
    assert (person.email, person.name, person.locale) == (
        "anna@klient.example.pl",
        "Anna Nowak",
        "pl",
    )


async def test_a_correction_moves_the_respondent_only_when_newer(audience: Audience) -> None:
    now = audience.clock.now()
    await audience.handle([received(audience.tenant, "r-1", customer("anna"), at=now)])
    await audience.handle(
        [corrected(audience.tenant, "r-1", customer("anna-crm"), at=now + timedelta(hours=1))]
    )
    await audience.handle(
        [corrected(audience.tenant, "r-1", customer("anna-stale"), at=now - timedelta(hours=1))]
    )
    answer = (await rows(audience, respondents))["r-1"]
    assert (answer.customer_id, answer.responded_at) == ("anna-crm", now + timedelta(hours=1))


async def test_one_batch_of_several_tenants_keeps_each_apart(audience: Audience) -> None:
    now = audience.clock.now()
    other = f"{audience.tenant}-other"
    await audience.handle(
        [
            received(other, "r-1", customer("anna", email="anna@other.example.pl"), at=now),
            received(audience.tenant, "r-1", customer("anna"), at=now),
        ]
    )
    assert (await rows(audience, contacts))["anna"].email == "anna@klient.example.pl"
    theirs = await rows(audience, contacts, tenant=other)
    assert theirs["anna"].email == "anna@other.example.pl"
