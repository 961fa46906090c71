"""Actions agreed with an account over HTTP against the real PostgreSQL: recorded with their
ETag and Location, moved agreed → in_progress → done (or dropped with a note) with If-Match
(428 without, 412 stale, 409 when the status does not allow it or nothing changes), linked only
to the tenant's own structural issues, listed by status, and invisible to another tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from closeloop_common.clock import FixedClock

from .support import NOW, PROBLEM, H, answer, feed, iso

ACTIONS = "/v1/accounts/acme/actions"


async def agree(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    made = await client.post(ACTIONS, json={"title": "Monthly delivery report"} | body,
                             headers=headers)  # fmt: skip
    assert made.status_code == 201, made.text
    return made


async def patch(
    client: httpx.AsyncClient, headers: dict[str, str], action_id: str, **body: Any
) -> httpx.Response:
    """PATCH with the action's current ETag."""
    current = await client.get(f"{ACTIONS}/{action_id}", headers=headers)
    assert current.status_code == 200, current.text
    return await client.patch(
        f"{ACTIONS}/{action_id}", json=body, headers=headers | {"If-Match": current.headers["ETag"]}
    )


async def test_an_agreed_action_is_recorded_with_its_etag_location_and_author(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    made = await agree(
        client, headers, title="Quarterly <b>delivery</b> report", description="PDF, by mail",
        owner={"id": "anna", "name": "Anna Nowak", "email": "anna@acme.example"},
        due_on="2026-12-15",
    )  # fmt: skip
    body = made.json()
    assert made.headers["ETag"] == '"1"'
    assert made.headers["Location"] == f"{ACTIONS}/{body['action_id']}"
    assert (body["account_id"], body["title"], body["status"], body["version"]) == (
        "acme",
        "Quarterly <b>delivery</b> report",
        "agreed",
        1,
    )
    assert body["owner"] == {"id": "anna", "name": "Anna Nowak", "email": "anna@acme.example"}
    assert (body["due_on"], body["agreed_at"], body["finished_at"]) == (
        "2026-12-15",
        iso(NOW),
        None,
    )
    assert (body["created_by"], body["updated_by"]) == ("agent-ola", "agent-ola")
    again = await client.get(made.headers["Location"], headers=headers)
    assert (again.status_code, again.headers["ETag"], again.json()) == (200, '"1"', body)


async def test_an_account_id_outside_latin_1_gets_a_percent_encoded_location(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # Found by the API fuzzer: the Location header was the raw account id, which a header cannot
    # hold outside Latin-1, so the answer was a 500 after the action had been stored.
    made = await client.post(
        "/v1/accounts/hurtownia-łódź-😀/actions", json={"title": "Report"}, headers=headers
    )

    assert made.status_code == 201, made.text
    action_id = made.json()["action_id"]
    location = f"/v1/accounts/hurtownia-%C5%82%C3%B3d%C5%BA-%F0%9F%98%80/actions/{action_id}"
    assert made.headers["Location"] == location
    read = await client.get(location, headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["account_id"] == "hurtownia-łódź-😀"


async def test_an_action_goes_agreed_in_progress_done_and_is_final_then(
    client: httpx.AsyncClient, headers: dict[str, str], clock: FixedClock
) -> None:
    action_id = (await agree(client, headers)).json()["action_id"]
    clock.advance(H)
    started = await patch(client, headers, action_id, status="in_progress", note="Template ready.")
    assert started.status_code == 200, started.text
    assert (started.json()["status"], started.headers["ETag"]) == ("in_progress", '"2"')
    assert started.json()["updated_at"] == iso(NOW + H)
    clock.advance(H)
    done = await patch(client, headers, action_id, status="done")
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["finished_at"], done.json()["note"]) == (
        "done",
        iso(NOW + 2 * H),
        "Template ready.",
    )
    again = await patch(client, headers, action_id, title="Another title")
    assert (again.status_code, again.headers["content-type"]) == (409, PROBLEM)
    assert again.json()["type"] == "urn:closeloop:problem:invalid-transition"
    assert again.json()["action_status"] == "done"


async def test_an_action_is_started_before_it_is_done_and_dropped_only_with_a_note(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    action_id = (await agree(client, headers)).json()["action_id"]
    skipped = await patch(client, headers, action_id, status="done")
    assert skipped.status_code == 409
    assert skipped.json()["type"] == "urn:closeloop:problem:invalid-transition"
    silent = await patch(client, headers, action_id, status="dropped")
    assert silent.status_code == 422
    assert silent.json()["type"] == "urn:closeloop:problem:invalid-command"
    dropped = await patch(client, headers, action_id, status="dropped", note="Customer cancelled.")
    assert dropped.status_code == 200, dropped.text
    assert (dropped.json()["status"], dropped.json()["note"]) == ("dropped", "Customer cancelled.")
    assert dropped.json()["finished_at"] is not None


async def test_a_change_needs_the_current_version_and_must_change_something(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    made = (await agree(client, headers, due_on="2026-12-01")).json()
    url = f"{ACTIONS}/{made['action_id']}"
    missing = await client.patch(url, json={"title": "x"}, headers=headers)
    assert (missing.status_code, missing.headers["content-type"]) == (428, PROBLEM)
    moved = await client.patch(url, json={"due_on": None, "owner": {"id": "ben"}},
                               headers=headers | {"If-Match": '"1"'})  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert (moved.json()["due_on"], moved.json()["owner"]) == (
        None,
        {"id": "ben", "name": None, "email": None},
    )
    stale = await client.patch(url, json={"title": "y"}, headers=headers | {"If-Match": '"1"'})
    assert (stale.status_code, stale.headers["ETag"]) == (412, '"2"')
    assert stale.json()["type"] == "urn:closeloop:problem:version-conflict"
    same = await client.patch(url, json={"title": "Monthly delivery report"},
                              headers=headers | {"If-Match": '"2"'})  # fmt: skip
    assert (same.status_code, same.json()["type"]) == (
        409,
        "urn:closeloop:problem:nothing-to-change",
    )
    blank = await client.patch(url, json={"title": None}, headers=headers | {"If-Match": '"2"'})
    assert blank.status_code == 422
    unknown = await client.patch(url, json={"agreed_at": "2026-01-01T00:00:00Z"},
                                 headers=headers | {"If-Match": '"2"'})  # fmt: skip
    assert unknown.status_code == 422
    assert (await client.get(url, headers=headers)).json()["version"] == 2


async def test_an_action_links_only_one_of_the_tenant_s_structural_issues(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    await feed(app, tenant, answer("r-1", account_id="acme"))
    (case,) = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    issue = await client.post("/v1/issues", headers=headers, json={
        "title": "Late deliveries", "source": "cases", "case_ids": [case["case_id"]], "cost": 3})  # fmt: skip
    assert issue.status_code == 201, issue.text
    issue_id = issue.json()["issue_id"]

    linked = await agree(client, headers, issue_id=issue_id)
    assert linked.json()["issue_id"] == issue_id
    unknown = await client.post(
        ACTIONS, json={"title": "t", "issue_id": "00000000-0000-0000-0000-000000000001"},
        headers=headers,
    )  # fmt: skip
    assert (unknown.status_code, unknown.json()["type"]) == (
        422,
        "urn:closeloop:problem:unknown-issue",
    )
    stranger = bearer("it-orch-stranger", "read", "cases:write", subject="x")
    theirs = await client.post(ACTIONS, json={"title": "t", "issue_id": issue_id}, headers=stranger)
    assert theirs.status_code == 422


async def test_the_list_is_the_accounts_own_by_status_earliest_first(
    client: httpx.AsyncClient, headers: dict[str, str], clock: FixedClock
) -> None:
    first = (await agree(client, headers, title="first")).json()["action_id"]
    clock.advance(H)
    second = (await agree(client, headers, title="second")).json()["action_id"]
    clock.advance(H)
    third = (await agree(client, headers, title="third")).json()["action_id"]
    other = await client.post("/v1/accounts/globex/actions", json={"title": "x"}, headers=headers)
    assert other.status_code == 201
    assert (await patch(client, headers, second, status="in_progress")).status_code == 200
    assert (await patch(client, headers, third, status="dropped", note="n")).status_code == 200

    listed = (await client.get(ACTIONS, headers=headers)).json()
    assert [a["title"] for a in listed["actions"]] == ["first", "second", "third"]
    assert listed["total"] == 3
    open_ = await client.get(ACTIONS, params=[("status", "agreed"), ("status", "in_progress")],
                             headers=headers)  # fmt: skip
    assert [a["action_id"] for a in open_.json()["actions"]] == [first, second]
    limited = (await client.get(ACTIONS, params={"limit": 1}, headers=headers)).json()
    assert (len(limited["actions"]), limited["total"]) == (1, 3)
    assert (
        await client.get(ACTIONS, params={"status": "lost"}, headers=headers)
    ).status_code == 422


async def test_another_tenant_neither_sees_nor_changes_the_actions(
    client: httpx.AsyncClient, headers: dict[str, str], bearer: Callable[..., dict[str, str]]
) -> None:
    action_id = (await agree(client, headers)).json()["action_id"]
    stranger = bearer("it-orch-stranger", "read", "cases:write", subject="x")
    assert (await client.get(ACTIONS, headers=stranger)).json()["actions"] == []
    assert (await client.get(f"{ACTIONS}/{action_id}", headers=stranger)).status_code == 404
    changed = await client.patch(f"{ACTIONS}/{action_id}", json={"title": "mine"},
                                 headers=stranger | {"If-Match": '"1"'})  # fmt: skip
    assert (changed.status_code, changed.headers["content-type"]) == (404, PROBLEM)
    # Nor is it another account's action of the same tenant.
    elsewhere = await client.get(f"/v1/accounts/globex/actions/{action_id}", headers=headers)
    assert elsewhere.status_code == 404
    assert (await client.get(f"{ACTIONS}/{action_id}", headers=headers)).json()["version"] == 1


async def test_recording_needs_cases_write_and_reading_needs_read(
    client: httpx.AsyncClient, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    reader = bearer(tenant, "read", subject="viewer")
    refused = await client.post(ACTIONS, json={"title": "t"}, headers=reader)
    assert (refused.status_code, refused.json()["type"]) == (403, "urn:closeloop:problem:forbidden")
    writer = bearer(tenant, "cases:write", subject="agent")
    assert (await client.post(ACTIONS, json={"title": "t"}, headers=writer)).status_code == 201
    assert (await client.get(ACTIONS, headers=writer)).status_code == 403
    assert (await client.get(ACTIONS)).status_code == 401
