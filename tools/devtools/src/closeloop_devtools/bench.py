"""`make bench`: how fast a response travels the whole loop, measured on the real stack.

Runs the four services as processes against the real broker and database (own topic prefix and
tenant, so nothing else is disturbed), with the SMTP sink, and measures:
1. latency: detractor responses posted one at a time; for each, the time from sending the POST to
   its apology being stored by the SMTP sink (the Maildir file's modification time);
2. throughput: a burst posted by concurrent clients; POST latency percentiles and requests/s at
   ingest, and the time until every message of the burst is in the sink (end-to-end rate).
Writes a Markdown table to --out and prints it. The services verify tokens with a key pair made
for the run in its temporary folder; the clients post with a `responses:write` token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import generate_key_pair, mint_token
from closeloop_devtools.mailsink import MailSink
from closeloop_devtools.report import write_report
from closeloop_devtools.stack import DEMO_MESSAGING, Stack

SMTP_PORT = 13025
PORT_OFFSET = 20000


def response(run: str, n: int, score: int) -> dict[str, Any]:
    return {
        "response_id": f"bench-{run}-{n}",
        "survey_id": "bench",
        "customer": {
            "id": f"c{n}",
            "email": f"c{n}-{run}@bench.example.com",
            "name": f"Customer {n}",
            "locale": "en",
        },
        "account_id": f"acct-{n % 20}",
        "score": score,
        "comment": "Benchmark comment: delivery was late.",
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {"product": "p", "region": "PL", "channel": "email", "touchpoint": "t"},
    }


def delivered_at(maildir: Path) -> dict[str, float]:
    """Recipient -> time the sink stored its message."""
    found: dict[str, float] = {}
    for path in (maildir / "new").iterdir():
        with path.open("rb") as f:
            for raw in f:
                if raw.lower().startswith(b"to:"):
                    found[raw[3:].strip().decode()] = path.stat().st_mtime
                    break
                if raw in (b"\n", b"\r\n"):
                    break
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_for(maildir: Path, recipients: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = delivered_at(maildir)
        if recipients <= seen.keys() or time.monotonic() > deadline:
            return {r: seen[r] for r in recipients if r in seen}
        await asyncio.sleep(0.05)


async def measure_latency(
    stack: Stack, maildir: Path, run: str, count: int, headers: dict[str, str]
) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(
        base_url=stack.url("ingest"), headers=headers, timeout=10
    ) as client:
        for n in range(count):
            body = response(run, n, score=n % 7)
            started = time.time()
            reply = await client.post("/v1/responses", json=body)
            reply.raise_for_status()
            got = await wait_for(maildir, {body["customer"]["email"]}, timeout=30)
            if got:
                latencies.append(next(iter(got.values())) - started)
    return latencies


async def measure_burst(
    stack: Stack, maildir: Path, run: str, count: int, concurrency: int, headers: dict[str, str]
) -> dict[str, float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(100_000, 100_000 + count):
        queue.put_nowait(n)
    post_latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            started = time.perf_counter()
            reply = await client.post("/v1/responses", json=response(run, n, score=n % 11))
            reply.raise_for_status()
            post_latencies.append(time.perf_counter() - started)

    started = time.time()
    async with httpx.AsyncClient(
        base_url=stack.url("ingest"), headers=headers, timeout=30
    ) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    posted = time.time() - started
    recipients = {f"c{n}-{run}@bench.example.com" for n in range(100_000, 100_000 + count)}
    got = await wait_for(maildir, recipients, timeout=300)
    last = max(got.values()) if got else float("nan")
    return {
        "posted": count,
        "delivered": len(got),
        "post_seconds": posted,
        "post_rate": count / posted,
        "post_p50_ms": 1000 * percentile(post_latencies, 0.5),
        "post_p99_ms": 1000 * percentile(post_latencies, 0.99),
        "loop_seconds": last - started,
        "loop_rate": len(got) / (last - started),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-bench", description=__doc__)
    parser.add_argument("--latency-count", type=int, default=50)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/results.md"))
    args = parser.parse_args(argv)

    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}"
    env = {
        "KAFKA_TOPIC_PREFIX": prefix,
        "NOTIFIER_SMTP_PORT": str(SMTP_PORT),
        # Latency to the email, not to the human delay a tenant would keep in production.
        "NOTIFIER_DEFAULT_MESSAGING": DEMO_MESSAGING,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    settings = CommonSettings()
    asyncio.run(ensure_topics(settings))
    with tempfile.TemporaryDirectory() as tmp:
        keys = generate_key_pair(Path(tmp) / "auth")
        env["AUTH_PUBLIC_KEY_FILE"] = str(keys.public)
        token = mint_token(
            keys.private.read_bytes(),
            tenant=f"bench-{run}",
            scopes=["responses:write"],
            ttl_seconds=4 * 3600,
            subject="closeloop-bench",
        )
        headers = {"Authorization": f"Bearer {token}"}
        maildir = Path(tmp) / "mail"
        sink = MailSink(maildir, port=SMTP_PORT)
        sink.start()
        stack = Stack(env=env, log_dir=Path(tmp) / "logs", port_offset=PORT_OFFSET)
        try:
            stack.migrate()
            stack.start()
            latencies = asyncio.run(
                measure_latency(stack, maildir, run, args.latency_count, headers)
            )
            burst = asyncio.run(
                measure_burst(stack, maildir, run, args.burst, args.concurrency, headers)
            )
        finally:
            stack.stop()
            sink.stop()
    asyncio.run(delete_topics(settings))

    ms = [1000 * v for v in latencies]
    rows = [
        ("POST → apology in SMTP sink, median", f"{statistics.median(ms):.0f} ms"),
        ("POST → apology in SMTP sink, p90", f"{percentile(ms, 0.9):.0f} ms"),
        ("POST → apology in SMTP sink, max", f"{max(ms):.0f} ms"),
        ("latency samples (sequential detractors)", f"{len(ms)} of {args.latency_count}"),
        (
            f"burst: POST /v1/responses, {args.concurrency} concurrent clients",
            f"{burst['post_rate']:.0f} req/s",
        ),
        (
            "burst: POST latency p50 / p99",
            f"{burst['post_p50_ms']:.0f} / {burst['post_p99_ms']:.0f} ms",
        ),
        (
            "burst: responses → emails delivered",
            f"{burst['delivered']:.0f} of {burst['posted']:.0f}",
        ),
        (
            "burst: first POST → last email",
            f"{burst['loop_seconds']:.1f} s ({burst['loop_rate']:.0f} emails/s)",
        ),
    ]
    write_report(
        args.out,
        title="Closeloop benchmark",
        setup="real Kafka 4.1.1 (KRaft, 1 node) and PostgreSQL on 127.0.0.1; four services as "
        "processes.",
        rows=rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
