"""Headline segments against the real database: a worker step computes each headline's NPS over
its window, sets its gauges and stores `nps.changed.v1` in the outbox only when the NPS moved and
the debounce is over; what was published survives a restart. Time comes from a fixed clock."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import REGISTRY

from closeloop_common.clock import FixedClock
from closeloop_common.db import transaction
from closeloop_common.events import NpsChangedV1, decode_event
from closeloop_scoring.config import Headline, ScoringSettings
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import estimate
from closeloop_scoring.entrypoints.app import create_scoring_app
from closeloop_scoring.service_layer.headlines import HeadlineWatcher

from .support import feed, received, runtime_of

TODAY = datetime(2026, 5, 20, 10, 0, tzinfo=UTC)
TWO_DAYS_AGO = TODAY - timedelta(days=2)
DEBOUNCE = timedelta(seconds=300)

MakeApp = Callable[[Sequence[Headline], FixedClock], FastAPI]


@pytest.fixture
async def make_app(infra: dict[str, str]) -> AsyncIterator[MakeApp]:
    """`make_app(headlines, clock)`: a scoring app (without its lifespan) watching `headlines`;
    a second one on the same database is a restarted process."""
    made: list[FastAPI] = []

    def make(headlines: Sequence[Headline], clock: FixedClock) -> FastAPI:
        settings = ScoringSettings(
            scoring_time_zone="Europe/Warsaw",
            scoring_headlines=tuple(headlines),
            scoring_headline_min_change=1.0,
            scoring_headline_debounce_seconds=DEBOUNCE.total_seconds(),
        )
        app = create_scoring_app(settings, clock=clock)
        made.append(app)
        return app

    yield make
    for app in made:
        await runtime_of(app).engine.dispose()
        await runtime_of(app).worker_engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"it-hl-{uuid.uuid4().hex[:12]}"


def watcher_of(app: FastAPI) -> HeadlineWatcher:
    watcher = app.state.headlines
    assert isinstance(watcher, HeadlineWatcher)
    return watcher


async def published(app: FastAPI, tenant: str) -> list[tuple[str, NpsChangedV1]]:
    """(record key, event data) of the tenant's NPS events in the outbox, oldest first."""
    async with transaction(runtime_of(app).worker_sessions) as session:
        rows = (
            await session.execute(
                sa.text(
                    "SELECT event_type, key, payload FROM scoring.outbox "
                    "WHERE tenant_id = :tenant ORDER BY seq"
                ),
                {"tenant": tenant},
            )
        ).all()
    found = []
    for row in rows:
        assert row.event_type == NpsChangedV1.EVENT_TYPE
        event = decode_event(bytes(row.payload))
        assert isinstance(event.data, NpsChangedV1)
        found.append((row.key, event.data))
    return found


def gauge(name: str, tenant: str, headline: str) -> float | None:
    value = REGISTRY.get_sample_value(
        f"closeloop_scoring_headline_{name}", {"tenant": tenant, "headline": headline}
    )
    return value


def approx(value: Any) -> Any:
    return pytest.approx(value, abs=1e-9)


