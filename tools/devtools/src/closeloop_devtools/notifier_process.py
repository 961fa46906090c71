"""The notifier under benchmark: its database, tenants and settings, and the process itself.

- `fresh_notifier`: the `notifier` schema dropped and migrated afresh in the bench database,
  the tenants file written, and every tenant's messaging settings stored (as `PUT /v1/settings`
  stores them): no human reply delay, no quiet hours, no frequency cap, no team messages (so no
  new-case alerts), and a campaign rate that does not bind.
- `running_notifier`: the notifier as deployed (uvicorn with uvloop, the app factory: its
  consumer, dispatcher, campaign expander and outbox relay) on a given port, yielded once its
  API answers, with a py-spy profile while it runs; its CPU seconds are read before it stops.
- `Usage`: CPU seconds of the notifier, the PostgreSQL server and the sink over a stretch.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.db import make_sessionmaker, transaction
from closeloop_devtools.bench_ingest import cpu_seconds, server, uvicorn_command
from closeloop_devtools.notifier_sink import SinkProcess
from closeloop_devtools.orchestrator_tenants import TENANTS
from closeloop_devtools.profiling import py_spy
from closeloop_devtools.scoring_setup import migrate, prepare_databases
from closeloop_devtools.scoring_watch import postgres_cpu_seconds
from closeloop_notifier.domain.tenant_settings import MessagingSettings, ReplyDelay
from closeloop_notifier.service_layer import settings_store

NOTIFIER_APP = "closeloop_notifier.entrypoints.app:create_notifier_app"
SCHEMA = "notifier"
CAMPAIGN_RATE = 10_000.0  # the highest a tenant may set: the throttle must not bind
BENCH_SETTINGS = MessagingSettings(
    reply_delay=ReplyDelay(min_minutes=0, max_minutes=0),
    quiet_hours=None,
    frequency_cap=None,
    team_messages=frozenset(),
    campaign_rate_per_second=CAMPAIGN_RATE,
    review_url="https://opinie.example.com/review",
    referral_url="https://example.com/polec",
)
COMPANIES = {
    "sklep-pl": ("Sklep Ogrodniczy Sp. z o.o.", "pl-PL"),
    "nordwind-logistics": ("Nordwind Logistics GmbH", "en"),
    "fin-cz": ("Fin CZ a.s.", "en"),
    "cloud-uk": ("Cloud UK Ltd", "en-GB"),
}


def tenants_file(path: Path) -> Path:
    """Each tenant's company, From address and default language (`TENANTS_FILE`)."""
    body = {
        "tenants": {
            tenant: {
                "company_name": company,
                "from_address": f"feedback@{tenant}.example.com",
                "from_name": f"{company.split(' ')[0]} Customer Care",
                "default_locale": locale,
            }
            for tenant, (company, locale) in COMPANIES.items()
        }
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def notifier_env(
    *,
    database_url: str,
    topic_prefix: str,
    partitions: int,
    smtp_port: int,
    tenants: Path,
    overrides: dict[str, str],
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_TOPIC_PARTITIONS": str(partitions),
        "NOTIFIER_SMTP_HOST": "127.0.0.1",
        "NOTIFIER_SMTP_PORT": str(smtp_port),
        "NOTIFIER_PUBLIC_URL": "https://notifier.example.com",
        "TENANTS_FILE": str(tenants),
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


async def fresh_notifier(
    server_url: str, database: str, engine: AsyncEngine, env: dict[str, str]
) -> None:
    """The schema made afresh and every tenant's settings stored (module docstring)."""
    await prepare_databases(server_url, [database], schema=SCHEMA)
    migrate(env, service="notifier")
    sessions = make_sessionmaker(engine)
    for tenant in TENANTS:
        async with transaction(sessions) as session:
            await settings_store.save(
                session,
                tenant_id=tenant,
                settings=BENCH_SETTINGS,
                expected_version=0,
                actor="bench-notifier",
                now=datetime.now(UTC),
            )


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds over a stretch of `seconds`."""

    seconds: float
    notifier: float
    postgres: float | None
    sink: float

    def describe(self) -> str:
        def share(cpu: float) -> str:
            return f"{cpu:.1f} s ({100 * cpu / self.seconds:.0f} % of a core)"

        postgres = "n/a" if self.postgres is None else share(self.postgres)
        return (
            f"notifier {share(self.notifier)}, PostgreSQL {postgres}, sink {share(self.sink)} "
            f"over {self.seconds:.1f} s"
        )


@dataclass
class Meter:
    """Starts a `Usage` when made, ends it with `read`."""

    pid: int
    sink: SinkProcess
    postmaster: int | None

    def __post_init__(self) -> None:
        self._started = time.perf_counter()
        self._notifier = cpu_seconds(self.pid)
        self._postgres = postgres_cpu_seconds(self.postmaster)
        self._sink = float(self.sink.stats()["cpu"])

    def read(self) -> Usage:
        postgres = postgres_cpu_seconds(self.postmaster)
        return Usage(
            seconds=time.perf_counter() - self._started,
            notifier=cpu_seconds(self.pid) - self._notifier,
            postgres=None
            if postgres is None or self._postgres is None
            else postgres - self._postgres,
            sink=float(self.sink.stats()["cpu"]) - self._sink,
        )


@asynccontextmanager
async def running_notifier(
    env: dict[str, str], *, port: int, log: Path, profile: Path | None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """The notifier on `port` (module docstring), profiled into `profile` when given."""
    command = uvicorn_command(NOTIFIER_APP, port, factory=True)
    with server(command, env=env, log=log, ready_url=f"http://127.0.0.1:{port}/healthz") as proc:
        if profile is None:
            yield proc
        else:
            with py_spy(proc.pid, profile):
                yield proc


async def statuses(engine: AsyncEngine, where: str = "TRUE") -> dict[str, int]:
    """Messages by status (`where` filters them)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(f"SELECT status, count(*) FROM notifier.messages WHERE {where} GROUP BY 1")
        )
        return {row[0]: int(row[1]) for row in rows}


async def sent_ids(engine: AsyncEngine, where: str = "TRUE") -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.scalars(
            sa.text(
                f"SELECT message_id::text FROM notifier.messages WHERE status = 'sent' AND {where}"
            )
        )
        return set(rows)


async def count(engine: AsyncEngine, query: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text(query)) or 0)


