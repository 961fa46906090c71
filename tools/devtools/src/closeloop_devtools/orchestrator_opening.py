"""Part 1 of `make bench-orchestrator`: cases opened per second from a pre-filled responses topic.

`measure_opening` starts the orchestrator as deployed (uvicorn, the app factory: its consumer,
outbox relay, SLA watcher and gauges) on a migrated database whose topic already holds every
response, and counts `orchestrator.cases` every `POLL_SECONDS` until there is one case per
distinct response (or, given a `window`, for that long after the first case: the baseline of
one transaction per response would take hours). The rate is timed from the first look that saw a case to the last look
(and, less flattering, from the process's start). Meanwhile it reads the CPU seconds of the
process and of the PostgreSQL server, and, with py-spy, a profile of the process. Afterwards:
the consumer's transactions and records (its Prometheus histogram), the `case.opened.v1`
events in the outbox (written with their cases, so there must be one per case), and how long
the relay took to publish them all.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.events import CaseOpenedV1, CaseUpdatedV1
from closeloop_devtools.bench_ingest import cpu_seconds, free_port, server, uvicorn_command
from closeloop_devtools.profiling import Profile, py_spy, summarise
from closeloop_devtools.scoring_watch import BenchTimeout, consumer_batches, postgres_cpu_seconds

ORCHESTRATOR_APP = "closeloop_orchestrator.entrypoints.app:create_orchestrator_app"
POLL_SECONDS = 0.5
COUNT_CASES = sa.text("SELECT count(*) FROM orchestrator.cases")
COUNT_OUTBOX = sa.text(
    "SELECT count(*) FILTER (WHERE event_type = :opened),"
    " count(*) FILTER (WHERE event_type = :updated),"
    " count(*) FILTER (WHERE published_at IS NULL)"
    " FROM orchestrator.outbox"
).bindparams(opened=CaseOpenedV1.EVENT_TYPE, updated=CaseUpdatedV1.EVENT_TYPE)


@dataclass(frozen=True, slots=True)
class Opening:
    """What one orchestrator process opened, and what it cost."""

    cases: int
    seconds: float  # from the process's start to the last look
    first_seen: float  # seconds from the start to the first look with a case
    first_n: int
    cpu: float  # the process's CPU seconds, from its start to the last look
    postgres_cpu: float | None
    transactions: float
    records: float
    opened_events: int
    updated_events: int
    relay_seconds: float | None  # from the last case to every outbox row published
    profile: Profile | None

    @property
    def watched(self) -> bool:
        return self.cases > self.first_n

    @property
    def rate(self) -> float:
        """Cases/s from the first look with a case to the last look."""
        if not self.watched:
            return self.rate_from_start
        return (self.cases - self.first_n) / (self.seconds - self.first_seen)

    @property
    def rate_from_start(self) -> float:
        return self.cases / self.seconds

    def describe(self) -> str:
        if not self.watched:
            return (
                f"{self.rate:,.0f} cases/s from the process's start: all {self.cases:,} were "
                f"there by the first look, after {self.seconds:.1f} s (use more --responses)"
            )
        return (
            f"{self.rate:,.0f} cases/s ({self.cases - self.first_n:,} cases in "
            f"{self.seconds - self.first_seen:.1f} s, from the first look with a case to the "
            f"last; counted every {POLL_SECONDS:g} s)"
        )


async def _scalar(engine: AsyncEngine, query: sa.TextClause) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def measure_opening(
    engine: AsyncEngine,
    env: dict[str, str],
    *,
    expected: int,
    timeout: float,
    log: Path,
    profile: Path,
    postmaster: int | None,
    window: float | None = None,
) -> Opening:
    """Run the orchestrator until `expected` cases exist (see the module docstring)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = uvicorn_command(ORCHESTRATOR_APP, port, factory=True)
    postgres_before = postgres_cpu_seconds(postmaster)
    started = time.perf_counter()
    with server(command, env=env, log=log, ready_url=f"{base}/healthz") as proc:
        with py_spy(proc.pid, profile):
            n, now, first_seen, first_n = await _until_opened(
                engine, proc, started, expected=expected, timeout=timeout, window=window
            )
        cpu = cpu_seconds(proc.pid)
        postgres_after = postgres_cpu_seconds(postmaster)
        relay_seconds = await _until_published(engine, timeout=timeout)
        transactions, records = consumer_batches(f"{base}/metrics")
    async with engine.connect() as conn:
        opened_events, updated_events, _ = (await conn.execute(COUNT_OUTBOX)).one()
    return Opening(
        cases=n,
        seconds=now,
        first_seen=first_seen,
        first_n=first_n,
        cpu=cpu,
        postgres_cpu=None
        if postgres_after is None or postgres_before is None
        else postgres_after - postgres_before,
        transactions=transactions,
        records=records,
        opened_events=int(opened_events),
        updated_events=int(updated_events),
        relay_seconds=relay_seconds,
        profile=summarise(profile),
    )


async def _until_opened(
    engine: AsyncEngine,
    proc: subprocess.Popen[bytes],
    started: float,
    *,
    expected: int,
    timeout: float,
    window: float | None,
) -> tuple[int, float, float, int]:
    """Count the cases until there are `expected` (or `window` s after the first look with a
    case): (cases, seconds since `started` at the last look, seconds at the first look with a
    case, cases then)."""
    first_seen, first_n = math.inf, 0
    while True:
        n = await _scalar(engine, COUNT_CASES)
        now = time.perf_counter() - started
        if n > expected:
            raise AssertionError(f"{n:,} cases for {expected:,} distinct responses")
        if n and first_seen == math.inf:
            first_seen, first_n = now, n
        if n == expected or (window is not None and now - first_seen >= window):
            return n, now, first_seen, first_n
        if now > timeout:
            raise BenchTimeout(
                f"the orchestrator opened {n:,} of {expected:,} cases in {now:.0f} s and "
                f"--timeout {timeout:g} s is over; lower --responses or raise --timeout"
            )
        if proc.poll() is not None:
            raise RuntimeError(f"the orchestrator exited with {proc.returncode}")
        await asyncio.sleep(POLL_SECONDS)


async def _until_published(engine: AsyncEngine, *, timeout: float) -> float | None:
    """Seconds until the relay has published every outbox row (None: not within `timeout`)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        async with engine.connect() as conn:
            *_, pending = (await conn.execute(COUNT_OUTBOX)).one()
        if not pending:
            return time.perf_counter() - started
        await asyncio.sleep(POLL_SECONDS)
    return None
