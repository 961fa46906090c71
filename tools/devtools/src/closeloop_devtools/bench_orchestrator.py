"""`make bench-orchestrator`: cases opened per second, and how late SLA timers fire.

On the real broker and PostgreSQL, with the orchestrator run as separate processes:
1. prepares the database (`--database`, made once by `scripts/postgres.sh`: its `orchestrator`
   schema is dropped and migrated afresh, and dropped again at the end unless
   `--keep-database`) and its own topics (prefix `bench-orchestrator-<run>`, `--partitions`,
   deleted at the end); the four tenants' set-up (`orchestrator_tenants`) goes to a set-up file
   and their account owners into the database;
2. opening (`orchestrator_opening`): pre-fills the responses topic with `--responses` realistic
   answers of those tenants' accounts (`scoring_responses`, `--corrections-percent` % corrected
   later), waits until PostgreSQL is quiet (`sla_windows.until_quiet`), then starts the
   orchestrator (uvicorn, the app as deployed) and times it until there is one case per
   response, with the consumer's batch sizes, the CPU seconds of the
   process and of PostgreSQL, the `case.opened.v1` events in the outbox and a py-spy profile;
   then, as the baseline, on emptied tables and from the topic's start again, one transaction
   per response (`CONSUMER_BATCH_MAX_RECORDS=1`) for `--baseline-seconds`;
3. SLA timers (`orchestrator_sla`): empties the tables, bulk-loads `--open-cases` open cases
   whose first-contact deadlines are spread evenly over the next `--spread-hours`, with the
   timers the service stores for them (`case_store.opening_timers`), and runs the SLA watcher
   alone in its own process (`orchestrator_watcher`) on the system clock for `--watch-seconds`:
   how late timers fire (`fired_at - due_at` per kind, and until their events committed), the
   watcher's CPU seconds per minute, then a burst of `--burst` more cases all due in one second,
   and as the baseline a watcher that steps for every due timer (no tick).
Writes a Markdown table to --out and prints it. `--only opening|sla` runs one part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.db import make_engine
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.runtime import consumer_group
from closeloop_common.settings import CommonSettings
from closeloop_devtools.bench_ingest import shown, with_database
from closeloop_devtools.orchestrator_opening import Opening, measure_opening
from closeloop_devtools.orchestrator_sla import SlaRun, measure_sla
from closeloop_devtools.orchestrator_tenants import TENANTS, account_owner_rows, setup_file
from closeloop_devtools.report import write_report
from closeloop_devtools.scoring_responses import ResponseFeed
from closeloop_devtools.scoring_setup import (
    clean_databases,
    forget_group,
    migrate,
    prefill,
    prepare_databases,
)
from closeloop_devtools.scoring_watch import BenchTimeout, backend_pid, postmaster_of
from closeloop_devtools.sla_windows import until_quiet

SERVICE = "orchestrator"
OPENING_TABLES = ("cases", "timers", "case_history", "responses", "outbox", "team_turns")
SCHEMA = "orchestrator"
TARGET_RATE = 5_000.0
TARGET_P99_SECONDS = 1.0


def orchestrator_env(args: argparse.Namespace, *, database_url: str, setup: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ORCHESTRATOR_SETUP_FILE": str(setup),
        "LOG_LEVEL": "WARNING",
    }
    for setting in args.set:
        name, _, value = setting.partition("=")
        env[name.strip().upper()] = value.strip()
    return env


async def empty_cases(engine: AsyncEngine) -> None:
    """Every table the opening wrote, emptied (the account owners stay)."""
    tables = ", ".join(f"orchestrator.{t}" for t in OPENING_TABLES)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {tables}"))


async def store_account_owners(engine: AsyncEngine, accounts: int) -> int:
    """The tenants' account owners, as a CRM sync (`PUT /v1/account-owners`) stores them."""
    rows = [{**row, "at": datetime.now(UTC)} for row in account_owner_rows(accounts)]
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO orchestrator.account_owners (tenant_id, account_id, owner_id, "
                "updated_at) VALUES (:tenant_id, :account_id, :owner_id, :at)"
            ),
            rows,
        )
    return len(rows)


def bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    os.environ["KAFKA_TOPIC_PREFIX"] = f"bench-orchestrator-{uuid.uuid4().hex[:8]}"
    os.environ["KAFKA_TOPIC_PARTITIONS"] = str(args.partitions)
    settings = CommonSettings()
    asyncio.run(prepare_databases(settings.database_url, [args.database], schema=SCHEMA))
    try:
        asyncio.run(ensure_topics(settings))
        try:
            with tempfile.TemporaryDirectory(prefix="bench-orchestrator-") as tmp:
                logs = args.logs or Path(tmp)
                logs.mkdir(parents=True, exist_ok=True)
                return asyncio.run(measure(args, settings, logs))
        finally:
            try:
                asyncio.run(
                    forget_group(
                        settings.kafka_bootstrap_servers, consumer_group(settings, SERVICE)
                    )
                )
            except Exception as exc:  # a leftover group must not hide why the run failed
                print(f"bench-orchestrator: consumer group left behind: {exc}", file=sys.stderr)
            asyncio.run(delete_topics(settings))
    finally:
        if not args.keep_database:
            asyncio.run(clean_databases(settings.database_url, [args.database], schema=SCHEMA))


async def measure(
    args: argparse.Namespace, settings: CommonSettings, tmp: Path
) -> list[tuple[str, str]]:
    url = with_database(settings.database_url, args.database)
    setup = tmp / "setup.json"
    setup.write_text(json.dumps(setup_file(args.accounts)))
    env = orchestrator_env(args, database_url=url, setup=setup)
    migrate(env, service=SERVICE)
    engine = make_engine(url, pool_size=2)
    try:
        owners = await store_account_owners(engine, args.accounts)
        postmaster = postmaster_of(await backend_pid(url))
        load_average = os.getloadavg()[0]
        table = [
            (
                "machine",
                f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; load average (1 min) "
                f"{load_average:.2f} at the start (other work on the box adds noise)",
            ),
            (
                "tenants",
                f"{len(TENANTS)} ({', '.join(TENANTS)}): two teams each (8 + 3 people), "
                f"{owners} account owners, 5 key accounts, 2-3 case rules (4 h key accounts, "
                "8 h angry detractors; sklep-pl in Warsaw business hours)",
            ),
            ("orchestrator settings", ", ".join(map(shown, args.set)) or "defaults"),
        ]
        if args.only in (None, "opening"):
            table += await opening_rows(args, settings, env, engine, tmp, postmaster)
        if args.only in (None, "sla"):
            run = await measure_sla(
                engine,
                env,
                accounts=args.accounts,
                customers=args.customers,
                cases=args.open_cases,
                spread_hours=args.spread_hours,
                watch_seconds=args.watch_seconds,
                burst=args.burst,
                baseline_seconds=args.baseline_seconds,
                seed=args.seed,
                tmp=tmp,
                postmaster=postmaster,
            )
            table += sla_rows(run)
        return table
    finally:
        await engine.dispose()


async def opening_rows(
    args: argparse.Namespace,
    settings: CommonSettings,
    env: dict[str, str],
    engine: AsyncEngine,
    tmp: Path,
    postmaster: int | None,
) -> list[tuple[str, str]]:
    feed = ResponseFeed(
        responses=args.responses,
        accounts=args.accounts,
        customers=args.customers,
        corrections_percent=args.corrections_percent,
        seed=args.seed,
        tenants=TENANTS,
    )
    events, fill_seconds = await prefill(settings, feed, client_id="bench-orchestrator")
    await until_quiet(postmaster)
    opening = await measure_opening(
        engine,
        env,
        expected=feed.responses,
        timeout=args.timeout,
        log=tmp / "orchestrator.log",
        profile=tmp / "opening.profile",
        postmaster=postmaster,
    )
    # The baseline reads the same topic again from its start, on emptied tables.
    await empty_cases(engine)
    await forget_group(settings.kafka_bootstrap_servers, consumer_group(settings, SERVICE))
    baseline = await measure_opening(
        engine,
        {**env, "CONSUMER_BATCH_MAX_RECORDS": "1"},
        expected=feed.responses,
        timeout=args.timeout,
        log=tmp / "orchestrator-baseline.log",
        profile=tmp / "opening-baseline.profile",
        postmaster=postmaster,
        window=args.baseline_seconds,
    )
    tally = feed.tally
    share = {c: 100 * n / feed.responses for c, n in tally.categories.items()}
    return [
        (
            f"opening: responses (seed {args.seed})",
            f"{feed.responses:,} distinct responses of {len(feed.people):,} customers in "
            f"{len(feed.accounts):,} accounts; promoters / passives / detractors "
            f"{share.get('promoter', 0):.0f} / {share.get('passive', 0):.0f} / "
            f"{share.get('detractor', 0):.0f} %; {100 * tally.comments / feed.responses:.0f} % "
            f"with a comment ({100 * tally.polish_comments / max(1, tally.comments):.0f} % of "
            f"them Polish); {feed.corrections:,} corrected later (response.corrected.v1)",
        ),
        (
            f"opening: events in the topic ({args.partitions} partitions)",
            f"{events:,}, pre-filled in {fill_seconds:.1f} s",
        ),
        *opening_result_rows(opening, expected=feed.responses),
        (
            "opening baseline: one transaction per response (CONSUMER_BATCH_MAX_RECORDS=1)",
            f"{baseline.describe()}; {baseline.transactions:,.0f} transactions",
        ),
        ("opening: batches / baseline", f"{opening.rate / baseline.rate:.1f}x"),
        (
            f"target: ≥ {TARGET_RATE:,.0f} cases/s",
            "met" if opening.rate >= TARGET_RATE else "not met",
        ),
    ]


