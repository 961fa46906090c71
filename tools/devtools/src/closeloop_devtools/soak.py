"""`make soak`: a steady mixed load on the whole stack for half an hour, and computed verdicts.

Runs the four services as processes (`Stack`: migrate, then serve) against the real broker and
database, with their own database (`--database`, its schemas dropped first), topics (prefix
`soak-<run>`, deleted at the end), ports (`--port-offset`) and tenant, and an SMTP sink as a
process of its own (`closeloop-mailsink`). Tokens are minted for the run from a key pair made in
its work folder. Then, for `--minutes`:
- the open-loop mixed load of `soak_load` at `--rate` requests/s (webhooks, canonical posts,
  reads, case updates), plus an accept -> case-opened probe every `--probe-seconds`;
- every `--sample-seconds`, per service: RSS (with children), consumer lag per group and outbox
  age (its /metrics), error and warning lines in its log (`soak_probes`).
After the load, sampling goes on until every lag and outbox age is 0 (at most `--drain-seconds`).
The verdicts (`soak_analysis`: memory flat, p99 stable, lag bounded, no errors) and the tables
(`soak_report`) go to `--out`; the samples and per-window latencies to `<out>-samples.csv` and
`<out>-latency.csv`.
Exits 1 when a verdict fails (the work folder, with the services' logs, is then kept).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.services import SERVICES
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import generate_key_pair, mint_token
from closeloop_devtools.bench_ingest import cpu_seconds, with_database
from closeloop_devtools.demo import create_typeform_source
from closeloop_devtools.report import write_report
from closeloop_devtools.scoring_setup import clean_databases, prepare_databases
from closeloop_devtools.soak_analysis import (
    CPU,
    LAG_PREFIX,
    LOAD,
    LOG_ERRORS,
    LOG_WARNINGS,
    MACHINE,
    OUTBOX_AGE,
    RSS,
    RequestRecord,
    Sample,
    Thresholds,
    passed,
    stability,
    verdicts,
    window_seconds,
    windows,
)
from closeloop_devtools.soak_load import Endpoints, MixedLoad, probe_case_opening
from closeloop_devtools.soak_probes import (
    LogCounter,
    load_average,
    read_metrics,
    rss_mib,
    tree_rss_mib,
)
from closeloop_devtools.soak_report import (
    machine_line,
    operation_table,
    service_table,
    verdict_rows,
    write_samples_csv,
    write_windows_csv,
)
from closeloop_devtools.stack import DEMO_MESSAGING, Stack

# Mixed requests/s the stack holds on a 2-core machine with everything on it: at 20/s the four
# services use about 30 % of one core together; 40/s was not held while the machine was shared
# (calibration runs in docs/RELIABILITY.md).
DEFAULT_RATE = 20.0
SCOPES = ("responses:write", "read", "cases:write", "admin")


@dataclass
class Sampler:
    stack: Stack
    started: float  # monotonic time the load started
    samples: list[Sample] = field(default_factory=list)
    logs: dict[str, LogCounter] = field(default_factory=dict)
    helpers: dict[str, int] = field(default_factory=dict)  # the load generator and SMTP sink

    async def sample(self, client: httpx.AsyncClient) -> None:
        at = time.monotonic() - self.started
        self.samples.append(Sample(at, MACHINE, LOAD, load_average()))
        for name, proc in self.stack.processes.items():
            if proc.poll() is not None:  # a crash ends the soak: no verdict could pass
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{self.stack.tail(name)}"
                )
            self.samples.append(Sample(at, name, RSS, tree_rss_mib(proc.pid)))
            self.samples.append(Sample(at, name, CPU, cpu_seconds(proc.pid)))
            try:
                reply = await client.get(f"{self.stack.url(name)}/metrics")
                reading = read_metrics(reply.text)
            except httpx.HTTPError as exc:
                print(f"  {name}: /metrics unreadable ({exc!r})", flush=True)
            else:
                for group, lag in reading.lag_by_group.items():
                    self.samples.append(Sample(at, name, LAG_PREFIX + group, lag))
                if reading.outbox_age_s is not None:
                    self.samples.append(Sample(at, name, OUTBOX_AGE, reading.outbox_age_s))
            counter = self.logs.setdefault(name, LogCounter(self.stack.log_dir / f"{name}.log"))
            counter.scan()
            self.samples.append(Sample(at, name, LOG_ERRORS, counter.errors))
            self.samples.append(Sample(at, name, LOG_WARNINGS, counter.warnings))
        for name, pid in self.helpers.items():  # shown, not judged: they share the machine
            self.samples.append(Sample(at, name, RSS, rss_mib(pid)))  # the services are children
            self.samples.append(Sample(at, name, CPU, cpu_seconds(pid)))

    def drained(self) -> bool:
        """Every lag and outbox age of the latest sample is 0."""
        latest = max(s.at for s in self.samples)
        return all(
            s.value == 0
            for s in self.samples
            if s.at == latest and (s.measure.startswith(LAG_PREFIX) or s.measure == OUTBOX_AGE)
        )


async def drive(stack: Stack, load: MixedLoad, sampler: Sampler, args: argparse.Namespace) -> float:
    """The load, the probe and the sampling; then the drain. The load's length in seconds."""
    seconds = 60.0 * float(args.minutes)
    async with httpx.AsyncClient(timeout=10) as client:
        sampler.started = started = time.monotonic()
        await sampler.sample(client)
        work = asyncio.gather(
            load.run_open_loop(rate=args.rate, seconds=seconds, max_in_flight=args.max_in_flight),
            probe_case_opening(load, every_s=args.probe_seconds, until=started + seconds),
        )
        next_print = started + 60
        while not work.done():
            await asyncio.wait([work], timeout=args.sample_seconds)
            await sampler.sample(client)
            if time.monotonic() >= next_print:
                next_print += 60
                progress(load.records, sampler.samples)
        await work
        drain_until = time.monotonic() + args.drain_seconds
        while not sampler.drained() and time.monotonic() < drain_until:
            await asyncio.sleep(2)
            await sampler.sample(client)
    return seconds


