"""Custom attributes end to end in scoring (`SCORING_ATTRIBUTES=["plan", "tier"]`): counted per
cell and in the single-dimension rollup, filtered alone and with built-in filters through each
read path (rollup, cells, an account's responses), broken down by, compared, projected, and
refused by name when not scored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app

from .support import PROBLEM, corrected, feed, get, invited, received, runtime_of

MAY_5 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)
MAY = {"from": "2024-05-01", "to": "2024-06-01"}
GOLD = "plan:gold"


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    settings = ScoringSettings(
        scoring_time_zone="Europe/Warsaw", scoring_attributes=("plan", "tier")
    )
    app = create_scoring_app(settings)
    yield app
    await runtime_of(app).engine.dispose()
    await runtime_of(app).worker_engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"it-attr-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def read(bearer: Any, tenant: str) -> dict[str, str]:
    headers: dict[str, str] = bearer(tenant, "read")
    return headers


async def seed(app: FastAPI, tenant: str) -> dict[str, Any]:
    """Six answers and three invitations on 5 May 2024:

    | answer | score | region | account | plan   | tier | other     |
    | r1     | 10    | PL     | acme    | gold   | smb  |           |
    | r2     | 3     | PL     | acme    | gold   |      | comment   |
    | r3     | 9     | DE     |         | gold   | ent  |           |
    | r4     | 8     | PL     |         | silver | smb  |           |
    | r5     | 0     | PL     | acme    |        |      |           |
    | r6     | 10    | PL     |         | gold   |      | colour (not scored) |
    """
    answers = {
        "r1": received(
            10, MAY_5, region="PL", account="acme", attributes={"plan": "gold", "tier": "smb"}
        ),
        "r2": received(
            3,
            MAY_5,
            region="PL",
            account="acme",
            comment="Obsługa fatalna",
            attributes={"plan": "gold"},
        ),
        "r3": received(9, MAY_5, region="DE", attributes={"plan": "gold", "tier": "ent"}),
        "r4": received(8, MAY_5, region="PL", attributes={"plan": "silver", "tier": "smb"}),
        "r5": received(0, MAY_5, region="PL", account="acme"),
        "r6": received(10, MAY_5, region="PL", attributes={"plan": "gold", "colour": "blue"}),
    }
    invitations = [
        invited(MAY_5, region="PL", attributes={"plan": "gold"}),
        invited(MAY_5, region="DE", attributes={"plan": "gold", "colour": "red"}),
        invited(MAY_5, region="PL", attributes={"plan": "silver"}),
    ]
    await feed(app, tenant, [*answers.values(), *invitations])
    return answers


def counts(body: dict[str, Any]) -> tuple[int, int, int]:
    return body["promoters"], body["passives"], body["detractors"]


async def nps(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    return await get(client, headers, "/v1/nps", **params)


async def test_an_attribute_alone_is_read_from_the_rollup_with_its_invitations(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    gold = await nps(client, read, attribute=GOLD)
    smb = await nps(client, read, attribute="tier:smb")

    assert counts(gold) == (3, 0, 1)
    assert gold["filters"] == {"attr.plan": "gold"}
    assert gold["invitations"] == 2
    assert counts(smb) == (1, 1, 0)


async def test_attributes_combine_with_each_other_and_with_built_in_filters_through_the_cells(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    gold_pl = await nps(client, read, attribute=GOLD, region="PL")
    gold_smb = await nps(client, read, attribute=[GOLD, "tier:smb"])
    gold_smb_de = await nps(client, read, attribute=[GOLD, "tier:smb"], region="DE")
    gold_survey = await nps(client, read, attribute=GOLD, survey="relationship")

    assert counts(gold_pl) == (2, 0, 1)
    assert gold_pl["invitations"] == 1
    assert gold_pl["filters"] == {"region": "PL", "attr.plan": "gold"}
    assert counts(gold_smb) == (1, 0, 0)
    assert gold_smb_de["n"] == 0
    assert gold_smb_de["nps"] is None
    # The same answers whichever table they are read from: the cells and the rollup agree.
    assert {k: gold_survey[k] for k in ("n", "nps", "invitations")} == {
        k: (await nps(client, read, attribute=GOLD))[k] for k in ("n", "nps", "invitations")
    }


async def test_an_attribute_with_an_account_is_read_from_the_account_s_responses(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    acme_gold = await nps(client, read, account="acme", attribute=GOLD)
    acme_gold_smb = await nps(client, read, account="acme", attribute=[GOLD, "tier:smb"])
    accounts = await get(client, read, "/v1/accounts", attribute=GOLD)

    assert counts(acme_gold) == (1, 0, 1)
    assert counts(acme_gold_smb) == (1, 0, 0)
    assert [(a["account_id"], a["n"]) for a in accounts["accounts"]] == [("acme", 2)]


async def test_a_breakdown_by_an_attribute_has_one_row_per_value_through_each_path(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    def rows(body: dict[str, Any]) -> list[tuple[str, int]]:
        return [(row["segment"], row["n"]) for row in body["segments"]]

    everything = await get(client, read, "/v1/nps/breakdown", by="attr.plan")
    in_pl = await get(client, read, "/v1/nps/breakdown", by="attr.plan", region="PL")
    of_acme = await get(client, read, "/v1/nps/breakdown", by="attr.plan", account="acme")
    tiers_of_gold = await get(client, read, "/v1/nps/breakdown", by="attr.tier", attribute=GOLD)
    regions_of_gold = await get(client, read, "/v1/nps/breakdown", by="region", attribute=GOLD)

    assert everything["by"] == "attr.plan"
    assert rows(everything) == [("gold", 4), ("silver", 1)]
    assert rows(in_pl) == [("gold", 3), ("silver", 1)]
    assert rows(of_acme) == [("gold", 2)]
    assert rows(tiers_of_gold) == [("ent", 1), ("smb", 1)]
    assert rows(regions_of_gold) == [("PL", 3), ("DE", 1)]


async def test_trend_drivers_compare_and_what_if_take_attribute_filters(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    trend = await get(
        client, read, "/v1/nps/trend", attribute=GOLD, region="PL", granularity="month", **MAY
    )
    drivers = await get(client, read, "/v1/drivers", attribute=GOLD, window="all")
    compared = await get(
        client, read, "/v1/nps/compare", attribute=GOLD, baseline_attribute="plan:silver"
    )
    what_if = await client.post(
        "/v1/what-if",
        headers=read,
        json={
            "scenario": {"kind": "win-back", "segment": {"attribute": [GOLD]}, "share": 1.0},
            "filters": {"region": "PL"},
            "window": "all",
        },
    )

    assert [p["n"] for p in trend["points"]] == [3]
    service = next(d for d in drivers["drivers"] if d["theme"] == "customer service")
    assert (drivers["n"], service["mentions"]["detractors"]) == (4, 1)
    assert compared["compared"]["filters"] == {"attr.plan": "gold"}
    assert compared["baseline"]["filters"] == {"attr.plan": "silver"}
    assert (compared["compared"]["n"], compared["baseline"]["n"]) == (4, 1)
    assert what_if.status_code == 200, what_if.text
    # In PL: r1, r2, r4, r5, r6; winning back gold's one detractor (r2) leaves r5.
    assert what_if.json()["projected_counts"] == {
        "promoters": 2.0,
        "passives": 2.0,
        "detractors": 1.0,
    }


async def test_a_correction_of_an_attribute_moves_the_answer_to_its_new_value(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    answers = await seed(app, tenant)

    await feed(app, tenant, [corrected(answers["r4"], 2, attributes={"plan": "gold"})])

    gold = await nps(client, read, attribute=GOLD)
    silver = await nps(client, read, attribute="plan:silver")
    silver_smb = await nps(client, read, attribute=["plan:silver", "tier:smb"])
    assert counts(gold) == (3, 1, 1)
    assert silver["n"] == 0
    assert silver["invitations"] == 1
    assert silver_smb["n"] == 0


async def test_attributes_that_are_not_scored_are_ignored_and_refused_as_filters(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, read: dict[str, str]
) -> None:
    await seed(app, tenant)

    by_colour = await client.get("/v1/nps/breakdown", params={"by": "attr.colour"}, headers=read)
    colour = await client.get("/v1/nps", params={"attribute": "colour:blue"}, headers=read)
    baseline = await client.get(
        "/v1/nps/compare",
        params={"attribute": GOLD, "baseline_attribute": "colour:blue"},
        headers=read,
    )
    malformed = await client.get("/v1/nps", params={"attribute": "plan"}, headers=read)
    bad_by = await client.get("/v1/nps/breakdown", params={"by": "attr.Plan"}, headers=read)
    async with runtime_of(app).sessions() as session:
        stored = (
            await session.execute(
                sa.text("SELECT attributes FROM scoring.cells WHERE tenant_id = :t"),
                {"t": tenant},
            )
        ).scalars()
        attribute_names = {name for attributes in stored for name in attributes}

    for refused in (by_colour, colour, baseline):
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["type"] == "urn:closeloop:problem:unknown-attribute"
        assert refused.json()["scored_attributes"] == ["plan", "tier"]
        assert "plan, tier" in refused.json()["detail"]
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "urn:closeloop:problem:invalid-attribute-filter"
    assert bad_by.status_code == 422
    assert attribute_names == {"plan", "tier"}
    everyone = await nps(client, read)
    assert everyone["n"] == 6
    assert everyone["invitations"] == 3
