"""The structural issues backlog over HTTP against the real PostgreSQL, with scoring's real app
answering the what-if (its responses fed through its own batch handler): an issue from a theme
gets scoring's impact and interval, asked with the caller's token; one from cases links their
customers and accounts; the lifecycle with If-Match; done and rejected queue the change summary
for the `changes` topic (the rejection's reason and the respondents included); the list comes
biggest gain per cost first; scoring unreachable leaves the impact unknown, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.events import (
    ChangeSummaryV1,
    Customer,
    ResponseReceivedV1,
    Segments,
    categorize,
)

from .support import NOW, OUTBOX, PROBLEM, answer, emitted, feed, feed_scoring, runtime_of

# Ten answers five days ago, NPS -20 (3 promoters, 2 passives, 5 detractors); three detractors
# mention customer service. Scoring's what-if turns them into passives: NPS 10 in [-30.52, 45.9],
# so the impact is +30 points in [-10.52, +65.9] (the interval moved by today's -20).
COMMENTS: list[tuple[int, str | None]] = [
    (2, "Obsługa klienta fatalna, nikt nie odbiera"),
    (3, "obsluga byla niemila"),
    (1, "Obsłudze brakuje wiedzy"),
    (4, "Kurier spóźniony, dostawa trwała tydzień"),
    (7, "obslugi nie bylo"),
    (10, "Świetna obsługa"),
    (9, "Szybka dostawa"),
    (10, None),
    (8, "cena ok"),
    (0, "za drogo"),
]
THEME = "customer service"


@pytest.fixture(scope="module")
def app(app_with_scoring: FastAPI) -> FastAPI:
    """The orchestrator asking the real scoring app (in process) for its what-if."""
    return app_with_scoring


async def scored(scoring_app: FastAPI, tenant: str, *, region: str = "PL") -> None:
    """Scoring counts COMMENTS for the tenant (one consumer batch)."""
    at = NOW - timedelta(days=5)
    await feed_scoring(
        scoring_app,
        tenant,
        [
            ResponseReceivedV1(
                response_id=f"s-{i}",
                survey_id="relationship",
                customer=Customer(id=f"c-{i}"),
                account_id="acme",
                score=score,
                category=categorize(score),
                comment=comment,
                answered_at=at,
                received_at=at + timedelta(seconds=1),
                segments=Segments(region=region),
                source="api",
            )
            for i, (score, comment) in enumerate(COMMENTS)
        ],
    )


async def create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/issues", json=body, headers=headers)
    assert made.status_code == 201, made.text
    assert made.headers["ETag"] == '"1"'
    found: dict[str, Any] = made.json()
    return found


async def move(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    issue_id: str,
    name: str,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST a transition with the issue's current ETag."""
    current = await client.get(f"/v1/issues/{issue_id}", headers=headers)
    assert current.status_code == 200, current.text
    return await client.post(
        f"/v1/issues/{issue_id}/{name}",
        json=body,
        headers=headers | {"If-Match": current.headers["ETag"]},
    )


async def case_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    return {c["response_id"]: c["case_id"] for c in listed}