def progress(records: list[RequestRecord], samples: list[Sample]) -> None:
    latest = max(s.at for s in samples)
    rss = ", ".join(
        f"{s.service} {s.value:.0f}" for s in samples if s.at == latest and s.measure == RSS
    )
    errors = sum(r.outcome == "error" for r in records)
    print(
        f"[{latest / 60:4.1f} min] {len(records)} requests, {errors} errors; RSS MiB: {rss}",
        flush=True,
    )


def clients(stack: Stack) -> Endpoints:
    def client(name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=stack.url(name),
            timeout=10,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    return Endpoints(
        ingest=client("ingest"),
        scoring=client("scoring"),
        orchestrator=client("orchestrator"),
        notifier=client("notifier"),
    )


async def run_load(
    stack: Stack,
    sampler: Sampler,
    args: argparse.Namespace,
    *,
    headers: dict[str, dict[str, str]],
    webhook: tuple[str, str],
    run: str,
) -> tuple[list[RequestRecord], float]:
    endpoints = clients(stack)
    load = MixedLoad(
        clients=endpoints,
        headers=headers,
        webhook_path=webhook[0],
        webhook_secret=webhook[1],
        run=run,
    )
    try:
        seconds = await drive(stack, load, sampler, args)
    finally:
        for c in (endpoints.ingest, endpoints.scoring, endpoints.orchestrator, endpoints.notifier):
            await c.aclose()
    return load.records, seconds


def report(
    args: argparse.Namespace,
    records: list[RequestRecord],
    samples: list[Sample],
    seconds: float,
    limits: Thresholds,
) -> bool:
    services = [s.name for s in SERVICES]
    found = windows(records, window_seconds(seconds))
    samples_csv = args.out.with_name(f"{args.out.stem}-samples.csv")
    latency_csv = args.out.with_name(f"{args.out.stem}-latency.csv")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with samples_csv.open("w", encoding="utf-8") as out:
        write_samples_csv(out, samples)
    with latency_csv.open("w", encoding="utf-8") as out:
        write_windows_csv(out, found)
    judged = verdicts(records, samples, services, seconds, limits)
    notes = "\n\n".join(
        [
            "## Services",
            service_table(samples, [*services, "load generator", "mailsink"], seconds),
            machine_line(samples, seconds),
            "## Operations",
            "Latency from when each request was due (open loop), answered requests only; "
            f"windows of {window_seconds(seconds):g} s; `{'`, `'.join(sorted({r.op for r in records}))}`.",
            operation_table(records, stability(found, seconds, limits), seconds),
            f"Raw samples: `{samples_csv.name}`; per-window latency: `{latency_csv.name}`.",
        ]
    )
    write_report(
        args.out,
        title=f"Closeloop soak, {args.minutes:g} min at {args.rate:g} requests/s",
        setup="real Kafka (KRaft, 1 node) and PostgreSQL on 127.0.0.1; four services as "
        "processes; the load generator and the SMTP sink on the same machine.",
        rows=verdict_rows(judged),
        notes=notes,
    )
    return passed(judged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop_devtools.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests/s")
    parser.add_argument("--out", type=Path, default=Path("bench/soak.md"))
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--database", default="closeloop_soak")
    parser.add_argument("--keep-database", action="store_true", help="leave it for inspection")
    parser.add_argument("--port-offset", type=int, default=30000, help="services on 3800x")
    parser.add_argument("--smtp-port", type=int, default=33025)
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and mail")
    args = parser.parse_args(argv)

    run = uuid.uuid4().hex[:8]
    settings = CommonSettings(kafka_topic_prefix=f"soak-{run}")
    schemas = [s.schema for s in SERVICES]
    for schema in schemas:
        asyncio.run(prepare_databases(settings.database_url, [args.database], schema=schema))
    asyncio.run(ensure_topics(settings))
    workdir = Path(tempfile.mkdtemp(prefix="closeloop-soak-"))
    keys = generate_key_pair(workdir / "auth")
    tenant = f"soak-{run}"
    headers = {
        scope: {
            "Authorization": "Bearer "
            + mint_token(
                keys.private.read_bytes(),
                tenant=tenant,
                scopes=[scope],
                ttl_seconds=int(60 * args.minutes) + 3600,
                subject="closeloop-soak",
            )
        }
        for scope in SCOPES
    }
    stack = Stack(
        env={
            "DATABASE_URL": with_database(settings.database_url, args.database),
            "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "NOTIFIER_SMTP_PORT": str(args.smtp_port),
            "NOTIFIER_DEFAULT_MESSAGING": DEMO_MESSAGING,
            "AUTH_PUBLIC_KEY_FILE": str(keys.public),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
        },
        log_dir=workdir / "logs",
        port_offset=args.port_offset,
    )
    sink = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "closeloop-mailsink"),
            f"--port={args.smtp_port}",
            f"--maildir={workdir / 'mail'}",
        ],
        stdout=subprocess.DEVNULL,
    )
    ok = False
    try:
        stack.migrate()
        stack.start()
        secret = secrets.token_urlsafe(24)
        webhook = create_typeform_source(stack, headers["admin"], secret)
        sampler = Sampler(
            stack,
            started=time.monotonic(),
            helpers={"load generator": os.getpid(), "mailsink": sink.pid},
        )
        print(f"soak {run}: {args.minutes:g} min at {args.rate:g} requests/s", flush=True)
        records, seconds = asyncio.run(
            run_load(stack, sampler, args, headers=headers, webhook=(webhook, secret), run=run)
        )
        stack.stop()
        last = max(s.at for s in sampler.samples)
        for name, counter in sampler.logs.items():  # what the shutdown logged counts too
            counter.scan()
            sampler.samples.append(Sample(last, name, LOG_ERRORS, counter.errors))
            sampler.samples.append(Sample(last, name, LOG_WARNINGS, counter.warnings))
            for line in counter.examples:
                print(f"  {counter.path.name}: {line}")
        ok = report(args, records, sampler.samples, seconds, Thresholds())
    finally:
        stack.stop()
        sink.send_signal(signal.SIGTERM)
        sink.wait(15)
        asyncio.run(delete_topics(settings))
        if not args.keep_database:
            for schema in schemas:
                asyncio.run(clean_databases(settings.database_url, [args.database], schema=schema))
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs and mail kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