async def test_a_headline_publishes_its_first_value_then_only_debounced_moves(
    make_app: MakeApp, tenant: str
) -> None:
    headlines = [
        Headline(tenant=tenant, name="pl", filters={"region": "PL"}, window="30d"),
        Headline(
            tenant=tenant,
            name="pl-billing",
            filters={"region": "PL", "product": "billing"},
            window="7d",
        ),
        Headline(tenant=tenant, name="nowhere", filters={"region": "XX"}),
    ]
    clock = FixedClock(TODAY)
    app = make_app(headlines, clock)
    await feed(
        app,
        tenant,
        [
            *(received(10, TWO_DAYS_AGO, region="PL", product="billing") for _ in range(3)),
            received(2, TWO_DAYS_AGO, region="PL", product="app"),
            received(9, TWO_DAYS_AGO, region="DE", product="billing"),
        ],
    )

    await watcher_of(app).step()

    events = await published(app, tenant)
    assert [key for key, _ in events] == [f"{tenant}:pl", f"{tenant}:pl-billing"]
    first = events[0][1]
    expected = estimate(NpsCounts(promoters=3, passives=0, detractors=1), min_n=30)
    assert expected.ci_low is not None
    assert expected.ci_high is not None
    assert first.model_dump(mode="json", by_alias=True) == {
        "headline": "pl",
        "filters": {"region": "PL"},
        "window": {
            "name": "30d",
            "from": "2026-04-21",
            "to": "2026-05-21",
            "time_zone": "Europe/Warsaw",
        },
        "n": 4,
        "promoters": 3,
        "passives": 0,
        "detractors": 1,
        "nps": 50.0,
        "ci_low": round(expected.ci_low, 2),
        "ci_high": round(expected.ci_high, 2),
        "confidence": 0.95,
        "method": "adjusted-wald",
        "insufficient": True,
        "previous_nps": None,
        "change": None,
        "computed_at": "2026-05-20T10:00:00Z",
    }
    billing = events[1][1]
    assert (billing.n, billing.nps, billing.filters) == (
        3,
        100.0,
        {"product": "billing", "region": "PL"},
    )
    assert (billing.window.first, billing.window.end) == (
        TODAY.date() - timedelta(days=6),
        TODAY.date() + timedelta(days=1),
    )
    assert gauge("nps", tenant, "pl") == 50.0
    assert gauge("responses", tenant, "pl") == 4
    assert gauge("ci_low", tenant, "pl") == approx(expected.ci_low)
    assert gauge("ci_high", tenant, "pl") == approx(expected.ci_high)
    assert gauge("computed_timestamp_seconds", tenant, "pl") == TODAY.timestamp()
    nowhere = gauge("nps", tenant, "nowhere")
    assert nowhere is not None
    assert math.isnan(nowhere)
    assert gauge("responses", tenant, "nowhere") == 0

    # Nothing moved: nothing more is published.
    clock.advance(timedelta(seconds=30))
    await watcher_of(app).step()
    assert len(await published(app, tenant)) == 2

    # A move inside the debounce shows in the gauges at once, but waits for its event.
    await feed(app, tenant, [received(0, TWO_DAYS_AGO, region="PL", product="app")])
    clock.advance(timedelta(seconds=30))
    await watcher_of(app).step()
    assert len(await published(app, tenant)) == 2
    assert gauge("nps", tenant, "pl") == 20.0
    assert gauge("responses", tenant, "pl") == 5

    # Once the debounce is over, the move is published against the last published value.
    clock.set(TODAY + DEBOUNCE)
    await watcher_of(app).step()
    events = await published(app, tenant)
    assert len(events) == 3
    key, moved = events[2]
    assert key == f"{tenant}:pl"
    assert (moved.n, moved.detractors, moved.nps, moved.previous_nps, moved.change) == (
        5,
        2,
        20.0,
        50.0,
        -30.0,
    )
    assert moved.computed_at == TODAY + DEBOUNCE

    # A restarted process remembers what was published: nothing is published again.
    clock.advance(DEBOUNCE * 10)
    restarted = make_app(headlines, clock)
    await watcher_of(restarted).step()
    assert len(await published(restarted, tenant)) == 3


async def test_a_redefined_headline_starts_afresh_and_an_emptied_window_is_published(
    make_app: MakeApp, tenant: str
) -> None:
    clock = FixedClock(TODAY)
    pl = Headline(tenant=tenant, name="pl", filters={"region": "PL"}, window="30d")
    app = make_app([pl], clock)
    await feed(app, tenant, [received(10, TWO_DAYS_AGO, region="PL")])
    await watcher_of(app).step()
    assert [e.nps for _, e in await published(app, tenant)] == [100.0]

    # Other filters or another window under the same name: a new series, inside the debounce.
    clock.advance(timedelta(seconds=10))
    weekly = pl.model_copy(update={"window": "7d"})
    await watcher_of(make_app([weekly], clock)).step()
    events = [e for _, e in await published(app, tenant)]
    assert [(e.window.name, e.nps, e.previous_nps) for e in events] == [
        ("30d", 100.0, None),
        ("7d", 100.0, None),
    ]

    # Ten days on, the week holds no answer: "no data" is published once, then nothing.
    clock.advance(timedelta(days=10))
    later = make_app([weekly], clock)
    await watcher_of(later).step()
    clock.advance(DEBOUNCE * 2)
    await watcher_of(later).step()
    events = [e for _, e in await published(app, tenant)]
    assert len(events) == 3
    emptied = events[2]
    assert (emptied.n, emptied.nps, emptied.ci_low, emptied.previous_nps, emptied.change) == (
        0,
        None,
        None,
        100.0,
        None,
    )
    nps = gauge("nps", tenant, "pl")
    assert nps is not None
    assert math.isnan(nps)