async def test_an_issue_from_a_theme_gets_scorings_impact_with_its_interval(
    scoring_app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await scored(scoring_app, tenant)
    issue = await create(
        client, headers, title="Customer service does not answer", source="theme",
        theme=THEME, filters={"region": "PL"}, cost=5, cost_unit="person-days",
        owner={"id": "anna", "name": "Anna", "email": "anna@acme.example"},
    )  # fmt: skip

    assert issue["estimate"] == {"status": "estimated"}
    impact = issue["impact"]
    assert (impact["nps_points"], impact["ci_low"], impact["ci_high"]) == (30.0, -10.52, 65.9)
    assert (impact["n"], impact["today_nps"], impact["projected_nps"]) == (10, -20.0, 10.0)
    assert impact["estimated_at"] == NOW.isoformat()
    assert issue["impact_per_cost"] == {"value": 6.0, "ci_low": -2.104, "ci_high": 13.18}
    assert (issue["status"], issue["version"], issue["created_by"]) == ("proposed", 1, "agent-ola")
    # Scoring answered for the caller's tenant only: the same theme elsewhere has no answers.
    other = await create(client, headers, title="x", source="theme", theme=THEME,
                         filters={"region": "DE"}, cost=1)  # fmt: skip
    assert (other["impact"], other["estimate"]["status"]) == (None, "no_data")


async def test_the_caller_s_token_is_what_scoring_sees(
    scoring_app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    bearer: Callable[..., dict[str, str]],
) -> None:
    await scored(scoring_app, tenant)
    writer_only = bearer(tenant, "cases:write", subject="agent-ola")
    issue = await create(client, writer_only, title="t", source="theme", theme=THEME, cost=1)
    # Scoring refused the token (no `read`): created all the same, impact unknown, and said why.
    assert issue["impact"] is None
    assert issue["estimate"]["status"] == "unavailable"
    assert "403" in issue["estimate"]["detail"]
    again = await client.post(f"/v1/issues/{issue['issue_id']}/estimate", headers=writer_only)
    assert again.status_code == 502
    assert again.json()["type"] == "urn:closeloop:problem:scoring-refused"
    readable = bearer(tenant, "read", "cases:write", subject="agent-ola")
    estimated = await client.post(f"/v1/issues/{issue['issue_id']}/estimate", headers=readable)
    assert estimated.status_code == 200, estimated.text
    assert (estimated.json()["impact"]["nps_points"], estimated.json()["version"]) == (30.0, 2)


async def test_lifecycle_to_done_tells_the_respondents_what_was_done(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await feed(app, tenant, answer("r-1", account_id="acme"), answer("r-2", account_id="globex"),
               answer("r-3"))  # fmt: skip
    ids = await case_ids(client, headers)
    issue = await create(
        client, headers, title="Late deliveries", source="cases", cost=3,
        case_ids=[ids["r-1"], ids["r-2"]], filters={"survey": "relationship-2026", "region": "PL"},
    )  # fmt: skip
    issue_id = issue["issue_id"]
    assert issue["impact"] is None
    assert issue["estimate"]["status"] == "not_asked"
    assert [c["response_id"] for c in issue["cases"]] == ["r-1", "r-2"]
    assert (issue["customers"], issue["accounts"]) == (["cust-r-1", "cust-r-2"], ["acme", "globex"])

    for name in ("prioritise", "start"):
        moved = await move(client, headers, issue_id, name)
        assert moved.status_code == 200, moved.text
    done = await move(client, headers, issue_id, "done", {
        "locale": "pl",
        "texts": {
            "pl": {"title": "Spóźnione dostawy", "summary": "Zmieniliśmy kuriera."},
            "en": {"title": "Late deliveries", "summary": "We changed couriers."},
        },
        "notify_segment": True,
    })  # fmt: skip
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["version"], done.headers["ETag"]) == ("done", 4, '"4"')
    assert [h["transition"] for h in body["history"]] == ["created", "prioritise", "start", "done"]

    (summary,) = await emitted(app, tenant, ChangeSummaryV1.EVENT_TYPE)
    assert (summary.change_id, summary.status, summary.locale) == (issue_id, "done", "pl")
    assert summary.text.summary == "Zmieniliśmy kuriera."
    assert summary.text.reason is None
    assert summary.translations["en"].summary == "We changed couriers."
    assert summary.audience.response_ids == ("r-1", "r-2")
    assert summary.audience.segment is not None
    assert (summary.audience.segment.survey_id, summary.audience.segment.region) == (
        "relationship-2026",
        "PL",
    )
    assert (summary.decided_by, summary.decided_at) == ("agent-ola", NOW)
    async with runtime_of(app).sessions() as session:
        topics = await session.scalars(
            sa.select(OUTBOX.c.topic).where(
                OUTBOX.c.tenant_id == tenant, OUTBOX.c.event_type == ChangeSummaryV1.EVENT_TYPE
            )
        )
        assert [t.rsplit(".", 1)[1] for t in topics] == ["changes"]


async def test_a_rejection_needs_a_reason_and_tells_it_to_the_respondents(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await feed(app, tenant, answer("r-1"))
    ids = await case_ids(client, headers)
    issue = await create(client, headers, title="Open on Sundays", source="cases", cost=40,
                         case_ids=[ids["r-1"]])  # fmt: skip
    url = f"/v1/issues/{issue['issue_id']}/reject"
    text = {
        "locale": "en",
        "texts": {"en": {"title": "Sunday opening", "reason": "Too few visits."}},
    }
    no_reason = await client.post(url, json=text, headers=headers | {"If-Match": '"1"'})
    assert no_reason.status_code == 422
    untold = {"locale": "en", "texts": {"en": {"title": "Sunday opening"}}, "reason": "Cost."}
    refused = await client.post(url, json=untold, headers=headers | {"If-Match": '"1"'})
    assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM)
    assert refused.json()["type"] == "urn:closeloop:problem:invalid-command"

    rejected = await client.post(url, json=text | {"reason": "Cost outweighs the gain."},
                                 headers=headers | {"If-Match": '"1"'})  # fmt: skip
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["reason"]) == (
        "rejected",
        "Cost outweighs the gain.",
    )
    (summary,) = await emitted(app, tenant, ChangeSummaryV1.EVENT_TYPE)
    assert (summary.status, summary.text.reason) == ("rejected", "Too few visits.")
    assert (summary.audience.response_ids, summary.audience.segment) == (("r-1",), None)
    again = await move(client, headers, issue["issue_id"], "prioritise")
    assert again.status_code == 409
    assert again.json()["issue_status"] == "rejected"


