"""The notifier's HTTP API with the service's lifespan: messaging settings (versioned, defaults,
secret write-only), drafts (read, edit, approve, discard; another tenant's are invisible), and
the one-click unsubscribe link of a delivered email stopping the next message.

Real PostgreSQL and SMTP; see conftest.py for the `delivery` harness, `notifier` and `api`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from closeloop_devtools.mailsink import MailSink
from closeloop_notifier.domain.tenant_settings import ApprovalRule
from services.notifier.tests.integration.conftest import Delivery, mails_of_case

Bearer = Callable[..., dict[str, str]]


async def test_settings_are_versioned_and_the_webhook_secret_is_never_shown(
    api: httpx.AsyncClient, tenant: str, bearer: Bearer
) -> None:
    admin = bearer(tenant, "admin", subject="admin-ola")
    first = await api.get("/v1/settings", headers=admin)
    assert first.status_code == 200
    assert (first.json()["version"], first.headers["ETag"]) == (0, '"0"')
    assert first.json()["settings"]["quiet_hours"] == {"start": "21:00:00", "end": "08:00:00"}

    channel: dict[str, str | None] = {
        "kind": "webhook",
        "webhook_url": "https://chat.example.com/hooks/1",
        "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    wanted = {"time_zone": "Europe/London", "team_channel": channel}
    without_version = await api.put("/v1/settings", json=wanted, headers=admin)
    assert without_version.status_code == 428
    saved = await api.put("/v1/settings", json=wanted, headers={**admin, "If-Match": '"0"'})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["version"], saved.headers["ETag"]) == (1, '"1"')
    assert body["settings"]["time_zone"] == "Europe/London"
    assert body["settings"]["team_channel"]["webhook_secret"] == "set"
    assert "whsec_" not in saved.text
    # Left out of the body: the service's defaults.
    assert body["settings"]["reply_delay"] == {"min_minutes": 5.0, "max_minutes": 30.0}

    stale = await api.put("/v1/settings", json=wanted, headers={**admin, "If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"1"'
    # The secret is kept when a later version does not repeat it (same URL).
    again = {**wanted, "team_channel": {**channel, "webhook_secret": None}}
    kept = await api.put("/v1/settings", json=again, headers={**admin, "If-Match": '"1"'})
    assert kept.json()["settings"]["team_channel"]["webhook_secret"] == "set"

    refused = await api.put(
        "/v1/settings",
        json={"time_zone": "Mars/Olympus"},
        headers={**admin, "If-Match": '"2"'},
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    not_admin = await api.get("/v1/settings", headers=bearer(tenant, "read", "cases:write"))
    assert not_admin.status_code == 403


async def test_drafts_are_read_edited_and_approved_over_http_by_their_tenant_only(
    delivery: Delivery,
    notifier: tuple[FastAPI, MailSink],
    api: httpx.AsyncClient,
    bearer: Bearer,
) -> None:
    await delivery.configure(detractor_approval=(ApprovalRule(mode="approve"),))
    first, second = delivery.case_opened(), delivery.case_opened()
    assert await delivery.prepare(first) == "draft"
    assert await delivery.prepare(second) == "draft"
    owner = bearer(delivery.tenant, "read", "cases:write", subject="ewa")
    other = bearer(f"{delivery.tenant}-other", "read", "cases:write")

    listed = (await api.get("/v1/drafts", headers=owner)).json()["messages"]
    assert [m["case_id"] for m in listed] == [str(first.data.case_id), str(second.data.case_id)]
    assert (await api.get("/v1/drafts", headers=other)).json()["messages"] == []
    draft_id = listed[0]["message_id"]
    detail = (await api.get(f"/v1/messages/{draft_id}", headers=owner)).json()
    assert "Faktura znowu była błędna." in detail["text"]
    assert "<html" in detail["html"]
    assert (await api.get(f"/v1/messages/{draft_id}", headers=other)).status_code == 404

    edited = await api.patch(
        f"/v1/drafts/{draft_id}", json={"text": "Dzień dobry,\n\nzadzwonię dziś."}, headers=owner
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["status"], edited.json()["edited"]) == ("draft", True)
    assert (await api.post(f"/v1/drafts/{draft_id}/approve", headers=other)).status_code == 404
    approved = await api.post(f"/v1/drafts/{draft_id}/approve", headers=owner)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["reviewed_by"]) == ("pending", "ewa")
    twice = await api.post(f"/v1/drafts/{draft_id}/approve", headers=owner)
    assert twice.status_code == 409
    assert twice.json()["current_status"] == "pending"

    discarded = await api.post(f"/v1/drafts/{listed[1]['message_id']}/discard", headers=owner)
    assert discarded.json()["status"] == "discarded"
    reader = bearer(delivery.tenant, "read")
    assert (await api.post(f"/v1/drafts/{draft_id}/approve", headers=reader)).status_code == 403
    bad = await api.patch(f"/v1/drafts/{draft_id}", json={"subject": ""}, headers=owner)
    assert bad.status_code == 422


async def test_the_unsubscribe_link_of_a_delivered_email_stops_the_next_message(
    delivery: Delivery,
    notifier: tuple[FastAPI, MailSink],
    api: httpx.AsyncClient,
) -> None:
    _, sink = notifier  # the running service's dispatcher sends to this sink
    first = delivery.case_opened()
    await delivery.handle(first)
    async with asyncio.timeout(30):
        while not (mails := mails_of_case(sink, first.data.case_id)):
            await asyncio.sleep(0.1)
    [mail] = mails
    path = mail["List-Unsubscribe"].strip("<>").removeprefix("http://notifier.test")

    page = await api.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # What a mail client sends for a one-click unsubscribe (RFC 8058).
    clicked = await api.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert clicked.status_code == 200

    second = delivery.case_opened(email="Anna.Nowak@klient.example.pl")
    assert await delivery.prepare(second) == "suppressed"
    tampered = await api.post(path[:-4] + "AAAA")
    assert tampered.status_code == 404
