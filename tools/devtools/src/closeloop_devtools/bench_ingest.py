"""`make bench-ingest`: signed Typeform webhooks/s that one ingest process accepts durably.

A separate load generator (wrk, `closeloop_devtools.wrk`) posts pre-signed Typeform webhooks
(`closeloop_devtools.typeform_bodies`, each a new response) over loopback to one uvicorn process
of ingest, with the real PostgreSQL and Kafka on the same machine. The run:
1. prepares its own database (`--database`, dropped and migrated afresh: only this benchmark may
   use it) and its own topics (prefix `bench-ingest-<run>`, deleted at the end);
2. starts ingest (uvloop, httptools, no access log) on a free port, with a sources file of two
   Typeform sources: `warmup` (a short run first, not measured) and `load` (the measured run);
3. measures wrk's 2xx/s, latency percentiles and non-2xx answers, then checks the database: the
   rows of `load` in `ingest.responses` must be those wrk saw accepted (a request still in flight
   when wrk stopped may add one per connection);
4. waits until the outbox relay has published every event of the measured run and reads the
   outbox-to-Kafka lag (`published_at - created_at`) from `ingest.outbox`: from the group
   commit's transaction writing the event to the broker's ack of it;
5. stops ingest and starts the ceiling (`closeloop_devtools.ceiling_app`, a bare ASGI app) on the
   same port with the same flags, and runs the same wrk client and script against it.
Writes a Markdown table to --out and prints it. Ingest's settings can be varied with
`--set NAME=VALUE` (e.g. `--set GROUP_COMMIT_MAX_BATCH=500`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from closeloop_common.db import make_engine
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.settings import CommonSettings
from closeloop_devtools.report import write_report
from closeloop_devtools.typeform_bodies import SIGNATURE_HEADER, write_bodies
from closeloop_devtools.wrk import LUA_SCRIPT, WrkResult, run_wrk, wrk_binary

TENANT = "bench"
INGEST_APP = "closeloop_ingest.entrypoints.app:create_ingest_app"
CEILING_APP = "closeloop_devtools.ceiling_app:app"
TARGET_RATE = 5000.0
TARGET_P99_MS = 50.0


def uvicorn_command(app: str, port: int, *, factory: bool) -> list[str]:
    """One uvicorn process, the same flags for ingest and for the ceiling."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        f"--port={port}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--log-level=warning",
    ]


def with_database(url: str, database: str) -> str:
    """`url` naming another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shown(setting: str) -> str:
    """`NAME=VALUE` for the report, a URL's password hidden."""
    name, _, value = setting.partition("=")
    if "://" in value:
        value = make_url(value).render_as_string(hide_password=True)
    return f"{name}={value}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    command: list[str], *, env: dict[str, str], log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, yielded once `ready_url` answers; SIGTERM (then SIGKILL) at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            with httpx.Client(timeout=2.0) as client:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{command[3]} exited:\n{log.read_text()[-4000:]}")
                    try:
                        if client.get(ready_url).status_code < 300:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{command[3]} not ready:\n{log.read_text()[-4000:]}")
                    time.sleep(0.2)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def prepare_database(server_url: str, database: str) -> None:
    """Create `database` when missing, and drop its `ingest` schema (a fresh one per run)."""
    admin = make_engine(with_database(server_url, "postgres"), pool_size=1)
    try:
        async with admin.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            exists = await conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": database}
            )
            if not exists:  # needs CREATEDB; `scripts/postgres.sh up` makes closeloop_bench
                await conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        await admin.dispose()
    engine = make_engine(with_database(server_url, database), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP SCHEMA IF EXISTS ingest CASCADE"))
    finally:
        await engine.dispose()


async def check_and_drain(
    database_url: str, *, started: datetime, ended: datetime, timeout: float = 300.0
) -> dict[str, Any]:
    """Rows the measured run stored, and its outbox-to-Kafka lag once every event is published."""
    engine = make_engine(database_url, pool_size=1, application_name="bench-ingest")
    try:
        async with engine.connect() as conn:
            stored = await conn.scalar(
                sa.text("SELECT count(*) FROM ingest.responses WHERE source = 'load'")
            )
            deadline = time.monotonic() + timeout
            while True:
                pending = await conn.scalar(
                    sa.text("SELECT count(*) FROM ingest.outbox WHERE published_at IS NULL")
                )
                await conn.rollback()  # a new snapshot for the next look
                if not pending or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            lag = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) AS events,"
                        " percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50,"
                        " percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99,"
                        " max(d) AS max, max(published_at) AS last"
                        " FROM (SELECT published_at,"
                        "  extract(epoch FROM published_at - created_at) AS d"
                        "  FROM ingest.outbox WHERE created_at >= :started) AS o"
                    ),
                    {"started": started},
                )
            ).one()
    finally:
        await engine.dispose()
    last = lag.last
    return {
        "stored": int(stored or 0),
        "unpublished": int(pending or 0),
        "events": int(lag.events),
        "lag_p50_ms": 1000 * float(lag.p50 or 0),
        "lag_p99_ms": 1000 * float(lag.p99 or 0),
        "lag_max_ms": 1000 * float(lag.max or 0),
        "drained_after_s": (last - ended).total_seconds() if last else float("nan"),
    }


