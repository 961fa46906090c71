"""What the SLA watcher did about the timers due in a stretch of time, for `make
bench-orchestrator`: how late they fired (`fired_at - due_at`, by kind) and until the step that
fired them had committed (from the steps `orchestrator_watcher` wrote down), with the CPU spent.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from closeloop_devtools.scoring_watch import postgres_cpu_seconds

Usage = tuple[float, float | None]  # the watcher's CPU seconds, PostgreSQL's (None: elsewhere)


async def until_quiet(
    postmaster: int | None, *, busy: float = 0.15, every: float = 5.0, cap: float = 300.0
) -> float:
    """Wait until the PostgreSQL server uses less than `busy` of a core over `every` seconds
    (a bulk load leaves checkpoints and autovacuum running for minutes, which would be measured
    with what follows), `cap` seconds at most; how long it waited (0: not on this machine)."""
    if postmaster is None:
        return 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < cap:
        before = postgres_cpu_seconds(postmaster) or 0.0
        await asyncio.sleep(every)
        if (postgres_cpu_seconds(postmaster) or 0.0) - before < busy * every:
            break
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Lateness:
    """Seconds late: percentiles of a set of timers."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: list[float]) -> Lateness | None:
        if not seconds:
            return None
        ordered = sorted(seconds)

        def at(p: float) -> float:
            return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

        return cls(len(ordered), at(0.5), at(0.99), ordered[-1])

    def describe(self) -> str:
        return (
            f"{1000 * self.p50:,.0f} / {1000 * self.p99:,.0f} / {1000 * self.max:,.0f} ms "
            f"({self.count:,} timers)"
        )


@dataclass(frozen=True, slots=True)
class Window:
    """What the watcher did about the timers due in one stretch of time."""

    seconds: float
    due: dict[str, int]  # timers due, by kind
    unfired: int  # due but not fired when the watcher stopped
    fired: dict[str, Lateness]  # fired_at - due_at, by kind
    committed: Lateness | None  # until the firing step committed, every kind
    cpu: float  # the watcher's CPU seconds
    postgres_cpu: float | None
    steps: int  # the watcher's steps that began in the window
    firing_steps: int  # of them, those that fired a timer

    @property
    def breach(self) -> Lateness | None:
        return self.fired.get("breach")

    def cpu_per_minute(self) -> str:
        pg = (
            ""
            if self.postgres_cpu is None
            else f"; PostgreSQL {60 * self.postgres_cpu / self.seconds:.1f} s"
        )
        return f"{60 * self.cpu / self.seconds:.1f} s ({100 * self.cpu / self.seconds:.0f} % of one core){pg}"


def read_steps(path: Path) -> list[tuple[datetime, datetime, int]]:
    """The watcher's steps: (began, committed, fired), in order."""
    steps = []
    for line in path.read_text().splitlines():
        began, committed, fired = json.loads(line)
        steps.append((datetime.fromisoformat(began), datetime.fromisoformat(committed), int(fired)))
    return steps


async def window_of(
    conn: asyncpg.Connection,
    steps: list[tuple[datetime, datetime, int]],
    *,
    start: datetime,
    end: datetime,
    usage: Usage,
    where: str,
    args: tuple[object, ...],
) -> Window:
    rows = await conn.fetch(
        f"SELECT kind, due_at, fired_at FROM orchestrator.timers WHERE {where}", *args
    )
    began = [step[0] for step in steps]
    due: dict[str, int] = {}
    fired: dict[str, list[float]] = {}
    committed: list[float] = []
    unfired = 0
    for row in rows:
        due[row["kind"]] = due.get(row["kind"], 0) + 1
        if row["fired_at"] is None:
            unfired += 1
            continue
        fired.setdefault(row["kind"], []).append((row["fired_at"] - row["due_at"]).total_seconds())
        step = bisect.bisect_right(began, row["fired_at"]) - 1
        if step >= 0 and steps[step][1] >= row["fired_at"]:
            committed.append((steps[step][1] - row["due_at"]).total_seconds())
    inside = [s for s in steps if start <= s[0] < end]
    return Window(
        seconds=(end - start).total_seconds(),
        due=due,
        unfired=unfired,
        fired={kind: late for kind, values in fired.items() if (late := Lateness.of(values))},
        committed=Lateness.of(committed),
        cpu=usage[0],
        postgres_cpu=usage[1],
        steps=len(inside),
        firing_steps=sum(1 for s in inside if s[2]),
    )
