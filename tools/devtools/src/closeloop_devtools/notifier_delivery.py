"""Part A of `make bench-notifier`: case replies rendered and delivered per second over SMTP.

`measure_delivery` starts the notifier (`notifier_process.running_notifier`) on a fresh schema
whose cases topic already holds `expected` `case.opened.v1` events, and looks at the sink every
`POLL_SECONDS` until it has accepted `expected` emails (and at `notifier.messages`, to see when
the consumer had stored them all). The rates come from the sink's acceptance times: from the
first email to the last (steady state), over the middle 80 % of them, and from the process's
start (start-up, joining the consumer group and the first batches included).

Then, while the same process runs, the latency: `paced` more events are produced at `rate` per
second, each stamped with the time it is produced, and the time from that stamp to the sink's
acceptance of its email is read per case (p50, p99, max).

Afterwards the checks: the sink holds exactly one email per message the table says is `sent`,
none twice, none with a missing header, the table has every message `sent`, and the kinds are
those of the cases' categories.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.clock import SystemClock
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.settings import CommonSettings
from closeloop_devtools.notifier_feed import CaseMix, case_events
from closeloop_devtools.notifier_process import (
    Meter,
    Usage,
    count,
    percentile,
    running_notifier,
    sent_ids,
    statuses,
)
from closeloop_devtools.notifier_sink import Accepted, SinkProcess
from closeloop_devtools.profiling import Profile, summarise
from closeloop_devtools.scoring_watch import BenchTimeout

POLL_SECONDS = 0.25
KIND_OF_CATEGORY = {"detractor": "apology", "passive": "improvement_ask", "promoter": "thanks"}


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    rate: float  # events/s produced
    p50: float
    p99: float
    max: float

    def describe(self) -> str:
        return (
            f"p50 {1000 * self.p50:,.0f} ms, p99 {1000 * self.p99:,.0f} ms, max "
            f"{1000 * self.max:,.0f} ms ({self.count:,} events produced at {self.rate:,.0f}/s)"
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one notifier process delivered, and what it cost."""

    expected: int
    accepted: int
    started_at: float  # time.time() when the process was started
    times: list[float]  # acceptance times (time.time()), sorted
    stored_after: float | None  # seconds from the start until every message was stored
    usage: Usage
    problems: list[str]  # what the checks found wrong; empty: every email exactly once
    kinds: dict[str, int]
    latency: Latency | None
    profile: Profile | None

    @property
    def rate(self) -> float:
        """Emails/s from the first acceptance to the last."""
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else math.nan

    @property
    def middle_rate(self) -> float:
        """Emails/s over the middle 80 % of the emails."""
        low, high = percentile(self.times, 0.1), percentile(self.times, 0.9)
        return 0.8 * len(self.times) / (high - low) if high > low else math.nan

    @property
    def seconds(self) -> float:
        """From the process's start to the last acceptance."""
        return self.times[-1] - self.started_at

    @property
    def rate_from_start(self) -> float:
        return len(self.times) / self.seconds

    @property
    def first_after(self) -> float:
        return self.times[0] - self.started_at

    def describe(self) -> str:
        return (
            f"{self.rate:,.0f} emails/s ({self.accepted:,} emails, first to last in "
            f"{self.times[-1] - self.times[0]:.1f} s); middle 80 %: {self.middle_rate:,.0f}/s"
        )

    def describe_from_start(self) -> str:
        stored = (
            "not seen"
            if self.stored_after is None
            else f"the consumer had stored every message after {self.stored_after:.1f} s"
        )
        return (
            f"{self.rate_from_start:,.0f} emails/s ({self.seconds:.1f} s from the process's "
            f"start to the last email; first email after {self.first_after:.1f} s; {stored})"
        )