def group_commit_sizes(metrics_url: str) -> tuple[float, float]:
    """(transactions, mean requests per transaction) of ingest's group commit so far."""
    text = httpx.get(metrics_url, timeout=10).text
    values = {
        name: float(value)
        for name, value in (
            line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
    }
    count = values.get("closeloop_ingest_group_commit_requests_count", 0.0)
    total = values.get("closeloop_ingest_group_commit_requests_sum", 0.0)
    return count, total / count if count else float("nan")


def write_sources(path: Path, secret: str) -> None:
    sources = {name: {"kind": "typeform", "secrets": [secret]} for name in ("warmup", "load")}
    path.write_bytes(orjson.dumps({"tenants": {TENANT: {"sources": sources}}}))


def ingest_env(args: argparse.Namespace, *, database_url: str, sources: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SOURCES_FILE": str(sources),
        "LOG_LEVEL": "WARNING",
    }
    for setting in args.set:
        name, _, value = setting.partition("=")
        env[name.strip().upper()] = value.strip()
    return env


def migrate(env: dict[str, str]) -> None:
    script = str(Path(sys.executable).parent / "closeloop-ingest")
    done = subprocess.run([script, "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ingest migrate failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")


def bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    wrk_binary()  # fail before any set-up when wrk is missing
    run = uuid.uuid4().hex[:8]
    os.environ["KAFKA_TOPIC_PREFIX"] = args.prefix or f"bench-ingest-{run}"
    settings = CommonSettings()
    database_url = with_database(settings.database_url, args.database)
    asyncio.run(prepare_database(settings.database_url, args.database))
    asyncio.run(ensure_topics(settings))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp_name:
            return measure(args, Path(tmp_name), run=run, database_url=database_url)
    finally:
        if not args.prefix:
            asyncio.run(delete_topics(settings))


def measure(
    args: argparse.Namespace, tmp: Path, *, run: str, database_url: str
) -> list[tuple[str, str]]:
    secret = secrets.token_urlsafe(24)
    sources = tmp / "sources.json"
    write_sources(sources, secret)
    env = ingest_env(args, database_url=database_url, sources=sources)
    migrate(env)
    script = tmp / "post-signed.lua"
    script.write_text(LUA_SCRIPT, encoding="utf-8")
    submitted_at = datetime.now(UTC) - timedelta(minutes=1)
    made = time.perf_counter()
    warmup_bodies, load_bodies = tmp / "warmup.tsv", tmp / "load.tsv"
    write_bodies(
        warmup_bodies,
        secret=secret,
        run=run,
        count=args.warmup_bodies,
        first=args.bodies,
        submitted_at=submitted_at,
    )
    size = write_bodies(
        load_bodies, secret=secret, run=run, count=args.bodies, first=0, submitted_at=submitted_at
    )
    made = time.perf_counter() - made
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def load(path: str, bodies: Path, seconds: float) -> WrkResult:
        return run_wrk(
            f"{base}{path}",
            script=script,
            bodies=bodies,
            signature_header=SIGNATURE_HEADER,
            threads=args.threads,
            connections=args.connections,
            seconds=seconds,
        )

    command = uvicorn_command(INGEST_APP, port, factory=True)
    with server(command, env=env, log=tmp / "ingest.log", ready_url=f"{base}/readyz") as proc:
        load(f"/v1/webhooks/{TENANT}.warmup", warmup_bodies, args.warmup_seconds)
        load_average = os.getloadavg()[0]
        cpu = cpu_seconds(proc.pid)
        started = datetime.now(UTC)
        ingest = load(f"/v1/webhooks/{TENANT}.load", load_bodies, args.seconds)
        ended = datetime.now(UTC)
        cpu = cpu_seconds(proc.pid) - cpu
        batching = group_commit_sizes(f"{base}/metrics")
        checked = asyncio.run(check_and_drain(database_url, started=started, ended=ended))
    checked["ingest_cpu"] = cpu / ingest.seconds
    checked["batches"], checked["batch_mean"] = batching
    checked["load_average"] = load_average
    with server(
        uvicorn_command(CEILING_APP, port, factory=False),
        env=env,
        log=tmp / "ceiling.log",
        ready_url=f"{base}/",
    ):
        load(f"/v1/webhooks/{TENANT}.load", load_bodies, min(args.warmup_seconds, 3))
        ceiling = load(f"/v1/webhooks/{TENANT}.load", load_bodies, args.seconds)
    return rows(args, ingest, ceiling, checked, bodies_made=(args.bodies, size, made))


def rows(
    args: argparse.Namespace,
    ingest: WrkResult,
    ceiling: WrkResult,
    checked: dict[str, Any],
    *,
    bodies_made: tuple[int, int, float],
) -> list[tuple[str, str]]:
    count, size, made = bodies_made
    accepted = ingest.ok_rate
    met = accepted >= TARGET_RATE and ingest.p99_ms < TARGET_P99_MS
    in_flight = checked["stored"] - ingest.ok
    stored_ok = 0 <= in_flight <= args.connections and ingest.wrapped == 0
    return [
        (
            "load",
            f"wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s measured after a "
            f"{args.warmup_seconds:g} s warm-up; {count:,} distinct signed Typeform bodies "
            f"({size / count:,.0f} bytes each on average, made in {made:.1f} s)",
        ),
        ("ingest settings", ", ".join(map(shown, args.set)) or "defaults"),
        (
            "machine load average (1 min) before the measured run",
            f"{checked['load_average']:.2f} on {os.cpu_count()} cores (other work adds noise)",
        ),
        (ACCEPTED_ROW, f"{accepted:,.0f} requests/s"),
        (
            LATENCY_ROW,
            f"{ingest.p50_ms:.1f} / {ingest.p90_ms:.1f} / {ingest.p99_ms:.1f} / "
            f"{ingest.max_ms:.0f} ms",
        ),
        (
            "ingest: requests, non-2xx, socket errors, timeouts",
            f"{ingest.requests:,}, {ingest.non_2xx:,}, {ingest.socket_errors:,}, "
            f"{ingest.timeouts:,}",
        ),
        (
            "ingest process CPU during the measured run",
            f"{100 * checked['ingest_cpu']:.0f} % of one core",
        ),
        (
            "group commit: transactions, mean requests per transaction (warm-up included)",
            f"{checked['batches']:,.0f}, {checked['batch_mean']:.1f}",
        ),
        (
            "check: rows stored in ingest.responses vs 2xx seen by wrk",
            f"{checked['stored']:,} vs {ingest.ok:,} ({in_flight:+,} in flight when wrk "
            f"stopped; {'consistent' if stored_ok else 'NOT consistent'})",
        ),
        (
            "outbox → Kafka lag p50 / p99 / max",
            f"{checked['lag_p50_ms']:.0f} / {checked['lag_p99_ms']:.0f} / "
            f"{checked['lag_max_ms']:.0f} ms ({checked['events']:,} events, "
            f"{checked['unpublished']:,} left unpublished)",
        ),
        (
            "outbox drained (last event published) after the load ended",
            f"{max(0.0, checked['drained_after_s']):.2f} s",
        ),
        (
            "ceiling: bare uvicorn ASGI app, same port, flags and client",
            f"{ceiling.rate:,.0f} "
            f"requests/s (p50 {ceiling.p50_ms:.1f} ms, p99 {ceiling.p99_ms:.1f} ms)",
        ),
        ("ingest / ceiling", f"{100 * accepted / ceiling.rate:.1f} %"),
        (
            f"target: ≥ {TARGET_RATE:,.0f} accepted/s with p99 < {TARGET_P99_MS:.0f} ms",
            "met" if met else "not met",
        ),
    ]


ACCEPTED_ROW = "ingest: accepted durably (2xx/s)"
LATENCY_ROW = "ingest: latency p50 / p90 / p99 / max"


def median_run(tables: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The table of the run with the median accepted rate, plus a row listing every run (this
    machine is noisy: one run is one sample)."""

    def accepted(table: list[tuple[str, str]]) -> float:
        return float(dict(table)[ACCEPTED_ROW].split()[0].replace(",", ""))

    ordered = sorted(tables, key=accepted)
    median = ordered[len(ordered) // 2]
    every = "; ".join(
        f"{dict(t)[ACCEPTED_ROW]}, p50/p90/p99/max {dict(t)[LATENCY_ROW]}" for t in tables
    )
    return [
        *median,
        (
            f"all {len(tables)} runs (accepted/s and latency), in order; the table is the median",
            every,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-bench-ingest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured run")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--bodies", type=int, default=200_000, help="distinct bodies measured")
    parser.add_argument("--warmup-bodies", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--database",
        default="closeloop_bench",
        help="its `ingest` schema is dropped and migrated anew",
    )
    parser.add_argument("--prefix", help="topic prefix with existing topics (kept afterwards)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an ingest setting"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="whole runs (fresh schema and topics each); the table shows the median run",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/ingest.md"))
    args = parser.parse_args(argv)
    tables = [bench(args) for _ in range(args.runs)]
    table = median_run(tables)
    write_report(
        args.out,
        title="Ingest webhook benchmark",
        setup="one ingest process (uvicorn, uvloop, httptools) with real Kafka 4.1.1 (KRaft, "
        "1 node) and PostgreSQL on 127.0.0.1; the load generator (wrk) on the same machine.",
        rows=table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
