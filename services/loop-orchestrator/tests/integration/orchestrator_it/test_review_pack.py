"""An account's quarterly review pack over HTTP against the real PostgreSQL, with scoring's real
app answering (its responses and invitations fed through its own batch handler, asked with the
caller's token): known NPS against the previous quarter, the monthly trend, the response rate,
the top drivers and the revenue weight from scoring; cases, first contacts, actions and issues
from the orchestrator; the same pack as a page in Polish and English with hostile text escaped;
an account without data; scoring down; and a health answer in the shape scoring gives it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.events import (
    Customer,
    InvitationSentV1,
    ResponseReceivedV1,
    categorize,
)
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app

from .support import NOW, H, answer, command, feed, feed_scoring, put_setup, runtime_of, team

ACCOUNT = "acme"
REVIEW = f"/v1/accounts/{ACCOUNT}/review"
HOSTILE = "<script>alert('x')</script> {{ 7*7 }}"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; {{ 7*7 }}"
# This quarter (2026-Q4): ten answers on 5 November, NPS -20 (3 promoters, 2 passives,
# 5 detractors), three detractors mention customer service; twenty invitations.
THIS_QUARTER: list[tuple[int, str | None]] = [
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
# The previous quarter: five answers on 14 August, NPS 40 (3 promoters, 1 passive, 1 detractor).
PREVIOUS_QUARTER = [10, 9, 9, 8, 3]
ORGANISATION: dict[str, Any] = {
    "teams": [team("support", [("anna", ["pl"])], lead="anna")],
    "key_accounts": [ACCOUNT],
}
RULES = {"defaults": {"assignment": ["round_robin"], "team_id": "support"}}


class HealthFromScoring(httpx.AsyncBaseTransport):
    """Scoring's real app, with its account health answered as `health` says (the route is
    being built in scoring; its shape is `{"state", "reasons": [{"code", "text"}], ...}`)."""

    def __init__(self, scoring: FastAPI, health: dict[str, Any]) -> None:
        self._scoring = httpx.ASGITransport(app=scoring)
        self._health = health

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/health"):
            return httpx.Response(200, json=self._health)
        return await self._scoring.handle_async_request(request)


def orchestrator(clock: FixedClock, scoring: httpx.AsyncClient | None = None, **kw: Any) -> FastAPI:
    settings = OrchestratorSettings(orchestrator_review_time_zone="Europe/Warsaw", **kw)
    return create_orchestrator_app(settings, clock=clock, scoring_http=scoring)


@pytest.fixture(scope="module")
async def app(
    infra: dict[str, str], clock: FixedClock, scoring_app: FastAPI
) -> AsyncIterator[FastAPI]:
    """The orchestrator asking the real scoring app (in process)."""
    transport = httpx.ASGITransport(app=scoring_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as scoring:
        app = orchestrator(clock, scoring)
        yield app
        await runtime_of(app).engine.dispose()
        await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def scoring(scoring_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of scoring itself, to set weights and to ask what it answers."""
    transport = httpx.ASGITransport(app=scoring_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
        yield client


async def scored(scoring_app: FastAPI, tenant: str) -> None:
    """Scoring counts both quarters' answers and this quarter's invitations (one batch)."""
    this, before = NOW - timedelta(days=5), datetime(2026, 8, 14, 10, 0, tzinfo=UTC)
    answers = [(f"q4-{i}", score, comment, this) for i, (score, comment) in enumerate(THIS_QUARTER)]
    answers += [(f"q3-{i}", score, None, before) for i, score in enumerate(PREVIOUS_QUARTER)]
    items: list[Any] = [
        ResponseReceivedV1(
            response_id=response_id,
            survey_id="relationship",
            customer=Customer(id=f"c-{response_id}"),
            account_id=ACCOUNT,
            score=score,
            category=categorize(score),
            comment=comment,
            answered_at=at,
            received_at=at + timedelta(seconds=1),
            source="api",
        )
        for response_id, score, comment, at in answers
    ]
    items += [
        InvitationSentV1(
            invitation_id=f"inv-{i}",
            survey_id="relationship",
            customer=Customer(id=f"c-inv-{i}"),
            account_id=ACCOUNT,
            channel="email",
            invited_at=this - timedelta(days=1),
        )
        for i in range(20)
    ]
    await feed_scoring(scoring_app, tenant, items)


async def cases_worked(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> dict[str, str]:
    """Four cases of the key account opened now (24 h to first contact): r-1 reached after 2 h,
    r-2 after 10 h then resolved and closed, r-3 reached after 30 h (late), r-4 never."""
    await put_setup(client, headers, organisation=ORGANISATION, rules=RULES)
    await feed(app, tenant, *[answer(f"r-{i}", score=score, account_id=ACCOUNT)
                              for i, score in ((1, 2), (2, 3), (3, 7), (4, 10))])  # fmt: skip
    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    ids = {c["response_id"]: c["case_id"] for c in listed}
    assert {c["first_contact_due_at"] for c in listed} == {"2026-11-11T09:00:00Z"}
    for response_id, hours in (("r-1", 2), ("r-2", 10), ("r-3", 30)):
        clock.set(NOW + hours * H)
        steps = [("claim", {"owner_id": "anna"}),
                 ("contacts", {"channel": "phone", "outcome": "reached", "note": "Talked."})]  # fmt: skip
        if response_id == "r-2":
            steps += [("resolve", {"outcome": "solved", "note": "Fixed."}),
                      ("close", {"note": "Thanked."})]  # fmt: skip
        for name, body in steps:
            done = await command(client, headers, ids[response_id], name, body)
            assert done.status_code == 200, done.text
    return ids


async def act(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    clock: FixedClock,
    at: datetime,
    title: str,
    *moves: dict[str, Any],
    **body: Any,
) -> str:
    """Agree an action at `at`, then make each move (a PATCH body) a day later than the last."""
    clock.set(at)
    made = await client.post(f"/v1/accounts/{ACCOUNT}/actions", json={"title": title} | body,
                             headers=headers)  # fmt: skip
    assert made.status_code == 201, made.text
    action_id: str = made.json()["action_id"]
    etag = made.headers["ETag"]
    for move in moves:
        clock.advance(24 * H)
        moved = await client.patch(f"/v1/accounts/{ACCOUNT}/actions/{action_id}", json=move,
                                   headers=headers | {"If-Match": etag})  # fmt: skip
        assert moved.status_code == 200, moved.text
        etag = moved.headers["ETag"]
    return action_id


async def actions_agreed(
    client: httpx.AsyncClient, headers: dict[str, str], clock: FixedClock
) -> None:
    """Five actions: one done last quarter (not in this review), one started last quarter and
    still in progress, one agreed now and overdue (hostile title), one dropped this quarter, and
    one agreed next quarter (not in this review)."""
    summer, autumn = (
        datetime(2026, 8, 20, 8, 0, tzinfo=UTC),
        datetime(2026, 10, 5, 8, 0, tzinfo=UTC),
    )
    await act(client, headers, clock, summer, "Finished in summer",
              {"status": "in_progress"}, {"status": "done"})  # fmt: skip
    await act(client, headers, clock, summer, "Training for the buyers",
              {"status": "in_progress", "note": "Two of four sessions held."},
              owner={"id": "anna", "name": "Anna Nowak"})  # fmt: skip
    await act(client, headers, clock, autumn, HOSTILE, due_on="2026-11-01",
              owner={"id": "x", "name": HOSTILE})  # fmt: skip
    # An hour later: actions are listed by when they were agreed (ties by their random id).
    await act(client, headers, clock, autumn + H, "Price review",
              {"status": "dropped", "note": "Contract renewed as it was."})  # fmt: skip
    await act(client, headers, clock, datetime(2027, 1, 5, 8, 0, tzinfo=UTC), "Next year")


async def issues_opened(client: httpx.AsyncClient, headers: dict[str, str], clock: FixedClock,
                        ids: dict[str, str]) -> str:  # fmt: skip
    """An issue of r-1 and r-2 opened now (in the review); one of r-3 rejected in summer (not)."""
    clock.set(datetime(2026, 8, 1, 8, 0, tzinfo=UTC))
    old = await client.post("/v1/issues", headers=headers, json={
        "title": "Old", "source": "cases", "case_ids": [ids["r-3"]], "cost": 1})  # fmt: skip
    rejected = await client.post(
        f"/v1/issues/{old.json()['issue_id']}/reject",
        json={"locale": "en", "texts": {"en": {"title": "Old", "reason": "No."}}, "reason": "No."},
        headers=headers | {"If-Match": '"1"'},
    )
    assert rejected.status_code == 200, rejected.text
    clock.set(NOW + 40 * H)
    made = await client.post("/v1/issues", headers=headers, json={
        "title": "Hotline <i>waits</i>", "source": "cases", "case_ids": [ids["r-1"], ids["r-2"]],
        "cost": 5})  # fmt: skip
    assert made.status_code == 201, made.text
    issue_id: str = made.json()["issue_id"]
    return issue_id


@pytest.fixture
async def account_with_data(
    app: FastAPI,
    scoring_app: FastAPI,
    scoring: httpx.AsyncClient,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> str:
    """Everything of the account in place, the clock at 12 November 11:00 (Q4, 50 h after the
    cases opened); the structural issue's id."""
    await scored(scoring_app, tenant)
    weight = await scoring.put(f"/v1/accounts/{ACCOUNT}/weight", json={"revenue_weight": 1250000},
                               headers=headers)  # fmt: skip
    assert weight.status_code == 200, weight.text
    ids = await cases_worked(app, client, tenant, headers, clock)
    await actions_agreed(client, headers, clock)
    issue_id = await issues_opened(client, headers, clock, ids)
    clock.set(NOW + 50 * H)
    return issue_id


async def scoring_s_health(scoring: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    """What scoring itself answers about the account's health (None: it has no such route)."""
    found = await scoring.get(f"/v1/accounts/{ACCOUNT}/health",
                              params={"from": "2026-10-01", "to": "2027-01-01"}, headers=headers)  # fmt: skip
    if found.status_code == 404:
        return None
    assert found.status_code == 200, found.text
    body = found.json()
    body.pop("tenant_id", None)
    return body


async def test_the_pack_of_an_account_with_data_has_known_figures(
    account_with_data: str,
    client: httpx.AsyncClient,
    scoring: httpx.AsyncClient,
    headers: dict[str, str],
) -> None:
    answered = await client.get(REVIEW, params={"quarter": "2026-Q4"}, headers=headers)
    assert answered.status_code == 200, answered.text
    pack = answered.json()

    assert pack["account"] == {"id": ACCOUNT, "revenue_weight": 1250000.0, "key_account": True}
    assert pack["quarter"] == {
        "name": "2026-Q4", "from": "2026-10-01", "to": "2027-01-01", "time_zone": "Europe/Warsaw",
        "previous": {"name": "2026-Q3", "from": "2026-07-01", "to": "2026-10-01"},
    }  # fmt: skip
    assert pack["generated_at"] == "2026-11-12T11:00:00Z"

    nps = pack["nps"]
    current, previous = nps["current"], nps["previous"]
    assert (current["n"], current["promoters"], current["passives"], current["detractors"],
            current["nps"]) == (10, 3, 2, 5, -20.0)  # fmt: skip
    assert (previous["n"], previous["nps"]) == (5, 40.0)
    # Scoring compares the adjusted-Wald centres: 100 (3.75 - 5.75) / 13 - 100 (3.75 - 1.75) / 8.
    assert nps["comparison"]["difference"] == -40.38
    asked = {"account": ACCOUNT, "from": "2026-10-01", "to": "2027-01-01",
             "baseline_from": "2026-07-01", "baseline_to": "2026-10-01"}  # fmt: skip
    compared = (await scoring.get("/v1/nps/compare", params=asked, headers=headers)).json()
    assert nps["comparison"] == compared["comparison"]
    # The interval is scoring's own for the account and quarter.
    own = (await scoring.get(f"/v1/accounts/{ACCOUNT}/nps", params={"quarter": "2026-Q4"},
                             headers=headers)).json()  # fmt: skip
    assert (current["ci_low"], current["ci_high"], current["insufficient"]) == (
        own["ci_low"], own["ci_high"], True)  # fmt: skip
    assert current["ci_low"] < -20.0 < current["ci_high"]

    trend = pack["trend"]
    assert (trend["granularity"], trend["from"], trend["to"]) == (
        "month",
        "2026-01-01",
        "2027-01-01",
    )
    assert [p["month"] for p in trend["points"]] == [f"2026-{m:02}" for m in range(1, 13)]
    answered_months = {p["month"]: (p["n"], p["nps"]) for p in trend["points"] if p["n"]}
    assert answered_months == {"2026-08": (5, 40.0), "2026-11": (10, -20.0)}
    november = trend["points"][10]
    assert (november["ci_low"], november["ci_high"]) == (current["ci_low"], current["ci_high"])
    assert trend["points"][0]["nps"] is None

    assert pack["response_rate"] == {"invitations": 20, "answers": 10, "rate": 0.5}
    drivers = pack["drivers"]
    assert 1 <= len(drivers) <= 5
    assert (drivers[0]["theme"], drivers[0]["source"], drivers[0]["nps_impact"]) == (
        "customer service", "comment", 30.0)  # fmt: skip
    assert drivers[0]["mentions"] == {"promoters": 1, "passives": 1, "detractors": 3}

    health = await scoring_s_health(scoring, headers)
    assert pack["health"] == health
    assert pack["unavailable"] == ([] if health is not None else ["health"])

    assert pack["cases"] == {
        "opened": {"total": 4, "promoter": 1, "passive": 1, "detractor": 2, "no_response": 0},
        "resolved": 1,
        "closed": 1,
        "open_now": 3,
        "first_contact": {
            "contacted": 3, "judged": 4, "within_sla": 2, "within_sla_share": 0.5, "breaches": 2,
            "p50_hours": 10.0, "p90_hours": 26.0,
        },
    }  # fmt: skip

    actions = pack["actions"]
    assert [(a["title"], a["status"], a["overdue"]) for a in actions["items"]] == [
        ("Training for the buyers", "in_progress", False),
        (HOSTILE, "agreed", True),
        ("Price review", "dropped", False),
    ]
    assert (actions["total"], actions["by_status"]) == (
        3, {"agreed": 1, "in_progress": 1, "done": 0, "dropped": 1})  # fmt: skip
    assert actions["items"][0]["note"] == "Two of four sessions held."

    (issue,) = pack["issues"]
    assert (issue["issue_id"], issue["title"], issue["status"], issue["decided_at"],
            issue["account_cases"]) == (account_with_data, "Hotline <i>waits</i>", "proposed",
                                        None, 2)  # fmt: skip


async def test_the_page_in_polish_and_in_english_escapes_what_customers_and_agents_wrote(
    account_with_data: str, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    polish = await client.get(f"{REVIEW}.html", params={"quarter": "2026-Q4", "lang": "pl"},
                              headers=headers | {"Accept-Language": "en"})  # fmt: skip
    assert polish.status_code == 200, polish.text
    assert polish.headers["content-type"] == "text/html; charset=utf-8"
    assert polish.headers["content-language"] == "pl"
    page = polish.text
    for heading in ("Kwartalny przegląd klienta</h1>", "Uzgodnione działania</h2>",
                    "Wskaźnik odpowiedzi</h2>", "Sprawy</h2>", "Problemy systemowe</h2>"):  # fmt: skip
        assert heading in page
    for figure in (">-20,0<", ">40,0<", ">-40,4<", "50,0%", "1\xa0250\xa0000", "26,0", "w toku",
                   "porzucone", "(po terminie)", "customer service"):  # fmt: skip
        assert figure in page
    assert "<script>" not in page
    assert page.count(ESCAPED) == 2  # the action's title and its owner's name
    assert "Hotline &lt;i&gt;waits&lt;/i&gt;" in page
    assert "<svg" in page
    assert "@media print" in page

    english = await client.get(f"{REVIEW}.html", params={"quarter": "2026-Q4"},
                               headers=headers | {"Accept-Language": "en-GB,en;q=0.9,pl;q=0.8"})  # fmt: skip
    assert english.headers["content-language"] == "en"
    page = english.text
    for heading in ("Quarterly account review</h1>", "Agreed actions</h2>", "Response rate</h2>"):
        assert heading in page
    for figure in (">-20.0<", ">-40.4<", "50.0%", "1,250,000", "in progress", "(overdue)"):
        assert figure in page
    assert page.count(ESCAPED) == 2
    assert "<script>" not in page


async def test_an_account_without_data_gets_zeros_and_nulls(
    client: httpx.AsyncClient, scoring: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answered = await client.get("/v1/accounts/nobody/review", params={"quarter": "2026-Q4"},
                                headers=headers)  # fmt: skip
    assert answered.status_code == 200, answered.text
    pack = answered.json()
    assert pack["account"] == {"id": "nobody", "revenue_weight": None, "key_account": False}
    assert (pack["nps"]["current"]["n"], pack["nps"]["current"]["nps"]) == (0, None)
    assert (pack["nps"]["previous"]["n"], pack["nps"]["comparison"]) == (0, None)
    assert len(pack["trend"]["points"]) == 12
    assert {p["n"] for p in pack["trend"]["points"]} == {0}
    assert pack["response_rate"] == {"invitations": 0, "answers": 0, "rate": None}
    assert pack["drivers"] == []
    assert pack["cases"]["opened"]["total"] == 0
    assert pack["cases"]["first_contact"]["p50_hours"] is None
    assert pack["actions"] == {
        "total": 0,
        "by_status": {"agreed": 0, "in_progress": 0, "done": 0, "dropped": 0},
        "items": [],
    }
    assert pack["issues"] == []
    page = await client.get("/v1/accounts/nobody/review.html", params={"quarter": "2026-Q4"},
                            headers=headers)  # fmt: skip
    assert page.status_code == 200
    assert "Quarterly account review</h1>" in page.text


async def test_the_quarter_defaults_to_the_current_local_one_and_a_bad_one_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], clock: FixedClock
) -> None:
    current = (await client.get(REVIEW, headers=headers)).json()["quarter"]["name"]
    assert current == "2026-Q4"
    clock.set(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))  # already 1 January in Warsaw
    assert (await client.get(REVIEW, headers=headers)).json()["quarter"]["name"] == "2027-Q1"
    for bad in ("2026-Q5", "2026-4", "1900-Q4"):
        refused = await client.get(REVIEW, params={"quarter": bad}, headers=headers)
        assert refused.status_code == 422, bad
    wrong_lang = await client.get(f"{REVIEW}.html", params={"lang": "de"}, headers=headers)
    assert wrong_lang.status_code == 422


async def test_the_pack_needs_read_and_scoring_is_asked_with_the_caller_s_token(
    client: httpx.AsyncClient, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    writer = bearer(tenant, "cases:write", subject="agent")
    assert (await client.get(REVIEW, headers=writer)).status_code == 403
    assert (await client.get(REVIEW)).status_code == 401


async def test_scoring_down_leaves_its_sections_null_and_names_them(
    infra: dict[str, str],
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    await cases_worked(app, client, tenant, headers, clock)
    clock.set(NOW + 50 * H)
    down = orchestrator(clock, orchestrator_scoring_url="http://127.0.0.1:9",
                        orchestrator_scoring_timeout_seconds=2)  # fmt: skip
    try:
        transport = httpx.ASGITransport(app=down)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as nowhere:
            answered = await nowhere.get(REVIEW, params={"quarter": "2026-Q4"}, headers=headers)
            assert answered.status_code == 200, answered.text
            pack = answered.json()
            page = await nowhere.get(f"{REVIEW}.html", params={"quarter": "2026-Q4"},
                                     headers=headers)  # fmt: skip
    finally:
        await down.state.scoring.aclose()
        await runtime_of(down).engine.dispose()
        await runtime_of(down).worker_engine.dispose()
    names = ["nps", "trend", "response_rate", "revenue_weight", "drivers", "health"]
    assert pack["unavailable"] == names
    assert all("unreachable" in pack["unavailable_detail"][n] for n in names)
    assert [pack[n] for n in ("nps", "trend", "response_rate", "drivers", "health")] == [None] * 5
    assert pack["account"] == {"id": ACCOUNT, "revenue_weight": None, "key_account": True}
    assert pack["cases"]["opened"]["total"] == 4
    assert pack["cases"]["first_contact"]["p50_hours"] == 10.0
    assert page.status_code == 200
    assert page.text.count("Not available: scoring did not answer.") == 5


@pytest.mark.parametrize(
    ("health", "expected", "unavailable"),
    [
        (
            {"tenant_id": "t", "account_id": ACCOUNT, "state": "at_risk",
             "reasons": [{"code": "nps_dropped", "text": HOSTILE, "points": -60}]},
            {"account_id": ACCOUNT, "state": "at_risk",
             "reasons": [{"code": "nps_dropped", "text": HOSTILE, "points": -60}]},
            [],
        ),
        ({"state": "thriving", "reasons": []}, None, ["health"]),
        ({"state": "safe"}, None, ["health"]),
    ],
)  # fmt: skip
async def test_scoring_s_health_is_shown_as_it_says_never_made_up(
    infra: dict[str, str],
    scoring_app: FastAPI,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
    health: dict[str, Any],
    expected: dict[str, Any] | None,
    unavailable: list[str],
) -> None:
    async with httpx.AsyncClient(transport=HealthFromScoring(scoring_app, health),
                                 base_url="http://scoring") as scoring:  # fmt: skip
        app = orchestrator(clock, scoring)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                pack = (await client.get(REVIEW, headers=headers)).json()
                page = await client.get(f"{REVIEW}.html", params={"lang": "pl"}, headers=headers)
        finally:
            await runtime_of(app).engine.dispose()
            await runtime_of(app).worker_engine.dispose()
    assert pack["health"] == expected
    assert pack["unavailable"] == unavailable
    if expected is not None:
        assert "zagrożony" in page.text
        assert ESCAPED in page.text
        assert "<script>" not in page.text
    else:
        assert "not understood" in pack["unavailable_detail"]["health"]
