"""`make bench-scoring`: responses/s scoring aggregates with exactly-once effect, and NPS reads.

On the real broker and PostgreSQL, with scoring run as a separate uvicorn process (as deployed):
1. makes its own topics (prefix `bench-scoring-<run>`, `--partitions`, deleted at the end) and
   two databases (`--database`, `--baseline-database`: made afresh and migrated, removed at the
   end unless `--keep-databases`; see `scoring_setup`), a key pair and a `read` token of tenant
   `bench`;
2. pre-fills the responses topic with `--responses` realistic answers in arrival order
   (`closeloop_devtools.scoring_responses`: 10,000 accounts, a year, segments, comments) plus
   `--corrections-percent` % of `response.corrected.v1`; n must end at the distinct responses;
3. baseline: scoring with `CONSUMER_BATCH_MAX_RECORDS=1` (one transaction per message) on the
   baseline database, for `--baseline-seconds` after its first counted response; then stopped,
   and its consumer group deleted. The group id is `<KAFKA_TOPIC_PREFIX>.scoring` with no
   override, so both runs share it: deleting it makes the measured run start from offset 0;
4. the measured run: scoring with the service's settings (`--set NAME=VALUE` varies them) on the
   main database, until `GET /v1/nps?days=3660` says n = the distinct responses (polled every
   0.5 s), timed from the first n > 0 seen and from the process's start, with the CPU seconds of
   the process and of the PostgreSQL server (its postmaster and backends, from /proc);
5. reads: `GET /v1/nps?days=90` with region and product filters (cycling through every pair),
   without filter and for the biggest account, sequential on one keep-alive connection
   (`--warmup-queries`, then `--queries` measured); every answer must be 200 with `n`, and `n`
   is compared with what was generated (a service that ignores a filter answers another `n`).
Writes a Markdown table to --out and prints it. A run that does not finish within `--timeout`
stops with what it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from closeloop_common.auth import Scope
from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.runtime import consumer_group
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import generate_key_pair, mint_token
from closeloop_devtools.bench_ingest import shown, with_database
from closeloop_devtools.report import write_report
from closeloop_devtools.scoring_responses import TENANT, ResponseFeed
from closeloop_devtools.scoring_setup import (
    clean_databases,
    forget_group,
    migrate,
    prefill,
    prepare_databases,
)
from closeloop_devtools.scoring_watch import (
    BenchTimeout,
    Progress,
    backend_pid,
    counted,
    postmaster_of,
    scoring,
    watch,
)

SERVICE = "scoring"  # the runtime's name; its consumer group is `<prefix>.scoring`
TARGET_RATE = 50_000.0
TARGET_RATIO = 10.0
TARGET_P99_MS = 20.0


@dataclass(frozen=True, slots=True)
class Latencies:
    name: str
    ms: list[float]
    failures: int  # not 200, or no `n`
    as_generated: int  # answers whose n is what was generated

    def percentile(self, p: float) -> float:
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


Case = tuple[dict[str, str | int], int]  # query parameters, the n generated for them


def read_cases(feed: ResponseFeed, *, days: int = 90) -> list[tuple[str, list[Case]]]:
    """The queries measured, each with the n it must answer: two filters (every region and
    product pair, cycled), none, and the biggest account."""
    last = datetime.now(UTC).date()  # the service's window ends on its today (UTC)
    first = last - timedelta(days=days - 1)
    pairs = sorted({(r, p) for _, r, p in feed.tally.by_region_product})
    big = feed.biggest_account
    return [
        (
            f"GET /v1/nps?days={days}&region=R&product=P ({len(pairs)} pairs cycled)",
            [
                (
                    {"days": days, "region": r, "product": p},
                    feed.tally.n(first, last, region=r, product=p),
                )
                for r, p in pairs
            ],
        ),
        (f"GET /v1/nps?days={days}", [({"days": days}, feed.tally.n(first, last))]),
        (
            f"GET /v1/nps?days={days}&account={big} (the biggest account)",
            [({"days": days, "account": big}, feed.tally.n(first, last, account=big))],
        ),
    ]


def measure_reads(
    client: httpx.Client, base: str, name: str, cases: list[Case], *, warmup: int, count: int
) -> Latencies:
    """Sequential GETs cycling through `cases`: `warmup` unmeasured, then `count` measured."""
    ms: list[float] = []
    failures = as_generated = 0
    for i, (params, expected) in zip(range(warmup + count), itertools.cycle(cases), strict=False):
        started = time.perf_counter()
        answer = client.get(f"{base}/v1/nps", params=params)
        elapsed = 1000 * (time.perf_counter() - started)
        if i < warmup:
            continue
        ms.append(elapsed)
        n = answer.json().get("n") if answer.status_code == 200 else None
        failures += not isinstance(n, int)
        as_generated += n == expected
    return Latencies(name, ms, failures, as_generated)


# --- the run ------------------------------------------------------------------------------------


def scoring_env(args: argparse.Namespace, *, database_url: str, public_key: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AUTH_PUBLIC_KEY_FILE": str(public_key),
        "LOG_LEVEL": "WARNING",
    }
    for setting in args.set:
        name, _, value = setting.partition("=")
        env[name.strip().upper()] = value.strip()
    return env


def bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    os.environ["KAFKA_TOPIC_PREFIX"] = f"bench-scoring-{uuid.uuid4().hex[:8]}"
    os.environ["KAFKA_TOPIC_PARTITIONS"] = str(args.partitions)
    settings = CommonSettings()
    databases = [args.database, args.baseline_database]
    asyncio.run(prepare_databases(settings.database_url, databases))
    try:
        asyncio.run(ensure_topics(settings))
        try:
            with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
                return measure(args, settings, Path(tmp))
        finally:
            try:
                asyncio.run(
                    forget_group(
                        settings.kafka_bootstrap_servers, consumer_group(settings, SERVICE)
                    )
                )
            except Exception as exc:  # a leftover group must not hide why the run failed
                print(f"bench-scoring: consumer group left behind: {exc}", file=sys.stderr)
            asyncio.run(delete_topics(settings))
    finally:
        if not args.keep_databases:
            asyncio.run(clean_databases(settings.database_url, databases))


def measure(args: argparse.Namespace, settings: CommonSettings, tmp: Path) -> list[tuple[str, str]]:
    keys = generate_key_pair(tmp / "auth")
    token = mint_token(
        keys.private.read_bytes(),
        tenant=TENANT,
        scopes=[Scope.READ.value],
        ttl_seconds=int(3 * args.timeout) + 3600,
    )
    main_url = with_database(settings.database_url, args.database)
    main_env = scoring_env(args, database_url=main_url, public_key=keys.public)
    baseline_env = {
        **scoring_env(
            args,
            database_url=with_database(settings.database_url, args.baseline_database),
            public_key=keys.public,
        ),
        "CONSUMER_BATCH_MAX_RECORDS": "1",
    }
    migrate(main_env)
    migrate(baseline_env)
    feed = ResponseFeed(
        responses=args.responses,
        accounts=args.accounts,
        customers=args.customers,
        corrections_percent=args.corrections_percent,
        seed=args.seed,
    )
    events, fill_seconds = asyncio.run(prefill(settings, feed))
    postmaster = postmaster_of(asyncio.run(backend_pid(main_url)))
    expected = feed.responses
    with scoring(baseline_env, tmp / "baseline.log", token, postmaster) as s:
        baseline = watch(s, expected=expected, timeout=args.timeout, window=args.baseline_seconds)
    # Same group id as the measured run (no override exists): forget what the baseline committed.
    asyncio.run(forget_group(settings.kafka_bootstrap_servers, consumer_group(settings, SERVICE)))
    load_average = os.getloadavg()[0]
    with scoring(main_env, tmp / "scoring.log", token, postmaster) as s:
        main = watch(s, expected=expected, timeout=args.timeout, window=None)
        reads = [
            measure_reads(
                s.client, s.base, name, cases, warmup=args.warmup_queries, count=args.queries
            )
            for name, cases in read_cases(feed)
        ]
        final = counted(s.client, s.base)
    return rows(
        args,
        feed,
        fill=(events, fill_seconds),
        main=main,
        baseline=baseline,
        reads=reads,
        final=final,
        load_average=load_average,
    )


def rows(
    args: argparse.Namespace,
    feed: ResponseFeed,
    *,
    fill: tuple[int, float],
    main: Progress,
    baseline: Progress,
    reads: list[Latencies],
    final: int,
    load_average: float,
) -> list[tuple[str, str]]:
    events, fill_seconds = fill
    tally = feed.tally
    share = {c: 100 * n / feed.responses for c, n in tally.categories.items()}
    biggest = tally.n(date.min, date.max, account=feed.biggest_account) / feed.responses
    ratio = main.rate / baseline.rate
    filtered = reads[0]
    reads_ok = all(r.failures == 0 and r.as_generated == len(r.ms) for r in reads)
    table = [
        (
            "machine",
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; load average (1 min) "
            f"{load_average:.2f} before the measured run (other work on the box adds noise)",
        ),
        (
            f"data (seed {args.seed})",
            f"{feed.responses:,} distinct responses of {len(feed.people):,} customers in "
            f"{len(feed.accounts):,} accounts (the biggest, {feed.biggest_account}, has "
            f"{100 * biggest:.1f} %), received over the last 365 days; promoters / passives / "
            f"detractors {share.get('promoter', 0):.0f} / {share.get('passive', 0):.0f} / "
            f"{share.get('detractor', 0):.0f} %; {100 * tally.comments / feed.responses:.0f} % "
            f"with a comment ({100 * tally.polish_comments / max(1, tally.comments):.0f} % "
            f"of them Polish); {feed.corrections:,} corrected later (response.corrected.v1)",
        ),
        (
            f"events in the topic ({args.partitions} partitions)",
            f"{events:,}, pre-filled in {fill_seconds:.1f} s ({events / fill_seconds:,.0f}/s, "
            "generation included)",
        ),
        ("scoring settings", ", ".join(map(shown, args.set)) or "defaults"),
        (RATE_ROW, main.describe()),
        (
            "exactly-once, from the process's start",
            f"{main.rate_from_start:,.0f} responses/s ({main.seconds:.1f} s: start-up and "
            "joining the consumer group included)",
        ),
        (
            "CPU of the measured run: scoring process (from its start) / PostgreSQL server",
            f"{main.cpu:.1f} s ({100 * main.cpu / main.seconds:.0f} % of one core) / "
            + (
                "n/a (not on this machine)"
                if main.postgres_cpu is None
                else f"{main.postgres_cpu:.1f} s ({100 * main.postgres_cpu / main.seconds:.0f} %"
                " of one core; the whole server, other clients included)"
            ),
        ),
        (
            "consumer transactions, mean records per transaction",
            f"{main.transactions:,.0f}, {main.records / max(1.0, main.transactions):,.1f}",
        ),
        (
            "baseline: one transaction per message (CONSUMER_BATCH_MAX_RECORDS=1)",
            f"{baseline.describe()}; {baseline.transactions:,.0f} transactions, "
            f"{baseline.records / max(1.0, baseline.transactions):,.1f} records each",
        ),
        ("exactly-once / baseline", f"{ratio:.1f}x"),
        *(
            (
                f"{r.name}: p50 / p95 / p99 / max",
                f"{r.percentile(0.5):.1f} / {r.percentile(0.95):.1f} / {r.percentile(0.99):.1f} "
                f"/ {max(r.ms):.1f} ms ({len(r.ms):,} sequential requests after "
                f"{args.warmup_queries:,} unmeasured; {r.failures:,} not 200 with n; n as "
                f"generated in {r.as_generated:,})",
            )
            for r in reads
        ),
        (
            "check: n after the reads",
            f"{final:,} ({'=' if final == feed.responses else '≠'} {feed.responses:,} distinct "
            "responses)",
        ),
        (
            f"target: ≥ {TARGET_RATE:,.0f} responses/s",
            "met" if main.rate >= TARGET_RATE else "not met",
        ),
        (
            f"target: ≥ {TARGET_RATIO:g}x the baseline",
            "met" if ratio >= TARGET_RATIO else "not met",
        ),
        (
            f"target: two-filter query p99 < {TARGET_P99_MS:g} ms, every answer right",
            "met"
            if filtered.percentile(0.99) < TARGET_P99_MS and reads_ok
            else "not met" + ("" if reads_ok else " (some answers not 200 or n not as generated)"),
        ),
    ]
    return table


RATE_ROW = "exactly-once: responses aggregated per second"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-bench-scoring", description=__doc__)
    parser.add_argument("--responses", type=int, default=1_000_000, help="distinct responses")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument(
        "--corrections-percent",
        type=float,
        default=1.0,
        help="responses corrected later (response.corrected.v1)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="of the generated data")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=30.0,
        help="the baseline's measured time after its first counted response",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up a scoring run after this long (s)"
    )
    parser.add_argument("--queries", type=int, default=2000, help="measured requests per kind")
    parser.add_argument("--warmup-queries", type=int, default=200)
    parser.add_argument("--database", default="closeloop_bench_scoring")
    parser.add_argument("--baseline-database", default="closeloop_bench_scoring_baseline")
    parser.add_argument(
        "--keep-databases", action="store_true", help="leave both databases for inspection"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scoring setting"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/scoring.md"))
    args = parser.parse_args(argv)
    if args.responses < 1:
        parser.error("--responses must be at least 1")
    if args.customers < args.accounts:
        parser.error("--customers must be at least --accounts (every account has a customer)")
    try:
        table = bench(args)
    except BenchTimeout as exc:
        print(f"bench-scoring: {exc}", file=sys.stderr)
        return 1
    write_report(
        args.out,
        title="Scoring benchmark",
        setup="one scoring process (uvicorn, uvloop) consuming a pre-filled responses topic with "
        "real Kafka 4.1.1 (KRaft, 1 node) and PostgreSQL on 127.0.0.1, all on the same machine.",
        rows=table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
