"""`/v1/nps`, its trend and breakdown over windows of local days in Warsaw; the first version's
`/v1/nps/{dimension}`; bad parameters; tenants. The app's clock stands at `NOW`: Wednesday 15
April 2026, 12:00 in Warsaw (UTC+2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.clock import FixedClock

from .support import SegmentArgs, assert_problem, counts, feed, get, invited, new_tenant, received

# Answers around the boundaries of windows (local time in Warsaw in the comments).
AT = {
    "a": (10, datetime(2026, 3, 31, 23, 30, tzinfo=UTC)),  # 1 April 01:30
    "b": (2, datetime(2026, 3, 31, 21, 30, tzinfo=UTC)),  # 31 March 23:30
    "c": (7, datetime(2026, 4, 8, 21, 59, tzinfo=UTC)),  # 8 April 23:59
    "d": (9, datetime(2026, 4, 8, 22, 0, tzinfo=UTC)),  # 9 April 00:00
    "e": (0, datetime(2026, 4, 15, 21, 30, tzinfo=UTC)),  # today, 23:30
    "f": (10, datetime(2026, 4, 15, 22, 30, tzinfo=UTC)),  # tomorrow, 00:30
    "g": (9, datetime(2026, 1, 10, 12, 0, tzinfo=UTC)),  # 10 January
    "h": (5, datetime(2025, 12, 31, 23, 30, tzinfo=UTC)),  # 1 January 2026 00:30
    "i": (8, datetime(2025, 12, 31, 22, 30, tzinfo=UTC)),  # 31 December 2025 23:30
    "j": (3, datetime(2026, 1, 15, 23, 30, tzinfo=UTC)),  # 16 January 00:30
    "k": (10, datetime(2026, 1, 15, 22, 30, tzinfo=UTC)),  # 15 January 23:30
}


def figures(n: int, promoters: int, passives: int, detractors: int) -> dict[str, Any]:
    nps = None if n == 0 else round(100.0 * (promoters - detractors) / n, 2)
    return {
        "n": n,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "suspected": 0,
        "invitations": 0,
        "nps": nps,
        "response_rate": None,
    }


@pytest.fixture(scope="module")
async def dated(app: FastAPI) -> str:
    tenant = new_tenant()
    await feed(
        app,
        tenant,
        [
            received(score, at, response_id=f"r-{name}", region="PL", account="acme")
            for name, (score, at) in AT.items()
        ],
    )
    return tenant


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"window": "7d"}, figures(2, 1, 0, 1)),  # d, e: 9 to 15 April
        ({"days": 8}, figures(3, 1, 1, 1)),  # c, d, e
        ({"days": 1}, figures(1, 0, 0, 1)),  # e
        ({"window": "30d"}, figures(5, 2, 1, 2)),  # 17 March to 15 April: a to e
        ({"window": "90d"}, figures(6, 2, 1, 3)),  # 16 January to 15 April: j, a to e
        ({"window": "month"}, figures(5, 3, 1, 1)),  # April: a, c, d, e, f
        ({"window": "quarter"}, figures(5, 3, 1, 1)),
        ({"window": "previous-month"}, figures(1, 0, 0, 1)),  # March: b
        ({"window": "previous-quarter"}, figures(5, 2, 0, 3)),  # b, g, h, j, k
        ({"month": "2026-03"}, figures(1, 0, 0, 1)),
        ({"month": "2026-01"}, figures(4, 2, 0, 2)),  # g, h, j, k
        ({"month": "2025-12"}, figures(1, 0, 1, 0)),  # i
        ({"quarter": "2025-Q4"}, figures(1, 0, 1, 0)),
        ({"quarter": "2026-Q2"}, figures(5, 3, 1, 1)),
        ({"from": "2026-04-01", "to": "2026-04-09"}, figures(2, 1, 1, 0)),  # a, c; not d
        ({"from": "2026-04-09"}, figures(3, 2, 0, 1)),  # d, e, f
        ({"to": "2026-01-01"}, figures(1, 0, 1, 0)),  # i
        ({"window": "all"}, figures(11, 5, 2, 4)),
        ({}, figures(11, 5, 2, 4)),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
async def test_a_window_counts_the_answers_of_its_local_days(
    client: httpx.AsyncClient, dated: str, bearer: Any, window: dict[str, Any], expected: Any
) -> None:
    h = bearer(dated, "read")
    body = await get(client, h, "/v1/nps", **window)
    assert counts(body) == expected
    assert body["window"]["time_zone"] == "Europe/Warsaw"
    # The same on the other read paths (cells, an account's responses).
    assert counts(
        await get(client, h, "/v1/nps", region="PL", survey="relationship", **window)
    ) == (expected)
    assert counts(await get(client, h, "/v1/accounts/acme/nps", **window)) == expected


async def test_the_window_a_response_names_is_reported_as_local_dates(
    client: httpx.AsyncClient, dated: str, bearer: Any
) -> None:
    h = bearer(dated, "read")
    assert (await get(client, h, "/v1/nps", window="7d"))["window"] == {
        "from": "2026-04-09",
        "to": "2026-04-16",
        "time_zone": "Europe/Warsaw",
    }
    assert (await get(client, h, "/v1/nps", quarter="2026-Q1"))["window"]["to"] == "2026-04-01"
    assert (await get(client, h, "/v1/nps"))["window"] == {
        "from": None,
        "to": None,
        "time_zone": "Europe/Warsaw",
    }


async def test_windows_follow_the_clock_across_a_year_boundary(
    client: httpx.AsyncClient, dated: str, bearer: Any, clock: FixedClock
) -> None:
    h = bearer(dated, "read")
    clock.set(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
    assert counts(await get(client, h, "/v1/nps", window="previous-month")) == figures(1, 0, 1, 0)
    assert counts(await get(client, h, "/v1/nps", window="previous-quarter")) == figures(1, 0, 1, 0)
    assert counts(await get(client, h, "/v1/nps", window="month")) == figures(4, 2, 0, 2)
    # 23:30 UTC on New Year's Eve is already January in Warsaw.
    clock.set(datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    assert counts(await get(client, h, "/v1/nps", window="7d")) == figures(2, 0, 1, 1)  # h, i
    assert counts(await get(client, h, "/v1/nps", days=1)) == figures(1, 0, 0, 1)  # h


async def test_a_trend_by_day_has_empty_days_without_an_nps(
    client: httpx.AsyncClient, dated: str, bearer: Any
) -> None:
    body = await get(
        client,
        bearer(dated, "read"),
        "/v1/nps/trend",
        granularity="day",
        **{"from": "2026-03-30", "to": "2026-04-03"},
    )
    assert body["granularity"] == "day"
    points = [(p["from"], p["to"], counts(p)) for p in body["points"]]
    assert points == [
        ("2026-03-30", "2026-03-31", figures(0, 0, 0, 0)),
        ("2026-03-31", "2026-04-01", figures(1, 0, 0, 1)),  # b
        ("2026-04-01", "2026-04-02", figures(1, 1, 0, 0)),  # a
        ("2026-04-02", "2026-04-03", figures(0, 0, 0, 0)),
    ]
    empty = body["points"][0]
    assert empty["nps"] is None
    assert empty["ci_low"] is None
    assert empty["standard_error"] is None


async def test_a_trend_by_week_starts_weeks_on_monday_and_clips_the_ends(
    client: httpx.AsyncClient, dated: str, bearer: Any
) -> None:
    body = await get(client, bearer(dated, "read"), "/v1/nps/trend", month="2026-04")
    assert body["granularity"] == "week"
    points = [(p["from"], p["to"], counts(p)) for p in body["points"]]
    assert points == [
        ("2026-04-01", "2026-04-06", figures(1, 1, 0, 0)),  # a
        ("2026-04-06", "2026-04-13", figures(2, 1, 1, 0)),  # c, d
        ("2026-04-13", "2026-04-20", figures(2, 1, 0, 1)),  # e, f
        ("2026-04-20", "2026-04-27", figures(0, 0, 0, 0)),
        ("2026-04-27", "2026-05-01", figures(0, 0, 0, 0)),
    ]


async def test_a_trend_by_month_across_the_new_year(
    client: httpx.AsyncClient, dated: str, bearer: Any
) -> None:
    h = bearer(dated, "read")
    window = {"from": "2025-12-01", "to": "2026-05-01"}
    for filters in ({}, {"region": "PL", "survey": "relationship"}, {"account": "acme"}):
        body = await get(client, h, "/v1/nps/trend", granularity="month", **window, **filters)
        assert [(p["from"], counts(p)) for p in body["points"]] == [
            ("2025-12-01", figures(1, 0, 1, 0)),  # i
            ("2026-01-01", figures(4, 2, 0, 2)),  # g, h, j, k
            ("2026-02-01", figures(0, 0, 0, 0)),
            ("2026-03-01", figures(1, 0, 0, 1)),  # b
            ("2026-04-01", figures(5, 3, 1, 1)),  # a, c, d, e, f
        ], filters


async def test_a_trend_is_90_days_by_default_and_needs_a_bounded_window(
    client: httpx.AsyncClient, dated: str, bearer: Any
) -> None:
    h = bearer(dated, "read")
    body = await get(client, h, "/v1/nps/trend", granularity="month")
    assert body["window"]["from"] == "2026-01-16"
    assert body["window"]["to"] == "2026-04-16"
    assert [(p["from"], p["n"]) for p in body["points"]] == [
        ("2026-01-16", 1),  # j (k was on the 15th)
        ("2026-02-01", 0),
        ("2026-03-01", 1),
        ("2026-04-01", 4),  # a, c, d, e (f is tomorrow)
    ]
    answer = await client.get("/v1/nps/trend", params={"window": "all"}, headers=h)
    assert_problem(answer, 400, "invalid-window")
    answer = await client.get(
        "/v1/nps/trend", params={"granularity": "day", "days": 3000}, headers=h
    )
    assert "buckets" in assert_problem(answer, 400, "invalid-window")["detail"]


# --- breakdown ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def segmented(app: FastAPI) -> str:
    """Answers on 10 April: PL 3 (2 promoters, 1 detractor), DE 2 (passive, detractor), CZ 1
    (promoter), and one without a region; accounts acme 3, globex 2, initech 1, one without."""
    tenant = new_tenant()
    at = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
    rows: list[tuple[int, str | None, str | None, str, str, str]] = [
        (10, "PL", "acme", "billing", "email", "renewal"),
        (9, "PL", "acme", "app", "email", "renewal"),
        (1, "PL", "globex", "billing", "phone", "support"),
        (8, "DE", "globex", "billing", "phone", "support"),
        (4, "DE", "acme", "app", "email", "renewal"),
        (10, "CZ", "initech", "app", "email", "renewal"),
        (6, None, None, "billing", "email", "renewal"),
    ]
    events = []
    for score, region, account, product, channel, touchpoint in rows:
        segments: SegmentArgs = {"product": product, "channel": channel, "touchpoint": touchpoint}
        if region is not None:
            segments["region"] = region
        events.append(
            received(
                score,
                at,
                survey="onboarding" if account == "initech" else "relationship",
                account=account,
                **segments,
            )
        )
    await feed(app, tenant, events)
    return tenant


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("region", [("PL", 3, 33.33), ("DE", 2, -50.0), ("CZ", 1, 100.0)]),
        ("account", [("acme", 3, 33.33), ("globex", 2, -50.0), ("initech", 1, 100.0)]),
        ("product", [("billing", 4, -25.0), ("app", 3, 33.33)]),
        ("channel", [("email", 5, 20.0), ("phone", 2, -50.0)]),
        ("touchpoint", [("renewal", 5, 20.0), ("support", 2, -50.0)]),
        ("survey", [("relationship", 6, -16.67), ("onboarding", 1, 100.0)]),
    ],
)
async def test_a_breakdown_has_one_row_per_value_most_answers_first(
    client: httpx.AsyncClient,
    segmented: str,
    bearer: Any,
    by: str,
    expected: list[tuple[str, int, float]],
) -> None:
    body = await get(client, bearer(segmented, "read"), "/v1/nps/breakdown", by=by)
    assert [(r["segment"], r["n"], r["nps"]) for r in body["segments"]] == expected
    assert body["by"] == by
    assert body["truncated"] is False
    limited = await get(client, bearer(segmented, "read"), "/v1/nps/breakdown", by=by, limit=1)
    assert [r["segment"] for r in limited["segments"]] == [expected[0][0]]
    assert limited["truncated"] is True


async def test_a_breakdown_narrowed_by_filters(
    client: httpx.AsyncClient, segmented: str, bearer: Any
) -> None:
    h = bearer(segmented, "read")
    by_region = await get(client, h, "/v1/nps/breakdown", by="region", product="billing")
    assert [
        (r["segment"], r["promoters"], r["passives"], r["detractors"])
        for r in (by_region["segments"])
    ] == [("PL", 1, 0, 1), ("DE", 0, 1, 0)]
    assert by_region["filters"] == {"product": "billing"}
    of_acme = await get(client, h, "/v1/nps/breakdown", by="region", account="acme")
    assert [(r["segment"], r["n"]) for r in of_acme["segments"]] == [("PL", 2), ("DE", 1)]
    by_account = await get(client, h, "/v1/nps/breakdown", by="account", region="PL", limit=1)
    assert [(r["segment"], r["n"], r["nps"]) for r in by_account["segments"]] == [
        ("acme", 2, 100.0)
    ]
    assert by_account["truncated"] is True
    nothing = await get(client, h, "/v1/nps/breakdown", by="region", window="7d", region="XX")
    assert nothing["segments"] == []
    assert nothing["truncated"] is False


async def test_the_first_version_s_nps_by_dimension(
    client: httpx.AsyncClient, segmented: str, bearer: Any
) -> None:
    h = bearer(segmented, "read")
    by_region = await get(client, h, "/v1/nps/region")
    assert by_region["dimension"] == "region"
    assert [(r["segment"], r["n"], r["nps"]) for r in by_region["segments"]] == [
        ("PL", 3, 33.33),
        ("DE", 2, -50.0),
        ("CZ", 1, 100.0),
    ]
    overall = await get(client, h, "/v1/nps/overall")
    assert [(r["segment"], r["n"], r["nps"]) for r in overall["segments"]] == [("all", 7, 0.0)]
    by_account = await get(client, h, "/v1/nps/account", window="7d")
    assert [(r["segment"], r["n"]) for r in by_account["segments"]] == [
        ("acme", 3),
        ("globex", 2),
        ("initech", 1),
    ]
    assert (await get(client, h, "/v1/nps/region", month="2026-03"))["segments"] == []
    # `dimension`/`segment` on /v1/nps are the first version's form of one filter.
    legacy = await get(client, h, "/v1/nps", dimension="region", segment="DE")
    assert counts(legacy) == counts(await get(client, h, "/v1/nps", region="DE"))
    assert legacy["filters"] == {"region": "DE"}
    assert legacy["n"] == 2
    clash = await client.get(
        "/v1/nps", params={"dimension": "region", "segment": "DE", "region": "PL"}, headers=h
    )
    assert_problem(clash, 400, "conflicting-filters")
    deprecated = (await client.get("/openapi.json")).json()["paths"]["/v1/nps/{dimension}"]
    assert deprecated["get"]["deprecated"] is True


async def test_statistics_are_reported_with_the_method_and_confidence_asked_for(
    client: httpx.AsyncClient, segmented: str, bearer: Any
) -> None:
    h = bearer(segmented, "read")
    # 7 answers: 3 promoters, 1 passive, 3 detractors (NPS 0).
    wald = await get(client, h, "/v1/nps", method="wald", confidence=0.9)
    assert (wald["n"], wald["nps"], wald["method"], wald["confidence"]) == (7, 0.0, "wald", 0.9)
    # Var = 6/7 - 0 = 0.857143; SE = 100 sqrt(0.857143 / 7) = 34.9927; z(0.90) = 1.644854.
    assert wald["standard_error"] == 34.9927
    assert (wald["margin_of_error"], wald["ci_low"], wald["ci_high"]) == (57.56, -57.56, 57.56)
    adjusted = await get(client, h, "/v1/nps")
    # 3.75 and 3.75 of 10: Var = 0.75, SE = 100 sqrt(0.075) = 27.3861, MoE = 53.68 at 95 %.
    assert (adjusted["standard_error"], adjusted["margin_of_error"]) == (27.3861, 53.68)
    assert (adjusted["ci_low"], adjusted["ci_high"]) == (-53.68, 53.68)
    assert adjusted["insufficient"] is True


# --- invitations and response rates ---------------------------------------------------------


async def test_invitations_give_the_response_rate_and_count_once(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    april_1 = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # 1 April, local
    march_31 = datetime(2026, 3, 31, 21, 0, tzinfo=UTC)
    twice = invited(april_1, invitation_id="inv-twice", region="PL", account="acme")
    await feed(
        app,
        tenant,
        [
            twice,
            twice,
            invited(april_1, region="PL", account="acme"),
            invited(april_1, region="DE", account="globex"),
            invited(april_1, region="PL", product="billing"),
            invited(march_31, region="PL", account="acme"),
            received(10, april_1, region="PL", account="acme"),
            received(3, april_1, region="DE", account="globex"),
        ],
    )
    await feed(app, tenant, [twice])  # redelivered in another batch
    h = bearer(tenant, "read")
    april = {"month": "2026-04"}
    overall = await get(client, h, "/v1/nps", **april)
    assert (overall["invitations"], overall["n"], overall["response_rate"]) == (4, 2, 0.5)
    pl = await get(client, h, "/v1/nps", region="PL", **april)
    assert (pl["invitations"], pl["n"], pl["response_rate"]) == (3, 1, 0.3333)
    # The same on the cells and on an account's responses.
    assert counts(await get(client, h, "/v1/nps", region="PL", survey="relationship", **april)) == (
        counts(pl)
    )
    acme = await get(client, h, "/v1/accounts/acme/nps", **april)
    assert (acme["invitations"], acme["n"], acme["response_rate"]) == (2, 1, 0.5)
    assert (await get(client, h, "/v1/accounts/acme/nps"))["invitations"] == 3
    march = await get(client, h, "/v1/nps", month="2026-03")
    assert (march["invitations"], march["n"], march["response_rate"]) == (1, 0, 0.0)
    billing = await get(client, h, "/v1/nps", product="billing", region="PL")
    assert (billing["invitations"], billing["n"], billing["nps"]) == (1, 0, None)
    by_region = await get(client, h, "/v1/nps/breakdown", by="region", **april)
    assert [(r["segment"], r["n"], r["invitations"]) for r in by_region["segments"]] == [
        ("DE", 1, 1),
        ("PL", 1, 3),
    ]
    no_invitations = await get(client, h, "/v1/nps", month="2026-02")
    assert no_invitations["response_rate"] is None


# --- bad parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "kind"),
    [
        ("/v1/nps", {"window": "7d", "days": 3}, 400, "invalid-window"),
        ("/v1/nps", {"month": "2026-04", "from": "2026-04-01"}, 400, "invalid-window"),
        ("/v1/nps", {"quarter": "2026-Q1", "window": "all"}, 400, "invalid-window"),
        ("/v1/nps", {"from": "2026-04-10", "to": "2026-04-01"}, 400, "invalid-window"),
        ("/v1/nps", {"from": "2026-04-10", "to": "2026-04-10"}, 400, "invalid-window"),
        ("/v1/nps/trend", {"window": "7d", "month": "2026-04"}, 400, "invalid-window"),
        ("/v1/nps/breakdown", {"by": "colour"}, 422, "validation"),
        ("/v1/nps/breakdown", {}, 422, "validation"),
        ("/v1/nps/breakdown", {"by": "region", "limit": 0}, 422, "validation"),
        ("/v1/nps", {"month": "2026-13"}, 422, "validation"),
        ("/v1/nps", {"month": "26-04"}, 422, "validation"),
        ("/v1/nps", {"quarter": "2026-Q5"}, 422, "validation"),
        ("/v1/nps", {"window": "fortnight"}, 422, "validation"),
        ("/v1/nps", {"days": 0}, 422, "validation"),
        ("/v1/nps", {"from": "2026-02-30"}, 422, "validation"),
        ("/v1/nps", {"confidence": 1.0}, 422, "validation"),
        ("/v1/nps", {"confidence": 0.5}, 422, "validation"),
        ("/v1/nps", {"confidence": 95}, 422, "validation"),
        ("/v1/nps", {"method": "bootstrap"}, 422, "validation"),
        ("/v1/nps", {"region": ""}, 422, "validation"),
        ("/v1/nps/trend", {"granularity": "year"}, 422, "validation"),
        ("/v1/nps/colour", {}, 422, "validation"),
        ("/v1/drivers", {"confidence": 0.2}, 422, "validation"),
    ],
)
async def test_bad_parameters_are_problems(
    client: httpx.AsyncClient,
    bearer: Any,
    path: str,
    params: dict[str, Any],
    status: int,
    kind: str,
) -> None:
    answer = await client.get(path, params=params, headers=bearer(new_tenant(), "read"))
    assert_problem(answer, status, kind)


# --- tenants and tokens ------------------------------------------------------------------------


async def test_another_tenant_sees_nothing_of_this_tenant_s_answers(
    client: httpx.AsyncClient, segmented: str, bearer: Any
) -> None:
    other = bearer(new_tenant(), "read")
    assert counts(await get(client, other, "/v1/nps")) == figures(0, 0, 0, 0)
    assert counts(await get(client, other, "/v1/nps", region="PL")) == figures(0, 0, 0, 0)
    assert counts(await get(client, other, "/v1/nps", region="PL", product="billing")) == (
        figures(0, 0, 0, 0)
    )
    assert counts(await get(client, other, "/v1/accounts/acme/nps")) == figures(0, 0, 0, 0)
    for by in ("region", "account", "survey"):
        assert (await get(client, other, "/v1/nps/breakdown", by=by))["segments"] == []
    assert (await get(client, other, "/v1/nps/region"))["segments"] == []
    assert (await get(client, other, "/v1/accounts"))["accounts"] == []
    assert (await get(client, other, "/v1/drivers", window="all"))["drivers"] == []
    trend = await get(client, other, "/v1/nps/trend", month="2026-04")
    assert {p["n"] for p in trend["points"]} == {0}
    # ... while the tenant's own token sees its answers.
    assert (await get(client, bearer(segmented, "read"), "/v1/nps"))["n"] == 7


async def test_reading_needs_a_token_with_the_read_scope(
    client: httpx.AsyncClient, segmented: str, bearer: Any
) -> None:
    assert_problem(await client.get("/v1/nps"), 401, "unauthorized")
    writer = bearer(segmented, "responses:write")
    assert_problem(await client.get("/v1/nps", headers=writer), 403, "forbidden")
    assert (await get(client, bearer(segmented, "admin"), "/v1/nps"))["n"] == 7
