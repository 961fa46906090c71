"""What must hold after the fault run recovered, checked through the services' APIs and SQL on
the private database, the SMTP sink's Maildir and the dead-letter topic.

Each check is a `Check` with what was expected and what was found; the run fails on any that
does not hold, and the report lists them all.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from closeloop_common.events import Category, categorize
from closeloop_common.kafka.deadletter import read_dead_letters
from closeloop_common.services import SERVICES
from closeloop_common.settings import CommonSettings
from closeloop_devtools.faults_poison import SUBSCRIBERS, Poison, expected_dead_letters
from closeloop_devtools.faults_stream import Observer, Posted, Stream, consumer_lag
from closeloop_devtools.stack import Stack

# Latency after the last recovery must be within this factor of the baseline (plus a little
# slack for a baseline of tens of milliseconds, where one scheduler hiccup is a factor).
LATENCY_FACTOR = 3.0
LATENCY_SLACK_SECONDS = 0.25


@dataclass(frozen=True)
class Check:
    name: str
    expected: str
    found: str
    ok: bool


def check(name: str, expected: object, found: object) -> Check:
    """Compare; long collections are shown by size, and by their first differences if any."""
    ok = expected == found
    if isinstance(expected, list | set | dict) and len(expected) > 8:
        shown_expected = f"{len(expected)} items"
        shown_found = f"{len(found)} items" if isinstance(found, list | set | dict) else str(found)
        if not ok and isinstance(found, list | set | dict):
            want, got = _items(expected), _items(found)
            missing = ", ".join(sorted(want - got)[:5]) or "none"
            unexpected = ", ".join(sorted(got - want)[:5]) or "none"
            shown_found += f"; missing {missing}, unexpected {unexpected}"
        return Check(name, shown_expected, shown_found, ok)
    return Check(name, str(expected), str(found), ok)


def _items(collection: list[Any] | set[Any] | dict[Any, Any]) -> set[str]:
    if isinstance(collection, dict):
        return {repr(item) for item in collection.items()}
    return {repr(item) for item in collection}


async def get_json(url: str, headers: dict[str, str]) -> Any:
    """GET, retried on 503 as its Retry-After asks: the first request after the database
    restart may meet a pooled connection the restart closed (it fails once, as a 503)."""
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        for _ in range(10):
            reply = await client.get(url)
            if reply.status_code != 503:
                break
            await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
        reply.raise_for_status()
        return reply.json()


@dataclass
class Verdict:
    stack: Stack
    dsn: str
    settings: CommonSettings
    tenant: str
    headers: dict[str, str]
    stream: Stream
    observer: Observer
    poison: list[Poison]
    # (from, to): when a first copy may have gone out whose record was lost (a notifier killed
    # between SMTP acceptance and its record, or the SMTP connection cut after acceptance).
    notifier_windows: list[tuple[str, float, float]]


async def final_checks(v: Verdict) -> list[Check]:
    accepted = v.stream.accepted()
    ids = {p.response_id for p in accepted}
    checks = [check("responses accepted by ingest (202 or 200 duplicate)", len(accepted), len(ids))]
    conn = await asyncpg.connect(v.dsn)
    try:
        checks += await _counts(v, conn, accepted, ids)
        checks += await _messages(v, conn, accepted)
        checks += await _pending(v, conn)
    finally:
        await conn.close()
    checks += _mailbox(v, accepted)
    checks += await _dead_letters(v)
    return checks


async def _counts(v: Verdict, conn: Any, accepted: list[Posted], ids: set[str]) -> list[Check]:
    n = len(accepted)
    stored = await conn.fetchval(
        "SELECT count(*) FROM ingest.responses WHERE tenant_id = $1", v.tenant
    )
    nps = await get_json(f"{v.stack.url('scoring')}/v1/nps", v.headers)
    expected = Counter(categorize(p.score) for p in accepted)
    counted = await conn.fetchval(
        "SELECT count(*) FROM scoring.responses WHERE tenant_id = $1", v.tenant
    )
    cases = await conn.fetch(
        "SELECT response_id, count(*) AS n FROM orchestrator.cases WHERE tenant_id = $1 "
        "GROUP BY response_id",
        v.tenant,
    )
    return [
        check("responses stored by ingest (SQL)", n, stored),
        check("responses counted by scoring (GET /v1/nps)", n, nps["responses"]),
        check(
            "promoters / passives / detractors (GET /v1/nps)",
            (expected[Category.PROMOTER], expected[Category.PASSIVE], expected[Category.DETRACTOR]),
            (nps["promoters"], nps["passives"], nps["detractors"]),
        ),
        check("responses counted by scoring (SQL)", n, counted),
        check("cases: one per accepted response (SQL)", sorted(ids), sorted(r[0] for r in cases)),
        check("responses with more than one case", 0, sum(1 for r in cases if r[1] != 1)),
    ]


async def _messages(v: Verdict, conn: Any, accepted: list[Posted]) -> list[Check]:
    rows = await conn.fetch(
        "SELECT kind, audience, response_id, status FROM notifier.messages WHERE tenant_id = $1",
        v.tenant,
    )
    statuses = Counter(r["status"] for r in rows)
    customer = Counter(
        (r["response_id"], r["kind"], r["status"]) for r in rows if r["audience"] == "customer"
    )
    wanted = Counter(
        (p.response_id, p.kind, "suppressed" if p.opted_out else "sent") for p in accepted
    )
    opted_out = {p.response_id for p in accepted if p.opted_out}
    team = Counter(r["kind"] for r in rows if r["audience"] != "customer")
    return [
        check(
            "notifier messages by status (none pending, sending, failed)",
            {"sent", "suppressed"},
            set(statuses),
        ),
        check(
            "customer messages: one per response, of its category's kind; sent, or suppressed "
            "when opted out",
            sorted(wanted.items()),
            sorted(customer.items()),
        ),
        check(
            "messages to opted-out customers not suppressed",
            0,
            sum(
                1
                for r in rows
                if r["response_id"] in opted_out
                and r["audience"] == "customer"
                and r["status"] != "suppressed"
            ),
        ),
        check("owner_new_case messages: one per case", len(accepted), team["owner_new_case"]),
    ]


async def _pending(v: Verdict, conn: Any) -> list[Check]:
    unpublished = {
        s.schema: await conn.fetchval(
            f"SELECT count(*) FROM {s.schema}.outbox WHERE published_at IS NULL"
        )
        for s in SERVICES
    }
    lag = await consumer_lag(v.stack) or {}
    groups_topics = {(g, t) for g, t, _ in lag}
    prefix = v.settings.kafka_topic_prefix
    subscribed = {
        (f"{prefix}.{group}", topic.value)
        for topic, groups in SUBSCRIBERS.items()
        for group in groups
    }
    return [
        check(
            "outbox rows not yet published, per service",
            {s.schema: 0 for s in SERVICES},
            unpublished,
        ),
        check("consumer lag (sum of closeloop_consumer_lag_records)", 0.0, sum(lag.values())),
        check(
            "every consumed (group, topic) reports its lag",
            sorted(subscribed),
            sorted(subscribed & groups_topics),
        ),
    ]


def _mailbox(v: Verdict, accepted: list[Posted]) -> list[Check]:
    v.observer.scan_mail()
    mails = v.observer.mails
    opted_out = {p.email for p in accepted if p.opted_out}
    by_message = Counter(m.message_id for m in mails)
    by_case_kind = {(m.case_id, m.kind) for m in mails}
    copies = [m for m in mails if by_message[m.message_id] > 1]
    first_copy: dict[str, float] = {}
    for m in copies:
        first_copy[m.message_id] = min(first_copy.get(m.message_id, m.at), m.at)
    windows: Counter[str] = Counter()
    outside = []
    for mid, at in first_copy.items():
        inside = [name for name, start, end in v.notifier_windows if start - 2 <= at <= end]
        if inside:
            windows[inside[0]] += 1
        else:
            outside.append(mid)
    customer_mail = {(m.to, m.kind) for m in mails}
    missing = [
        p.response_id
        for p in accepted
        if not p.opted_out and (p.email, p.kind) not in customer_mail
    ]
    return [
        check(
            "emails to opted-out customers (mailbox)", 0, sum(1 for m in mails if m.to in opted_out)
        ),
        check("responses whose customer email is missing (mailbox)", [], missing[:10]),
        check(
            "distinct messages per (case, kind) in the mailbox (never two messages for one)",
            len(by_case_kind),
            len(by_message),
        ),
        check(
            "copies of one message beyond the second (mailbox)",
            0,
            sum(max(0, n - 2) for n in by_message.values()),
        ),
        check(
            "second copies outside the documented SMTP window (a notifier killed, or the "
            "SMTP connection lost, between acceptance and record)",
            [],
            outside,
        ),
        Check(
            "messages sent twice inside the documented SMTP window (counted, allowed)",
            "counted",
            f"{len(first_copy) - len(outside)} of {len(by_message)}"
            + "".join(f"; {n} at {name}" for name, n in sorted(windows.items())),
            True,
        ),
    ]


async def _dead_letters(v: Verdict) -> list[Check]:
    letters = await read_dead_letters(v.settings, timeout=30)
    found = {
        (
            letter.dlq("topic") or "",
            int(letter.dlq("partition") or -1),
            int(letter.dlq("offset") or -1),
            letter.dlq("group") or "",
        )
        for letter in letters
    }
    expected = expected_dead_letters(v.poison, v.settings.kafka_topic_prefix)
    return [
        check(
            "dead letters: exactly the undecodable poison, once per consuming group",
            sorted(expected),
            sorted(found),
        ),
        check("dead letters in all", len(expected), len(letters)),
        check(
            "dead-letter reasons",
            {"undecodable"},
            {letter.dlq("reason") for letter in letters},
        ),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(
    accepted: list[Posted],
    observer: Observer,
    *,
    baseline: tuple[float, float],
    final: tuple[float, float],
) -> tuple[list[tuple[str, str, str, str]], list[Check]]:
    """POST -> case opened and POST -> email in the sink, before the faults and after the last
    recovery: rows for the report, and the checks that the latter is back to normal."""

    def window(bounds: tuple[float, float]) -> list[Posted]:
        start, end = bounds
        return [p for p in accepted if start <= p.accepted_start <= end and not p.duplicate]

    def to_case(posted: list[Posted]) -> list[float]:
        return [observer.cases[p.response_id][0] - p.accepted_start for p in posted]

    def to_mail(posted: list[Posted]) -> list[float]:
        return [
            observer.first_mail[p.email] - p.accepted_start
            for p in posted
            if not p.opted_out and p.email in observer.first_mail
        ]

    rows: list[tuple[str, str, str, str]] = []
    checks: list[Check] = []
    for what, measure in (("case opened", to_case), ("email in the SMTP sink", to_mail)):
        before = measure(window(baseline))
        after = measure(window(final))
        if not before or not after:
            checks.append(Check(f"latency samples: {what}", "some", "none", False))
            continue
        b50, b95 = percentile(before, 0.5), percentile(before, 0.95)
        a50, a95 = percentile(after, 0.5), percentile(after, 0.95)
        rows.append(
            (
                what,
                f"{1000 * b50:.0f} / {1000 * b95:.0f} ms",
                f"{1000 * a50:.0f} / {1000 * a95:.0f} ms",
                f"{len(before)} / {len(after)}",
            )
        )
        for q, b, a in (("p50", b50, a50), ("p95", b95, a95)):
            limit = LATENCY_FACTOR * b + LATENCY_SLACK_SECONDS
            checks.append(
                Check(
                    f"latency POST → {what} {q} after recovery",
                    f"≤ {1000 * limit:.0f} ms ({LATENCY_FACTOR:g} x baseline + "
                    f"{1000 * LATENCY_SLACK_SECONDS:.0f} ms)",
                    f"{1000 * a:.0f} ms",
                    a <= limit,
                )
            )
    return rows, checks
