"""Corrections, late and repeated events, suspicions and their release, through the batch handlers
and the real database, read back over HTTP on every read path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_scoring.adapters.tables import cell_daily, segment_daily, theme_daily

from .support import corrected, counts, feed, get, received, runtime_of, suspected

APRIL_5 = datetime(2026, 4, 5, 10, 0, tzinfo=UTC)
APRIL_6 = datetime(2026, 4, 6, 10, 0, tzinfo=UTC)
EVERYWHERE: list[dict[str, str]] = [
    {},
    {"survey": "relationship"},
    {"region": "PL"},
    {"region": "DE"},
    {"region": "PL", "product": "billing"},
    {"region": "DE", "product": "app"},
    {"account": "acme"},
    {"account": "globex"},
]


async def snapshot(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Every figure a test compares: the NPS on each path and window, per day, per theme."""
    found: dict[str, Any] = {}
    for filters in EVERYWHERE:
        for window in ({}, {"from": "2026-04-05", "to": "2026-04-06"}, {"from": "2026-04-06"}):
            key = "&".join(f"{k}={v}" for k, v in {**filters, **window}.items()) or "all"
            found[key] = counts(await get(client, headers, "/v1/nps", **filters, **window))
    found["drivers"] = [
        (d["theme"], d["mentions"])
        for d in (await get(client, headers, "/v1/drivers", window="all"))["drivers"]
    ]
    found["by account"] = [
        (r["segment"], r["n"], r["suspected"])
        for r in (await get(client, headers, "/v1/nps/breakdown", by="account"))["segments"]
    ]
    return found


def n_of(found: dict[str, Any], key: str) -> tuple[int, int, int, int]:
    c = found[key]
    return c["promoters"], c["passives"], c["detractors"], c["suspected"]


