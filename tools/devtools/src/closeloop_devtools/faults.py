"""`make test-faults`: faults injected into the whole stack while responses flow, then the books
are checked and each fault's recovery time is reported.

On a private Kafka broker and PostgreSQL cluster (`faults_infra`: stopping and restarting them
disturbs nothing else on the machine), the four services run as processes (`Stack`) with an SMTP
sink. A stream of responses flows the whole time (`faults_stream`); some customers opted out
beforehand. In turn, each while the stream flows:

1. `kill -9` ingest, scoring, the orchestrator and the notifier, each right after a burst (so a
   batch is under way), then restart it;
2. stop the broker and start it again;
3. restart PostgreSQL (fast shutdown, a pause, start);
4. stop the SMTP server for longer than the notifier's whole retry schedule, then start it;
5. feed poison records to every consumed topic (`faults_poison`).

Each fault's recovery is timed from its injection to (a) the first response accepted after it
being fully processed (counted, its case opened, its email in the sink) and (b) everything
accepted before the repair processed with every consumer's lag back to 0. Afterwards
(`faults_checks`): every accepted response counted once, one case each, at most one email per
(case, kind) but for the documented SMTP window (counted), nothing to an opted-out customer,
nothing pending, dead letters exactly the poison, and latency back within a factor of the
baseline. `python -m closeloop_devtools.faults --out bench/faults.md` writes the report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from closeloop_common.kafka.topics import ensure_topics
from closeloop_common.services import service
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import generate_key_pair, mint_token
from closeloop_devtools.faults_checks import Check, Verdict, check, final_checks, latency_summary
from closeloop_devtools.faults_infra import ROOT, PrivateKafka, PrivatePostgres, require_free
from closeloop_devtools.faults_poison import Poison, feed_poison
from closeloop_devtools.faults_stream import CONSUMERS, Observer, Stream, consumer_lag
from closeloop_devtools.logscan import scan, secrets_of
from closeloop_devtools.mailsink import MailSink
from closeloop_devtools.stack import DEMO_MESSAGING, Stack

PARTITIONS = 3
OPT_OUT_EVERY = 10  # response n's customer opted out beforehand when n % 10 == 3
OPT_OUT_LIMIT = 1500
SEND_LEASE_SECONDS = 5
FINAL_WINDOWS = 4


@dataclass(frozen=True)
class FaultConfig:
    port_offset: int = 23000
    smtp_port: int = 23025
    kafka_port: int = 19192
    kafka_controller_port: int = 19193
    postgres_port: int = 55432
    rate: float = 6.0  # responses per second
    baseline_seconds: float = 6.0
    final_seconds: float = 6.0
    smtp_outage_seconds: float = 4.0  # the retry schedule (1 s, then 2 s) is over in 3 s
    recovery_timeout: float = 120.0

    @classmethod
    def from_env(cls) -> FaultConfig:
        """`FAULTS_PORT_OFFSET`, `FAULTS_SMTP_PORT`, `FAULTS_KAFKA_PORT`,
        `FAULTS_KAFKA_CONTROLLER_PORT`, `FAULTS_POSTGRES_PORT`, `FAULTS_RATE` override."""
        env = os.environ
        base = cls()
        return cls(
            port_offset=int(env.get("FAULTS_PORT_OFFSET", base.port_offset)),
            smtp_port=int(env.get("FAULTS_SMTP_PORT", base.smtp_port)),
            kafka_port=int(env.get("FAULTS_KAFKA_PORT", base.kafka_port)),
            kafka_controller_port=int(
                env.get("FAULTS_KAFKA_CONTROLLER_PORT", base.kafka_controller_port)
            ),
            postgres_port=int(env.get("FAULTS_POSTGRES_PORT", base.postgres_port)),
            rate=float(env.get("FAULTS_RATE", base.rate)),
        )


@dataclass
class Recovery:
    fault: str
    injected: float
    repaired: float
    first_processed: float | None = None
    caught_up: float | None = None
    accepted_during: int = 0
    client_retries: Counter[str] = field(default_factory=Counter)


@dataclass
class FaultRun:
    recoveries: list[Recovery]
    checks: list[Check]
    latency: list[tuple[str, str, str, str]]
    duration: float
    accepted: int
    latency_window_after: float = 0.0
    report: str = ""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


class NotRecovered(AssertionError):
    pass


class Scenario:
    """One fault run on infrastructure already up; `run` injects the faults in turn."""

    def __init__(
        self,
        *,
        config: FaultConfig,
        stack: Stack,
        sink: MailSink,
        kafka: PrivateKafka,
        postgres: PrivatePostgres,
        settings: CommonSettings,
        tenant: str,
        headers: dict[str, str],
        maildir: Path,
    ) -> None:
        self.config = config
        self.stack = stack
        self.sink = sink
        self.kafka = kafka
        self.postgres = postgres
        self.settings = settings
        self.tenant = tenant
        self.headers = headers
        run = tenant.rsplit("-", 1)[-1]
        self.stream = Stream(
            ingest_url=stack.url("ingest"),
            headers=headers,
            run=run,
            rate=config.rate,
            opted_out=lambda n: n % OPT_OUT_EVERY == 3 and n < OPT_OUT_LIMIT,
        )
        self.observer = Observer(dsn=postgres.dsn, tenant=tenant, maildir=maildir)
        self.recoveries: list[Recovery] = []
        self.poison: list[Poison] = []
        self.latency_back_after = 0.0  # from the last recovery to the window measured

    async def opt_out_beforehand(self) -> None:
        """Opt the customers out whose responses will come (`opted_out(n)`)."""
        emails = [self.stream.email(n) for n in range(OPT_OUT_LIMIT) if self.stream.opted_out(n)]
        url = f"{self.stack.url('notifier')}/v1/opt-outs"
        queue = list(emails)
        async with httpx.AsyncClient(headers=self.headers, timeout=10) as client:

            async def worker() -> None:
                while queue:
                    email = queue.pop()
                    reply = await client.post(url, json={"email": email})
                    reply.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(8)))

    async def run(self) -> tuple[float, float, float, float]:
        """The stream, the baseline, every fault, the final window; returns the baseline's and
        the final window's (start, end)."""
        began = time.monotonic()
        await self.opt_out_beforehand()
        print(f"[faults] opt-outs stored in {time.monotonic() - began:.1f} s", flush=True)
        self.observer.start()
        self.stream.start()
        await asyncio.sleep(2.0)  # warm-up: first connections, caches
        baseline = time.time()
        await asyncio.sleep(self.config.baseline_seconds)
        baseline_end = time.time()
        for name in ("ingest", *CONSUMERS):
            await self._fault(f"kill -9 {name} mid-batch", *self._kill(name))
        await self._fault("Kafka broker stop + start", self._broker_down, self._broker_up)
        await self._fault("PostgreSQL restart (fast)", self._postgres_down, self._postgres_up)
        await self._fault(
            f"SMTP server down {self.config.smtp_outage_seconds:.0f} s",
            self._smtp_down,
            self._smtp_up,
        )
        await self._fault("poison records on every consumed topic", self._feed_poison, _nothing)
        recovered = time.time()
        # Latency is back to normal once one window of it is (a machine shared with other work
        # can be slow for a while for reasons of its own): up to FINAL_WINDOWS windows are tried.
        for _ in range(FINAL_WINDOWS):
            final = time.time()
            await asyncio.sleep(self.config.final_seconds)
            final_end = time.time()
            await self._wait_caught_up(final_end, "the latency window")
            _, checks = latency_summary(
                self.stream.accepted(),
                self.observer,
                baseline=(baseline, baseline_end),
                final=(final, final_end),
            )
            if all(c.ok for c in checks):
                break
        self.latency_back_after = final - recovered
        await self.stream.stop()
        await self._wait_caught_up(time.time(), "the end of the stream")
        return baseline, baseline_end, final, final_end

    # -- faults -----------------------------------------------------------------------------

    def _kill(
        self, name: str
    ) -> tuple[Callable[[], Awaitable[float]], Callable[[], Awaitable[None]]]:
        # How long after a burst's acceptance its records are in the service's hands: ingest is
        # killed while the burst's requests are in its group commit, the notifier while it sends.
        delay = {"ingest": 0.0, "notifier": 0.3}.get(name, 0.1)
        pending: list[asyncio.Task[None]] = []

        async def inject() -> float:
            burst = asyncio.create_task(self.stream.burst(12))
            if name == "ingest":
                await asyncio.sleep(0.05)
                pending.append(burst)
            else:
                await burst
                await asyncio.sleep(delay)
            killed = time.time()
            await asyncio.to_thread(self.stack.kill, name)
            return killed

        async def repair() -> None:
            await asyncio.to_thread(self.stack.restart, name, timeout=self.config.recovery_timeout)
            for task in pending:
                await task

        return inject, repair

    async def _broker_down(self) -> float:
        # A controlled shutdown takes seconds, records flowing all along: the outage starts
        # once the broker is gone.
        await asyncio.to_thread(self.kafka.down)
        began = time.time()
        await asyncio.sleep(1.0)
        return began

    async def _broker_up(self) -> None:
        await asyncio.to_thread(self.kafka.up)

    async def _postgres_down(self) -> float:
        began = time.time()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(1.0)
        return began

    async def _postgres_up(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    async def _smtp_down(self) -> float:
        began = time.time()
        await asyncio.to_thread(self.sink.stop)
        await asyncio.sleep(self.config.smtp_outage_seconds)
        return began

    async def _smtp_up(self) -> None:
        await asyncio.to_thread(self.sink.start)

    async def _feed_poison(self) -> float:
        began = time.time()
        self.poison = await feed_poison(
            bootstrap=self.kafka.bootstrap,
            prefix=self.settings.kafka_topic_prefix,
            tenant=self.tenant,
            partitions=PARTITIONS,
        )
        return began

    # -- recovery ---------------------------------------------------------------------------

    async def _fault(
        self,
        name: str,
        inject: Callable[[], Awaitable[float]],
        repair: Callable[[], Awaitable[None]],
    ) -> None:
        """Inject (returns the moment of the fault itself), repair, then time the recovery."""
        errors_before = Counter(self.stream.errors)
        injected = await inject()
        await repair()
        repaired = time.time()
        recovery = Recovery(name, injected, repaired)
        self.recoveries.append(recovery)
        print(f"[faults] {name}: injected, repaired after {repaired - injected:.1f} s", flush=True)
        deadline = time.monotonic() + self.config.recovery_timeout
        while recovery.first_processed is None:
            self._check_alive()
            later = [p for p in self.stream.accepted() if p.accepted_at > injected]
            if later:
                recovery.first_processed = self.observer.processed_at(
                    min(later, key=lambda p: p.accepted_at)
                )
            if recovery.first_processed is None:
                if time.monotonic() > deadline:
                    raise NotRecovered(f"{name}: no later response processed\n{self._diagnose()}")
                await asyncio.sleep(0.1)
        recovery.caught_up = await self._wait_caught_up(repaired, name)
        recovery.accepted_during = sum(
            1 for p in self.stream.accepted() if injected <= p.accepted_at <= repaired
        )
        recovery.client_retries = Counter(self.stream.errors) - errors_before
        print(
            f"[faults] {name}: first later response processed after "
            f"{recovery.first_processed - injected:.1f} s, caught up after "
            f"{recovery.caught_up - injected:.1f} s",
            flush=True,
        )

    async def _wait_caught_up(self, since: float, what: str) -> float:
        """Wait until every response accepted before `since` is processed and every consumer's
        lag is 0; returns when."""
        deadline = time.monotonic() + self.config.recovery_timeout
        while True:
            if not self.stream.stopped:
                self._check_alive()
            backlog = [p for p in self.stream.accepted() if p.accepted_at <= since]
            if all(self.observer.processed_at(p) is not None for p in backlog):
                lag = await consumer_lag(self.stack)
                if lag is not None and sum(lag.values()) == 0:
                    return time.time()
            if time.monotonic() > deadline:
                raise NotRecovered(f"{what}: not caught up\n{self._diagnose()}")
            await asyncio.sleep(0.2)

    def _check_alive(self) -> None:
        """A stream or observer that died would only show as a recovery timeout: fail now."""
        for task in (self.stream.task, self.observer.task):
            if task is not None and task.done():
                task.result()  # raises what killed it
                raise NotRecovered("the stream or the observer stopped")

    def _diagnose(self) -> str:
        missing = [
            p.response_id for p in self.stream.accepted() if self.observer.processed_at(p) is None
        ][:10]
        tails = "\n".join(f"--- {n}\n{self.stack.tail(n, 15)}" for n in service_names())
        return f"unprocessed (first 10): {missing}\n{tails}"


async def _timed(what: str, work: Awaitable[None]) -> None:
    began = time.monotonic()
    await work
    print(f"[faults] {what} in {time.monotonic() - began:.1f} s", flush=True)


async def _nothing() -> None:
    return None


def service_names() -> list[str]:
    return ["ingest", *CONSUMERS]


async def run_faults(config: FaultConfig, *, keep_logs: Path | None = None) -> FaultRun:
    """Start the private infrastructure and the stack, run the scenario, check, tear down."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    base = Path(tempfile.mkdtemp(prefix="closeloop-faults-"))
    os.chmod(base, 0o755)  # the postgres OS user runs the private cluster inside it
    kafka = PrivateKafka(base, config.kafka_port, config.kafka_controller_port)
    postgres = PrivatePostgres(base / "postgres", config.postgres_port, "closeloop_faults")
    maildir = base / "mail"
    sink = MailSink(maildir, port=config.smtp_port)
    keys = generate_key_pair(base / "auth")
    prefix = f"faults-{run}"
    tenant = f"faults-{run}"
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": postgres.url,
        "DATABASE_POOL_SIZE": "4",
        "DATABASE_WORKER_POOL_SIZE": "4",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
        "LOG_FORMAT": "json",
        "AUTH_PUBLIC_KEY_FILE": str(keys.public),
        "NOTIFIER_SMTP_PORT": str(config.smtp_port),
        "NOTIFIER_DEFAULT_MESSAGING": DEMO_MESSAGING,
        # A notifier killed mid-send leaves its claims to this lease; short, so the run sees
        # those messages go out. The retry schedule (temporary refusals) is short too: the SMTP
        # outage outlasts all of it (an outage is not a refusal and never fails a message).
        "NOTIFIER_SEND_LEASE_SECONDS": str(SEND_LEASE_SECONDS),
        "NOTIFIER_FIRST_RETRY_SECONDS": "1",
        "NOTIFIER_MAX_ATTEMPTS": "3",
        "NOTIFIER_SMTP_TIMEOUT_SECONDS": "3",
    }
    stack = Stack(env=env, log_dir=base / "logs", port_offset=config.port_offset)
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka.bootstrap,
        kafka_topic_prefix=prefix,
        kafka_topic_partitions=PARTITIONS,
    )
    token = mint_token(
        keys.private.read_bytes(),
        tenant=tenant,
        scopes=["responses:write", "read", "cases:write"],
        ttl_seconds=3600,
        subject="closeloop-faults",
    )
    headers = {"Authorization": f"Bearer {token}"}
    ok = False
    try:
        require_free(
            {
                "Kafka": config.kafka_port,
                "Kafka controller": config.kafka_controller_port,
                "PostgreSQL": config.postgres_port,
                "SMTP": config.smtp_port,
                **{n: service(n).port + config.port_offset for n in service_names()},
            }
        )
        # The broker starts while the database is migrated: both take seconds.
        await asyncio.to_thread(postgres.up)
        await asyncio.gather(
            _timed("Kafka up", asyncio.to_thread(kafka.up)),
            _timed("migrations", asyncio.to_thread(stack.migrate)),
        )
        await ensure_topics(settings)
        sink.start()
        await _timed(
            "services started",
            asyncio.to_thread(stack.start, timeout=config.recovery_timeout),
        )
        setup_seconds = time.monotonic() - started
        print(f"[faults] infrastructure and stack up in {setup_seconds:.1f} s", flush=True)
        scenario = Scenario(
            config=config,
            stack=stack,
            sink=sink,
            kafka=kafka,
            postgres=postgres,
            settings=settings,
            tenant=tenant,
            headers=headers,
            maildir=maildir,
        )
        try:
            baseline_start, baseline_end, final_start, final_end = await scenario.run()
            checks = await final_checks(
                Verdict(
                    stack=stack,
                    dsn=postgres.dsn,
                    settings=settings,
                    tenant=tenant,
                    headers=headers,
                    stream=scenario.stream,
                    observer=scenario.observer,
                    poison=scenario.poison,
                    notifier_windows=[
                        (r.fault, r.injected, r.repaired + SEND_LEASE_SECONDS + 2)
                        for r in scenario.recoveries
                        if "notifier" in r.fault or "SMTP" in r.fault
                    ],
                )
            )
            latency, latency_checks = latency_summary(
                scenario.stream.accepted(),
                scenario.observer,
                baseline=(baseline_start, baseline_end),
                final=(final_start, final_end),
            )
        finally:
            await scenario.observer.stop()
        # Outages, kills and poison make the services log errors: none of those lines may carry
        # a secret or a customer's address.
        needles = {
            **secrets_of(env),
            "bearer token": token,
            # Every customer's address ends so (`Stream.email`), and nothing else does.
            "a customer's address": "@" + scenario.stream.email(0).partition("@")[2],
        }
        leaks = [str(f) for f in scan(sorted(stack.log_dir.glob("*.log")), needles)]
        log_check = check("secrets and customers' addresses in the services' logs", [], leaks)
        result = FaultRun(
            recoveries=scenario.recoveries,
            checks=[*checks, *latency_checks, log_check],
            latency=latency,
            duration=time.monotonic() - started,
            accepted=len(scenario.stream.accepted()),
            latency_window_after=scenario.latency_back_after,
        )
        ok = not result.failures
        return result
    finally:
        stack.stop()
        sink.stop()
        for stop in (kafka.down, postgres.down):
            try:
                stop()
            except Exception as exc:  # teardown goes on; the first error is the interesting one
                print(f"[faults] teardown: {exc}", file=sys.stderr)
        if not ok and keep_logs is not None:
            shutil.copytree(base / "logs", keep_logs / f"faults-{run}", dirs_exist_ok=True)
            print(f"[faults] service logs kept in {keep_logs / f'faults-{run}'}", flush=True)
        shutil.rmtree(base, ignore_errors=True)


def render(result: FaultRun, config: FaultConfig) -> str:
    lines = [
        "# Fault injection under a steady stream (`make test-faults`)",
        "",
        f"Machine: {os.cpu_count()} cores. A private Kafka 4.1 broker (KRaft, one node) and "
        "PostgreSQL cluster, the four services as processes, an SMTP sink; a stream of "
        f"{config.rate:g} responses/s (every {OPT_OUT_EVERY}th customer opted out beforehand), "
        f"{result.accepted} responses accepted in all; whole run {result.duration:.0f} s.",
        "",
        "Recovery is timed from the fault's injection: *outage* until it was repaired (service "
        "restarted and ready, broker or database started, SMTP server listening); *first later "
        "response* until the first response accepted after the injection was fully processed "
        "(counted by scoring, its case opened, its email in the sink or its message suppressed); "
        "*caught up* until everything accepted before the repair was processed and every "
        "consumer's lag was 0.",
        "",
        "| fault | outage | first later response processed | caught up (lag 0) "
        "| accepted during the outage | client retries during it |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result.recoveries:
        first = f"{r.first_processed - r.injected:.1f} s" if r.first_processed else "never"
        caught = f"{r.caught_up - r.injected:.1f} s" if r.caught_up else "never"
        retries = ", ".join(f"{k}: {v}" for k, v in sorted(r.client_retries.items())) or "none"
        lines.append(
            f"| {r.fault} | {r.repaired - r.injected:.1f} s | {first} | {caught} "
            f"| {r.accepted_during} | {retries} |"
        )
    lines += [
        "",
        f"Latency after the last recovery: a {config.final_seconds:g} s window starting "
        f"{result.latency_window_after:.0f} s after it (the first of up to {FINAL_WINDOWS} "
        "windows that is back within the limit, or the last).",
        "",
        "| end-to-end latency (POST → ...) | baseline p50 / p95 | after the last recovery "
        "p50 / p95 | samples |",
        "| --- | --- | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in result.latency),
        "",
        "| check after recovery | expected | found | |",
        "| --- | --- | --- | --- |",
        *(
            f"| {c.name} | {c.expected} | {c.found} | {'ok' if c.ok else 'FAILED'} |"
            for c in result.checks
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-faults", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/faults.md"))
    args = parser.parse_args(argv)
    config = FaultConfig.from_env()
    result = asyncio.run(run_faults(config, keep_logs=ROOT / ".infra" / "logs"))
    report = render(result, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