# The notifier's stages, by a frame on the sample's stack (first match wins), for `stages`.
STAGES = (
    ("campaign expansion (render, store)", "CampaignExpander."),
    ("dispatcher: build and send emails", "Dispatcher._deliver"),
    ("dispatcher: record and publish outcomes", "Dispatcher._record"),
    ("dispatcher: claim", "Dispatcher._claim"),
    ("consumer (case replies rendered and stored, audience)", "EventConsumer."),
    ("outbox relay", "OutboxRelay."),
    ("SMTP replies read (aiosmtplib callbacks)", "aiosmtplib/"),
    ("SQLAlchemy/asyncpg (statements not traced to a stage)", "sqlalchemy/"),
    ("event loop and sockets (uvloop, native)", "Runner.run (asyncio/runners.py"),
)


def stages(profile: Path) -> str:
    """Where the notifier's CPU went, by stage (`STAGES`), as a report cell; "" without one.
    SQLAlchemy runs statements in greenlets whose stacks do not show the stage that ran them,
    and a sample whose innermost frame is the loop itself is native uvloop work (sockets)."""
    if not profile.exists():
        return ""
    shares: dict[str, int] = {}
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        leaf = frames[-1]
        name = "other"
        for stage, fragment in STAGES:
            if fragment.startswith("Runner.run"):
                if leaf.startswith(fragment):
                    name = stage
                    break
            elif any(fragment in frame for frame in frames):
                name = stage
                break
        shares[name] = shares.get(name, 0) + int(count)
    if not total:
        return ""
    ordered = sorted(shares.items(), key=lambda item: -item[1])
    return "; ".join(f"{name} {100 * n / total:.0f} %" for name, n in ordered)


def percentile(ordered: list[float], p: float) -> float:
    """The p-quantile of sorted values (nearest rank)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


def check_rows(rows: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(rows.items())) or "none"
