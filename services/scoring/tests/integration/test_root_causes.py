"""Root causes from cases (`case.updated.v1`) as drivers, through the batch handler and the real
database, read back over HTTP: beside the comment themes, idempotent by case version, before
their response arrives, moved by a correction, held back while the response is suspected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.db import transaction
from closeloop_common.events import CloudEvent, EventData, new_event
from closeloop_common.handlers import Transaction

from .support import (
    CLOCK,
    aggregator_of,
    assert_problem,
    case_updated,
    corrected,
    feed,
    get,
    post,
    received,
    runtime_of,
    suspected,
)

APRIL_5 = datetime(2026, 4, 5, 10, 0, tzinfo=UTC)
APRIL_6 = datetime(2026, 4, 6, 10, 0, tzinfo=UTC)
Mentions = tuple[int, int, int]


async def drivers(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, tuple[str, Mentions]]:
    """theme -> (source, (promoters, passives, detractors) mentioning it)."""
    body = await get(client, headers, "/v1/drivers", window="all", **params)
    return {
        d["theme"]: (
            d["source"],
            (d["mentions"]["promoters"], d["mentions"]["passives"], d["mentions"]["detractors"]),
        )
        for d in body["drivers"]
    }


def root_causes_of(found: dict[str, tuple[str, Mentions]]) -> dict[str, Mentions]:
    return {theme: m for theme, (source, m) in found.items() if source == "root_cause"}


async def stored(app: FastAPI, tenant: str) -> dict[str, tuple[int, list[str]]]:
    """response id -> (case version, tags) as scoring stored them."""
    async with runtime_of(app).worker_sessions() as session:
        rows = await session.execute(
            sa.text(
                "SELECT response_id, case_version, tags FROM scoring.root_causes "
                "WHERE tenant_id = :t"
            ),
            {"t": tenant},
        )
        return {r.response_id: (r.case_version, sorted(r.tags)) for r in rows}


async def theme_rows(app: FastAPI, tenant: str) -> list[tuple[Any, ...]]:
    """The `rc:` rows of theme_daily: (region, day, theme, promoters, passives, detractors)."""
    async with runtime_of(app).worker_sessions() as session:
        rows = await session.execute(
            sa.text(
                "SELECT c.region, t.day, t.theme, t.promoters, t.passives, t.detractors "
                "FROM scoring.theme_daily t JOIN scoring.cells c USING (cell_id) "
                "WHERE t.tenant_id = :t AND t.theme LIKE 'rc:%' ORDER BY 1, 2, 3"
            ),
            {"t": tenant},
        )
        return [tuple(r) for r in rows]


async def test_root_causes_are_drivers_beside_what_the_customers_wrote(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    late = received(2, APRIL_5, region="PL", account="acme", comment="Kurier spóźniony")
    silent = received(4, APRIL_5, region="PL", account="acme")
    billed = received(8, APRIL_5, region="PL", account="acme", comment="faktura błędna")
    happy = received(10, APRIL_5, region="PL", account="acme", comment="Szybka dostawa")
    await feed(
        app,
        tenant,
        [
            late,
            silent,
            billed,
            happy,
            case_updated(late, 2, "late courier"),
            case_updated(silent, 3, "late courier", "billing error"),
            case_updated(billed, 2, "billing error"),
        ],
    )
    found = await drivers(client, h)
    assert found == {
        "delivery": ("comment", (1, 0, 1)),
        "invoicing": ("comment", (0, 1, 0)),
        "rc:late courier": ("root_cause", (0, 0, 2)),
        "rc:billing error": ("root_cause", (0, 1, 1)),
    }
    body = await get(client, h, "/v1/drivers", window="all")
    # 4 answers, 2 detractors: a root cause of both of them weighs 50 NPS points, and drivers of
    # both sources are ranked together.
    assert [(d["theme"], d["nps_impact"]) for d in body["drivers"]] == [
        ("rc:late courier", 50.0),
        ("delivery", 25.0),
        ("rc:billing error", 25.0),
        ("invoicing", 0.0),
    ]
    # Each source alone; the comment themes alone are what the drivers were before root causes.
    assert set(await drivers(client, h, source="comment")) == {"delivery", "invoicing"}
    assert set(await drivers(client, h, source="root_cause")) == {
        "rc:late courier",
        "rc:billing error",
    }
    assert_problem(
        await client.get("/v1/drivers", params={"source": "agents"}, headers=h),
        422,
        "validation",
    )
    # The same on every read path: the theme rows through the cells, an account's responses.
    assert await drivers(client, h, region="PL", survey="relationship") == found
    assert await drivers(client, h, account="acme") == found
    # A root cause is a theme of the what-if scenarios as well.
    what_if = await post(
        client,
        h,
        "/v1/what-if",
        {
            "scenario": {"kind": "theme-detractors-become-passives", "theme": "rc:late courier"},
            "window": "90d",
        },
    )
    assert (what_if["today"]["nps"], what_if["projected_nps"]) == (-25.0, 25.0)


async def test_the_responses_whose_cases_have_a_root_cause(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    late = received(2, APRIL_5, response_id="r-late", comment="Kurier spóźniony")
    billed = received(8, APRIL_5, response_id="r-billed", comment="faktura błędna")
    await feed(
        app,
        tenant,
        [
            late,
            billed,
            case_updated(late, 2, "late courier"),
            case_updated(billed, 2, "late courier", "billing error"),
        ],
    )
    found = await get(
        client, bearer(tenant, "read"), "/v1/themes/rc:late courier/responses", days=3650
    )
    assert found["response_ids"] == ["r-billed", "r-late"]
    billing = await get(
        client, bearer(tenant, "read"), "/v1/themes/rc:billing error/responses", days=3650
    )
    assert billing["response_ids"] == ["r-billed"]


async def test_a_redelivered_replayed_or_older_case_version_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    r = received(3, APRIL_5, region="PL")
    v3 = case_updated(r, 3, "billing error", "rude agent")
    await feed(app, tenant, [r, v3, v3])  # a redelivery inside the batch
    expected = {"rc:billing error": (0, 0, 1), "rc:rude agent": (0, 0, 1)}
    assert root_causes_of(await drivers(client, h)) == expected
    rows = await theme_rows(app, tenant)

    # Replayed in a batch of its own, and version 2 arriving after version 3.
    await feed(app, tenant, [v3])
    await feed(app, tenant, [case_updated(r, 2, "late courier")])
    assert root_causes_of(await drivers(client, h)) == expected
    assert await theme_rows(app, tenant) == rows
    assert await stored(app, tenant) == {r.response_id: (3, ["billing error", "rude agent"])}

    # A later version with the same root causes (say, the case was resolved) moves the version
    # and no count.
    await feed(
        app, tenant, [case_updated(r, 4, "rude agent", "billing error", transition="resolved")]
    )
    assert await theme_rows(app, tenant) == rows
    assert await stored(app, tenant) == {r.response_id: (4, ["billing error", "rude agent"])}

    # A later set without a tag takes it back (its row goes: no row of zeros stays behind);
    # two versions in one batch in the wrong order count as the higher.
    await feed(app, tenant, [case_updated(r, 6, "rude agent"), case_updated(r, 5, "app crash")])
    assert root_causes_of(await drivers(client, h)) == {"rc:rude agent": (0, 0, 1)}
    assert await theme_rows(app, tenant) == [("PL", date(2026, 4, 5), "rc:rude agent", 0, 0, 1)]


async def test_root_causes_that_arrive_before_their_response_count_when_it_does(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    early = received(1, APRIL_5, region="PL")
    await feed(app, tenant, [case_updated(early, 2, "app crash")])
    assert await stored(app, tenant) == {early.response_id: (2, ["app crash"])}
    assert await drivers(client, h) == {}
    assert await theme_rows(app, tenant) == []

    await feed(app, tenant, [early])
    assert root_causes_of(await drivers(client, h)) == {"rc:app crash": (0, 0, 1)}

    # In one batch, either way round.
    first = received(9, APRIL_5, region="PL")
    then = received(7, APRIL_5, region="PL")
    await feed(
        app,
        tenant,
        [case_updated(first, 2, "app crash"), first, then, case_updated(then, 2, "app crash")],
    )
    assert root_causes_of(await drivers(client, h)) == {"rc:app crash": (1, 1, 1)}


async def test_a_correction_moves_the_root_causes_with_the_response(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    r = received(2, APRIL_5, region="PL", account="acme")
    await feed(app, tenant, [r, case_updated(r, 2, "billing error")])
    assert await theme_rows(app, tenant) == [("PL", date(2026, 4, 5), "rc:billing error", 0, 0, 1)]

    # Version 2: another region, day, category and account.
    moved = corrected(
        r, 2, score=9, answered_at=APRIL_6, segments={"region": "DE"}, account_id="globex"
    )
    await feed(app, tenant, [moved])
    assert await theme_rows(app, tenant) == [("DE", date(2026, 4, 6), "rc:billing error", 1, 0, 0)]
    assert await drivers(client, h, region="PL") == {}
    assert await drivers(client, h, account="acme") == {}
    assert await drivers(client, h, region="DE") == {"rc:billing error": ("root_cause", (1, 0, 0))}
    assert await drivers(client, h, account="globex") == await drivers(client, h, region="DE")

    # Root causes added after the correction join the version counted.
    await feed(app, tenant, [case_updated(r, 3, "billing error", "late courier")])
    assert await theme_rows(app, tenant) == [
        ("DE", date(2026, 4, 6), "rc:billing error", 1, 0, 0),
        ("DE", date(2026, 4, 6), "rc:late courier", 1, 0, 0),
    ]


async def test_root_causes_of_a_suspected_response_count_once_it_is_released(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    r = received(0, APRIL_5, region="PL", account="acme")
    await feed(app, tenant, [suspected(r), case_updated(r, 2, "app crash")])
    assert await theme_rows(app, tenant) == []
    assert await drivers(client, h, account="acme") == {}

    await feed(app, tenant, [r])  # confirmed: ingest publishes it as received
    assert await theme_rows(app, tenant) == [("PL", date(2026, 4, 5), "rc:app crash", 0, 0, 1)]
    assert await drivers(client, h, account="acme") == {"rc:app crash": ("root_cause", (0, 0, 1))}


@contextlib.asynccontextmanager
async def handled_uncommitted(
    app: FastAPI, tenant: str, items: Sequence[EventData]
) -> AsyncIterator[None]:
    """`items` handled in a transaction that commits only when the block ends: a batch another
    scoring replica is in the middle of."""
    runtime = runtime_of(app)
    events: list[CloudEvent[Any]] = [
        new_event(i, tenant_id=tenant, source="/closeloop/test", clock=CLOCK) for i in items
    ]
    async with transaction(runtime.worker_sessions) as session:
        tx = Transaction(session=session, clock=CLOCK, source=runtime.source, outbox=runtime.outbox)
        await aggregator_of(app).events(tx, events)
        yield


@pytest.mark.parametrize("first", ["response", "case"])
async def test_a_response_and_its_case_handled_at_once_by_two_replicas_are_counted_together(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any, first: str
) -> None:
    """Neither transaction sees the other's uncommitted row; the tenant lock makes the second
    wait for the first to commit, so it sees it, whichever it is."""
    r = received(3, APRIL_5, region="PL")
    change = case_updated(r, 2, "late courier")
    one, other = ([r], [change]) if first == "response" else ([change], [r])
    async with handled_uncommitted(app, tenant, one):
        waiting = asyncio.create_task(feed(app, tenant, other))
        await asyncio.sleep(0.5)
        assert not waiting.done()
    await asyncio.wait_for(waiting, timeout=10)
    assert root_causes_of(await drivers(client, bearer(tenant, "read"))) == {
        "rc:late courier": (0, 0, 1)
    }


async def test_response_batches_of_two_replicas_do_not_wait_for_each_other(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    """Their tenant locks are shared. (Responses of the same day do wait: both add to that
    day's overall counts, whose row the first holds until it commits.)"""
    async with handled_uncommitted(app, tenant, [received(9, APRIL_5, region="PL")]):
        await asyncio.wait_for(feed(app, tenant, [received(3, APRIL_6, region="DE")]), timeout=5)
    assert (await get(client, bearer(tenant, "read"), "/v1/nps"))["n"] == 2
