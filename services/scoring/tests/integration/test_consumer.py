"""Scoring's consumer against the real broker and database: events produced to the responses
topic are read by a real `EventConsumer` (the app's handlers, a consumer group of the test's own)
and the aggregates are checked over HTTP and in the tables, to the exact count.

The module has topics of its own, so a consumer group that starts from offset 0 (a replay, a
rebuild) reads only the events of these tests; each test uses tenants of its own."""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.db import make_engine
from closeloop_common.events import CaseUpdatedV1, CloudEvent, EventData, Topic, categorize
from closeloop_common.kafka.deadletter import read_dead_letters
from closeloop_common.kafka.producer import OutboundRecord
from closeloop_common.settings import CommonSettings
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app
from closeloop_scoring.service_layer.rebuild import GroupActive, rewind_group

from .consuming import (
    committed,
    consume_all,
    consuming,
    event,
    forget_tenants,
    own_topics,
    produce,
    publish,
    snapshot,
)
from .support import (
    SegmentArgs,
    case_updated,
    corrected,
    get,
    invited,
    received,
    runtime_of,
    suspected,
)

MAY_5 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)
MAY_6 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
MAY_7 = datetime(2024, 5, 7, 12, 0, tzinfo=UTC)
D5, D6, D7 = date(2024, 5, 5), date(2024, 5, 6), date(2024, 5, 7)
Bearer = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
async def topics(infra: dict[str, str]) -> AsyncIterator[CommonSettings]:
    async with own_topics() as settings:
        yield settings


@contextlib.asynccontextmanager
async def scoring_app(topics: CommonSettings, **overrides: Any) -> AsyncIterator[FastAPI]:
    """A scoring app (handlers, fresh cell cache) on the module's topics."""
    app = create_scoring_app(
        ScoringSettings(kafka_topic_prefix=topics.kafka_topic_prefix, **overrides)
    )
    try:
        yield app
    finally:
        await runtime_of(app).engine.dispose()
        await runtime_of(app).worker_engine.dispose()


@pytest.fixture(scope="module")
async def app(topics: CommonSettings) -> AsyncIterator[FastAPI]:
    async with scoring_app(topics) as app:
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture(scope="module")
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=2)
    yield engine
    await engine.dispose()


def a_tenant() -> str:
    return f"it-sc-{uuid.uuid4().hex[:12]}"


def a_group(name: str) -> str:
    return f"scoring-it-{name}-{uuid.uuid4().hex[:8]}"


def events_of(tenant: str, *data: EventData) -> list[CloudEvent[Any]]:
    return [event(d, tenant) for d in data]


COUNTS = ("promoters", "passives", "detractors", "suspected", "invitations")


def counts(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[c] for c in COUNTS)


