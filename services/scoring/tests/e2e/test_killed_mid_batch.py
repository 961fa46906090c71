"""A scoring process killed with SIGKILL while it works through a backlog of responses and
corrections in small batches, then started again, leaves every aggregate exact: the batch under
way when it died is rolled back and redelivered, and nothing is counted twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.db import make_engine
from closeloop_common.events import CloudEvent, categorize
from closeloop_common.runtime import consumer_group
from closeloop_common.settings import CommonSettings
from services.scoring.tests.integration.consuming import (
    committed,
    end_offsets,
    event,
    own_topics,
    publish,
)
from services.scoring.tests.integration.support import corrected, received

RESPONSES = 20_000
BATCH = 50
PORT = int(os.environ.get("SCORING_KILL_TEST_PORT", "18231"))
REGIONS = ("PL", "DE", "CZ", "SK", "LT")
START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=2)
    yield engine
    await engine.dispose()


def backlog(tenant: str, seed: int) -> list[CloudEvent[Any]]:
    """RESPONSES responses over regions and 30 days; a tenth corrected a little later in the
    stream (to another region, day and score), half of those twice with version 3 produced
    before version 2. A response's events share a partition (its customer's key), so they are
    consumed in this order."""
    rng = random.Random(seed)
    placed: list[tuple[int, int, CloudEvent[Any]]] = []
    for n in range(RESPONSES):
        first = received(
            rng.randrange(11),
            START + timedelta(days=rng.randrange(30), hours=rng.randrange(24)),
            region=rng.choice(REGIONS),
            product=rng.choice(("billing", "app")),
        )
        placed.append((n, 0, event(first, tenant)))
        if rng.random() < 0.1:
            versions = [
                corrected(
                    first,
                    version,
                    score=rng.randrange(11),
                    answered_at=START + timedelta(days=rng.randrange(30)),
                    segments={"region": rng.choice(REGIONS), "product": "app"},
                )
                for version in (2, 3)[: rng.choice((1, 2))]
            ]
            rng.shuffle(versions)
            later = n + rng.randrange(1, 500)
            placed.extend((later, i, event(v, tenant)) for i, v in enumerate(versions, start=1))
    placed.sort(key=lambda p: (p[0], p[1]))
    return [e for _, _, e in placed]


def expected_rows(
    stream: list[CloudEvent[Any]], zone: ZoneInfo
) -> dict[tuple[str, str, date], Counter[str]]:
    """(dimension, segment, local day) -> category counts of each response's highest version,
    overall and per region."""
    last: dict[str, tuple[int, Any]] = {}
    for e in stream:
        version = getattr(e.data, "version", 1)
        if e.data.response_id not in last or version > last[e.data.response_id][0]:
            last[e.data.response_id] = (version, e.data)
    rows: dict[tuple[str, str, date], Counter[str]] = {}
    for _, data in last.values():
        day = data.answered_at.astimezone(zone).date()
        for key in (("overall", "all", day), ("region", data.segments.region, day)):
            rows.setdefault(key, Counter())[str(categorize(data.score))] += 1
    return rows


def totals(rows: dict[tuple[str, str, date], Counter[str]], dimension: str) -> dict[str, Any]:
    found: dict[str, Counter[str]] = {}
    for (d, segment, _), counts in rows.items():
        if d == dimension:
            found.setdefault(segment, Counter()).update(counts)
    return {s: (c["promoter"], c["passive"], c["detractor"]) for s, c in found.items()}


class ScoringProcess:
    """`closeloop-scoring serve` on its own topics, in batches of BATCH records."""

    def __init__(self, topics: CommonSettings, zone: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "KAFKA_TOPIC_PREFIX": topics.kafka_topic_prefix,
            "CONSUMER_BATCH_MAX_RECORDS": str(BATCH),
            "SCORING_TIME_ZONE": zone,
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = Path(sys.executable).parent / "closeloop-scoring"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(script), "serve", "--port", str(PORT)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"scoring exited with {self.proc.returncode}:\n{tail}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown, as in a crash or an OOM kill
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def poll(
    probe: Callable[[], Any], *, process: ScoringProcess, timeout: float, what: str
) -> Any:
    """Await `probe()` every 50 ms until it returns something other than None."""
    try:
        async with asyncio.timeout(timeout):
            while (found := await probe()) is None:
                process.check_alive()
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}") from None
    return found


async def test_a_scoring_process_killed_mid_batch_and_restarted_leaves_every_aggregate_exact(
    engine: AsyncEngine, bearer: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    tenant = f"kill-{uuid.uuid4().hex[:10]}"
    async with engine.connect() as conn:
        zone = await conn.scalar(
            sa.text("SELECT value FROM scoring.settings_applied WHERE name = 'time_zone'")
        )
    zone = zone or "UTC"  # the zone the stored days are in, else scoring's default
    stream = backlog(tenant, seed=11)
    expected = expected_rows(stream, ZoneInfo(zone))
    async with own_topics() as topics:
        await publish(topics, stream)
        ends = await end_offsets(topics)
        group = consumer_group(topics, "scoring")
        scoring = ScoringProcess(topics, zone, tmp_path / "scoring.log")

        async def counted() -> int:
            async with engine.connect() as conn:
                found = await conn.scalar(
                    sa.text("SELECT count(*) FROM scoring.responses WHERE tenant_id = :t"),
                    {"t": tenant},
                )
            return int(found or 0)

        async def moving() -> int | None:
            n = await counted()
            return n if n >= RESPONSES // 10 else None

        async def caught_up() -> bool | None:
            done = await committed(topics, group)
            return True if all(done.get(tp, 0) >= end for tp, end in ends.items()) else None

        try:
            scoring.start()
            await poll(moving, process=scoring, timeout=60, what="scoring to start counting")
            scoring.kill()
            at_kill = await counted()
            assert at_kill < RESPONSES, "scoring finished before it could be killed"

            scoring.start()
            await poll(caught_up, process=scoring, timeout=90, what="the backlog to be consumed")

            headers = bearer(tenant, "read")
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{PORT}", headers=headers, timeout=10
            ) as client:

                async def api(path: str, **params: Any) -> Any:
                    answer = await client.get(path, params=params)
                    return answer.json() if answer.status_code == 200 else None

                overall = await poll(
                    lambda: api("/v1/nps"), process=scoring, timeout=30, what="the API"
                )
                by_region = await api("/v1/nps/breakdown", by="region")
        finally:
            scoring.stop()

    assert overall["n"] == RESPONSES
    assert (overall["promoters"], overall["passives"], overall["detractors"]) == totals(
        expected, "overall"
    )["all"]
    assert {
        s["segment"]: (s["promoters"], s["passives"], s["detractors"])
        for s in by_region["segments"]
    } == totals(expected, "region")
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT dimension, segment, day, promoters, passives, detractors, suspected "
                "FROM scoring.segment_daily WHERE tenant_id = :t "
                "AND dimension IN ('overall', 'region')"
            ),
            {"t": tenant},
        )
        stored = {(r[0], r[1], r[2]): (r[3], r[4], r[5], r[6]) for r in rows}
    assert stored == {
        key: (c["promoter"], c["passive"], c["detractor"], 0) for key, c in expected.items()
    }
