"""One scoring process under watch for `make bench-scoring`: how fast n grows, and its cost.

`scoring()` starts the service (uvicorn, the app factory) on a free port and yields as soon as its
API answers; `watch()` then polls `GET /v1/nps?days=3660` every `POLL_SECONDS` until n is the
number of responses produced (or for a bounded window after the first n > 0), and reads the
process's CPU seconds (/proc), the PostgreSQL server's (its postmaster, live backends and the
backends it reaped: the whole server, other clients included) and the consumer's transactions
from its Prometheus histogram. n above what was produced fails the run: that is a response
counted twice.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

from closeloop_common.db import make_engine
from closeloop_devtools.bench_ingest import cpu_seconds, free_port, server, uvicorn_command

SCORING_APP = "closeloop_scoring.entrypoints.app:create_scoring_app"
POLL_SECONDS = 0.5


class BenchTimeout(RuntimeError):
    """Scoring did not count every response in time."""


@dataclass(frozen=True, slots=True)
class Progress:
    """What one scoring process counted: n over time, from its start."""

    counted: int
    seconds: float  # from the process's start to the last look
    first_seen: float  # seconds from the start to the first look with n > 0
    first_n: int
    cpu: float  # the process's CPU seconds
    postgres_cpu: float | None  # the database server's CPU seconds meanwhile
    transactions: float
    records: float

    @property
    def watched(self) -> bool:
        """Whether n grew between looks (else it was all counted before the first look)."""
        return self.counted > self.first_n

    @property
    def rate(self) -> float:
        """Responses/s from the first look with n > 0 to the last look (from the process's
        start if n did not grow between looks)."""
        if not self.watched:
            return self.rate_from_start
        return (self.counted - self.first_n) / (self.seconds - self.first_seen)

    def describe(self) -> str:
        if not self.watched:
            return (
                f"{self.rate:,.0f} responses/s from the process's start: all {self.counted:,} "
                f"were counted by the first look, after {self.seconds:.1f} s (too few to time; "
                "use more --responses)"
            )
        return (
            f"{self.rate:,.0f} responses/s ({self.counted - self.first_n:,} responses in "
            f"{self.seconds - self.first_seen:.1f} s, from the first look with n > 0 to the last;"
            f" polled every {POLL_SECONDS:g} s)"
        )

    @property
    def rate_from_start(self) -> float:
        return self.counted / self.seconds


async def backend_pid(database_url: str) -> int:
    """The pid of the server process that serves a connection to `database_url`."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
    finally:
        await engine.dispose()


def postmaster_of(backend: int) -> int | None:
    """The postmaster's pid, the parent of `backend`, if the server runs on this machine."""
    fields = _stat(backend)
    try:
        name = Path(f"/proc/{backend}/comm").read_text()
    except OSError:
        return None
    if fields is None or not name.startswith("postgres"):
        return None  # another machine's pid, or a container's
    return int(fields[1])


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def postgres_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU seconds of the server: the postmaster, its live children and the children it reaped."""
    if postmaster is None:
        return None
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        if int(entry.name) == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def consumer_batches(metrics_url: str) -> tuple[float, float]:
    """(transactions, records) of the consumer so far, from its Prometheus histogram."""
    totals = {"_count": 0.0, "_sum": 0.0}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        name = name.partition("{")[0]
        for suffix in totals:
            if name == f"closeloop_consumer_batch_records{suffix}":
                totals[suffix] += float(value.split()[0])
    return totals["_count"], totals["_sum"]


def counted(client: httpx.Client, base: str) -> int:
    answer = client.get(f"{base}/v1/nps", params={"days": 3660})
    if answer.status_code != 200:
        raise RuntimeError(f"GET /v1/nps answered {answer.status_code}: {answer.text[:500]}")
    return int(answer.json()["n"])


@dataclass(frozen=True, slots=True)
class Scoring:
    """A scoring process being measured, and a keep-alive client with the bench's token."""

    proc: subprocess.Popen[bytes]
    base: str
    client: httpx.Client
    started: float  # perf_counter when the process was started
    postmaster: int | None
    postgres_before: float | None  # the database server's CPU seconds then


@contextmanager
def scoring(
    env: dict[str, str], log: Path, token: str, postmaster: int | None
) -> Iterator[Scoring]:
    """Scoring on a free port, yielded once ready; stopped at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = uvicorn_command(SCORING_APP, port, factory=True)
    postgres_before = postgres_cpu_seconds(postmaster)
    started = time.perf_counter()
    with (
        # Liveness, not readiness: the first look at n comes as soon as the API answers.
        server(command, env=env, log=log, ready_url=f"{base}/healthz") as proc,
        httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client,
    ):
        yield Scoring(proc, base, client, started, postmaster, postgres_before)


def watch(s: Scoring, *, expected: int, timeout: float, window: float | None) -> Progress:
    """Poll n until it is `expected`, or until `window` s after the first n > 0 (if given)."""
    first_seen, first_n = math.inf, 0
    while True:
        n = counted(s.client, s.base)
        now = time.perf_counter() - s.started
        if n > expected:
            raise AssertionError(f"n = {n:,} is more than the {expected:,} responses produced")
        if n and first_seen == math.inf:
            first_seen, first_n = now, n
        if n == expected or (window is not None and now - first_seen >= window):
            break
        if now > timeout:
            rate = (n - first_n) / (now - first_seen) if n else 0.0
            raise BenchTimeout(
                f"scoring counted {n:,} of {expected:,} responses in {now:.0f} s "
                f"({rate:,.0f}/s since the first one) and --timeout {timeout:g} s is over; "
                "lower --responses or raise --timeout"
            )
        if s.proc.poll() is not None:
            raise RuntimeError(f"scoring exited with {s.proc.returncode} after {now:.0f} s")
        time.sleep(POLL_SECONDS)
    postgres_after = postgres_cpu_seconds(s.postmaster)
    transactions, records = consumer_batches(f"{s.base}/metrics")
    return Progress(
        counted=n,
        seconds=now,
        first_seen=first_seen,
        first_n=first_n,
        cpu=cpu_seconds(s.proc.pid),
        postgres_cpu=None
        if postgres_after is None or s.postgres_before is None
        else postgres_after - s.postgres_before,
        transactions=transactions,
        records=records,
    )