async def segment_rows(
    engine: AsyncEngine, tenant: str, *dimensions: str
) -> dict[tuple[str, str, date], tuple[int, ...]]:
    """segment_daily of `tenant` for `dimensions`: (dimension, segment, day) -> counts."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                f"SELECT dimension, segment, day, {', '.join(COUNTS)} FROM scoring.segment_daily "
                "WHERE tenant_id = :t AND dimension = ANY(:d)"
            ),
            {"t": tenant, "d": list(dimensions)},
        )
        return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


async def zero_rows(engine: AsyncEngine, tenants: list[str]) -> dict[str, int]:
    """Rows of counts whose every count is zero: there must be none (see `adapters/tables.py`),
    or a replay in other batches would not make the same rows."""
    found = {}
    async with engine.connect() as conn:
        for table, columns in (
            ("cell_daily", COUNTS),
            ("segment_daily", COUNTS),
            ("theme_daily", COUNTS[:3]),
        ):
            zero = " AND ".join(f"{c} = 0" for c in columns)
            found[table] = (
                await conn.scalar(
                    sa.text(
                        f"SELECT count(*) FROM scoring.{table} WHERE tenant_id = ANY(:t) AND {zero}"
                    ),
                    {"t": tenants},
                )
                or 0
            )
    return found


async def test_redelivered_and_replayed_events_change_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    topics: CommonSettings,
    engine: AsyncEngine,
    bearer: Bearer,
) -> None:
    tenant = a_tenant()
    b = received(9, MAY_5, region="PL", product="app")
    events = events_of(
        tenant,
        received(10, MAY_5, region="PL", product="billing", comment="Obsługa super"),
        b,
        received(7, MAY_6, region="DE", product="billing"),
        received(3, MAY_6, region="DE", product="billing", comment="faktura błędna"),
        received(0, MAY_6, region="PL", product="billing"),
        corrected(b, 2, score=5, answered_at=MAY_6, segments={"region": "DE", "product": "app"}),
        invited(MAY_5, region="PL", product="billing"),
        invited(MAY_6, region="DE", product="billing"),
        case_updated(b, 2, "app crash"),
        case_updated(b, 3, "app crash", "billing error"),
    )
    # Each event twice in a row: a redelivery inside one batch.
    await publish(topics, [e for e in events for _ in range(2)])
    group = a_group("redelivery")
    await consume_all(app, group)

    headers = bearer(tenant, "read")
    overall = await get(client, headers, "/v1/nps")
    assert (overall["n"], *counts(overall)) == (5, 1, 1, 3, 0, 2)
    by_region = await get(client, headers, "/v1/nps/breakdown", by="region")
    assert {s["segment"]: counts(s) for s in by_region["segments"]} == {
        "PL": (1, 0, 1, 0, 1),
        "DE": (0, 1, 2, 0, 1),
    }
    assert await segment_rows(engine, tenant, "overall", "region") == {
        ("overall", "all", D5): (1, 0, 0, 0, 1),
        ("overall", "all", D6): (0, 1, 3, 0, 1),
        ("region", "PL", D5): (1, 0, 0, 0, 1),
        ("region", "PL", D6): (0, 0, 1, 0, 0),
        ("region", "DE", D6): (0, 1, 2, 0, 1),
    }
    assert await zero_rows(engine, [tenant]) == {
        "cell_daily": 0,
        "segment_daily": 0,
        "theme_daily": 0,
    }
    first = await snapshot(engine, [tenant])
    assert [row[2:] for row in first["root_causes"]] == [(3, ("app crash", "billing error"))]
    # Under b's version counted: relationship, app, DE, no channel or touchpoint, 6 May, detractor.
    assert sorted(row[1:] for row in first["theme_daily"] if row[7].startswith("rc:")) == [
        ("relationship", "app", "DE", None, None, D6, "rc:app crash", 0, 0, 1),
        ("relationship", "app", "DE", None, None, D6, "rc:billing error", 0, 0, 1),
    ]

    # The same events again, later: redelivered in batches of their own.
    await publish(topics, events)
    await consume_all(app, group)
    assert await snapshot(engine, [tenant]) == first

    # Another consumer group replays the topic from offset 0 over the same database.
    await consume_all(app, a_group("replay"))
    assert await snapshot(engine, [tenant]) == first
    assert counts(await get(client, headers, "/v1/nps")) == counts(overall)


async def test_corrections_late_versions_suspicions_and_invitations_count_exactly(
    app: FastAPI,
    client: httpx.AsyncClient,
    topics: CommonSettings,
    engine: AsyncEngine,
    bearer: Bearer,
) -> None:
    tenant = a_tenant()
    # r1 moves to another region, product, day and category (and theme) in version 2.
    r1 = received(10, MAY_5, region="PL", product="billing", comment="Świetna obsługa")
    r1_v2 = corrected(
        r1,
        2,
        score=3,
        answered_at=MAY_7,
        segments={"region": "DE", "product": "app"},
        comment="aplikacja się zawiesza",
    )
    # r2's version 3 arrives before version 2, which must then be ignored.
    r2 = received(9, MAY_5, region="PL")
    r2_v3 = corrected(r2, 3, score=0, segments={"region": "FR"})
    r2_v2 = corrected(r2, 2, score=7, segments={"region": "DE"})
    # r3 is held back as suspected, then confirmed (published as received); r4 stays suspected.
    r3 = received(10, MAY_5, region="PL")
    r4 = received(10, MAY_5, region="PL")
    # r5 is suspected in versions 1 and 2; version 3 no longer looks automated and is released.
    rid5 = f"r-{uuid.uuid4().hex}"
    r5 = [
        received(score, MAY_5, response_id=rid5, region="PL", comment=comment)
        for score, comment in ((2, None), (4, None), (9, "szybka dostawa"))
    ]
    i1 = invited(MAY_5, region="PL")
    i2 = invited(MAY_7, region="DE", product="app")

    await publish(
        topics,
        events_of(
            tenant,
            r1,
            r2,
            r2_v3,
            suspected(r3),
            suspected(r4),
            suspected(r5[0], 1),
            i1,
            i1,  # the same invitation in two events
        ),
    )
    group = a_group("versions")
    await consume_all(app, group)
    headers = bearer(tenant, "read")
    assert counts(await get(client, headers, "/v1/nps")) == (1, 0, 1, 3, 1)

    later = events_of(tenant, r1_v2, r2_v2, suspected(r5[1], 2), r3, r5[2], i2, i1)
    await publish(topics, later)
    await consume_all(app, group)

    overall = await get(client, headers, "/v1/nps")
    assert (overall["n"], *counts(overall)) == (4, 2, 0, 2, 1, 2)
    by_region = await get(client, headers, "/v1/nps/breakdown", by="region")
    assert {s["segment"]: counts(s) for s in by_region["segments"]} == {
        "PL": (2, 0, 0, 1, 1),
        "DE": (0, 0, 1, 0, 1),
        "FR": (0, 0, 1, 0, 0),
    }
    assert await segment_rows(engine, tenant, "overall", "region", "product") == {
        ("overall", "all", D5): (2, 0, 1, 1, 1),
        ("overall", "all", D7): (0, 0, 1, 0, 1),
        ("region", "PL", D5): (2, 0, 0, 1, 1),
        ("region", "FR", D5): (0, 0, 1, 0, 0),
        ("region", "DE", D7): (0, 0, 1, 0, 1),
        ("product", "app", D7): (0, 0, 1, 0, 1),
    }
    state = await snapshot(engine, [tenant])
    assert [(r[1], r[2], r[4], r[8], r[9], r[11], r[12]) for r in state["responses"]] == sorted(
        [
            (r1.response_id, 2, "app", D7, "detractor", ("app and website",), False),
            (r2.response_id, 3, None, D5, "detractor", (), False),
            (r3.response_id, 1, None, D5, "promoter", (), False),
            (r4.response_id, 1, None, D5, "promoter", (), True),
            (rid5, 2, None, D5, "promoter", ("delivery",), False),
        ],
        key=repr,
    )
    themes = {(r[1], r[3], r[6], r[7]): r[8:] for r in state["theme_daily"]}
    assert themes == {
        ("relationship", "DE", D7, "app and website"): (0, 0, 1),
        ("relationship", "PL", D5, "delivery"): (1, 0, 0),
    }
    assert sorted(r[1] for r in state["invitations"]) == sorted(
        [i1.invitation_id, i2.invitation_id]
    )
    assert await zero_rows(engine, [tenant]) == {
        "cell_daily": 0,
        "segment_daily": 0,
        "theme_daily": 0,
    }


async def test_an_undecodable_record_is_dead_lettered_and_its_neighbours_counted(
    app: FastAPI,
    client: httpx.AsyncClient,
    topics: CommonSettings,
    bearer: Bearer,
) -> None:
    tenant = a_tenant()
    good = events_of(tenant, *(received(s, MAY_5, region="PL") for s in (10, 8, 2)))
    topic = Topic.RESPONSES.address(topics.kafka_topic_prefix)
    key = f"{tenant}:one-partition"  # every record in one partition, in this order
    poison = [b"\xff not JSON", b'{"type": 5}', _invalid(good[0])]
    unknown = _newer_version(good[0])
    outbound = [
        OutboundRecord(topic, key, good[0].encode()),
        OutboundRecord(topic, key, poison[0]),
        OutboundRecord(topic, key, good[1].encode()),
        OutboundRecord(topic, key, poison[1]),
        OutboundRecord(topic, key, unknown),
        OutboundRecord(topic, key, poison[2]),
        OutboundRecord(topic, key, good[2].encode()),
    ]
    await produce(topics, outbound)
    group = a_group("poison")
    await consume_all(app, group)

    overall = await get(client, bearer(tenant, "read"), "/v1/nps")
    assert (overall["n"], *counts(overall)[:3]) == (3, 1, 1, 1)
    letters = [letter for letter in await read_dead_letters(topics) if letter.dlq("group") == group]
    assert sorted(letter.value or b"" for letter in letters) == sorted(poison)
    assert {letter.dlq("reason") for letter in letters} == {"undecodable"}
    assert {letter.dlq("topic") for letter in letters} == {topic}
    assert {letter.key for letter in letters} == {key.encode()}
    # A well-formed event of a type this build does not know is skipped, not dead-lettered.
    assert unknown not in [letter.value for letter in letters]


def _invalid(good: CloudEvent[Any]) -> bytes:
    """A known event type whose data breaks its contract (a score of 11)."""
    body = good.model_dump(mode="json")
    body["data"]["score"] = 11
    return json.dumps(body).encode()


def _newer_version(good: CloudEvent[Any]) -> bytes:
    body = good.model_dump(mode="json")
    body["type"] = "dev.closeloop.response.received.v9"
    body["id"] = str(uuid.uuid4())
    return json.dumps(body).encode()


REGIONS = ("PL", "DE", "CZ", None)
PRODUCTS = ("billing", "app", None)
COMMENTS = (
    None,
    None,
    "Obsługa super",
    "obsluga fatalna, czekałem tydzień",
    "faktura znowu błędna",
    "great support, slow delivery",
    "aplikacja się zawiesza przy logowaniu",
    "za drogo",
)


TAGS = ("billing error", "late courier", "app crash", "rude agent")


def mixed_stream(tenants: list[str], responses: int, seed: int) -> list[CloudEvent[Any]]:
    """Responses over several tenants, segments and days (some an hour from midnight), with
    corrections (some of their versions out of order), duplicates, suspicions (some confirmed),
    invitations (some twice) and cases whose root causes change (on the cases topic, so before
    or after their response; some versions out of order, some twice); each response's events
    stay in order, and so do its case's, the rest interleaved."""
    rng = random.Random(seed)
    start = datetime(2024, 4, 28, tzinfo=UTC)

    def when() -> datetime:
        return start + timedelta(days=rng.randrange(10), hours=rng.choice((0, 1, 11, 23)))

    def segments() -> SegmentArgs:
        chosen = {
            "region": rng.choice(REGIONS),
            "product": rng.choice(PRODUCTS),
            "channel": rng.choice(("email", "sms")),
        }
        return cast(SegmentArgs, {k: v for k, v in chosen.items() if v is not None})

    queues: list[list[CloudEvent[Any]]] = []
    for n in range(responses):
        tenant = tenants[n % len(tenants)]
        survey = rng.choice(("relationship", "onboarding"))
        account = rng.choice(("acme", "globex", None))
        first = received(
            rng.randrange(11),
            when(),
            survey=survey,
            account=account,
            comment=rng.choice(COMMENTS),
            **segments(),
        )
        versions: list[EventData]
        roll = rng.random()
        if roll < 0.05:  # held back as suspected; half of them confirmed
            versions = [suspected(first)] + ([first] if rng.random() < 0.5 else [])
        elif roll < 0.25:  # corrected once or twice
            versions = [first]
            for version in range(2, rng.choice((3, 4)) + 1):
                versions.append(
                    corrected(
                        first,
                        version,
                        score=rng.randrange(11),
                        answered_at=when(),
                        segments=segments(),
                        comment=rng.choice(COMMENTS),
                    )
                )
            if len(versions) == 3 and rng.random() < 0.5:
                versions[1], versions[2] = versions[2], versions[1]  # version 3 before 2
        else:
            versions = [first]
        queue = [event(v, tenant) for v in versions]
        if rng.random() < 0.1:  # a duplicate delivery of one of its events
            queue.insert(rng.randrange(len(queue)) + 1, rng.choice(queue))
        queues.append(queue)
        if rng.random() < 0.3:  # a case whose agents tag root causes, one change at a time
            tags: set[str] = set()
            changes: list[EventData] = []
            for case_version in range(2, rng.choice((3, 4, 5)) + 1):
                if tags and rng.random() < 0.2:
                    tags.discard(rng.choice(sorted(tags)))  # a full set may also shrink
                else:
                    tags.add(rng.choice(TAGS))
                changes.append(case_updated(first, case_version, *tags))
            if len(changes) >= 2 and rng.random() < 0.3:
                changes[-2], changes[-1] = changes[-1], changes[-2]  # an older version late
            case_queue = [event(c, tenant) for c in changes]
            if rng.random() < 0.1:
                case_queue.append(rng.choice(case_queue))
            queues.append(case_queue)
    for n in range(responses // 3):
        tenant = tenants[n % len(tenants)]
        invitation = invited(when(), survey="relationship", **segments())
        queue = [event(invitation, tenant)]
        if rng.random() < 0.05:  # the same invitation published twice
            queue.append(event(invitation, tenant))
        queues.append(queue)
    stream: list[CloudEvent[Any]] = []
    while queues:
        queue = queues[rng.randrange(len(queues))]
        stream.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return stream


def final_counts(stream: list[CloudEvent[Any]]) -> Counter[tuple[str, str]]:
    """(tenant, promoter | passive | detractor | suspected) of each response's last version, as
    ingest means it: the highest version; a confirmation takes the place of a suspicion."""
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for e in stream:
        data = e.data
        if not hasattr(data, "response_id") or isinstance(data, CaseUpdatedV1):
            continue
        key = (e.tenantid, data.response_id)
        kind = e.type.split(".")[-2]
        version = getattr(data, "version", 1)
        category = "suspected" if kind == "suspected" else str(categorize(data.score))
        before = last.get(key)
        if kind == "received" and before is not None and before[1] == "suspected":
            last[key] = (before[0], category)  # the confirmation of the suspected version
        elif before is None or version > before[0]:
            last[key] = (version, category)
    return Counter((tenant, category) for (tenant, _), (_, category) in last.items())


def final_root_causes(stream: list[CloudEvent[Any]]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(tenant, response id) -> the root causes of its case's highest version."""
    last: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}
    for e in stream:
        if isinstance(e.data, CaseUpdatedV1):
            key = (e.tenantid, e.data.response_id)
            if key not in last or e.data.version > last[key][0]:
                last[key] = (e.data.version, tuple(sorted(e.data.root_causes)))
    return {key: tags for key, (_, tags) in last.items()}


def root_cause_rows(state: dict[str, list[tuple[Any, ...]]]) -> dict[tuple[Any, ...], list[int]]:
    """The `rc:` rows of theme_daily as the stored responses and root causes say they must be:
    (tenant, cell, day, theme) -> [promoters, passives, detractors]."""
    tags = {(row[0], row[1]): row[3] for row in state["root_causes"]}
    found: dict[tuple[Any, ...], list[int]] = {}
    for row in state["responses"]:
        if row[12]:  # suspected: its root causes wait for its release
            continue
        for tag in tags.get((row[0], row[1]), ()):
            counts = found.setdefault((row[0], *row[3:9], f"rc:{tag}"), [0, 0, 0])
            counts[("promoter", "passive", "detractor").index(row[9])] += 1
    return found


async def test_a_replay_from_offset_0_into_emptied_tables_rebuilds_the_same_aggregates(
    app: FastAPI, topics: CommonSettings, engine: AsyncEngine
) -> None:
    tenants = [a_tenant() for _ in range(3)]
    stream = mixed_stream(tenants, responses=2100, seed=7)
    await publish(topics, stream)
    await consume_all(app, a_group("rebuild-a"), timeout=120)  # batches of up to 5,000
    before = await snapshot(engine, tenants)

    expected = final_counts(stream)
    stored = Counter((row[0], "suspected" if row[12] else row[9]) for row in before["responses"])
    assert stored == expected
    assert sum(stored.values()) == 2100
    # The newest root causes of every case, counted under the response's version counted, the
    # case before or after its response.
    assert {(row[0], row[1]): row[3] for row in before["root_causes"]} == final_root_causes(stream)
    counted = {row[:8]: list(row[8:]) for row in before["theme_daily"] if row[7].startswith("rc:")}
    assert counted == root_cause_rows(before)
    assert len(counted) > 100
    assert all(before[table] for table in before), [t for t in before if not before[t]]
    assert await zero_rows(engine, tenants) == {
        "cell_daily": 0,
        "segment_daily": 0,
        "theme_daily": 0,
    }

    await forget_tenants(engine, tenants)
    assert not any((await snapshot(engine, tenants)).values())
    async with scoring_app(topics, consumer_batch_max_records=7) as fresh:
        await consume_all(fresh, a_group("rebuild-b"), timeout=120)
    assert await snapshot(engine, tenants) == before


async def test_rewinding_a_stopped_group_moves_it_to_the_first_offsets_but_not_a_running_one(
    app: FastAPI, topics: CommonSettings
) -> None:
    tenant = a_tenant()
    await publish(topics, events_of(tenant, *(received(9, MAY_5) for _ in range(12))))
    group = a_group("rewind")
    await consume_all(app, group)
    assert sum((await committed(topics, group)).values()) > 0

    rewound = await rewind_group(topics, group)
    # Both topics scoring counts from: the responses and the cases (their root causes).
    assert rewound == {
        Topic.RESPONSES.address(topics.kafka_topic_prefix): topics.kafka_topic_partitions,
        Topic.CASES.address(topics.kafka_topic_prefix): topics.kafka_topic_partitions,
    }
    assert set((await committed(topics, group)).values()) == {0}

    async with consuming(app, group) as running:
        await running.caught_up()
        with pytest.raises(GroupActive):
            await rewind_group(topics, group)
    assert sum((await committed(topics, group)).values()) >= 12
