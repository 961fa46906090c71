"""Any combination of filters gives the counts of the data it selects, whichever read path answers
it (`views.py`: the single-dimension rollup, the cells, the stored responses of an account).

A random but fixed data set (answers, suspected answers and invitations over three and a half
months, every segment attribute sometimes missing) is fed through the handlers once; every 1- and
2-filter combination, every breakdown and some trends are then checked against counts computed
here in Python from the same data.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from closeloop_common.events import Category, categorize

from .support import (
    WARSAW,
    SegmentArgs,
    counts,
    feed,
    get,
    invited,
    new_tenant,
    received,
    suspected,
)

SURVEYS = ("relationship", "onboarding")
ACCOUNTS = ("acme", "globex", "initech")
VALUES: dict[str, tuple[str | None, ...]] = {
    "product": ("billing", "app", None),
    "region": ("PL", "DE", "CZ", None),
    "touchpoint": ("renewal", "support", None),
}
# Every answer and invitation is on the channel `email`: a filter that matches everything, to send
# a query down another read path.
EVERYTHING = {"channel": "email"}
FIRST_DAY = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_HOURS = 104 * 24 + 20  # the last answer before 23:00 on 15 April, local
WINDOW = {"from": "2026-02-01", "to": "2026-04-01"}


@dataclass(frozen=True)
class Fact:
    """One answer or invitation as the data set holds it."""

    kind: str  # "answer", "suspected" or "invitation"
    score: int
    at: datetime
    attributes: Mapping[str, str | None]  # survey, account, product, region, touchpoint

    @property
    def day(self) -> date:
        return self.at.astimezone(WARSAW).date()

    def matches(self, filters: Mapping[str, str], first: date | None, end: date | None) -> bool:
        if first is not None and self.day < first:
            return False
        if end is not None and self.day >= end:
            return False
        return all(self.attributes.get(k) == v for k, v in filters.items() if k != "channel")


def make_facts(seed: int) -> list[Fact]:
    rng = random.Random(seed)

    def attributes() -> dict[str, str | None]:
        found: dict[str, str | None] = {
            "survey": rng.choice(SURVEYS),
            "account": rng.choice(ACCOUNTS),
        }
        for name, values in VALUES.items():
            found[name] = rng.choice(values)
        return found

    facts = []
    for i in range(150):
        kind = "invitation" if i % 5 == 4 else "suspected" if i % 11 == 0 else "answer"
        at = FIRST_DAY + timedelta(hours=rng.randrange(SPAN_HOURS), minutes=rng.randrange(60))
        facts.append(Fact(kind, rng.randrange(11), at, attributes()))
    return facts


FACTS = make_facts(20260415)


def expected(
    filters: Mapping[str, str], first: date | None = None, end: date | None = None
) -> dict[str, Any]:
    """The counts, NPS and response rate of the facts the filters and days select."""
    found = {"promoter": 0, "passive": 0, "detractor": 0, "suspected": 0, "invitations": 0}
    for fact in FACTS:
        if not fact.matches(filters, first, end):
            continue
        if fact.kind == "invitation":
            found["invitations"] += 1
        elif fact.kind == "suspected":
            found["suspected"] += 1
        else:
            found[categorize(fact.score).value] += 1
    n = found["promoter"] + found["passive"] + found["detractor"]
    return {
        "n": n,
        "promoters": found["promoter"],
        "passives": found["passive"],
        "detractors": found["detractor"],
        "suspected": found["suspected"],
        "invitations": found["invitations"],
        "nps": None if n == 0 else round(100.0 * (found["promoter"] - found["detractor"]) / n, 2),
        "response_rate": round(n / found["invitations"], 4) if found["invitations"] else None,
    }


def seen(figures: Mapping[str, Any]) -> bool:
    """Whether a segment has a row: answers, suspected answers or invitations."""
    return any(figures[k] for k in ("n", "suspected", "invitations"))


def events_of(facts: Iterable[Fact]) -> list[Any]:
    events: list[Any] = []
    for fact in facts:
        a = fact.attributes
        given = {k: v for k, v in a.items() if k in VALUES and v is not None}
        segments = cast(SegmentArgs, {**given, **EVERYTHING})
        if fact.kind == "invitation":
            events.append(
                invited(fact.at, survey=str(a["survey"]), account=a["account"], **segments)
            )
            continue
        answer = received(
            fact.score, fact.at, survey=str(a["survey"]), account=a["account"], **segments
        )
        events.append(suspected(answer) if fact.kind == "suspected" else answer)
    return events


DIMENSIONS = ("survey", "account", "product", "region", "touchpoint")


def values_of(dimension: str) -> list[str]:
    """The values a filter is tried with: each one the data has, and one it has not."""
    if dimension == "survey":
        return [*SURVEYS, "nps-2020"]
    if dimension == "account":
        return [*ACCOUNTS, "umbrella"]
    return [*(v for v in VALUES[dimension] if v is not None), "XX"]


def combinations() -> list[dict[str, str]]:
    found = [{d: v} for d in DIMENSIONS for v in values_of(d)]
    for first, second in itertools.combinations(DIMENSIONS, 2):
        for a, b in itertools.product(values_of(first)[:-1], values_of(second)[:-1]):
            found.append({first: a, second: b})
    return found


@pytest.fixture(scope="module")
async def data(app: FastAPI) -> str:
    """The tenant whose data is `FACTS`, fed in batches of different sizes."""
    tenant = new_tenant()
    events = events_of(FACTS)
    start = 0
    for size in itertools.cycle((1, 7, 40, 13)):
        if start >= len(events):
            break
        await feed(app, tenant, events[start : start + size])
        start += size
    return tenant


def test_the_data_set_reaches_every_path_and_kind() -> None:
    kinds = {f.kind for f in FACTS}
    assert kinds == {"answer", "suspected", "invitation"}
    assert {categorize(f.score) for f in FACTS} == set(Category)
    assert expected({})["n"] == 108
    assert expected({})["suspected"] == 12
    assert expected({})["invitations"] == 30


async def test_every_filter_combination_counts_the_same_on_every_path(
    client: httpx.AsyncClient, data: str, bearer: Any
) -> None:
    h = bearer(data, "read")
    first, end = date.fromisoformat(WINDOW["from"]), date.fromisoformat(WINDOW["to"])
    checked = 0
    for filters in combinations():
        want = expected(filters)
        # As asked: one filter (no account) is the rollup; two, or an account, the cells or
        # the stored responses.
        assert counts(await get(client, h, "/v1/nps", **filters)) == want, filters
        # With a filter that matches everything: the cells (or an account's responses).
        assert counts(await get(client, h, "/v1/nps", **filters, **EVERYTHING)) == want, filters
        # Per account, from the stored responses: the rows add up, and each is that account's.
        if "account" not in filters:
            rows = (await get(client, h, "/v1/nps/breakdown", by="account", **filters))["segments"]
            per_account = {a: expected({**filters, "account": a}) for a in ACCOUNTS}
            assert {r["segment"]: counts(r) for r in rows} == {
                a: c for a, c in per_account.items() if seen(c)
            }, filters
        # Over a window of local days.
        windowed = expected(filters, first, end)
        assert counts(await get(client, h, "/v1/nps", **filters, **WINDOW)) == windowed, filters
        assert (
            counts(await get(client, h, "/v1/nps", **filters, **EVERYTHING, **WINDOW)) == windowed
        ), filters
        checked += 1
    assert checked == 74


@pytest.mark.parametrize("by", DIMENSIONS)
async def test_a_breakdown_has_one_row_per_value_with_that_value_s_counts(
    client: httpx.AsyncClient, data: str, bearer: Any, by: str
) -> None:
    h = bearer(data, "read")
    narrowing: list[dict[str, str]] = [{}, EVERYTHING]
    narrowing += [{d: v} for d in DIMENSIONS if d != by for v in values_of(d)[:1]]
    for filters in narrowing:
        body = await get(client, h, "/v1/nps/breakdown", by=by, **filters, **WINDOW)
        first, end = date.fromisoformat(WINDOW["from"]), date.fromisoformat(WINDOW["to"])
        per_value = {v: expected({**filters, by: v}, first, end) for v in values_of(by)[:-1]}
        want = {v: c for v, c in per_value.items() if seen(c)}
        rows = body["segments"]
        assert {r["segment"]: counts(r) for r in rows} == want, filters
        # Most answers first, then by name; no row for answers without the attribute.
        assert [r["segment"] for r in rows] == sorted(want, key=lambda v: (-want[v]["n"], v))
        assert body["truncated"] is False


@pytest.mark.parametrize(
    "filters",
    [{}, {"region": "PL"}, {"region": "PL", "product": "billing"}, {"account": "acme"}, EVERYTHING],
    ids=["rollup-overall", "rollup-region", "cells", "account", "cells-everything"],
)
@pytest.mark.parametrize("granularity", ["day", "week", "month"])
async def test_a_trend_counts_each_bucket_on_every_path(
    client: httpx.AsyncClient, data: str, bearer: Any, filters: dict[str, str], granularity: str
) -> None:
    window = {"from": "2026-01-01", "to": "2026-04-16"}
    body = await get(
        client,
        bearer(data, "read"),
        "/v1/nps/trend",
        granularity=granularity,
        **filters,
        **window,
    )
    points = body["points"]
    assert points[0]["from"] == "2026-01-01"
    assert points[-1]["to"] == "2026-04-16"
    assert len(points) == {"day": 105, "week": 16, "month": 4}[granularity]
    for point in points:
        first, end = date.fromisoformat(point["from"]), date.fromisoformat(point["to"])
        assert counts(point) == expected(filters, first, end), point["from"]
    assert sum(p["n"] for p in points) == expected(filters)["n"]
