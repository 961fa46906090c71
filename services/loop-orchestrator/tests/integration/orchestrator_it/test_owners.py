"""Who owns a new case, against the real PostgreSQL and the admin API: the account owner a CRM
synced, round robin within a team, least loaded, language match (Polish speakers for Polish
comments), people marked away skipped, and the team's queue when nobody fits."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from fastapi import FastAPI

from closeloop_common.events import CaseOpenedV1

from .support import answer, emitted, feed, put_setup, team

SUPPORT = team(
    "support",
    [("anna", ["pl", "en"]), ("ben", ["en"]), ("cezary", ["pl"])],
    lead="anna",
    manager="maria",
)
ORGANISATION: dict[str, Any] = {
    "teams": [SUPPORT],
    "people": [{"id": "maria", "name": "Maria", "email": "maria@acme.example"},
               {"id": "kam", "name": "Kamil (sales)", "email": "kam@acme.example"}],
}  # fmt: skip


def rules_with(*strategies: str) -> dict[str, Any]:
    return {"defaults": {"assignment": list(strategies), "team_id": "support"}}


async def owners(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str | None]:
    listed = (await client.get("/v1/cases", headers=headers, params={"limit": 500})).json()
    return {
        c["response_id"]: None if c["owner"] is None else c["owner"]["id"] for c in listed["cases"]
    }


async def test_the_account_owner_a_crm_synced_gets_the_accounts_cases(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(
        client, headers, organisation=ORGANISATION, rules=rules_with("account_owner", "round_robin")
    )
    synced = await client.put(
        "/v1/account-owners",
        json={"owners": [{"account_id": "acc-big", "owner_id": "kam"},
                         {"account_id": "acc-gone", "owner_id": "ben"}]},
        headers=headers,
    )  # fmt: skip
    assert synced.json() == {"set": 2, "removed": 0}
    removed = await client.put(
        "/v1/account-owners",
        json={"owners": [{"account_id": "acc-gone", "owner_id": None}]},
        headers=headers,
    )
    assert removed.json() == {"set": 0, "removed": 1}

    await feed(
        app,
        tenant,
        answer("r-big-1", account_id="acc-big"),
        answer("r-big-2", account_id="acc-big", score=9),
        answer("r-gone", account_id="acc-gone"),
    )

    found = await owners(client, headers)
    # The account owner sits outside the team (sales): found among the tenant's people.
    assert found["r-big-1"] == found["r-big-2"] == "kam"
    assert found["r-gone"] in {"anna", "ben", "cezary"}
    listed = await client.get("/v1/account-owners", headers=headers)
    assert [o["account_id"] for o in listed.json()["owners"]] == ["acc-big"]


async def test_round_robin_gives_each_present_member_turns_in_order_across_batches(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=rules_with("round_robin"))

    await feed(app, tenant, *(answer(f"r-{i}") for i in range(4)))
    await feed(app, tenant, *(answer(f"r-{i}") for i in range(4, 6)))

    counts = Counter((await owners(client, headers)).values())
    assert counts == {"anna": 2, "ben": 2, "cezary": 2}


async def test_least_loaded_and_away_members_skipped(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=rules_with("least_loaded"))
    await feed(app, tenant, answer("r-1"), answer("r-2"), answer("r-3"))
    assert Counter((await owners(client, headers)).values()) == {"anna": 1, "ben": 1, "cezary": 1}

    away = await client.put("/v1/people/ben/away", json={"away": True}, headers=headers)
    assert away.status_code == 200, away.text
    await feed(app, tenant, answer("r-4"), answer("r-5"))

    found = await owners(client, headers)
    assert {found["r-4"], found["r-5"]} == {"anna", "cezary"}
    unknown = await client.put("/v1/people/nobody/away", json={"away": True}, headers=headers)
    assert unknown.status_code == 404


async def test_language_match_sends_polish_comments_to_polish_speakers(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=rules_with("language_match"))

    await feed(
        app,
        tenant,
        answer("r-pl-1", comment="Kurier się spóźnił, obsługa była niemiła."),
        answer("r-pl-2", comment="nie jest dobrze, obsluga byla slaba"),
        answer("r-en", comment="Late again.", locale="en-GB"),
    )

    found = await owners(client, headers)
    assert found["r-pl-1"] in {"anna", "cezary"}
    assert found["r-pl-2"] in {"anna", "cezary"}
    assert found["r-pl-1"] != found["r-pl-2"]  # least loaded among the speakers
    assert found["r-en"] in {"anna", "ben"}


async def test_nobody_fits_the_case_waits_in_the_teams_queue(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    everyone_away = team("support", [("anna", ["pl"]), ("ben", ["en"])], away=["anna", "ben"])
    await put_setup(
        client,
        headers,
        organisation={"teams": [everyone_away]},
        rules=rules_with("account_owner", "round_robin"),
    )

    await feed(app, tenant, answer("r-queued"))

    listed = await client.get("/v1/cases", params={"queue": "support-queue"}, headers=headers)
    (case,) = listed.json()["cases"]
    assert case["owner"] is None
    assert case["queue"] == "support-queue"
    (opened,) = await emitted(app, tenant, CaseOpenedV1.EVENT_TYPE)
    # Who answers the customer meanwhile: the team, from its shared mailbox.
    assert (opened.queue, opened.owner.id, opened.owner.email) == (
        "support-queue",
        "queue:support-queue",
        "support@acme.example",
    )
    history = await client.get(f"/v1/cases/{case['case_id']}/history", headers=headers)
    reason = history.json()["history"][0]["details"]["reason"]
    assert "nobody in team 'support' is present" in reason