async def test_transitions_need_the_current_version(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    issue = await create(client, headers, title="t", source="theme", theme="price", cost=1)
    url = f"/v1/issues/{issue['issue_id']}/prioritise"
    missing = await client.post(url, headers=headers)
    assert (missing.status_code, missing.headers["content-type"]) == (428, PROBLEM)
    assert (await client.post(url, headers=headers | {"If-Match": '"1"'})).status_code == 200
    stale = await client.post(
        f"/v1/issues/{issue['issue_id']}/start", headers=headers | {"If-Match": '"1"'}
    )
    assert (stale.status_code, stale.headers["ETag"]) == (412, '"2"')
    skipped = await move(client, headers, issue["issue_id"], "done", {
        "locale": "en", "texts": {"en": {"title": "t", "summary": "s"}}})  # fmt: skip
    assert skipped.status_code == 409


async def test_the_list_puts_the_biggest_gain_per_cost_first(
    scoring_app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await scored(scoring_app, tenant)
    dear = await create(client, headers, title="dear", source="theme", theme=THEME, cost=30)
    unknown = await create(client, headers, title="unknown", source="theme", theme="x", cost=1)
    cheap = await create(client, headers, title="cheap", source="theme", theme=THEME, cost=2)
    listed = (await client.get("/v1/issues", headers=headers)).json()
    assert [i["title"] for i in listed["issues"]] == ["cheap", "dear", "unknown"]
    assert listed["issues"][0]["impact_per_cost"] == {
        "value": 15.0,
        "ci_low": -5.26,
        "ci_high": 32.95,
    }
    assert listed["total"] == 3
    await move(client, headers, cheap["issue_id"], "prioritise")
    only = (await client.get("/v1/issues", params={"status": "proposed"}, headers=headers)).json()
    assert [i["issue_id"] for i in only["issues"]] == [dear["issue_id"], unknown["issue_id"]]


async def test_scoring_unreachable_leaves_the_impact_unknown_never_a_500(
    scoring_down: FastAPI, tenant: str, headers: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=scoring_down)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        issue = await create(client, headers, title="t", source="theme", theme=THEME, cost=1)
        assert issue["impact"] is None
        assert issue["estimate"]["status"] == "unavailable"
        again = await client.post(f"/v1/issues/{issue['issue_id']}/estimate", headers=headers)
        assert (again.status_code, again.headers["content-type"]) == (503, PROBLEM)


async def test_another_tenant_s_cases_and_issues_are_not_found(
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    issue = await create(client, headers, title="t", source="theme", theme="price", cost=1)
    stranger = bearer("it-orch-stranger", "read", "cases:write", subject="x")
    assert (
        await client.get(f"/v1/issues/{issue['issue_id']}", headers=stranger)
    ).status_code == 404
    unknown = await client.post("/v1/issues", headers=headers, json={
        "title": "t", "source": "cases", "cost": 1,
        "case_ids": ["00000000-0000-0000-0000-000000000001"]})  # fmt: skip
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "urn:closeloop:problem:unknown-cases"
    zero = await client.post("/v1/issues", headers=headers,
                             json={"title": "t", "source": "theme", "theme": "x", "cost": 0})  # fmt: skip
    assert zero.status_code == 422


async def test_an_issue_from_a_theme_links_the_cases_and_customers_who_raised_it(
    app: FastAPI,
    scoring_app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
) -> None:
    await scored(scoring_app, tenant)
    # The orchestrator has cases for two of the four who complained about the service (s-0 and
    # s-1 detractors; s-2 a detractor and s-4 a passive without a case here), and one for s-3,
    # who wrote about the delivery.
    await feed(app, tenant, answer("s-0", account_id="acme"), answer("s-1"), answer("s-3"))
    issue = await create(client, headers, title="Service", source="theme", theme=THEME, cost=2)
    assert issue["theme_search"] == {"status": "found", "responses": 4, "truncated": False}
    assert issue["theme_responses"] == 4
    assert [c["response_id"] for c in issue["cases"]] == ["s-0", "s-1"]
    assert (issue["customers"], issue["accounts"]) == (["cust-s-0", "cust-s-1"], ["acme"])

    # A case linked by hand joins them; the decision reaches every respondent of the theme.
    ids = await case_ids(client, headers)
    linked = await client.post(
        f"/v1/issues/{issue['issue_id']}/cases", json={"add": [ids["s-3"]]}, headers=headers
    )
    assert linked.status_code == 200, linked.text
    assert [c["response_id"] for c in linked.json()["cases"]] == ["s-0", "s-1", "s-3"]
    for name in ("prioritise", "start"):
        assert (await move(client, headers, issue["issue_id"], name)).status_code == 200
    done = await move(client, headers, issue["issue_id"], "done", {
        "locale": "pl", "texts": {"pl": {"title": "Obsługa", "summary": "Więcej konsultantów."}}})  # fmt: skip
    assert done.status_code == 200, done.text
    (summary,) = await emitted(app, tenant, ChangeSummaryV1.EVENT_TYPE)
    assert summary.audience.response_ids == ("s-0", "s-1", "s-2", "s-3", "s-4")


async def test_asking_scoring_again_finds_the_theme_s_new_responses(
    app: FastAPI,
    scoring_app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
) -> None:
    await feed(app, tenant, answer("s-0"))
    issue = await create(client, headers, title="Service", source="theme", theme=THEME, cost=2)
    assert (issue["theme_search"]["responses"], issue["cases"]) == (0, [])
    await scored(scoring_app, tenant)
    again = await client.post(f"/v1/issues/{issue['issue_id']}/estimate", headers=headers)
    assert again.status_code == 200, again.text
    body = again.json()
    assert (body["theme_search"]["responses"], body["theme_responses"]) == (4, 4)
    assert [c["response_id"] for c in body["cases"]] == ["s-0"]
    assert body["history"][-1]["details"]["cases"] == 1


async def test_an_open_issue_is_edited_with_its_version_and_a_decided_one_is_not(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    issue = await create(
        client, headers, title="Pricing", source="theme", theme="price", cost=3,
        owner={"id": "anna", "name": "Anna"},
    )  # fmt: skip
    url = f"/v1/issues/{issue['issue_id']}"
    change = {"title": "Pricing is unclear", "cost": 4.5, "owner": None}
    assert (await client.patch(url, json=change, headers=headers)).status_code == 428
    edited = await client.patch(url, json=change, headers=headers | {"If-Match": '"1"'})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["title"], body["cost"], body["owner"], body["version"]) == (
        "Pricing is unclear", 4.5, None, 2,
    )  # fmt: skip
    assert body["impact_per_cost"] is None  # no impact known: nothing to divide
    assert body["history"][-1]["details"] == {"fields": ["cost", "owner", "title"]}
    stale = await client.patch(url, json={"title": "x"}, headers=headers | {"If-Match": '"1"'})
    assert (stale.status_code, stale.headers["ETag"]) == (412, '"2"')
    for bad in ({}, {"title": None}, {"cost": 0}, {"status": "done"}):
        refused = await client.patch(url, json=bad, headers=headers | {"If-Match": '"2"'})
        assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM), bad

    rejected = await move(client, headers, issue["issue_id"], "reject", {
        "locale": "en", "texts": {"en": {"title": "t", "reason": "r"}}, "reason": "r"})  # fmt: skip
    assert rejected.status_code == 200, rejected.text
    late = await client.patch(url, json={"title": "y"}, headers=headers | {"If-Match": '"3"'})
    assert late.status_code == 409
    await feed(app, tenant, answer("r-9"))
    ids = await case_ids(client, headers)
    relink = await client.post(f"{url}/cases", json={"add": [ids["r-9"]]}, headers=headers)
    assert relink.status_code == 409


async def test_cases_are_linked_and_unlinked_and_unknown_ones_refused(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await feed(app, tenant, answer("r-1"), answer("r-2"))
    ids = await case_ids(client, headers)
    issue = await create(client, headers, title="t", source="cases", cost=1,
                         case_ids=[ids["r-1"]])  # fmt: skip
    url = f"/v1/issues/{issue['issue_id']}/cases"
    moved = await client.post(url, json={"add": [ids["r-2"]], "remove": [ids["r-1"]]},
                              headers=headers)  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert [c["response_id"] for c in moved.json()["cases"]] == ["r-2"]
    assert moved.json()["history"][-1]["details"] == {"added": 1, "removed": 1}
    unknown = await client.post(
        url, json={"add": ["7c1a3b0e-0000-4000-8000-000000000000"]}, headers=headers
    )
    assert (unknown.status_code, unknown.json()["type"]) == (
        422,
        "urn:closeloop:problem:unknown-cases",
    )
    assert (await client.post(url, json={}, headers=headers)).status_code == 422