async def measure_delivery(
    engine: AsyncEngine,
    env: dict[str, str],
    sink: SinkProcess,
    *,
    expected: int,
    port: int,
    timeout: float,
    tmp: Path,
    name: str,
    postmaster: int | None,
    paced: tuple[int, float, int] | None = None,
    settings: CommonSettings | None = None,
) -> Delivery:
    """Run the notifier until the sink has `expected` emails (module docstring); `paced`:
    (events, events per second, seed) for the latency, produced with `settings`."""
    sink.reset()
    started_at = time.time()
    stored_after: float | None = None
    async with running_notifier(
        env, port=port, log=tmp / f"{name}.log", profile=tmp / f"{name}.profile"
    ) as proc:
        meter = Meter(proc.pid, sink, postmaster)
        looks = 0
        while True:
            stats = sink.stats()
            now = time.time() - started_at
            if (
                stored_after is None
                and looks % 2 == 0
                and await count(engine, "SELECT count(*) FROM notifier.messages") >= expected
            ):
                stored_after = now
            looks += 1
            if stats["accepted"] >= expected:
                break
            _still_going(proc, now, timeout, f"{stats['accepted']:,} of {expected:,} emails")
            await asyncio.sleep(POLL_SECONDS)
        usage = meter.read()
        latency: Latency | None = None
        paced_cases: set[str] = set()
        if paced is not None and settings is not None:
            latency, paced_cases = await _paced(
                settings, sink, proc, *paced, timeout=timeout, dump=tmp / f"{name}.paced.tsv"
            )
    accepted = sink.dump(tmp / f"{name}.sink.tsv")
    backlog = [a for a in accepted if a.case_id not in paced_cases]
    problems = await _check(engine, sink.stats(), accepted)
    return Delivery(
        expected=expected,
        accepted=len(backlog),
        started_at=started_at,
        times=sorted(a.at for a in backlog),
        stored_after=stored_after,
        usage=usage,
        problems=problems,
        kinds=dict(Counter(a.kind for a in backlog)),
        latency=latency,
        profile=summarise(tmp / f"{name}.profile", project="closeloop_notifier/"),
    )


def _still_going(proc: subprocess.Popen[bytes], now: float, timeout: float, what: str) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"the notifier exited with {proc.returncode} after {what}")
    if now > timeout:
        raise BenchTimeout(f"{what} after {now:.0f} s and --timeout is over")


async def _paced(
    settings: CommonSettings,
    sink: SinkProcess,
    proc: subprocess.Popen[bytes],
    events: int,
    rate: float,
    seed: int,
    *,
    timeout: float,
    dump: Path,
) -> tuple[Latency, set[str]]:
    """Produce `events` at `rate`/s, each stamped when produced; the latency per case to the
    sink, and the cases produced."""
    before = int(sink.stats()["accepted"])
    produced_at: dict[str, float] = {}
    source = case_events(events, seed=seed, mix=CaseMix(), clock=SystemClock())
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="bench-notifier-paced")
    await producer.start()
    tick = 0.05
    started = time.perf_counter()
    try:
        sent = 0
        while sent < events:
            due = min(events, math.ceil(rate * (time.perf_counter() - started + tick)))
            batch = [next(source) for _ in range(due - sent)]
            for event in batch:
                produced_at[str(event.data.case_id)] = event.time.timestamp()
            await producer.send_batch(
                [
                    OutboundRecord(
                        event.data.TOPIC.address(settings.kafka_topic_prefix),
                        event.partitionkey,
                        event.encode(),
                    )
                    for event in batch
                ]
            )
            sent = due
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    finally:
        await producer.stop()
    waited = time.perf_counter()
    while int(sink.stats()["accepted"]) < before + events:
        _still_going(proc, time.perf_counter() - waited, timeout, "paced events")
        await asyncio.sleep(POLL_SECONDS)
    found = sorted(
        a.at - produced_at[a.case_id] for a in sink.dump(dump) if a.case_id in produced_at
    )
    latency = Latency(
        count=events,
        rate=rate,
        p50=percentile(found, 0.5),
        p99=percentile(found, 0.99),
        max=found[-1],
    )
    return latency, set(produced_at)


async def _check(engine: AsyncEngine, stats: dict[str, Any], accepted: list[Accepted]) -> list[str]:
    """What is wrong (module docstring); empty when every email arrived exactly once."""
    problems = []
    if stats["duplicates"]:
        problems.append(f"{stats['duplicates']:,} emails accepted twice (same Message-ID)")
    if stats["bad"]:
        problems.append(f"{stats['bad']:,} emails missing headers: {stats['reasons'][:3]}")
    by_status = await statuses(engine)
    if set(by_status) != {"sent"}:
        problems.append(f"messages not all sent: {by_status}")
    in_table = await sent_ids(engine)
    in_sink = {a.message_id for a in accepted}
    if missing := in_table - in_sink:
        problems.append(f"{len(missing):,} messages sent by the table but not in the sink")
    if extra := in_sink - in_table:
        problems.append(f"{len(extra):,} emails in the sink that the table does not say sent")
    return problems
