"""Silence is a signal, against the real PostgreSQL with a controllable clock: a key contact of a
key account who leaves an invitation unanswered for the tenant's window gets a lack-of-response
case for the account owner; an answer (before or after the invitation event arrives), a contact
who is not key, an account that is not key, or a window not yet passed opens none; a second
silent invitation joins the open case; the case's lifecycle and SLA alerts work as any case's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.events import (
    CaseSlaAlertV1,
    Customer,
    InvitationSentV1,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    ResponseReceivedV1,
    categorize,
)
from closeloop_orchestrator.adapters.tables import invitations
from closeloop_orchestrator.service_layer.silence import InvitationHandler, SilenceWatcher
from closeloop_orchestrator.service_layer.watcher import SlaWatcher

from .support import NOW, command, emitted, event_of, feed, put_setup, runtime_of, team

DAY = timedelta(days=1)
SUPPORT = team("support", [("anna", ["pl", "en"]), ("ben", ["en"])], lead="anna", manager="maria")
ORGANISATION: dict[str, Any] = {
    "teams": [SUPPORT],
    "people": [{"id": "maria", "name": "Maria", "email": "maria@acme.example"},
               {"id": "kam", "name": "Kamil (sales)", "email": "kam@acme.example"}],
    "key_accounts": ["acc-key", "acc-orphan"],
    "silence": {"after_days": 10, "first_contact_hours": 24},
}  # fmt: skip
OPENED = "dev.closeloop.case.no_response_opened.v1"


def invitation(
    invitation_id: str,
    *,
    customer: str = "c-1",
    account_id: str | None = "acc-key",
    key: str | None = "true",
    survey_id: str = "relationship-2026",
    invited_at: datetime = NOW,
) -> InvitationSentV1:
    return InvitationSentV1(
        invitation_id=invitation_id,
        survey_id=survey_id,
        customer=Customer(id=customer, email=f"{customer}@klient.example.pl", name="Jan Kowalski"),
        account_id=account_id,
        channel="email",
        invited_at=invited_at,
        attributes={} if key is None else {"key_contact": key},
    )


def response(
    response_id: str, *, customer: str = "c-1", answered_at: datetime, score: int = 8
) -> ResponseReceivedV1:
    return ResponseReceivedV1(
        response_id=response_id,
        survey_id="relationship-2026",
        customer=Customer(id=customer),
        account_id="acc-key",
        score=score,
        category=categorize(score),
        comment=None,
        answered_at=answered_at,
        received_at=answered_at,
        source="api",
    )


async def invite(app: FastAPI, tenant: str, *sent: InvitationSentV1) -> None:
    runtime = runtime_of(app)
    handler = InvitationHandler(app.state.setup_store)
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    async with runtime.transaction() as tx:
        await handler(tx, [event_of(tenant, s, clock) for s in sent])


async def watch(app: FastAPI) -> int:
    watcher: SilenceWatcher = app.state.silence
    taken = 0
    while (step := await watcher.step()) > 0:
        taken += step
    return taken


@pytest.fixture
async def keyed(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    await put_setup(client, headers, organisation=ORGANISATION)
    synced = await client.put(
        "/v1/account-owners",
        json={"owners": [{"account_id": "acc-key", "owner_id": "kam"}]},
        headers=headers,
    )
    assert synced.status_code == 200, synced.text


async def stored(app: FastAPI, tenant: str) -> dict[str, Any]:
    async with runtime_of(app).sessions() as session:
        rows = await session.execute(
            sa.select(invitations).where(invitations.c.tenant_id == tenant)
        )
        return {row.invitation_id: row for row in rows}


async def test_a_silent_key_contact_opens_one_case_for_the_account_owner_when_the_window_ends(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
    keyed: None,
) -> None:
    await invite(app, tenant, invitation("inv-1"))
    assert (await stored(app, tenant))["inv-1"].silence_due_at == NOW + 10 * DAY

    clock.set(NOW + 10 * DAY - timedelta(seconds=1))
    await watch(app)
    assert await emitted(app, tenant, OPENED) == []

    clock.set(NOW + 10 * DAY)
    await watch(app)
    [opened] = await emitted(app, tenant, OPENED)
    assert isinstance(opened, NoResponseCaseOpenedV1)
    assert (opened.invitation_id, opened.account_id, opened.customer.id) == (
        "inv-1",
        "acc-key",
        "c-1",
    )
    assert opened.owner.id == "kam"
    assert opened.queue is None
    assert opened.response_id == "no-response:inv-1"
    assert (opened.priority, opened.channel, opened.silent_days) == ("high", "phone", 10)
    assert opened.opened_at == NOW + 10 * DAY
    assert opened.first_contact_due_at == NOW + 11 * DAY

    case = (await client.get(f"/v1/cases/{opened.case_id}", headers=headers)).json()
    assert case["case_type"] == "no_response"
    assert case["score"] is None
    assert case["category"] is None
    assert case["owner"]["id"] == "kam"
    assert case["key_account"] is True
    listed = (
        await client.get("/v1/cases", params={"case_type": "no_response"}, headers=headers)
    ).json()["cases"]
    assert [c["case_id"] for c in listed] == [str(opened.case_id)]

    # Another step, or the same invitation delivered again, opens nothing more.
    await invite(app, tenant, invitation("inv-1"))
    await watch(app)
    assert len(await emitted(app, tenant, OPENED)) == 1
    assert (await stored(app, tenant))["inv-1"].silence_case_id == opened.case_id


async def test_an_answer_before_the_window_ends_opens_nothing_in_either_arrival_order(
    app: FastAPI, tenant: str, clock: FixedClock, keyed: None
) -> None:
    # The response arrives after its invitation...
    await invite(app, tenant, invitation("inv-a", customer="c-a"))
    await feed(app, tenant, response("r-a", customer="c-a", answered_at=NOW + 2 * DAY))
    # ...or before it (another partition, a late import of invitations).
    await feed(app, tenant, response("r-b", customer="c-b", answered_at=NOW + DAY))
    await invite(app, tenant, invitation("inv-b", customer="c-b"))
    # An answer older than the invitation does not answer it.
    await feed(app, tenant, response("r-c", customer="c-c", answered_at=NOW - DAY))
    await invite(app, tenant, invitation("inv-c", customer="c-c"))

    rows = await stored(app, tenant)
    assert (rows["inv-a"].response_id, rows["inv-a"].answered_at) == ("r-a", NOW + 2 * DAY)
    assert (rows["inv-b"].response_id, rows["inv-b"].answered_at) == ("r-b", NOW + DAY)
    assert rows["inv-c"].answered_at is None

    clock.set(NOW + 30 * DAY)
    await watch(app)
    [opened] = await emitted(app, tenant, OPENED)
    assert opened.invitation_id == "inv-c"


async def test_only_key_contacts_of_key_accounts_are_watched(
    app: FastAPI, tenant: str, clock: FixedClock, keyed: None
) -> None:
    await invite(
        app,
        tenant,
        invitation("not-key-contact", customer="c-1", key="no"),
        invitation("no-attribute", customer="c-2", key=None),
        invitation("not-key-account", customer="c-3", account_id="acc-small"),
        invitation("no-account", customer="c-4", account_id=None),
        invitation("yes", customer="c-5", key="Yes"),
    )
    rows = await stored(app, tenant)
    assert {i for i, row in rows.items() if row.silence_due_at is not None} == {"yes"}

    clock.set(NOW + 30 * DAY)
    await watch(app)
    assert [o.invitation_id for o in await emitted(app, tenant, OPENED)] == ["yes"]


async def test_a_second_silent_invitation_joins_the_open_case_and_a_later_one_opens_anew(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
    keyed: None,
) -> None:
    await invite(
        app,
        tenant,
        invitation("q1", invited_at=NOW),
        invitation("q2", survey_id="onboarding", invited_at=NOW + DAY),
    )
    clock.set(NOW + 20 * DAY)
    await watch(app)
    [first] = await emitted(app, tenant, OPENED)
    rows = await stored(app, tenant)
    assert rows["q1"].silence_case_id == rows["q2"].silence_case_id == first.case_id

    # The owner reaches the contact and resolves the case: changes are no_response updates.
    claimed = await command(client, headers, first.case_id, "claim", {"owner_id": "kam"})
    assert claimed.status_code == 200, claimed.text
    contacted = await command(
        client,
        headers,
        first.case_id,
        "contacts",
        {"channel": "phone", "outcome": "reached", "note": "busy quarter, will answer"},
    )
    assert contacted.status_code == 200, contacted.text
    resolved = await command(
        client, headers, first.case_id, "resolve", {"outcome": "explained", "note": "agreed"}
    )
    assert resolved.status_code == 200, resolved.text
    updates = await emitted(app, tenant, "dev.closeloop.case.no_response_updated.v1")
    assert [(u.transition, u.status) for u in updates] == [
        ("claimed", "in_progress"),
        ("contact_logged", "contacted"),
        ("resolved", "resolved"),
    ]
    assert all(isinstance(u, NoResponseCaseUpdatedV1) for u in updates)
    assert {(u.case_type, u.playbook, u.invitation_id) for u in updates} == {
        ("no_response", "account_outreach", "q1")
    }
    assert await emitted(app, tenant, "dev.closeloop.case.updated.v1") == []

    # Silent again on the next survey, after the first case was settled: a new case.
    await invite(app, tenant, invitation("q3", invited_at=NOW + 21 * DAY))
    clock.set(NOW + 31 * DAY)
    await watch(app)
    second = (await emitted(app, tenant, OPENED))[-1]
    assert second.invitation_id == "q3"
    assert second.case_id != first.case_id


async def test_an_account_without_an_owner_queues_the_case_and_its_sla_alerts_fire(
    app: FastAPI, tenant: str, clock: FixedClock, keyed: None
) -> None:
    await invite(app, tenant, invitation("inv-o", customer="c-o", account_id="acc-orphan"))
    clock.set(NOW + 10 * DAY)
    await watch(app)
    [opened] = await emitted(app, tenant, OPENED)
    assert opened.owner.id == "queue:support-queue"
    assert opened.queue == "support-queue"

    clock.set(NOW + 11 * DAY)  # the first-contact deadline (24 h) passes
    sla: SlaWatcher = app.state.watcher
    while await sla.step():
        pass
    alerts = [a for a in await emitted(app, tenant) if isinstance(a, CaseSlaAlertV1)]
    assert [(a.kind, a.response_id) for a in alerts][:2] == [
        ("warning", "no-response:inv-o"),
        ("breach", "no-response:inv-o"),
    ]


async def test_a_set_up_change_before_the_window_ends_is_honoured(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
    keyed: None,
) -> None:
    await invite(app, tenant, invitation("inv-x"))
    await put_setup(client, headers, organisation={**ORGANISATION, "key_accounts": ["acc-orphan"]})
    clock.set(NOW + 30 * DAY)
    await watch(app)
    assert await emitted(app, tenant, OPENED) == []
    assert (await stored(app, tenant))["inv-x"].silence_due_at is None


async def test_the_silence_set_up_is_validated(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    current = await client.get("/v1/setup/organisation", headers=headers)
    for silence in ({"after_days": 0}, {"team_id": "nobody"}, {"key_contact_attribute": "Bad!"}):
        refused = await client.put(
            "/v1/setup/organisation",
            json={**ORGANISATION, "silence": silence},
            headers=headers | {"If-Match": current.headers["ETag"]},
        )
        assert refused.status_code == 422, (silence, refused.text)