async def test_a_correction_moves_a_response_between_segments_days_and_categories(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    first = received(
        10,
        APRIL_5,
        region="PL",
        product="billing",
        account="acme",
        comment="Świetna obsługa klienta",
    )
    other = received(8, APRIL_5, region="PL", product="billing", account="acme")
    await feed(app, tenant, [first, other])
    before = await snapshot(client, h)
    assert n_of(before, "region=PL") == (1, 1, 0, 0)
    assert before["drivers"] == [
        ("customer service", {"promoters": 1, "passives": 0, "detractors": 0})
    ]
    moved = corrected(
        first,
        2,
        score=2,
        answered_at=APRIL_6,
        account_id="globex",
        segments={"region": "DE", "product": "app"},
        comment="Cena za wysoka",
    )
    # The correction alone in its batch: the old cell is not among the batch's cells.
    await feed(app, tenant, [moved])
    after = await snapshot(client, h)
    assert n_of(after, "region=PL") == (0, 1, 0, 0)
    assert n_of(after, "region=PL&product=billing") == (0, 1, 0, 0)
    assert n_of(after, "region=DE") == (0, 0, 1, 0)
    assert n_of(after, "region=DE&product=app") == (0, 0, 1, 0)
    assert n_of(after, "account=acme") == (0, 1, 0, 0)
    assert n_of(after, "account=globex") == (0, 0, 1, 0)
    assert n_of(after, "from=2026-04-05&to=2026-04-06") == (0, 1, 0, 0)
    assert n_of(after, "from=2026-04-06") == (0, 0, 1, 0)
    assert n_of(after, "all") == (0, 1, 1, 0)
    assert after["all"]["nps"] == -50.0
    assert after["drivers"] == [("price", {"promoters": 0, "passives": 0, "detractors": 1})]
    assert after["by account"] == [("acme", 1, 0), ("globex", 1, 0)]
    # Redelivering everything, in any batches, changes nothing.
    await feed(app, tenant, [first, other])
    await feed(app, tenant, [moved, first])
    assert await snapshot(client, h) == after


async def test_an_older_version_after_a_newer_one_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    original = received(10, APRIL_5, region="PL", product="billing", account="acme")
    v2 = corrected(original, 2, score=7)
    v3 = corrected(original, 3, score=3, segments={"region": "DE", "product": "app"})
    await feed(app, tenant, [v3])  # the newest first: nothing of the response was stored
    newest = await snapshot(client, h)
    assert n_of(newest, "region=DE&product=app") == (0, 0, 1, 0)
    assert n_of(newest, "all") == (0, 0, 1, 0)
    await feed(app, tenant, [v2, original])  # older versions arriving late
    await feed(app, tenant, [original])
    await feed(app, tenant, [v2])
    assert await snapshot(client, h) == newest
    # Within one batch, in any order, the highest version is the one counted.
    second = received(9, APRIL_5, region="PL", product="billing", account="globex")
    await feed(
        app,
        tenant,
        [corrected(second, 3, score=0), second, corrected(second, 2, score=8), second],
    )
    found = await snapshot(client, h)
    assert n_of(found, "account=globex") == (0, 0, 1, 0)
    assert n_of(found, "region=PL") == (0, 0, 1, 0)
    assert n_of(found, "all") == (0, 0, 2, 0)


async def test_redelivering_the_same_events_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    answers = [
        received(
            10, APRIL_5, region="PL", product="billing", account="acme", comment="szybka dostawa"
        ),
        received(6, APRIL_5, region="PL", product="app", account="acme", comment="drogo"),
        received(7, APRIL_6, region="DE", product="app", account="globex"),
    ]
    # answers[1] is held back as suspected (ingest publishes it as `response.suspected` only).
    events = [answers[0], suspected(answers[1]), answers[2], corrected(answers[2], 2, score=9)]
    await feed(app, tenant, events)
    once = await snapshot(client, h)
    assert n_of(once, "all") == (2, 0, 0, 1)
    assert n_of(once, "region=PL") == (1, 0, 0, 1)
    for batch in (events, events[::-1], events[:2], events[2:]):
        await feed(app, tenant, batch)
    assert await snapshot(client, h) == once


async def test_a_suspected_response_stays_out_of_the_nps_and_its_drivers(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    """Ingest publishes a response that looks automated as `response.suspected` only (never a
    received event of the same version before it)."""
    h = bearer(tenant, "read")
    held = received(0, APRIL_5, region="PL", product="billing", account="acme", comment="błąd")
    other = received(10, APRIL_5, region="PL", account="acme")
    await feed(app, tenant, [suspected(held), other])
    found = await snapshot(client, h)
    for key in ("all", "region=PL", "region=PL&product=billing", "account=acme"):
        assert n_of(found, key)[2:] == (0, 1), key
    assert found["all"]["nps"] == 100.0
    assert found["all"]["n"] == 1
    assert found["drivers"] == []  # a suspected answer's comment is no driver
    assert found["by account"] == [("acme", 1, 1)]
    # Redelivered, or the whole history replayed in its order, it stays suspected.
    await feed(app, tenant, [suspected(held)])
    await feed(app, tenant, [suspected(held), other])
    assert await snapshot(client, h) == found


async def test_a_response_held_back_as_suspected_counts_once_confirmed(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    """Ingest publishes a suspected response as suspected (each new version again, with its
    version), and on confirmation as received, which carries no version."""
    h = bearer(tenant, "read")
    held = received(3, APRIL_5, region="PL", account="acme")
    await feed(app, tenant, [suspected(held, 1), suspected(held, 2)])
    found = await snapshot(client, h)
    assert n_of(found, "all") == (0, 0, 0, 1)
    assert n_of(found, "account=acme") == (0, 0, 0, 1)
    confirmed = received(
        3,
        APRIL_5,
        response_id=held.response_id,
        region="PL",
        account="acme",
        comment="Kurier się spóźnił",
    )
    await feed(app, tenant, [confirmed])
    released = await snapshot(client, h)
    for key in ("all", "region=PL", "account=acme"):
        assert n_of(released, key) == (0, 0, 1, 0), key
    assert released["drivers"] == [("delivery", {"promoters": 0, "passives": 0, "detractors": 1})]
    await feed(app, tenant, [confirmed])  # redelivered
    assert await snapshot(client, h) == released
    # The next correction is version 3 (2 was the last suspected one) and applies as usual.
    await feed(app, tenant, [corrected(held, 3, score=9, comment=None)])
    assert n_of(await snapshot(client, h), "all") == (1, 0, 0, 0)


async def test_a_suspected_response_and_its_release_in_one_batch(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    h = bearer(tenant, "read")
    held = received(9, APRIL_6, region="DE", account="globex")
    await feed(app, tenant, [suspected(held), held])
    found = await snapshot(client, h)
    assert n_of(found, "all") == (1, 0, 0, 0)
    assert n_of(found, "region=DE") == (1, 0, 0, 0)
    assert n_of(found, "from=2026-04-06") == (1, 0, 0, 0)


async def test_counts_that_fall_to_zero_leave_no_row(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    """So that rebuilding from the topic gives the same rows."""
    answer = received(3, APRIL_5, region="PL", product="billing", comment="drogo")
    await feed(app, tenant, [answer])
    await feed(
        app,
        tenant,
        [corrected(answer, 2, answered_at=APRIL_6, segments={"region": "DE"}, comment=None)],
    )
    async with runtime_of(app).sessions() as session:
        segments = (
            await session.execute(
                sa.select(
                    segment_daily.c.dimension,
                    segment_daily.c.segment,
                    segment_daily.c.day,
                    segment_daily.c.detractors,
                ).where(segment_daily.c.tenant_id == tenant)
            )
        ).all()
        cells = (
            await session.execute(
                sa.select(cell_daily.c.day, cell_daily.c.detractors).where(
                    cell_daily.c.tenant_id == tenant
                )
            )
        ).all()
        themes = await session.scalar(
            sa.select(sa.func.count()).where(theme_daily.c.tenant_id == tenant)
        )
    april_6 = date(2026, 4, 6)
    assert sorted(tuple(row) for row in segments) == [
        ("overall", "all", april_6, 1),
        ("region", "DE", april_6, 1),
        ("survey", "relationship", april_6, 1),
    ]
    assert [tuple(row) for row in cells] == [(april_6, 1)]
    assert themes == 0
    assert (await get(client, bearer(tenant, "read"), "/v1/nps", region="DE"))["detractors"] == 1
