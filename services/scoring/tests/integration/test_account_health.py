"""Account health over HTTP: `GET /v1/accounts/{id}/health` for an account in each state, its
default window (the last 365 local days), tenants, and `GET /v1/accounts?health=true`.

Scoring runs here with `SCORING_HEALTH_LARGE_ACCOUNT_WEIGHT=1000` and the other thresholds at
their defaults (NPS 0, 5 answers, response rate 0.2). The app's clock stands at Wednesday 15
April 2026, 12:00 in Warsaw. Intervals are 95 % adjusted Wald (see the unit tests): 9/1/0
(promoters/passives/detractors) is NPS 90 in [38.08, 100], 3/2/5 is -20 in [-61.10, 30.33],
5/2/3 is 20 in [-30.33, 61.10]."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .support import assert_problem, feed, get, invited, new_tenant, received, runtime_of

APRIL = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
# 10 January 2025: more than 365 days before today, so outside the default window.
LONG_AGO = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
SCORES = {"promoter": 10, "passive": 8, "detractor": 2}
# Account: (promoters, passives, detractors, invitations) in April.
ACCOUNTS = {
    "safe-co": (9, 1, 0, 20),
    "detractor-co": (3, 2, 5, 0),
    "silent-co": (9, 1, 0, 60),
    "few-co": (3, 0, 1, 0),
    "unsure-co": (5, 2, 3, 0),
    "big-co": (5, 2, 3, 0),
    "ghost-co": (0, 0, 0, 4),
}
POLICY = {
    "risk_nps": 0.0,
    "min_responses": 5,
    "min_response_rate": 0.2,
    "large_account_weight": 1000.0,
}


@pytest.fixture(scope="module")
async def app(infra: dict[str, str], clock: FixedClock) -> AsyncIterator[FastAPI]:
    settings = ScoringSettings(
        scoring_time_zone="Europe/Warsaw", scoring_health_large_account_weight=1000
    )
    app = create_scoring_app(settings, clock=clock)
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def accounts(app: FastAPI, client: httpx.AsyncClient, bearer: Any) -> str:
    """`ACCOUNTS`, ten detractors of safe-co long ago, and big-co's weight 5000 (unsure-co's is
    999.99, just under large)."""
    tenant = new_tenant()
    events: list[Any] = []
    for account, (promoters, passives, detractors, invitations) in ACCOUNTS.items():
        for category, count in zip(SCORES, (promoters, passives, detractors), strict=True):
            events += [received(SCORES[category], APRIL, account=account) for _ in range(count)]
        events += [invited(APRIL, account=account) for _ in range(invitations)]
    events += [received(0, LONG_AGO, account="safe-co") for _ in range(10)]
    await feed(app, tenant, events)
    admin = bearer(tenant, "admin")
    for account, weight in (("big-co", 5000), ("unsure-co", 999.99)):
        answer = await client.put(
            f"/v1/accounts/{account}/weight", json={"revenue_weight": weight}, headers=admin
        )
        assert answer.status_code == 200, answer.text
    return tenant


async def health(
    client: httpx.AsyncClient, headers: dict[str, str], account: str, **params: Any
) -> dict[str, Any]:
    return await get(client, headers, f"/v1/accounts/{account}/health", **params)


def codes(body: dict[str, Any]) -> list[str]:
    return [r["code"] for r in body["reasons"]]


async def test_a_safe_account_with_the_whole_answer(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    body = await health(client, bearer(accounts, "read"), "safe-co")
    assert body == {
        "tenant_id": accounts,
        "account_id": "safe-co",
        "revenue_weight": None,
        "window": {"from": "2025-04-16", "to": "2026-04-16", "time_zone": "Europe/Warsaw"},
        "n": 10,
        "responses": 10,
        "promoters": 9,
        "passives": 1,
        "detractors": 0,
        "nps": 90.0,
        "standard_error": 15.8939,
        "margin_of_error": 31.15,
        "ci_low": 38.08,
        "ci_high": 100.0,
        "confidence": 0.95,
        "method": "adjusted-wald",
        "insufficient": True,
        "margin_of_error_95": 18.59,
        "suspected": 0,
        "invitations": 20,
        "response_rate": 0.5,
        "state": "safe",
        "reasons": [
            {
                "code": "clearly_above_threshold",
                "text": "NPS 90 (95% interval 38.1 to 100) is clearly above the risk threshold 0",
                "nps": 90.0,
                "ci_low": 38.08,
                "ci_high": 100.0,
                "confidence": 0.95,
                "risk_nps": 0.0,
            }
        ],
        "policy": POLICY,
    }


async def test_the_default_window_is_the_last_365_days(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    # All time adds safe-co's ten detractors of January 2025: 9/1/10, NPS -5.
    body = await health(client, bearer(accounts, "read"), "safe-co", window="all")
    assert (body["window"]["from"], body["window"]["to"]) == (None, None)
    assert (body["n"], body["nps"], body["state"]) == (20, -5.0, "at_risk")
    assert codes(body) == ["nps_below_threshold", "interval_spans_threshold"]
    old = await health(client, bearer(accounts, "read"), "safe-co", month="2025-01")
    assert (old["n"], old["invitations"], old["state"]) == (10, 0, "at_risk")
    assert codes(old) == ["nps_below_threshold", "interval_below_threshold"]


async def test_an_account_at_risk_by_its_nps(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    body = await health(client, bearer(accounts, "read"), "detractor-co")
    assert (body["state"], body["nps"], body["ci_low"], body["ci_high"]) == (
        "at_risk",
        -20.0,
        -61.1,
        30.33,
    )
    assert body["reasons"][0] == {
        "code": "nps_below_threshold",
        "text": "NPS -20 (95% interval -61.1 to 30.3) is below the risk threshold 0",
        "nps": -20.0,
        "ci_low": -61.1,
        "ci_high": 30.33,
        "confidence": 0.95,
        "risk_nps": 0.0,
    }
    assert codes(body) == ["nps_below_threshold", "interval_spans_threshold"]
    # The interval follows the method and confidence asked for.
    wald = await health(
        client, bearer(accounts, "read"), "detractor-co", method="wald", confidence=0.9
    )
    assert wald["reasons"][0]["text"] == (
        "NPS -20 (90% interval -65.3 to 25.3) is below the risk threshold 0"
    )


async def test_an_account_at_risk_by_its_silence(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    body = await health(client, bearer(accounts, "read"), "silent-co")
    assert (body["state"], body["invitations"], body["response_rate"]) == ("at_risk", 60, 0.1667)
    assert codes(body) == ["low_response_rate", "clearly_above_threshold"]
    assert body["reasons"][0] == {
        "code": "low_response_rate",
        "text": "10 answers to 60 invitations (16.7%) is below the minimum response rate of 20%",
        "n": 10,
        "invitations": 60,
        "response_rate": 0.1667,
        "min_response_rate": 0.2,
    }


async def test_accounts_whose_health_is_unknown(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    h = bearer(accounts, "read")
    few = await health(client, h, "few-co")
    assert (few["state"], few["n"]) == ("unknown", 4)
    assert few["reasons"] == [
        {
            "code": "too_few_answers",
            "text": "4 answers, fewer than the 5 needed to judge the account",
            "n": 4,
            "min_responses": 5,
        }
    ]
    # Weight 999.99: just under the large-account weight, so uncertain stays unknown.
    unsure = await health(client, h, "unsure-co")
    assert (unsure["state"], unsure["revenue_weight"], codes(unsure)) == (
        "unknown",
        999.99,
        ["interval_spans_threshold"],
    )
    assert unsure["reasons"][0]["text"] == (
        "NPS 20 (95% interval -30.3 to 61.1) spans the risk threshold 0: "
        "not clearly above or below it"
    )
    # Invitations but no answer: unknown, and the silence is said.
    ghost = await health(client, h, "ghost-co")
    assert (ghost["state"], ghost["n"], ghost["nps"], ghost["response_rate"]) == (
        "unknown",
        0,
        None,
        0.0,
    )
    assert codes(ghost) == ["no_answers", "low_response_rate"]


async def test_a_large_account_is_at_risk_unless_clearly_above(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    body = await health(client, bearer(accounts, "read"), "big-co")
    assert (body["state"], body["revenue_weight"], body["nps"]) == ("at_risk", 5000.0, 20.0)
    assert codes(body) == ["large_account_uncertain", "interval_spans_threshold"]
    assert body["reasons"][0] == {
        "code": "large_account_uncertain",
        "text": "An account this large (revenue weight 5000, large from 1000) is at risk unless "
        "clearly above the risk threshold 0",
        "revenue_weight": 5000.0,
        "large_account_weight": 1000.0,
        "ci_low": -30.33,
        "ci_high": 61.1,
        "confidence": 0.95,
        "risk_nps": 0.0,
    }


async def test_an_account_without_any_data_is_unknown_not_missing(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    body = await health(client, bearer(accounts, "read"), "nobody")
    assert (body["account_id"], body["n"], body["nps"], body["ci_low"], body["ci_high"]) == (
        "nobody",
        0,
        None,
        None,
        None,
    )
    assert (body["invitations"], body["response_rate"], body["revenue_weight"]) == (0, None, None)
    assert body["state"] == "unknown"
    assert body["reasons"] == [{"code": "no_answers", "text": "No answers in this window", "n": 0}]


async def test_another_tenant_sees_nothing_of_the_account(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    other = new_tenant()
    body = await health(client, bearer(other, "read"), "big-co")
    assert (body["tenant_id"], body["n"], body["invitations"], body["revenue_weight"]) == (
        other,
        0,
        0,
        None,
    )
    assert (body["state"], codes(body)) == ("unknown", ["no_answers"])
    listed = await get(client, bearer(other, "read"), "/v1/accounts", health=True)
    assert listed["accounts"] == []


async def test_health_needs_a_read_token_and_one_window(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    assert_problem(await client.get("/v1/accounts/safe-co/health"), 401, "unauthorized")
    answer = await client.get(
        "/v1/accounts/safe-co/health",
        params={"window": "30d", "days": 10},
        headers=bearer(accounts, "read"),
    )
    assert_problem(answer, 400, "invalid-window")


async def test_the_account_list_with_each_account_s_health(
    client: httpx.AsyncClient, accounts: str, bearer: Any
) -> None:
    h = bearer(accounts, "read")
    listed = await get(client, h, "/v1/accounts", health=True, days=365)
    found = {
        a["account_id"]: (a["n"], a["health"]["state"], codes(a["health"]))
        for a in listed["accounts"]
    }
    assert found == {
        "safe-co": (10, "safe", ["clearly_above_threshold"]),
        "detractor-co": (10, "at_risk", ["nps_below_threshold", "interval_spans_threshold"]),
        "silent-co": (10, "at_risk", ["low_response_rate", "clearly_above_threshold"]),
        "few-co": (4, "unknown", ["too_few_answers"]),
        "unsure-co": (10, "unknown", ["interval_spans_threshold"]),
        "big-co": (10, "at_risk", ["large_account_uncertain", "interval_spans_threshold"]),
        "ghost-co": (0, "unknown", ["no_answers", "low_response_rate"]),
    }
    # The same health, reasons and all, as the account's own route over the same window.
    one = await health(client, h, "big-co")
    (big,) = [a for a in listed["accounts"] if a["account_id"] == "big-co"]
    assert big["health"] == {"state": one["state"], "reasons": one["reasons"]}
    # Judged on the row's own window: all time by default, so safe-co's old detractors count.
    everything = await get(client, h, "/v1/accounts", health=True)
    (safe,) = [a for a in everything["accounts"] if a["account_id"] == "safe-co"]
    assert (safe["n"], safe["health"]["state"]) == (20, "at_risk")
    assert all("health" not in a for a in (await get(client, h, "/v1/accounts"))["accounts"])
