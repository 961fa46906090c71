"""`closeloop-deadletter list|replay` as a console script, against the real broker.

Dead letters are written here the way a consumer writes them, into this run's dead-letter topic;
their original topic is one made for this test, so replays reach no service's consumer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from closeloop_common.events import Topic
from closeloop_common.settings import CommonSettings
from closeloop_devtools.topic_tail import TopicTail

SCRIPT = Path(sys.executable).parent / "closeloop-deadletter"


@dataclass(frozen=True)
class Letter:
    position: str  # partition:offset in the dead-letter topic
    key: bytes
    value: bytes
    group: str
    reason: str


@dataclass(frozen=True)
class DeadLetters:
    original_topic: str
    first: Letter  # group A, reason R
    second: Letter  # group A, another reason
    third: Letter  # group B, reason R


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


async def cli(*args: str) -> Run:
    """Run the console script the way an operator would (this run's settings are in the env)."""
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture(scope="module")
async def dead_letters(infra: dict[str, str]) -> AsyncIterator[DeadLetters]:
    settings = CommonSettings()
    tag = uuid.uuid4().hex[:8]
    original_topic = f"{settings.kafka_topic_prefix}.replay-it-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(original_topic, 2, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()

    async def dead_letter(n: int, group: str, reason: str) -> Letter:
        key = f"t-{tag}:c-{n}".encode()
        value = json.dumps({"id": f"event-{tag}-{n}", "email": f"secret-{tag}-{n}@example.com"})
        headers = [
            ("content-type", b"application/cloudevents+json; charset=utf-8"),
            ("closeloop.dlq.topic", original_topic.encode()),
            ("closeloop.dlq.partition", b"1"),
            ("closeloop.dlq.offset", str(100 + n).encode()),
            ("closeloop.dlq.group", group.encode()),
            ("closeloop.dlq.reason", reason.encode()),
            ("closeloop.dlq.error", b"ValueError: not handled"),
            ("closeloop.dlq.failed_at", b"2026-11-23T10:00:00+00:00"),
        ]
        sent = await producer.send_and_wait(
            Topic.DEADLETTER.address(settings.kafka_topic_prefix),
            value.encode(),
            key=key,
            headers=headers,
        )
        return Letter(f"{sent.partition}:{sent.offset}", key, value.encode(), group, reason)

    group_a, group_b, reason = f"group-a-{tag}", f"group-b-{tag}", f"handler_failed-{tag}"
    try:
        yield DeadLetters(
            original_topic,
            await dead_letter(1, group_a, reason),
            await dead_letter(2, group_a, f"undecodable-{tag}"),
            await dead_letter(3, group_b, reason),
        )
    finally:
        await producer.stop()
        await admin.delete_topics([original_topic])
        await admin.close()


async def replayed_records(topic: str, count: int) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """The first `count` records of `topic`: key, value, headers."""
    async with TopicTail(CommonSettings().kafka_bootstrap_servers, topic) as tail:
        records = await tail.until(lambda found: len(found) >= count)
    return [(r.key, r.value, dict(r.headers)) for r in records]


async def test_list_prints_every_dead_letter_without_values(dead_letters: DeadLetters) -> None:
    listing = await cli("list")
    assert listing.returncode == 0, listing.stderr
    for letter, offset in ((dead_letters.first, 101), (dead_letters.third, 103)):
        line = next(
            line for line in listing.stdout.splitlines() if line.startswith(letter.position)
        )
        assert f"{dead_letters.original_topic}/1/{offset}" in line
        assert f"group={letter.group}" in line
        assert f"reason={letter.reason}" in line
        assert "failed_at=2026-11-23T10:00:00+00:00" in line
        assert f"key={letter.key.decode()}" in line
    assert "secret-" not in listing.stdout


async def test_list_filters_by_group_and_shows_values_only_when_asked(
    dead_letters: DeadLetters,
) -> None:
    listing = await cli("list", "--group", dead_letters.first.group, "--show-value", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert {row["deadletter"] for row in rows} == {
        dead_letters.first.position,
        dead_letters.second.position,
    }
    by_position = {row["deadletter"]: row for row in rows}
    first = by_position[dead_letters.first.position]
    assert first["value"] == dead_letters.first.value.decode()
    assert first["error"] == "ValueError: not handled"
    assert (first["topic"], first["partition"], first["offset"]) == (
        dead_letters.original_topic,
        1,
        101,
    )


async def test_replay_republishes_the_chosen_records_to_their_topic(
    dead_letters: DeadLetters,
) -> None:
    refused = await cli("replay")
    assert refused.returncode == 2
    unknown = await cli("replay", "--record", "99:99999")
    assert unknown.returncode == 1
    assert "99:99999" in unknown.stderr

    by_position = await cli("replay", "--record", dead_letters.second.position)
    assert by_position.returncode == 0, by_position.stderr
    assert f"replayed {dead_letters.second.position} -> {dead_letters.original_topic}/" in (
        by_position.stdout
    )
    by_reason = await cli("replay", "--reason", dead_letters.first.reason)
    assert by_reason.returncode == 0, by_reason.stderr
    assert "2 dead letter(s) replayed" in by_reason.stdout

    records = await replayed_records(dead_letters.original_topic, 3)
    assert sorted((key, value) for key, value, _ in records) == sorted(
        (letter.key, letter.value)
        for letter in (dead_letters.first, dead_letters.second, dead_letters.third)
    )
    for _key, _value, headers in records:
        assert headers == {"content-type": b"application/cloudevents+json; charset=utf-8"}
