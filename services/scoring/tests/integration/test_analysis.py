"""What managers decide from: comparisons, drivers, what-if projections, accounts and their
weights. Expected figures were worked out from the formulas in `docs/scoring.md`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from .support import assert_problem, counts, feed, get, new_tenant, post, received

# --- compare -----------------------------------------------------------------------------------

MARCH = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
APRIL = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
SCORE = {"promoters": 10, "passives": 8, "detractors": 3}


@pytest.fixture(scope="module")
async def two_months(app: FastAPI) -> str:
    """March: PL 2/1/5 (promoters/passives/detractors), DE 1/1/0; April: PL 6/2/2, DE 1/0/3.
    So April 7/2/5 (NPS 14.29) against March 3/2/5 (-20); PL 8/3/7 against DE 2/1/3."""
    mix = {
        (MARCH, "PL"): (2, 1, 5),
        (MARCH, "DE"): (1, 1, 0),
        (APRIL, "PL"): (6, 2, 2),
        (APRIL, "DE"): (1, 0, 3),
    }
    events = []
    for (at, region), numbers in mix.items():
        for category, count in zip(SCORE, numbers, strict=True):
            events += [received(SCORE[category], at, region=region) for _ in range(count)]
    tenant = new_tenant()
    await feed(app, tenant, events)
    return tenant


async def test_comparing_two_windows(
    client: httpx.AsyncClient, two_months: str, bearer: Any
) -> None:
    h = bearer(two_months, "read")
    body = await get(
        client,
        h,
        "/v1/nps/compare",
        month="2026-04",
        baseline_from="2026-03-01",
        baseline_to="2026-04-01",
        method="wald",
    )
    assert (body["compared"]["n"], body["compared"]["nps"]) == (14, 14.29)
    assert (body["baseline"]["n"], body["baseline"]["nps"]) == (10, -20.0)
    assert body["compared"]["window"]["from"] == "2026-04-01"
    assert body["baseline"]["window"] == {
        "from": "2026-03-01",
        "to": "2026-04-01",
        "time_zone": "Europe/Warsaw",
    }
    assert body["comparison"] == {
        "difference": 34.29,
        "standard_error": 36.8465,
        "z": 0.9305,
        "p_value": 0.352112,
        "significant": False,
        "confidence": 0.95,
        "method": "wald",
    }
    adjusted = await get(
        client,
        h,
        "/v1/nps/compare",
        month="2026-04",
        baseline_from="2026-03-01",
        baseline_to="2026-04-01",
    )
    assert adjusted["comparison"]["difference"] == 27.15  # of the adjusted NPS
    assert adjusted["comparison"]["standard_error"] == 31.6688
    assert adjusted["comparison"]["p_value"] == 0.391284


async def test_comparing_two_segments_in_both_forms(
    client: httpx.AsyncClient, two_months: str, bearer: Any
) -> None:
    h = bearer(two_months, "read")
    body = await get(client, h, "/v1/nps/compare", region="PL", baseline_region="DE", method="wald")
    assert body["compared"]["filters"] == {"region": "PL"}
    assert body["baseline"]["filters"] == {"region": "DE"}
    assert (body["compared"]["n"], body["compared"]["nps"]) == (18, 5.56)
    assert (body["baseline"]["n"], body["baseline"]["nps"]) == (6, -16.67)
    assert body["comparison"]["difference"] == 22.22
    assert body["comparison"]["standard_error"] == 42.4716
    assert body["comparison"]["z"] == 0.5232
    assert body["comparison"]["p_value"] == 0.600818
    # The first version's form: one dimension, a segment and a baseline segment.
    legacy = await get(
        client,
        h,
        "/v1/nps/compare",
        dimension="region",
        segment="PL",
        baseline_segment="DE",
        method="wald",
    )
    assert legacy["comparison"] == body["comparison"]
    assert (legacy["compared"]["segment"], legacy["baseline"]["segment"]) == ("PL", "DE")
    assert counts(legacy["compared"]) == counts(body["compared"])
    assert counts(legacy["baseline"]) == counts(body["baseline"])


async def test_wald_and_adjusted_wald_can_disagree_on_significance(
    client: httpx.AsyncClient, two_months: str, bearer: Any
) -> None:
    h = bearer(two_months, "read")
    params = {
        "region": "PL",
        "month": "2026-04",
        "baseline_from": "2026-03-01",
        "baseline_to": "2026-04-01",
    }
    wald = (await get(client, h, "/v1/nps/compare", method="wald", **params))["comparison"]
    adjusted = (await get(client, h, "/v1/nps/compare", **params))["comparison"]
    assert (wald["difference"], wald["z"], wald["p_value"], wald["significant"]) == (
        77.5,
        1.9635,
        0.049593,
        True,
    )
    assert (adjusted["difference"], adjusted["z"], adjusted["p_value"]) == (58.04, 1.7311, 0.08343)
    assert adjusted["significant"] is False
    at_90 = await get(client, h, "/v1/nps/compare", confidence=0.9, **params)
    assert at_90["comparison"]["significant"] is True  # p 0.083 < 0.10


async def test_a_comparison_needs_a_baseline_that_differs_and_answers_on_both_sides(
    client: httpx.AsyncClient, two_months: str, bearer: Any
) -> None:
    h = bearer(two_months, "read")
    for params in (
        {},
        {"region": "PL"},
        {"region": "PL", "baseline_region": "PL"},
        {"month": "2026-04", "baseline_from": "2026-04-01", "baseline_to": "2026-05-01"},
        {"dimension": "region", "segment": "PL"},
    ):
        answer = await client.get("/v1/nps/compare", params=params, headers=h)
        assert_problem(answer, 400, "nothing-to-compare")
    empty = await get(client, h, "/v1/nps/compare", region="PL", baseline_region="XX")
    assert empty["comparison"] is None
    assert (empty["compared"]["n"], empty["baseline"]["n"], empty["baseline"]["nps"]) == (
        18,
        0,
        None,
    )
    answer = await client.get(
        "/v1/nps/compare",
        params={"region": "PL", "baseline_from": "2026-04-01", "baseline_to": "2026-03-01"},
        headers=h,
    )
    assert_problem(answer, 400, "invalid-window")


# --- drivers and what-if -----------------------------------------------------------------------

COMMENTS: list[tuple[int, str | None, str]] = [
    (2, "Obsługa klienta fatalna, nikt nie odbiera", "acme"),
    (3, "obsluga byla niemila", "acme"),  # no diacritics
    (1, "Obsłudze brakuje wiedzy", "acme"),  # inflected
    (4, "Kurier spóźniony, dostawa trwała tydzień", "acme"),
    (7, "obslugi nie bylo", "acme"),  # inflected and no diacritics
    (10, "Świetna obsługa", "globex"),
    (9, "Szybka dostawa", "globex"),
    (10, None, "globex"),
    (8, "cena ok", "globex"),
    (0, "za drogo", "globex"),
]


@pytest.fixture(scope="module")
async def commented(app: FastAPI) -> str:
    """10 answers on 10 April, NPS -20: 3 promoters, 2 passives, 5 detractors; acme 0/1/4,
    globex 3/1/1."""
    tenant = new_tenant()
    await feed(
        app,
        tenant,
        [
            received(score, APRIL, comment=comment, account=account, region="PL")
            for score, comment, account in COMMENTS
        ],
    )
    return tenant


async def test_drivers_give_each_theme_s_shares_and_impact_whatever_the_spelling(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    body = await get(client, h, "/v1/drivers")  # 90 days by default
    assert (body["n"], body["nps"]) == (10, -20.0)
    assert body["window"]["from"] == "2026-01-16"
    found = {d["theme"]: d for d in body["drivers"]}
    assert [d["theme"] for d in body["drivers"]] == ["customer service", "delivery", "price"]
    service = found["customer service"]
    assert service["mentions"] == {"promoters": 1, "passives": 1, "detractors": 3}
    assert (
        service["share_of_detractors"],
        service["share_of_passives"],
        service["share_of_promoters"],
    ) == (0.6, 0.5, 0.3333)
    assert (service["nps_impact"], service["impact_low"], service["impact_high"]) == (
        30.0,
        10.33,
        60.77,
    )
    assert service["confidence"] == 0.95
    delivery = found["delivery"]
    assert delivery["mentions"] == {"promoters": 1, "passives": 0, "detractors": 1}
    assert (delivery["nps_impact"], delivery["impact_low"], delivery["impact_high"]) == (
        10.0,
        0.0,
        42.6,
    )
    assert found["price"]["mentions"] == {"promoters": 0, "passives": 1, "detractors": 1}
    assert found["price"]["share_of_promoters"] == 0.0
    # The same on another path: through the cells, and an account's own responses.
    assert (await get(client, h, "/v1/drivers", region="PL", survey="relationship"))[
        "drivers"
    ] == body["drivers"]
    acme = await get(client, h, "/v1/drivers", account="acme")
    assert (acme["n"], acme["nps"]) == (5, -80.0)
    assert [
        (d["theme"], d["nps_impact"], d["impact_low"], d["impact_high"]) for d in (acme["drivers"])
    ] == [("customer service", 60.0, 22.91, 88.4), ("delivery", 20.0, 2.03, 64.04)]
    assert acme["drivers"][0]["share_of_promoters"] is None  # acme has no promoter
    assert (await get(client, h, "/v1/drivers", month="2026-03"))["drivers"] == []


async def what_if(
    client: httpx.AsyncClient, headers: dict[str, str], scenario: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return await post(client, headers, "/v1/what-if", {"scenario": scenario, **more})


async def test_the_responses_that_mention_a_theme_whoever_complained(
    client: httpx.AsyncClient, app: FastAPI, bearer: Any
) -> None:
    tenant = new_tenant()
    made = [
        received(score, APRIL, comment=comment, account=account, region="PL",
                 response_id=f"r-{i:02d}")
        for i, (score, comment, account) in enumerate(COMMENTS)
    ]  # fmt: skip
    await feed(app, tenant, made)
    h = bearer(tenant, "read")

    body = await get(client, h, "/v1/themes/customer service/responses")
    # Detractors and passives who wrote about the service, any spelling; not the promoter.
    assert body["response_ids"] == ["r-00", "r-01", "r-02", "r-04"]
    assert (body["categories"], body["truncated"]) == (["detractor", "passive"], False)
    every = await get(
        client, h, "/v1/themes/customer service/responses",
        category=["promoter", "passive", "detractor"],
    )  # fmt: skip
    assert every["response_ids"] == ["r-00", "r-01", "r-02", "r-04", "r-05"]
    assert (await get(client, h, "/v1/themes/delivery/responses", account="globex"))[
        "response_ids"
    ] == []
    assert (await get(client, h, "/v1/themes/delivery/responses", account="acme"))[
        "response_ids"
    ] == ["r-03"]
    limited = await get(client, h, "/v1/themes/customer service/responses", limit=2)
    assert (limited["response_ids"], limited["truncated"]) == (["r-00", "r-01"], True)
    assert (await get(client, h, "/v1/themes/customer service/responses", month="2026-03"))[
        "response_ids"
    ] == []
    other = await get(client, bearer(new_tenant(), "read"), "/v1/themes/delivery/responses")
    assert other["response_ids"] == []


async def test_what_if_a_theme_s_detractors_became_passives(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    body = await what_if(
        client, h, {"kind": "theme-detractors-become-passives", "theme": "customer service"}
    )
    assert (body["today"]["nps"], body["projected_nps"], body["change"]) == (-20.0, 10.0, 30.0)
    assert body["projected_counts"] == {"promoters": 3.0, "passives": 5.0, "detractors": 2.0}
    assert (body["ci_low"], body["ci_high"]) == (-30.52, 45.9)
    assert (body["method"], body["confidence"]) == ("adjusted-wald", 0.95)
    assert body["window"]["from"] == "2026-01-16"  # 90 days by default
    unknown = await what_if(client, h, {"kind": "theme-detractors-become-passives", "theme": "x"})
    assert (unknown["projected_nps"], unknown["change"]) == (-20.0, 0.0)


async def test_what_if_a_share_of_a_segment_s_detractors_were_won_back(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    scenario = {"kind": "win-back", "segment": {"account": "acme"}, "share": 0.5}
    to_passives = await what_if(client, h, scenario, window="all")
    assert (to_passives["projected_nps"], to_passives["change"]) == (0.0, 20.0)
    assert to_passives["projected_counts"] == {"promoters": 3.0, "passives": 4.0, "detractors": 3.0}
    assert (to_passives["ci_low"], to_passives["ci_high"]) == (-41.29, 41.29)
    to_promoters = await what_if(client, h, {**scenario, "to": "promoter"}, window="all")
    assert (to_promoters["projected_nps"], to_promoters["change"]) == (20.0, 40.0)
    assert (to_promoters["ci_low"], to_promoters["ci_high"]) == (-30.33, 61.1)


async def test_what_if_a_segment_reached_a_target_nps(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    body = await what_if(
        client, h, {"kind": "segment-reaches-nps", "segment": {"account": "globex"}, "target": 80}
    )
    # globex 3/1/1 (NPS 40) becomes 4/1/0: a detractor to passive, a passive to promoter.
    assert body["projected_counts"] == {"promoters": 4.0, "passives": 2.0, "detractors": 4.0}
    assert (body["projected_nps"], body["change"]) == (0.0, 20.0)
    assert (body["ci_low"], body["ci_high"]) == (-46.47, 46.47)
    wald = await what_if(
        client,
        h,
        {"kind": "segment-reaches-nps", "segment": {"account": "globex"}, "target": 80},
        method="wald",
        confidence=0.9,
    )
    assert (wald["method"], wald["confidence"], wald["projected_nps"]) == ("wald", 0.9, 0.0)


async def test_what_if_narrows_the_scenario_s_segment_by_the_request_s_filters(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    within = await what_if(
        client,
        h,
        {"kind": "win-back", "segment": {"region": "PL"}, "share": 1.0},
        filters={"account": "acme"},
    )
    assert within["today"]["n"] == 5
    assert within["projected_counts"] == {"promoters": 0.0, "passives": 5.0, "detractors": 0.0}
    # A segment outside the answers the filters select holds none of them: nothing to win back.
    outside = await what_if(
        client,
        h,
        {"kind": "win-back", "segment": {"account": "globex"}, "share": 1.0},
        filters={"account": "acme"},
    )
    assert (outside["today"]["nps"], outside["projected_nps"], outside["change"]) == (
        -80.0,
        -80.0,
        0.0,
    )


async def test_an_impossible_or_invalid_scenario_is_a_problem(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    nobody = {"kind": "segment-reaches-nps", "segment": {"account": "umbrella"}, "target": 50}
    answer = await client.post("/v1/what-if", json={"scenario": nobody}, headers=h)
    assert "no answer" in assert_problem(answer, 422, "impossible-scenario")["detail"]
    for bad in (
        {"scenario": {"kind": "win-back", "share": 1.5}},
        {"scenario": {"kind": "win-back", "share": 0}},
        {"scenario": {"kind": "segment-reaches-nps", "target": 101}},
        {"scenario": {"kind": "promote-everyone"}},
        {"scenario": {"kind": "theme-detractors-become-passives", "theme": ""}},
        {"scenario": {"kind": "win-back", "share": 0.5}, "window": "fortnight"},
        {"scenario": {"kind": "win-back", "share": 0.5}, "confidence": 1.2},
    ):
        assert_problem(await client.post("/v1/what-if", json=bad, headers=h), 422, "validation")


# --- accounts ----------------------------------------------------------------------------------


async def test_accounts_each_with_their_nps_and_a_revenue_weighted_one(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    admin = bearer(commented, "admin")
    listed = await get(client, h, "/v1/accounts", weighted=True)
    assert [
        (a["account_id"], a["n"], a["nps"], a["revenue_weight"]) for a in listed["accounts"]
    ] == [
        ("acme", 5, -80.0, None),
        ("globex", 5, 40.0, None),
    ]
    assert listed["weighted"] == {"nps": None, "accounts": 0, "accounts_without_weight": 2}
    # Setting a weight needs the admin scope.
    for scopes in (("read",), ("responses:write",), ("cases:write",)):
        answer = await client.put(
            "/v1/accounts/acme/weight",
            json={"revenue_weight": 100},
            headers=bearer(commented, *scopes),
        )
        assert_problem(answer, 403, "forbidden")
    assert (await get(client, h, "/v1/accounts/acme/nps"))["revenue_weight"] is None
    answer = await client.put(
        "/v1/accounts/acme/weight", json={"revenue_weight": 50}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["revenue_weight"] == 50
    answer = await client.put(
        "/v1/accounts/acme/weight", json={"revenue_weight": 100}, headers=admin
    )
    assert answer.json()["account_id"] == "acme"
    answer = await client.put(
        "/v1/accounts/globex/weight", json={"revenue_weight": 300.0}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    answer = await client.put(
        "/v1/accounts/umbrella/weight", json={"revenue_weight": 1000.0}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert_problem(
        await client.put("/v1/accounts/acme/weight", json={"revenue_weight": -1}, headers=admin),
        422,
        "validation",
    )
    weighted = await get(client, h, "/v1/accounts", weighted=True)
    # (-80 x 100 + 40 x 300) / 400; umbrella has a weight but no answer.
    assert weighted["weighted"] == {"nps": 10.0, "accounts": 2, "accounts_without_weight": 0}
    assert [(a["account_id"], a["revenue_weight"]) for a in weighted["accounts"]] == [
        ("acme", 100.0),
        ("globex", 300.0),
    ]
    assert "weighted" not in await get(client, h, "/v1/accounts")
    limited = await get(client, h, "/v1/accounts", weighted=True, limit=1)
    assert [a["account_id"] for a in limited["accounts"]] == ["acme"]
    assert limited["truncated"] is True
    assert limited["weighted"]["nps"] == 10.0  # over every account, not the page
    one = await get(client, h, "/v1/accounts/globex/nps")
    assert (one["account_id"], one["revenue_weight"], one["n"], one["nps"]) == (
        "globex",
        300.0,
        5,
        40.0,
    )
    assert (one["promoters"], one["passives"], one["detractors"]) == (3, 1, 1)
    unknown = await get(client, h, "/v1/accounts/nobody/nps")
    assert (unknown["n"], unknown["nps"], unknown["revenue_weight"]) == (0, None, None)
    # Another tenant sees neither the accounts nor their weights.
    other = bearer(new_tenant(), "read")
    assert (await get(client, other, "/v1/accounts", weighted=True))["weighted"] == {
        "nps": None,
        "accounts": 0,
        "accounts_without_weight": 0,
    }
    assert (await get(client, other, "/v1/accounts/globex/nps"))["revenue_weight"] is None


async def test_accounts_narrowed_by_filters_and_windows(
    client: httpx.AsyncClient, commented: str, two_months: str, bearer: Any
) -> None:
    h = bearer(commented, "read")
    assert (await get(client, h, "/v1/accounts", month="2026-03"))["accounts"] == []
    assert [
        a["n"] for a in (await get(client, h, "/v1/accounts", region="PL", window="7d"))["accounts"]
    ] == [5, 5]
    assert (await get(client, h, "/v1/accounts", region="DE"))["accounts"] == []
    # Answers without an account are in no account's row.
    assert (await get(client, bearer(two_months, "read"), "/v1/accounts"))["accounts"] == []


async def test_comparing_two_accounts(
    client: httpx.AsyncClient, commented: str, bearer: Any
) -> None:
    body = await get(
        client,
        bearer(commented, "read"),
        "/v1/nps/compare",
        account="acme",
        baseline_account="globex",
        method="wald",
    )
    assert (body["compared"]["nps"], body["baseline"]["nps"]) == (-80.0, 40.0)
    # SE: 100 sqrt(0.16 / 5) = 17.8885 and 100 sqrt(0.64 / 5) = 35.7771, together 40.
    assert body["comparison"]["difference"] == -120.0
    assert body["comparison"]["standard_error"] == 40.0
    assert (body["comparison"]["z"], body["comparison"]["p_value"]) == (-3.0, 0.0027)
    assert body["comparison"]["significant"] is True