def opening_result_rows(o: Opening, *, expected: int) -> list[tuple[str, str]]:
    relay = (
        "not within --timeout"
        if o.relay_seconds is None
        else f"{o.relay_seconds:.1f} s after the last case"
    )
    rows = [
        (RATE_ROW, o.describe()),
        (
            "opening: from the process's start",
            f"{o.rate_from_start:,.0f} cases/s ({o.seconds:.1f} s: start-up and joining the "
            "consumer group included)",
        ),
        (
            "opening: consumer transactions, mean records per transaction",
            f"{o.transactions:,.0f}, {o.records / max(1.0, o.transactions):,.1f}",
        ),
        (
            "opening: CPU, orchestrator process / PostgreSQL server",
            f"{o.cpu:.1f} s ({100 * o.cpu / o.seconds:.0f} % of one core) / "
            + (
                "n/a (not on this machine)"
                if o.postgres_cpu is None
                else f"{o.postgres_cpu:.1f} s ({100 * o.postgres_cpu / o.seconds:.0f} % of one "
                "core; the whole server)"
            ),
        ),
        (
            "opening: check",
            f"{o.cases:,} cases ({'=' if o.cases == expected else '≠'} {expected:,} responses); "
            f"{o.opened_events:,} case.opened.v1 and {o.updated_events:,} case.updated.v1 "
            f"(corrections that re-typed a case) in the outbox; relay published all {relay}",
        ),
    ]
    if o.profile is not None:
        by_area, by_function = o.profile.describe()
        rows += [
            ("opening: py-spy, running code by library", by_area),
            ("opening: py-spy, project functions (inclusive)", by_function),
        ]
    return rows


def sla_rows(run: SlaRun) -> list[tuple[str, str]]:
    rows = run.rows()
    steady = run.steady.breach
    met = steady is not None and steady.p99 < TARGET_P99_SECONDS and run.steady.unfired == 0
    rows.append(
        (
            f"target: breach p99 lateness < {TARGET_P99_SECONDS:g} s (steady)",
            "met" if met else "not met",
        )
    )
    return rows


RATE_ROW = "opening: cases opened per second"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-bench-orchestrator", description=__doc__)
    parser.add_argument("--responses", type=int, default=200_000, help="distinct responses")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--corrections-percent", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=2026, help="of the generated data")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=900.0, help="per wait (s)")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=30.0,
        help="how long each baseline is measured (one transaction per response; no tick)",
    )
    parser.add_argument("--open-cases", type=int, default=1_000_000)
    parser.add_argument("--spread-hours", type=float, default=6.0)
    parser.add_argument("--watch-seconds", type=float, default=180.0)
    parser.add_argument("--burst", type=int, default=20_000, help="cases due in one second")
    parser.add_argument("--only", choices=("opening", "sla"), default=None)
    parser.add_argument("--database", default="closeloop_bench_orchestrator")
    parser.add_argument("--keep-database", action="store_true", help="leave it for inspection")
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the processes' logs and profiles here"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an orchestrator setting"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/orchestrator.md"))
    args = parser.parse_args(argv)
    if args.responses < 1 or args.open_cases < 1:
        parser.error("--responses and --open-cases must be at least 1")
    if args.customers < args.accounts or args.accounts < 20 * len(TENANTS):
        parser.error("--customers ≥ --accounts ≥ 80 (every tenant has 20 accounts at least)")
    try:
        table = bench(args)
    except BenchTimeout as exc:
        print(f"bench-orchestrator: {exc}", file=sys.stderr)
        return 1
    write_report(
        args.out,
        title="Orchestrator benchmark",
        setup="the orchestrator as separate processes (uvicorn with uvloop for opening; the SLA "
        "watcher alone for the timers) with real Kafka 4.1.1 (KRaft, 1 node) and PostgreSQL on "
        "127.0.0.1, all on the same machine.",
        rows=table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
