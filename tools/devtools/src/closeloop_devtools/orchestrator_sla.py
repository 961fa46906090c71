"""Part 2 of `make bench-orchestrator`: how late SLA timers fire among a million open cases.

`measure_sla`:
1. empties the orchestrator's tables and bulk-loads `cases` open cases (`orchestrator_cases`)
   of the bench's tenants, their first-contact deadlines drawn evenly at random over the
   `spread_hours` from now, then VACUUM ANALYZE (as autovacuum would have by then), and waits
   until the server is quiet again (`until_quiet`); timers due before the watched window starts
   are marked fired (as a watcher running all along would have left them);
2. starts the watcher alone (`orchestrator_watcher`, system clock) and, from the window's
   start, watches for `watch_seconds`: its CPU seconds, PostgreSQL's, and a py-spy profile;
3. a burst: `burst` more cases, loaded while the watcher runs, whose breaches are all due at
   the same instant a few seconds later; waits until every one has fired; then, as a baseline,
   a watcher that steps for every due timer (`ORCHESTRATOR_WATCH_TICK_SECONDS=0`, as before
   the tick) for `baseline_seconds`;
4. stops the watcher and reads, per timer due in the window (and of the burst), `fired_at -
   due_at` (`fired_at` is the instant the watcher's step began, as the event says), and the
   time from `due_at` until the step that fired it had committed its events to the outbox
   (from the steps the watcher wrote down).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_devtools.bench_ingest import cpu_seconds
from closeloop_devtools.orchestrator_cases import load_open_cases
from closeloop_devtools.orchestrator_tenants import TENANTS, setup_file
from closeloop_devtools.orchestrator_watcher import until_ready, watcher_process
from closeloop_devtools.profiling import Profile, py_spy, summarise
from closeloop_devtools.scoring_responses import ResponseFeed
from closeloop_devtools.scoring_watch import BenchTimeout, postgres_cpu_seconds
from closeloop_devtools.sla_windows import Usage, Window, read_steps, until_quiet, window_of
from closeloop_orchestrator.domain.setup import TenantSetup
from closeloop_orchestrator.service_layer.setup_store import SetupFile

LEAD = timedelta(seconds=15)  # from the end of the loading to the window's start
BURST_LEAD = timedelta(seconds=15)  # from the burst's loading to its due instant
TABLES = ("cases", "timers", "case_history", "responses", "outbox")


@dataclass(frozen=True, slots=True)
class SlaRun:
    cases: int
    timers: int
    pending: int  # pending when the window began
    load_seconds: float
    settle_seconds: float  # waited after the load for PostgreSQL to be quiet
    spread_hours: float
    steady: Window
    burst: Window
    burst_cases: int
    burst_seconds: float  # from the burst's due instant until every breach of it had fired
    profile: Profile | None
    burst_profile: Profile | None
    baseline: Window

    def rows(self) -> list[tuple[str, str]]:
        s, b = self.steady, self.burst
        due = sum(s.due.values())
        kinds = ", ".join(f"{kind} {n / s.seconds:.1f}/s" for kind, n in sorted(s.due.items()))
        rows = [
            (
                "SLA: open cases",
                f"{self.cases:,} of {len(TENANTS)} tenants, first-contact deadlines spread "
                f"evenly over the next {self.spread_hours:g} h; {self.timers:,} timers as "
                f"`opening_timers` makes them, {self.pending:,} pending when the watch began; "
                f"loaded with COPY in {self.load_seconds:.0f} s, then {self.settle_seconds:.0f} s "
                "until PostgreSQL was quiet (its checkpoints and autovacuum after the load)",
            ),
            (
                f"SLA: timers due in the {s.seconds:.0f} s watched",
                f"{due:,} ({due / s.seconds:.1f}/s: {kinds}); {s.unfired:,} not fired when the "
                "watcher stopped",
            ),
            *(
                (f"SLA: {kind} lateness, fired_at - due_at: p50 / p99 / max", late.describe())
                for kind, late in sorted(s.fired.items())
            ),
            (
                "SLA: lateness until the events committed, every kind: p50 / p99 / max",
                "n/a" if s.committed is None else s.committed.describe(),
            ),
            (
                "SLA: watcher CPU per minute (its own process)",
                f"{s.cpu_per_minute()}; {s.steps:,} steps, {s.firing_steps:,} of them fired "
                f"something ({due / max(1, s.firing_steps):.1f} timers each)",
            ),
        ]
        base = self.baseline
        base_breach = base.breach
        rows.append(
            (
                "SLA baseline: a step per due timer (ORCHESTRATOR_WATCH_TICK_SECONDS=0)",
                f"watcher CPU per minute {base.cpu_per_minute()}; {base.steps:,} steps in "
                f"{base.seconds:.0f} s; breach lateness p50 / p99 / max "
                + ("n/a" if base_breach is None else base_breach.describe()),
            )
        )
        if self.profile is not None:
            by_area, by_function = self.profile.describe()
            rows += [
                ("SLA: py-spy of the watcher, running code by library", by_area),
                ("SLA: py-spy of the watcher, its functions (inclusive)", by_function),
            ]
        breach = b.breach
        rows += [
            (
                f"SLA burst: {self.burst_cases:,} breaches due in the same instant",
                f"all fired {self.burst_seconds:.1f} s after it "
                f"({self.burst_cases / self.burst_seconds:,.0f}/s), the steady load going on; "
                f"{b.firing_steps:,} steps fired; watcher CPU {b.cpu:.1f} s",
            ),
            (
                "SLA burst: lateness, fired_at - due_at: p50 / p99 / max",
                "n/a" if breach is None else breach.describe(),
            ),
            (
                "SLA burst: lateness until the events committed: p50 / p99 / max",
                "n/a" if b.committed is None else b.committed.describe(),
            ),
        ]
        if self.burst_profile is not None:
            by_area, by_function = self.burst_profile.describe()
            rows += [
                ("SLA burst: py-spy of the watcher, running code by library", by_area),
                ("SLA burst: py-spy of the watcher, its functions (inclusive)", by_function),
            ]
        return rows


def setups(accounts: int) -> dict[str, TenantSetup]:
    parsed = SetupFile.model_validate(setup_file(accounts))
    return {
        tenant: TenantSetup(organisation=entry.organisation, rules=entry.rules)
        for tenant, entry in parsed.tenants.items()
        if entry.organisation is not None and entry.rules is not None
    }


def dsn_of(engine: AsyncEngine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def measure_sla(
    engine: AsyncEngine,
    env: dict[str, str],
    *,
    accounts: int,
    customers: int,
    cases: int,
    spread_hours: float,
    watch_seconds: float,
    burst: int,
    baseline_seconds: float,
    seed: int,
    tmp: Path,
    postmaster: int | None,
) -> SlaRun:
    """Steps 1-4 of the module docstring."""
    tenants = setups(accounts)
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn_of(engine))
    try:
        tables = ", ".join(f"orchestrator.{name}" for name in TABLES)
        await conn.execute(f"TRUNCATE {tables}")
        started = time.perf_counter()
        now = datetime.now(UTC)
        spread = timedelta(hours=spread_hours)
        feed = ResponseFeed(
            responses=cases, accounts=accounts, customers=customers, seed=seed, tenants=TENANTS
        )
        _, timers = await load_open_cases(
            conn,
            feed.answers(),
            tenants,
            deadline=lambda _: now + rng.random() * spread,
            fired_before=now,
        )
        await conn.execute("VACUUM ANALYZE orchestrator.cases")
        await conn.execute("VACUUM ANALYZE orchestrator.timers")
        load_seconds = time.perf_counter() - started
        settled = await until_quiet(postmaster)
        start = datetime.now(UTC) + LEAD
        await conn.execute(
            "UPDATE orchestrator.timers SET fired_at = due_at "
            "WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at < $1",
            start,
        )
        pending = int(
            await conn.fetchval(
                "SELECT count(*) FROM orchestrator.timers "
                "WHERE fired_at IS NULL AND cancelled_at IS NULL"
            )
        )
        steps_file = tmp / "watcher-steps.jsonl"
        with watcher_process(env, steps=steps_file, log=tmp / "watcher.log") as proc:
            await until_ready(proc)
            steady_usage = await _watch(
                proc,
                postmaster,
                start=start,
                seconds=watch_seconds,
                profile=tmp / "sla.profile",
            )
            burst_feed = ResponseFeed(
                responses=burst,
                accounts=accounts,
                customers=customers,
                seed=seed + 1,
                tenants=TENANTS,
            )
            due = datetime.now(UTC).replace(microsecond=0) + BURST_LEAD
            burst_ids, _ = await load_open_cases(
                conn,
                (
                    (a.model_copy(update={"response_id": f"burst-{a.response_id}"}), t)
                    for a, t in burst_feed.answers()
                ),
                tenants,
                deadline=lambda _: due,
                fired_before=datetime.now(UTC),
            )
            if datetime.now(UTC) >= due:
                raise BenchTimeout("the burst took longer to load than BURST_LEAD")
            burst_usage, burst_seconds = await _burst(
                conn, proc, postmaster, due=due, profile=tmp / "burst.profile"
            )
            await asyncio.sleep(1)
        baseline_steps = tmp / "watcher-baseline-steps.jsonl"
        with watcher_process(
            {**env, "ORCHESTRATOR_WATCH_TICK_SECONDS": "0"},
            steps=baseline_steps,
            log=tmp / "watcher-baseline.log",
        ) as proc:
            await until_ready(proc)
            baseline_start = datetime.now(UTC) + timedelta(seconds=2)
            baseline_usage = await _watch(
                proc,
                postmaster,
                start=baseline_start,
                seconds=baseline_seconds,
                profile=tmp / "baseline.profile",
            )
        baseline_end = baseline_start + timedelta(seconds=baseline_seconds)
        baseline = await window_of(
            conn,
            read_steps(baseline_steps),
            start=baseline_start,
            end=baseline_end,
            usage=baseline_usage,
            where="due_at >= $1 AND due_at < $2",
            args=(baseline_start, baseline_end),
        )
        steps = read_steps(steps_file)
        end = start + timedelta(seconds=watch_seconds)
        steady = await window_of(
            conn,
            steps,
            start=start,
            end=end,
            usage=steady_usage,
            where="due_at >= $1 AND due_at < $2",
            args=(start, end),
        )
        burst_window = await window_of(
            conn,
            steps,
            start=due,
            end=due + timedelta(seconds=burst_seconds),
            usage=burst_usage,
            where="due_at = $1 AND kind = 'breach' AND case_id = ANY($2)",
            args=(due, burst_ids),
        )
    finally:
        await conn.close()
    return SlaRun(
        cases=cases,
        timers=timers,
        pending=pending,
        load_seconds=load_seconds,
        settle_seconds=settled,
        spread_hours=spread_hours,
        steady=steady,
        burst=burst_window,
        burst_cases=burst,
        burst_seconds=burst_seconds,
        profile=summarise(tmp / "sla.profile"),
        burst_profile=summarise(tmp / "burst.profile"),
        baseline=baseline,
    )


async def _sleep_until(instant: datetime) -> None:
    await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))


def _usage(pid: int, postmaster: int | None) -> Usage:
    return cpu_seconds(pid), postgres_cpu_seconds(postmaster)


def _spent(before: Usage, after: Usage) -> Usage:
    pg = None if before[1] is None or after[1] is None else after[1] - before[1]
    return after[0] - before[0], pg


async def _watch(
    proc: Popen[bytes],
    postmaster: int | None,
    *,
    start: datetime,
    seconds: float,
    profile: Path,
) -> Usage:
    if datetime.now(UTC) >= start:
        raise BenchTimeout("the watcher started after the window's start; raise LEAD")
    await _sleep_until(start)
    before = _usage(proc.pid, postmaster)
    with py_spy(proc.pid, profile):
        await _sleep_until(start + timedelta(seconds=seconds))
    return _spent(before, _usage(proc.pid, postmaster))


async def _burst(
    conn: asyncpg.Connection,
    proc: Popen[bytes],
    postmaster: int | None,
    *,
    due: datetime,
    profile: Path,
) -> tuple[Usage, float]:
    """Wait from `due` until no breach due then is pending: (usage, seconds after `due`)."""
    await _sleep_until(due)
    before = _usage(proc.pid, postmaster)
    with py_spy(proc.pid, profile):
        return await _until_fired(conn, proc, postmaster, due=due, before=before)


async def _until_fired(
    conn: asyncpg.Connection,
    proc: Popen[bytes],
    postmaster: int | None,
    *,
    due: datetime,
    before: Usage,
) -> tuple[Usage, float]:
    while True:
        pending = await conn.fetchval(
            "SELECT count(*) FROM orchestrator.timers WHERE due_at = $1 AND kind = 'breach' "
            "AND fired_at IS NULL AND cancelled_at IS NULL",
            due,
        )
        waited = (datetime.now(UTC) - due).total_seconds()
        if not pending:
            return _spent(before, _usage(proc.pid, postmaster)), waited
        if waited > 300 or proc.poll() is not None:
            raise BenchTimeout(
                f"{pending:,} breaches of the burst still pending after {waited:.0f} s"
            )
        await asyncio.sleep(0.05)
