"""The loop's impact over HTTP against the real PostgreSQL, on a seeded data set with known
answers, and scoring's real app (in process) answering the done issues' NPS before and after.

The data set (`SEEDS`), opened 20 days before now unless said otherwise; first-contact deadlines
24 h (high), 48 h (normal) and 72 h (low) after opening; re-survey invitations 10 days after:

- closed loops (reached and resolved or closed): 11 cases; 10 re-surveyed (c11's only invitation
  came before its case), 8 answered (c8's answer has no copy: no score change), score changes
  3, 5, 2, 4, 6, 1, 3; c1 has a second, later invitation (only the first counts);
- not closed: 12 cases (reached but not resolved, never reached, resolved as unreachable); 10
  re-surveyed (n11's invitation is after now, n12 has none), 3 answered, changes 0, -1, 2 (n5's
  first invitation went unanswered: its later answer does not count);
- left out of the loop: a fresh case (p1: not reached, deadline ahead), a lack-of-response case
  (nr1: in the SLA figures only) and a case opened 100 days ago (old1: outside the window).

Expected figures were computed apart (mpmath, 30 digits): 8/10 against 3/10 answered, z 2.2473,
p 0.024619; Welch t 2.8261 with 4.33 df, p 0.043359; first contacts within SLA 11 of 24; delays
(hours) 0.5 1 2 3 4 5 10 12 20 30 40 50 60 80 200, so p50 12, p75 45, p90 72, p95 116 (linear
interpolation between closest ranks). Scoring: region PL answered 3/2/5 (NPS -20) in the 90
days before the issue's decision and 8/1/1 (NPS 70) after; the decision day's answers and
another region's are on neither side."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import REGISTRY

from closeloop_common.db import transaction
from closeloop_common.events import Customer, ResponseReceivedV1, Segments, categorize
from closeloop_orchestrator.adapters import tables
from closeloop_orchestrator.service_layer.impact_gauges import recount_gauges

from .support import NOW, PROBLEM, feed_scoring, new_tenant, runtime_of

H = timedelta(hours=1)
D = timedelta(days=1)
DUE_HOURS = {"high": 24, "normal": 48, "low": 72}
NO_COPY = "no copy"
# (after the case's opening, the answer's score | None: unanswered | NO_COPY)
Invitation = tuple[timedelta, int | str | None]
DECIDED = NOW - 30 * D  # 2026-10-11 09:00 UTC, 11:00 in Warsaw
FAR = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)  # the gauges' test: nothing else is near it


@dataclass(frozen=True)
class Seed:
    key: str
    score: int | None
    priority: str
    status: str
    reached_hours: float | None
    invitations: Sequence[Invitation]
    opened_before_now: timedelta = 20 * D
    case_type: str | None = None  # None: the score's category


SEEDS = (
    Seed("c1", 2, "high", "closed", 0.5, [(10 * D, 5), (15 * D, None)]),
    Seed("c2", 3, "high", "closed", 1, [(10 * D, 8)]),
    Seed("c3", 4, "high", "resolved", 2, [(10 * D, 6)]),
    Seed("c4", 1, "high", "closed", 5, [(10 * D, 5)]),
    Seed("c5", 0, "normal", "closed", 10, [(10 * D, 6)]),
    Seed("c6", 6, "normal", "closed", 20, [(10 * D, 7)]),
    Seed("c7", 7, "normal", "closed", 30, [(10 * D, 10)]),
    Seed("c8", 5, "normal", "closed", 50, [(10 * D, NO_COPY)]),
    Seed("c9", 2, "normal", "closed", 60, [(10 * D, None)]),
    Seed("c10", 3, "low", "closed", 80, [(10 * D, None)]),
    Seed("c11", 4, "low", "closed", 3, [(-D, 9)]),
    Seed("n1", 2, "high", "contacted", 4, [(10 * D, 2)]),
    Seed("n2", 3, "normal", "contacted", 40, [(10 * D, 2)]),
    Seed("n3", 1, "normal", "open", None, [(10 * D, 3)]),
    Seed("n4", 5, "normal", "resolved", None, [(10 * D, None)]),
    Seed("n5", 0, "normal", "open", None, [(10 * D, None), (12 * D, 9)]),
    Seed("n6", 6, "normal", "in_progress", None, [(10 * D, None)]),
    Seed("n7", 4, "normal", "contacted", 200, [(10 * D, None)]),
    Seed("n8", 2, "normal", "open", None, [(10 * D, None)]),
    Seed("n9", 3, "normal", "open", None, [(10 * D, None)]),
    Seed("n10", 4, "normal", "open", None, [(10 * D, None)]),
    Seed("n11", 5, "normal", "open", None, [(21 * D, None)]),
    Seed("n12", 6, "normal", "open", None, []),
    Seed("p1", 1, "normal", "open", None, [(H, 9)], opened_before_now=2 * H),
    Seed("nr1", None, "normal", "closed", 12, [(10 * D, 9)], case_type="no_response"),
    Seed("old1", 2, "normal", "closed", 1, [(10 * D, 9)], opened_before_now=100 * D),
)


@pytest.fixture(scope="module")
def app(app_with_scoring: FastAPI) -> FastAPI:
    return app_with_scoring


async def _erase(app: FastAPI, tenant: str) -> None:
    async with transaction(runtime_of(app).sessions) as session:
        for table in (tables.invitations, tables.cases, tables.responses, tables.structural_issues):
            await session.execute(sa.delete(table).where(table.c.tenant_id == tenant))


@pytest.fixture(autouse=True)
async def _invitations_erased(app: FastAPI, tenant: str) -> AsyncIterator[None]:
    yield
    await _erase(app, tenant)


@pytest.fixture
async def other_tenant(app: FastAPI) -> AsyncIterator[str]:
    other = new_tenant()
    yield other
    await _erase(app, other)


def _answer(response_id: str, customer: str, score: int, at: datetime) -> dict[str, Any]:
    return ResponseReceivedV1(
        response_id=response_id,
        survey_id="relationship-2026",
        customer=Customer(id=customer),
        score=score,
        category=categorize(score),
        answered_at=at,
        received_at=at,
        source="api",
    ).model_dump(mode="json")


async def seed(
    app: FastAPI, tenant: str, *, now: datetime = NOW, seeds: Sequence[Seed] = SEEDS
) -> None:
    """The cases of `seeds`, their customers' invitations and the answers' copies."""
    case_rows, invitation_rows, response_rows = [], [], []
    for s in seeds:
        opened = now - s.opened_before_now
        reached = None if s.reached_hours is None else opened + s.reached_hours * H
        settled = s.status in ("resolved", "closed")
        customer = f"cust-{s.key}"
        case_rows.append({
            "tenant_id": tenant, "case_id": uuid.uuid4(), "response_id": f"r-{s.key}",
            "survey_id": "relationship-2026", "customer_id": customer,
            "customer": {"id": customer}, "segments": {}, "score": s.score,
            "category": None if s.score is None else categorize(s.score).value,
            "case_type": s.case_type or categorize(s.score or 0).value,
            "invitation_id": f"i-{s.key}-0" if s.case_type == "no_response" else None,
            "playbook": "apology_callback", "priority": s.priority, "channel": "phone",
            "business_hours": False, "owner_id": None if s.status == "open" else "agent-ola",
            "key_account": False, "status": s.status, "version": 3, "opened_at": opened,
            "updated_at": opened, "first_contact_due_at": opened + DUE_HOURS[s.priority] * H,
            "first_contacted_at": reached, "contact_attempts": 0 if reached is None else 1,
            "resolved_at": opened + 300 * H if settled else None,
            "resolution": ("solved" if reached else "customer_unreachable") if settled else None,
            "closed_at": opened + 301 * H if s.status == "closed" else None,
            "root_causes": [], "first_contact_round": 1, "resolution_round": 1,
        })  # fmt: skip
        for i, (after, answer) in enumerate(s.invitations):
            invited = opened + after
            answered = None if answer is None else invited + D
            response_id = None if answer is None else f"re-{s.key}-{i}"
            invitation_rows.append({
                "tenant_id": tenant, "invitation_id": f"inv-{s.key}-{i}",
                "survey_id": "follow-up", "customer_id": customer, "customer": {"id": customer},
                "channel": "email", "attributes": {}, "invited_at": invited,
                "answered_at": answered, "response_id": response_id,
            })  # fmt: skip
            if isinstance(answer, int) and answered is not None and response_id is not None:
                response_rows.append({
                    "tenant_id": tenant, "response_id": response_id, "version": 1,
                    "answered_at": answered,
                    "body": _answer(response_id, customer, answer, answered),
                })  # fmt: skip
    async with transaction(runtime_of(app).sessions) as session:
        await session.execute(sa.insert(tables.cases), case_rows)
        if invitation_rows:
            await session.execute(sa.insert(tables.invitations), invitation_rows)
        if response_rows:
            await session.execute(sa.insert(tables.responses), response_rows)


async def done_issue(
    app: FastAPI, tenant: str, title: str, decided_at: datetime, *, status: str = "done"
) -> str:
    issue_id = uuid.uuid4()
    async with transaction(runtime_of(app).sessions) as session:
        await session.execute(
            sa.insert(tables.structural_issues).values(
                tenant_id=tenant, issue_id=issue_id, title=title, source="cases",
                filters={"region": "PL"}, status=status,
                reason="not now" if status == "rejected" else None, cost=1,
                cost_unit="person-days", notify_segment=False, version=4,
                created_by="agent-ola", created_at=decided_at - 10 * D, updated_by="agent-ola",
                updated_at=decided_at, decided_at=decided_at,
            )
        )  # fmt: skip
    return str(issue_id)


async def scored(scoring_app: FastAPI, tenant: str) -> None:
    """Region PL: 3 promoters, 2 passives, 5 detractors 21 days before the decision; 4
    detractors on its day; 8/1/1 14 days after. Region DE: 5 detractors after."""
    before, on, after = DECIDED - 21 * D, DECIDED + 3 * H, DECIDED + 14 * D
    plan = (
        [(10, before, "PL")] * 3 + [(8, before, "PL")] * 2 + [(3, before, "PL")] * 5
        + [(0, on, "PL")] * 4
        + [(9, after, "PL")] * 8 + [(7, after, "PL")] + [(2, after, "PL")]
        + [(1, after, "DE")] * 5
    )  # fmt: skip
    await feed_scoring(
        scoring_app,
        tenant,
        [
            ResponseReceivedV1(
                response_id=f"s-{i}",
                survey_id="relationship",
                customer=Customer(id=f"sc-{i}"),
                score=score,
                category=categorize(score),
                answered_at=at,
                received_at=at,
                segments=Segments(region=region),
                source="api",
            )
            for i, (score, at, region) in enumerate(plan)
        ],
    )


def share(cases: int, within: int, value: float | None, low: float | None, high: float | None
          ) -> dict[str, Any]:  # fmt: skip
    return {"cases": cases, "within": within, "share": value, "ci_low": low, "ci_high": high}


NOTHING = share(0, 0, None, None, None)

EXPECTED_LOOP = {
    "closed": {
        "cases": 11,
        "resurvey": {"invited": 10, "responded": 8, "response_rate": 0.8,
                     "ci_low": 0.4902, "ci_high": 0.9433},
        "score_change": {"n": 7, "mean": 3.429, "standard_deviation": 1.718,
                         "ci_low": 1.839, "ci_high": 5.018},
    },
    "not_closed": {
        "cases": 12,
        "resurvey": {"invited": 10, "responded": 3, "response_rate": 0.3,
                     "ci_low": 0.1078, "ci_high": 0.6032},
        "score_change": {"n": 3, "mean": 0.333, "standard_deviation": 1.528,
                         "ci_low": -3.461, "ci_high": 4.128},
    },
    "difference": {
        "response_rate": {"value": 0.5, "ci_low": 0.0665, "ci_high": 0.7398, "z": 2.2473,
                          "p_value": 0.024619, "significant": True},
        "score_change": {"value": 3.095, "ci_low": 0.144, "ci_high": 6.046,
                         "standard_error": 1.0952, "t": 2.8261, "df": 4.33,
                         "p_value": 0.043359, "significant": True},
    },
}  # fmt: skip

EXPECTED_FIRST_CONTACT = {
    "within_sla": share(24, 11, 0.4583, 0.2789, 0.6493),
    "by_priority": {
        "low": share(2, 1, 0.5, 0.0945, 0.9055),
        "normal": share(17, 5, 0.2941, 0.1328, 0.5313),
        "high": share(5, 5, 1.0, 0.5655, 1.0),
        "urgent": NOTHING,
    },
    "by_case_type": {
        "promoter": NOTHING,
        "passive": share(1, 1, 1.0, 0.2065, 1.0),
        "detractor": share(22, 9, 0.4091, 0.2326, 0.6127),
        "no_response": share(1, 1, 1.0, 0.2065, 1.0),
    },
    "time_to_first_contact": {
        "count": 15,
        "p50_hours": 12.0,
        "p75_hours": 45.0,
        "p90_hours": 72.0,
        "p95_hours": 116.0,
        "histogram": [
            {"from_hours": 0, "to_hours": 1, "count": 2},
            {"from_hours": 1, "to_hours": 6, "count": 4},
            {"from_hours": 6, "to_hours": 24, "count": 3},
            {"from_hours": 24, "to_hours": 48, "count": 2},
            {"from_hours": 48, "to_hours": 72, "count": 2},
            {"from_hours": 72, "to_hours": 168, "count": 1},
            {"from_hours": 168, "to_hours": None, "count": 1},
        ],
    },
}


async def test_the_seeded_data_set_gives_the_known_figures(
    app: FastAPI,
    scoring_app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
) -> None:
    await seed(app, tenant)
    await scored(scoring_app, tenant)
    delivered = await done_issue(app, tenant, "Faster deliveries", DECIDED)
    today = await done_issue(app, tenant, "A call-back rota", NOW - 2 * H)
    await done_issue(app, tenant, "Before the window", NOW - 120 * D)
    await done_issue(app, tenant, "Rejected", NOW - 3 * D, status="rejected")

    found = await client.get("/v1/loop/impact", headers=headers)

    assert found.status_code == 200, found.text
    body = found.json()
    assert body["tenant_id"] == tenant
    assert body["window"] == {"from": "2026-08-13", "to": "2026-11-11", "time_zone": "UTC"}
    assert (body["confidence"], body["filters"]) == (0.95, {"survey_id": None, "case_type": None})
    assert body["loop"] == EXPECTED_LOOP
    assert body["first_contact"] == EXPECTED_FIRST_CONTACT
    # Latest decision first; the one decided today has no day after it yet.
    assert [i["issue_id"] for i in body["issues"]] == [today, delivered]
    assert body["issues"][0] == {
        "issue_id": today, "title": "A call-back rota", "decided_at": "2026-11-10T07:00:00Z",
        "filters": {"region": "PL"}, "before": None, "after": None, "difference": None,
        "method": None, "unavailable": False, "detail": "decided today: no day after it yet",
    }  # fmt: skip
    assert body["issues"][1] == {
        "issue_id": delivered,
        "title": "Faster deliveries",
        "decided_at": "2026-10-11T09:00:00Z",
        "filters": {"region": "PL"},
        "before": {
            "n": 10, "nps": -20.0, "ci_low": -61.1, "ci_high": 30.33,
            "window": {"from": "2026-07-13", "to": "2026-10-11", "time_zone": "Europe/Warsaw"},
        },
        "after": {
            "n": 10, "nps": 70.0, "ci_low": 14.73, "ci_high": 92.96,
            "window": {"from": "2026-10-12", "to": "2026-11-11", "time_zone": "Europe/Warsaw"},
        },
        # Scoring's difference of its adjusted-Wald NPS (53.85 - (-15.38)), z 2.2554.
        "difference": {"value": 69.23, "p_value": 0.024106, "significant": True},
        "method": "adjusted-wald",
        "unavailable": False,
        "detail": None,
    }  # fmt: skip


async def test_the_after_window_is_clipped_at_today_and_days_sets_both_sides(
    app: FastAPI,
    scoring_app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
) -> None:
    await scored(scoring_app, tenant)
    await done_issue(app, tenant, "Faster deliveries", DECIDED)
    found = await client.get("/v1/loop/impact", params={"days": 7}, headers=headers)
    assert found.status_code == 200, found.text
    issue = found.json()["issues"][0]
    # Seven days either side: the answers 21 days before are out, those 14 days after too.
    assert issue["before"]["window"]["from"] == "2026-10-04"
    assert issue["after"]["window"] == {
        "from": "2026-10-12",
        "to": "2026-10-19",
        "time_zone": "Europe/Warsaw",
    }
    assert (issue["before"]["n"], issue["after"]["n"], issue["difference"]) == (0, 0, None)


async def test_filters_and_windows_narrow_the_cases(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await seed(app, tenant)

    async def impact(**params: str) -> dict[str, Any]:
        found = await client.get("/v1/loop/impact", params=params, headers=headers)
        assert found.status_code == 200, found.text
        answer: dict[str, Any] = found.json()
        return answer

    passive = await impact(case_type="passive")
    assert passive["loop"]["closed"]["cases"] == 1  # c7
    assert passive["loop"]["closed"]["score_change"] == {
        "n": 1, "mean": 3.0, "standard_deviation": None, "ci_low": None, "ci_high": None
    }  # fmt: skip
    assert passive["loop"]["not_closed"]["resurvey"]["response_rate"] is None
    assert passive["loop"]["difference"] == {"response_rate": None, "score_change": None}
    assert passive["first_contact"]["within_sla"] == share(1, 1, 1.0, 0.2065, 1.0)

    other_survey = await impact(survey_id="another-survey")
    assert other_survey["loop"]["closed"]["cases"] == 0
    assert other_survey["first_contact"]["time_to_first_contact"]["p50_hours"] is None
    assert other_survey["first_contact"]["time_to_first_contact"]["count"] == 0

    # Only old1, opened on 2 August: re-surveyed and answered 9 to its 2.
    august = await impact(**{"from": "2026-08-01", "to": "2026-08-03"})
    assert august["window"] == {"from": "2026-08-01", "to": "2026-08-03", "time_zone": "UTC"}
    assert august["loop"]["closed"]["resurvey"]["responded"] == 1
    assert august["loop"]["closed"]["score_change"]["mean"] == 7.0
    assert august["first_contact"]["time_to_first_contact"]["p95_hours"] == 1.0

    wrong = await client.get(
        "/v1/loop/impact", params={"from": "2026-08-03", "to": "2026-08-01"}, headers=headers
    )
    assert (wrong.status_code, wrong.headers["content-type"]) == (400, PROBLEM)
    assert wrong.json()["type"] == "urn:closeloop:problem:invalid-window"


async def test_scoring_unreachable_marks_the_issues_unavailable_and_answers_the_rest(
    app: FastAPI, scoring_down: FastAPI, tenant: str, headers: dict[str, str]
) -> None:
    await seed(app, tenant)
    issue = await done_issue(app, tenant, "Faster deliveries", DECIDED)
    transport = httpx.ASGITransport(app=scoring_down)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        found = await client.get("/v1/loop/impact", headers=headers)

    assert found.status_code == 200, found.text
    body = found.json()
    assert body["loop"] == EXPECTED_LOOP
    assert body["first_contact"] == EXPECTED_FIRST_CONTACT
    [only] = body["issues"]
    assert (only["issue_id"], only["unavailable"], only["before"], only["after"]) == (
        issue, True, None, None,
    )  # fmt: skip
    assert "scoring unreachable" in only["detail"]


async def test_a_tenant_sees_only_its_own_cases_invitations_and_issues(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    other_tenant: str,
    headers: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    await seed(app, tenant)
    # The other tenant has a customer of the same id as n12 (never invited here), re-surveyed.
    await seed(app, other_tenant, seeds=[Seed("n12", 6, "high", "closed", 1, [(10 * D, 9)])])
    await done_issue(app, other_tenant, "Theirs", DECIDED)

    ours = (await client.get("/v1/loop/impact", headers=headers)).json()
    theirs_headers = bearer(other_tenant, "read", subject="someone")
    theirs = (await client.get("/v1/loop/impact", headers=theirs_headers)).json()

    assert ours["loop"] == EXPECTED_LOOP
    assert ours["issues"] == []
    assert theirs["tenant_id"] == other_tenant
    assert theirs["loop"]["closed"]["cases"] == 1
    assert theirs["loop"]["closed"]["resurvey"]["responded"] == 1
    assert theirs["loop"]["not_closed"]["cases"] == 0
    assert theirs["first_contact"]["within_sla"] == share(1, 1, 1.0, 0.2065, 1.0)
    assert [i["title"] for i in theirs["issues"]] == ["Theirs"]


async def test_reading_the_impact_needs_the_read_scope(
    client: httpx.AsyncClient, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    refused = await client.get("/v1/loop/impact", headers=bearer(tenant, "cases:write"))
    assert (refused.status_code, refused.headers["content-type"]) == (403, PROBLEM)
    assert (await client.get("/v1/loop/impact")).status_code == 401


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_gauges_show_the_seeded_figures_after_one_recount(
    app: FastAPI, tenant: str, clock: Any
) -> None:
    clock.set(FAR)
    await seed(app, tenant, now=FAR)

    await recount_gauges(runtime_of(app))

    for loop, cases, invited, responded, ratio, mean in (
        ("closed", 11, 10, 8, 0.8, 24 / 7),
        ("not_closed", 12, 10, 3, 0.3, 1 / 3),
    ):
        assert sample("closeloop_loop_cases", loop=loop) == cases
        assert sample("closeloop_loop_resurvey_invitations", loop=loop) == invited
        assert sample("closeloop_loop_resurvey_responses", loop=loop) == responded
        assert sample("closeloop_loop_resurvey_response_ratio", loop=loop) == pytest.approx(ratio)
        assert sample("closeloop_loop_resurvey_score_change_mean", loop=loop) == pytest.approx(mean)
    assert sample("closeloop_loop_resurvey_response_rate_difference_p_value") == pytest.approx(
        0.0246187614, abs=1e-9
    )
    assert sample("closeloop_loop_resurvey_score_change_difference_p_value") == pytest.approx(
        0.0433591538, abs=1e-9
    )
    for percentile, hours in (("50", 12), ("75", 45), ("90", 72), ("95", 116)):
        assert sample(
            "closeloop_loop_time_to_first_contact_seconds", percentile=percentile
        ) == pytest.approx(hours * 3600)
    for priority, ratio in (("high", 1.0), ("normal", 5 / 17), ("low", 0.5)):
        assert sample(
            "closeloop_loop_first_contact_within_sla_ratio", priority=priority
        ) == pytest.approx(ratio)
    urgent = sample("closeloop_loop_first_contact_within_sla_ratio", priority="urgent")
    assert urgent is not None
    assert math.isnan(urgent)
