"""The fault run's traffic and its witness: a steady stream of responses, and what became of each.

`Stream` posts canonical responses (`POST /v1/responses`) at a steady rate, each with known
facts (score, customer address, whether that customer opted out beforehand). A POST that fails
(connection refused or reset, 5xx) is sent again, as a survey tool retries, until ingest
answers 202 (accepted) or 200 (a duplicate: an earlier attempt was accepted before the
connection broke); so every response of the stream is accepted in the end, once.

`Observer` watches the private database and the SMTP sink's Maildir: when each response was
counted by scoring, when its case was opened (the case's `opened_at`), when its customer's
email arrived (the Maildir file's time) or its message was settled without email (suppressed:
opted out), and every email with its kind, case and Message-ID. A response is *processed* once
all of these happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from closeloop_common.events import Category, categorize
from closeloop_devtools.stack import Stack

# The customer message a case's category gets (notifier: `case.opened.v1` playbooks).
CUSTOMER_KIND = {
    Category.PROMOTER: "thanks",
    Category.PASSIVE: "improvement_ask",
    Category.DETRACTOR: "apology",
}
RETRY_PAUSE = 0.2
CONSUMERS = ("scoring", "orchestrator", "notifier")


@dataclass
class Posted:
    n: int
    response_id: str
    email: str
    score: int
    opted_out: bool
    started: float  # wall time the first attempt began
    accepted_start: float = 0.0  # wall time the attempt that was acknowledged began
    accepted_at: float = 0.0  # wall time its 202/200 arrived
    duplicate: bool = False  # acknowledged as a duplicate: an earlier attempt had been accepted

    @property
    def kind(self) -> str:
        return CUSTOMER_KIND[categorize(self.score)]


class Stream:
    """Responses posted at `rate` per second until stopped; `burst` adds some at once."""

    def __init__(
        self,
        *,
        ingest_url: str,
        headers: dict[str, str],
        run: str,
        rate: float,
        opted_out: Callable[[int], bool],
    ) -> None:
        self._url = ingest_url
        self._headers = headers
        self.run = run
        self._rate = rate
        self.opted_out = opted_out
        self.posted: dict[int, Posted] = {}
        self.errors: Counter[str] = Counter()
        self._next = 0
        self._stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(headers=headers, timeout=10)

    def email(self, n: int) -> str:
        return f"c{n}-{self.run}@faults.example.com"

    def body(self, n: int) -> dict[str, Any]:
        return {
            "response_id": f"faults-{self.run}-{n}",
            "survey_id": "faults",
            "customer": {
                "id": f"customer-{n}",
                "email": self.email(n),
                "name": f"Customer {n}",
                "locale": "en",
            },
            "account_id": f"account-{n % 5}",
            "score": n % 11,
            "comment": f"Response {n} of the fault run.",
            "answered_at": datetime.now(UTC).isoformat(),
        }

    def start(self) -> None:
        self.task = asyncio.create_task(self._steady())

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    async def stop(self) -> None:
        self._stopping.set()
        if self.task is not None:
            await self.task
        await self._client.aclose()

    async def burst(self, count: int) -> None:
        """`count` responses posted at once (concurrently), so the services get a full batch."""
        await asyncio.gather(*(self._post(self._take()) for _ in range(count)))

    def _take(self) -> int:
        n = self._next
        self._next += 1
        return n

    async def _steady(self) -> None:
        interval = 1.0 / self._rate
        due = time.monotonic()
        while not self._stopping.is_set():
            await self._post(self._take())
            due += interval
            late = time.monotonic() - due
            if late > 1.0:
                due = time.monotonic()  # after an outage: go on at the rate, no catch-up burst
            elif late < 0:
                await asyncio.sleep(-late)

    async def _post(self, n: int) -> None:
        body = self.body(n)
        posted = Posted(
            n=n,
            response_id=body["response_id"],
            email=body["customer"]["email"],
            score=body["score"],
            opted_out=self.opted_out(n),
            started=time.time(),
        )
        while True:
            began = time.time()
            try:
                reply = await self._client.post(f"{self._url}/v1/responses", json=body)
            except httpx.TransportError as exc:
                self.errors[type(exc).__name__] += 1
            else:
                if reply.status_code in (200, 202):
                    posted.accepted_start = began
                    posted.accepted_at = time.time()
                    posted.duplicate = reply.json().get("status") == "duplicate"
                    self.posted[n] = posted
                    return
                if reply.status_code < 500 and reply.status_code != 429:
                    raise RuntimeError(
                        f"ingest refused a response: {reply.status_code} {reply.text}"
                    )
                self.errors[f"HTTP {reply.status_code}"] += 1
            await asyncio.sleep(RETRY_PAUSE)

    def accepted(self) -> list[Posted]:
        return sorted(self.posted.values(), key=lambda p: p.n)


@dataclass(frozen=True)
class Mail:
    to: str
    kind: str
    case_id: str
    message_id: str
    at: float  # when the sink stored it


@dataclass
class Observer:
    """What the stack did with the stream's responses, polled from the database and Maildir."""

    dsn: str
    tenant: str
    maildir: Path
    interval: float = 0.2
    counted: dict[str, float] = field(default_factory=dict)  # response id -> first seen
    cases: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> opened_at, case id
    settled: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> seen, status
    mails: list[Mail] = field(default_factory=list)
    first_mail: dict[str, float] = field(default_factory=dict)  # recipient -> first arrival
    errors: Counter[str] = field(default_factory=Counter)  # failed looks, by exception class
    _seen_files: set[str] = field(default_factory=set)
    _conn: Any = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self._conn is not None:
            await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            await conn.close(timeout=2)
        except Exception:
            conn.terminate()

    async def _watch(self) -> None:
        while True:
            self.scan_mail()
            await self.poll_database()
            await asyncio.sleep(self.interval)

    async def poll_database(self) -> None:
        """One look at the tables; a database that is down (restarting) is looked at later."""
        now = time.time()
        try:
            if self._conn is None:
                self._conn = await asyncpg.connect(self.dsn, timeout=2)
            conn = self._conn
            for rid, opened, case_id in await conn.fetch(
                "SELECT response_id, extract(epoch FROM opened_at)::float8, case_id::text "
                "FROM orchestrator.cases WHERE tenant_id = $1",
                self.tenant,
            ):
                self.cases.setdefault(rid, (opened, case_id))
            for (rid,) in await conn.fetch(
                "SELECT response_id FROM scoring.responses WHERE tenant_id = $1", self.tenant
            ):
                self.counted.setdefault(rid, now)
            for rid, status in await conn.fetch(
                "SELECT response_id, status FROM notifier.messages WHERE tenant_id = $1 "
                "AND audience = 'customer' AND status IN ('suppressed', 'failed')",
                self.tenant,
            ):
                self.settled.setdefault(rid, (now, status))
        except Exception as exc:
            # Down, restarting, starting up (57P03), a connection the restart closed: whatever
            # it is, look again later through a new connection.
            self.errors[type(exc).__name__] += 1
            if self._conn is not None:
                await self._close()

    def scan_mail(self) -> None:
        """Read the headers of the messages the sink stored since the last look."""
        new = self.maildir / "new"
        if not new.exists():
            return
        parser = BytesHeaderParser(policy=default_policy)
        for path in new.iterdir():
            if path.name in self._seen_files:
                continue
            self._seen_files.add(path.name)
            at = path.stat().st_mtime
            with path.open("rb") as raw:
                headers = parser.parse(raw)
            to = str(headers.get("To", ""))
            address = _address(to)
            mail = Mail(
                to=address,
                kind=str(headers.get("X-Closeloop-Kind", "")),
                case_id=str(headers.get("X-Closeloop-Case-Id", "")),
                message_id=str(headers.get("Message-ID", "")),
                at=at,
            )
            self.mails.append(mail)
            if address not in self.first_mail or at < self.first_mail[address]:
                self.first_mail[address] = at

    def processed_at(self, posted: Posted) -> float | None:
        """When the response was counted, had its case and its customer's email (or its
        message settled without one); None while any of these is missing."""
        counted = self.counted.get(posted.response_id)
        case = self.cases.get(posted.response_id)
        if counted is None or case is None:
            return None
        if posted.opted_out:
            settled = self.settled.get(posted.response_id)
            done = settled[0] if settled is not None else None
        else:
            done = self.first_mail.get(posted.email)
        if done is None:
            return None
        return max(counted, case[0], done)


_ANGLE = re.compile(r"<([^>]+)>")


def _address(header: str) -> str:
    found = _ANGLE.search(header)
    return (found.group(1) if found else header).strip().lower()


async def consumer_lag(stack: Stack) -> dict[tuple[str, str, str], float] | None:
    """Every consumer's `closeloop_consumer_lag_records` series; None when a consumer does not
    answer or reports no series yet."""
    found: dict[tuple[str, str, str], float] = {}
    async with httpx.AsyncClient(timeout=2) as client:
        for name in CONSUMERS:
            try:
                text = (await client.get(f"{stack.url(name)}/metrics")).text
            except httpx.HTTPError:
                return None
            series = parse_lag(text)
            if not series:
                return None
            found.update(series)
    return found


def parse_lag(text: str) -> dict[tuple[str, str, str], float]:
    series: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("closeloop_consumer_lag_records{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(
            part.split("=", 1) for part in labels_text.split("{", 1)[1].split(",") if "=" in part
        )
        key = tuple(labels.get(k, "").strip('"') for k in ("group", "topic", "partition"))
        series[(key[0], key[1], key[2])] = float(value)
    return series
