"""Set-up of `make bench-scoring` (and `make bench-orchestrator`): their databases, the pre-filled
topic, the consumer group reset.

- Databases: each gets a fresh start, dropped and created again when our role may create
  databases, else (made once by an administrator, e.g. `createdb -O closeloop NAME`) the
  service's schema (`scoring` unless told) is dropped; `clean_databases` leaves nothing of a run
  behind the same way.
- The responses topic is filled in arrival order, one chunk in flight at a time.
- The baseline and the measured run share one consumer group (`<KAFKA_TOPIC_PREFIX>.scoring`:
  scoring's group id has no override), so `forget_group` deletes it between them.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupIdNotFound, NonEmptyGroup
from aiokafka.protocol.admin import DeleteGroupsRequest
from sqlalchemy.ext.asyncio import AsyncConnection

from closeloop_common.db import make_engine
from closeloop_common.events import Topic
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.settings import CommonSettings
from closeloop_devtools.bench_ingest import with_database
from closeloop_devtools.scoring_responses import ResponseFeed

SCORING_SCHEMA = "scoring"  # the service's PostgreSQL schema (devtools does not depend on it)
CHUNK = 10_000
PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def prepare_databases(
    server_url: str, names: Sequence[str], *, schema: str = SCORING_SCHEMA
) -> None:
    """Give each database of `names` a fresh start: dropped and created again when our role may
    create databases, else (made once by an administrator) its `schema` dropped."""
    admin = make_engine(with_database(server_url, "postgres"), pool_size=1)
    try:
        async with admin.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            may_create = await _may_create_databases(conn)
            for name in names:
                exists = await conn.scalar(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": name}
                )
                if exists and not may_create:
                    await _drop_schema(server_url, name, schema)
                    continue
                if not may_create:
                    raise RuntimeError(
                        f"database {name} is missing and our role may not create databases: "
                        f"create it once (`createdb -O <role> {name}` as a superuser) or grant "
                        "the role CREATEDB"
                    )
                await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)"))
                await conn.execute(sa.text(f"CREATE DATABASE {_quoted(name)}"))
    finally:
        await admin.dispose()


async def clean_databases(
    server_url: str, names: Sequence[str], *, schema: str = SCORING_SCHEMA
) -> None:
    """Leave nothing of the run behind: drop each database when our role could create it again
    next time, else only its `schema`."""
    admin = make_engine(with_database(server_url, "postgres"), pool_size=1)
    try:
        async with admin.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            may_create = await _may_create_databases(conn)
            for name in names:
                if may_create:
                    await conn.execute(
                        sa.text(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
                    )
                else:
                    await _drop_schema(server_url, name, schema)
    finally:
        await admin.dispose()


async def _may_create_databases(conn: AsyncConnection) -> bool:
    query = "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
    return bool(await conn.scalar(sa.text(query)))


async def _drop_schema(server_url: str, database: str, schema: str) -> None:
    engine = make_engine(with_database(server_url, database), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {_quoted(schema)} CASCADE"))
    finally:
        await engine.dispose()


def _quoted(name: str) -> str:
    if not PLAIN_NAME.match(name):
        raise ValueError(f"not a plain database or schema name: {name!r}")
    return f'"{name}"'


def migrate(env: dict[str, str], *, service: str = "scoring") -> None:
    """`closeloop-<service> migrate` with `env` (its DATABASE_URL)."""
    script = str(Path(sys.executable).parent / f"closeloop-{service}")
    done = subprocess.run([script, "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{service} migrate failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")


async def prefill(
    settings: CommonSettings, feed: ResponseFeed, *, client_id: str = "bench-scoring"
) -> tuple[int, float]:
    """Produce the feed's events (key = partition key) in order, `CHUNK` at a time; the next
    chunk is made in a thread while the current one is sent. Returns (events, seconds)."""
    topic = Topic.RESPONSES.address(settings.kafka_topic_prefix)
    events = feed.events()

    def next_chunk() -> list[OutboundRecord]:
        return [
            OutboundRecord(topic, e.partitionkey, e.encode())
            for e in itertools.islice(events, CHUNK)
        ]

    producer = EventProducer(settings.kafka_bootstrap_servers, client_id=client_id)
    await producer.start()
    started = time.perf_counter()
    produced = 0
    sending: asyncio.Task[None] | None = None
    try:
        while records := await asyncio.to_thread(next_chunk):
            produced += len(records)
            if sending is not None:
                await sending  # one chunk in flight at a time keeps the topic in arrival order
            sending = asyncio.create_task(producer.send_batch(records))
        if sending is not None:
            await sending
    finally:
        await producer.stop()
    return produced, time.perf_counter() - started


async def forget_group(bootstrap_servers: str, group_id: str, *, timeout: float = 60.0) -> None:
    """Delete the consumer group's committed offsets, so its next member starts at offset 0.

    aiokafka's admin client has no `delete_consumer_groups`, so this sends Kafka's DeleteGroups
    request to the group's coordinator itself. A group still holding a member (the stopped
    process not yet gone) is retried until `timeout`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            node = await admin.find_coordinator(group_id)
            response = await admin._send_request(DeleteGroupsRequest([group_id]), node)
            _, code = response.results[0]
            if code in (0, GroupIdNotFound.errno):
                break
            if code != NonEmptyGroup.errno or time.monotonic() > deadline:
                raise RuntimeError(f"could not delete consumer group {group_id}: error {code}")
            await asyncio.sleep(1)
        if left := await admin.list_consumer_group_offsets(group_id):
            raise RuntimeError(f"consumer group {group_id} still has offsets: {left}")
    finally:
        await admin.close()
