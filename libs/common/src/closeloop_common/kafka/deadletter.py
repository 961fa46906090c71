"""`closeloop-deadletter list|replay`: inspect the dead-letter topic and send records back.

The dead-letter topic is `<KAFKA_TOPIC_PREFIX>.deadletter`. A consumer that cannot handle a record
publishes it there unchanged (key, value, its headers) with headers `closeloop.dlq.topic`,
`.partition`, `.offset` (where it came from), `.group` (the consumer group that gave up),
`.reason`, `.failed_at` and, when present, `.error`.

- `list` prints every dead letter: its position in the dead-letter topic (`partition:offset`), the
  original topic/partition/offset, group, reason, failure time, key and error. Never the value
  (it holds customers' data) unless `--show-value`. `--json` prints one JSON object per line.
- `replay` publishes the chosen records again to their original topic (`closeloop.dlq.topic`,
  which must be one of this deployment's, `<KAFKA_TOPIC_PREFIX>.*`), with the same key and value
  and without the `closeloop.dlq.*` headers, and prints each one it replayed and where it landed. Records are chosen by position (`--record 0:17`, repeatable)
  and/or by `--reason` and `--group`; at least one choice is required. `--dry-run` only prints.

Replaying is safe to repeat: the value (the event and its id) is unchanged, and every consumer
records handled event ids in its inbox, so a consumer that already handled an event skips it. A
record that still cannot be handled is dead-lettered again, as a new dead letter.
The dead-letter topic itself is never changed; its records expire with its retention (30 days).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from closeloop_common.events import Topic
from closeloop_common.settings import CommonSettings

HEADER_PREFIX = "closeloop.dlq."
READ_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def position(self) -> str:
        """Where the dead letter is in the dead-letter topic: `partition:offset`."""
        return f"{self.partition}:{self.offset}"

    def dlq(self, name: str) -> str | None:
        """The `closeloop.dlq.<name>` header, decoded (None when absent)."""
        for key, value in self.headers:
            if key == HEADER_PREFIX + name:
                return value.decode(errors="replace")
        return None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]

    def describe(self, *, show_value: bool) -> dict[str, object]:
        described: dict[str, object] = {
            "deadletter": self.position,
            "topic": self.dlq("topic"),
            "partition": _int_or_none(self.dlq("partition")),
            "offset": _int_or_none(self.dlq("offset")),
            "group": self.dlq("group"),
            "reason": self.dlq("reason"),
            "failed_at": self.dlq("failed_at"),
            "key": None if self.key is None else self.key.decode(errors="replace"),
        }
        if (error := self.dlq("error")) is not None:
            described["error"] = error
        if show_value:
            described["value"] = None if self.value is None else self.value.decode(errors="replace")
        return described


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to act on: every given criterion must hold."""

    positions: frozenset[str] = frozenset()
    reason: str | None = None
    group: str | None = None

    @property
    def empty(self) -> bool:
        return not self.positions and self.reason is None and self.group is None

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (not self.positions or letter.position in self.positions)
            and (self.reason is None or letter.dlq("reason") == self.reason)
            and (self.group is None or letter.dlq("group") == self.group)
        )


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: DeadLetter
    topic: str
    partition: int
    offset: int


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def deadletter_topic(settings: CommonSettings) -> str:
    return Topic.DEADLETTER.address(settings.kafka_topic_prefix)


