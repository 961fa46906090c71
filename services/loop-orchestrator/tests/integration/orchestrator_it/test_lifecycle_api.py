"""The case lifecycle over HTTP against the real PostgreSQL: an agent's whole path with its
history and events, optimistic concurrency (If-Match; two agents at once, one wins), refusals as
problem details, tenants and scopes kept apart, reassignment to the queue, reopening restarting
the resolution clock, and the list's filters and cursor pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.events import CaseSlaAlertV1, CaseUpdatedV1
from closeloop_orchestrator.service_layer.watcher import SlaWatcher

from .support import NOW, PROBLEM, H, answer, command, emitted, feed, put_setup, team

ORGANISATION: dict[str, Any] = {
    "teams": [team("support", [("anna", ["pl"]), ("ben", ["en"])], lead="anna")],
}
RULES = {"defaults": {"assignment": ["round_robin"], "team_id": "support"}}


async def opened(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str], **kw: Any
) -> dict[str, Any]:
    await put_setup(client, headers, organisation=ORGANISATION, rules=RULES)
    await feed(app, tenant, answer("r-1", **kw))
    (case,) = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    return case  # type: ignore[no-any-return]


async def test_an_agents_path_from_claim_to_close_is_recorded_and_published(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    case = await opened(app, client, tenant, headers, score=2)
    case_id, owner = case["case_id"], case["owner"]["id"]
    steps = [
        ("claim", {"owner_id": owner}),
        ("contacts", {"channel": "phone", "outcome": "no_answer"}),
        ("contacts", {"channel": "phone", "outcome": "reached", "note": "Apologised; refund agreed."}),
        ("root-causes", {"tags": ["Late delivery", "courier  handover"]}),
        ("resolve", {"outcome": "compensated", "note": "Refund of 50 PLN sent."}),
        ("close", {"note": "Customer thanked us.", "resurvey_after_days": 60}),
    ]  # fmt: skip
    for name, body in steps:
        clock.advance(H)
        done = await command(client, headers, case_id, name, body)
        assert done.status_code == 200, done.text

    final = done.json()
    assert done.headers["ETag"] == '"7"'
    assert (final["status"], final["version"], final["resolution"]) == ("closed", 7, "compensated")
    assert final["root_causes"] == ["courier handover", "late delivery"]
    assert final["first_contacted_at"] == "2026-11-10T12:00:00Z"
    assert final["contact_attempts"] == 2
    history = (await client.get(f"/v1/cases/{case_id}/history", headers=headers)).json()["history"]
    assert [(h["version"], h["transition"], h["status"]) for h in history] == [
        (1, "opened", "open"),
        (2, "claimed", "in_progress"),
        (3, "contact_logged", "in_progress"),
        (4, "contact_logged", "contacted"),
        (5, "root_causes_added", "contacted"),
        (6, "resolved", "resolved"),
        (7, "closed", "closed"),
    ]
    assert {h["actor"] for h in history[1:]} == {"agent-ola"}  # the token's subject
    assert history[3]["note"] == "Apologised; refund agreed."
    events = await emitted(app, tenant, CaseUpdatedV1.EVENT_TYPE)
    assert [(e.version, e.transition, e.status) for e in events] == [
        (h["version"], h["transition"], h["status"]) for h in history[1:]
    ]
    assert events[2].contact is not None
    assert events[2].contact.outcome == "reached"
    assert events[-1].resurvey_due_at == NOW + 6 * H + 60 * 24 * H


async def test_two_agents_with_the_same_version_one_wins_the_other_is_refused(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    case = await opened(app, client, tenant, headers)
    url = f"/v1/cases/{case['case_id']}"
    stale = {"If-Match": '"1"'}

    other = "ben" if case["owner"]["id"] == "anna" else "anna"
    answers = await asyncio.gather(
        client.post(f"{url}/reassign", json={"owner_id": other, "note": "Knows the account."},
                    headers=headers | stale),
        client.post(f"{url}/reassign", json={"owner_id": None, "note": "To the queue."},
                    headers=headers | stale),
    )  # fmt: skip

    assert sorted(a.status_code for a in answers) == [200, 412]
    refused = next(a for a in answers if a.status_code == 412)
    assert refused.headers["content-type"] == PROBLEM
    assert refused.headers["ETag"] == '"2"'
    assert refused.json()["type"] == "urn:closeloop:problem:version-conflict"
    missing = await client.post(
        f"{url}/reassign", json={"owner_id": "anna", "note": "x"}, headers=headers
    )
    assert missing.status_code == 428
    assert missing.headers["content-type"] == PROBLEM


async def test_refusals_are_problem_details_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    case = await opened(app, client, tenant, headers)
    case_id = case["case_id"]
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("resolve", {"outcome": "solved", "note": "Done."}, 409, "invalid-transition"),
        ("claim", {"owner_id": "stranger"}, 422, "invalid-command"),
        ("resolve", {"outcome": "solved"}, 422, "validation"),
        ("root-causes", {"tags": ["no/slashes"]}, 422, "validation"),
        ("close", {"note": "x", "resurvey_after_days": 0}, 422, "validation"),
    ]
    for name, body, status, kind in cases:
        refused = await command(client, headers, case_id, name, body)
        assert refused.status_code == status, (name, refused.text)
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["type"] == f"urn:closeloop:problem:{kind}"
    assert (await command(client, headers, case_id, "claim", {"owner_id": "anna"})).status_code in (
        200,
        409,
    )
    again = await command(client, headers, case_id, "root-causes", {"tags": ["price"]})
    assert again.status_code == 200
    same = await command(client, headers, case_id, "root-causes", {"tags": [" PRICE "]})
    assert same.status_code == 409
    assert same.json()["type"] == "urn:closeloop:problem:nothing-to-change"


async def test_other_tenants_and_read_only_tokens_cannot_act_on_a_case(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    case = await opened(app, client, tenant, headers)
    url = f"/v1/cases/{case['case_id']}/claim"
    etag = {"If-Match": '"1"'}

    other = await client.post(url, json={"owner_id": "anna"},
                              headers=bearer(f"{tenant}-x", "cases:write", subject="x") | etag)  # fmt: skip
    reader = await client.post(url, json={"owner_id": "anna"},
                               headers=bearer(tenant, "read", subject="y") | etag)  # fmt: skip
    history = await client.get(
        f"/v1/cases/{case['case_id']}/history", headers=bearer(f"{tenant}-x", "read")
    )

    assert other.status_code == 404
    assert reader.status_code == 403
    assert history.status_code == 404
    assert (await client.get(f"/v1/cases/{case['case_id']}", headers=headers)).json()[
        "version"
    ] == 1


async def test_reassigning_to_the_queue_and_reopening_restart_what_they_should(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    case = await opened(app, client, tenant, headers, score=3)
    case_id = case["case_id"]
    queued = await command(
        client, headers, case_id, "reassign", {"owner_id": None, "note": "Needs a specialist."}
    )
    assert (queued.json()["owner"], queued.json()["queue"]) == (None, "support-queue")
    for name, body in (
        ("claim", {"owner_id": "ben"}),
        ("contacts", {"channel": "phone", "outcome": "reached", "note": "Listened."}),
        ("resolve", {"outcome": "explained", "note": "Explained."}),
    ):
        assert (await command(client, headers, case_id, name, body)).status_code == 200
    clock.set(NOW + 10 * H)
    reopened = await command(
        client,
        headers,
        case_id,
        "reopen",
        {"note": "Customer wrote back.", "resolution_due_at": (NOW + 34 * H).isoformat()},
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "in_progress"

    clock.set(NOW + 40 * H)
    watcher: SlaWatcher = app.state.watcher
    while await watcher.step() >= watcher.limit:
        pass
    found = [(a.clock, a.kind) for a in await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE)]
    # The restarted resolution clock: warned at 75 % of the 24 h from reopening (28 h), breached
    # at 34 h, escalated to the team lead 4 h later; the manager's step (24 h) is still ahead.
    assert found == [
        ("resolution", "warning"),
        ("resolution", "breach"),
        ("resolution", "escalation"),
    ]


async def test_the_list_filters_and_pages_with_a_cursor(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(
        client,
        headers,
        organisation=ORGANISATION | {"key_accounts": ["acc-key"]},
        rules=RULES,
    )
    await feed(
        app,
        tenant,
        *(answer(f"r-{i}", score=i, region="north" if i % 2 else "south") for i in range(10)),
        answer("r-key", score=9, account_id="acc-key"),
    )

    pages: list[list[str]] = []
    cursor = None
    while True:
        params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/cases", params=params, headers=headers)).json()
        pages.append([c["response_id"] for c in page["cases"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [rid for page in pages for rid in page]
    assert [len(p) for p in pages] == [4, 4, 3]
    assert listed[0] == "r-key"  # key accounts first
    assert sorted(listed) == sorted([f"r-{i}" for i in range(10)] + ["r-key"])

    def ids(**params: Any) -> Any:
        return client.get("/v1/cases", params=params, headers=headers)

    north = (await ids(region="north", case_type="detractor")).json()["cases"]
    assert sorted(c["response_id"] for c in north) == ["r-1", "r-3", "r-5"]
    high = (await ids(priority=["high", "urgent"])).json()["cases"]
    assert {c["priority"] for c in high} == {"high"}
    assert len(high) == 8  # seven detractors and the key account's promoter
    bad = await ids(cursor="not-a-cursor")
    assert bad.status_code == 400
    assert bad.headers["content-type"] == PROBLEM