async def read_dead_letters(
    settings: CommonSettings, *, timeout: float = READ_TIMEOUT_SECONDS
) -> list[DeadLetter]:
    """Every record in the dead-letter topic now, in partition then offset order."""
    topic = deadletter_topic(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0]["error_code"] != 0:
        raise LookupError(f"the dead-letter topic {topic} does not exist")
    partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,  # reading commits nothing and joins no group
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(timeout):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(
                        r for r in batch if r.offset < ends[TopicPartition(topic, r.partition)]
                    )
        return sorted(
            (
                DeadLetter(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for r in records
            ),
            key=lambda letter: (letter.partition, letter.offset),
        )
    finally:
        await consumer.stop()


async def replay(settings: CommonSettings, letters: Sequence[DeadLetter]) -> list[Replayed]:
    """Publish `letters` to their original topics (acks from all in-sync replicas)."""
    # Checked first, so that a bad choice publishes nothing rather than a part. Only this
    # deployment's topics are targets, whatever a header says.
    prefix = f"{settings.kafka_topic_prefix}."
    if strays := [
        letter.position for letter in letters if not (letter.dlq("topic") or "").startswith(prefix)
    ]:
        raise ValueError(
            f"dead letter(s) {', '.join(strays)} name no original topic under {prefix}*"
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="closeloop-deadletter",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        replayed = []
        for letter in letters:
            topic = letter.dlq("topic")
            assert topic is not None
            metadata = await producer.send_and_wait(
                topic, letter.value, key=letter.key, headers=letter.original_headers
            )
            replayed.append(Replayed(letter, topic, metadata.partition, metadata.offset))
        return replayed
    finally:
        await producer.stop()


def _print_letter(letter: DeadLetter, *, show_value: bool, as_json: bool) -> None:
    described = letter.describe(show_value=show_value)
    if as_json:
        print(json.dumps(described, ensure_ascii=False))
        return
    origin = f"{described['topic']}/{described['partition']}/{described['offset']}"
    print(
        f"{letter.position}  {origin}  group={described['group']}  "
        f"reason={described['reason']}  failed_at={described['failed_at']}  "
        f"key={described['key']}"
    )
    if "error" in described:
        print(f"    error: {described['error']}")
    if show_value:
        print(f"    value: {described['value']}")


def _position(text: str) -> str:
    partition, sep, offset = text.partition(":")
    if not (sep and partition.isdigit() and offset.isdigit()):
        raise argparse.ArgumentTypeError(f"expected PARTITION:OFFSET, got {text!r}")
    return f"{int(partition)}:{int(offset)}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="closeloop-deadletter",
        description="List the dead-letter topic's records, or replay them to their topics.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("list", "print the dead letters (never their values unless --show-value)"),
        ("replay", "publish the chosen dead letters again to their original topics"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--record",
            dest="records",
            action="append",
            type=_position,
            default=[],
            metavar="PARTITION:OFFSET",
            help="a dead letter by its position in the dead-letter topic (repeatable)",
        )
        command.add_argument("--reason", help="only dead letters with this reason")
        command.add_argument("--group", help="only dead letters of this consumer group")
    list_command = commands.choices["list"]
    list_command.add_argument("--show-value", action="store_true", help="print record values")
    list_command.add_argument("--json", action="store_true", help="one JSON object per line")
    commands.choices["replay"].add_argument(
        "--dry-run", action="store_true", help="print what would be replayed, publish nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = CommonSettings()
    selection = Selection(frozenset(args.records), args.reason, args.group)
    if args.command == "replay" and selection.empty:
        print(
            "closeloop-deadletter: choose what to replay with --record, --reason or --group",
            file=sys.stderr,
        )
        return 2
    try:
        letters = [
            letter
            for letter in asyncio.run(read_dead_letters(settings))
            if selection.matches(letter)
        ]
    except LookupError as exc:
        print(f"closeloop-deadletter: {exc}", file=sys.stderr)
        return 1
    if args.command == "list":
        for letter in letters:
            _print_letter(letter, show_value=args.show_value, as_json=args.json)
        return 0
    missing = selection.positions - {letter.position for letter in letters}
    if missing:
        print(
            f"closeloop-deadletter: no dead letter matches: {', '.join(sorted(missing))}",
            file=sys.stderr,
        )
        return 1
    if args.dry_run:
        for letter in letters:
            print(f"would replay {letter.position} -> {letter.dlq('topic')}")
        return 0
    try:
        replayed = asyncio.run(replay(settings, letters))
    except ValueError as exc:
        print(f"closeloop-deadletter: {exc}", file=sys.stderr)
        return 1
    for done in replayed:
        print(f"replayed {done.letter.position} -> {done.topic}/{done.partition}/{done.offset}")
    print(f"{len(letters)} dead letter(s) replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
