"""The soak's mixed load: an open loop of webhooks, canonical posts, reads and case updates.

Open loop: the n-th request is due at n / rate seconds whatever the stack answers, and its latency
is measured from when it was due, so a slow stack shows as latency (no coordinated omission)
instead of a lower rate. Requests over `max_in_flight` are not sent and count as errors (the
stack does not hold the rate). Each arrival takes the next slot of `MIX`, a fixed cycle, so the
shares are exact:
- writes: signed Typeform webhooks (`typeform_bodies`, each a new response) and canonical
  `POST /v1/responses` (`bench.response`);
- reads: scoring's NPS, breakdown by region and trend; the orchestrator's open cases and one case;
  the notifier's messages;
- case updates: the next step of a case the load took from a list (claim by its owner, first
  contact reached, resolve, close), with `If-Match` its last known version. 412 (changed meanwhile) and 409 (not
  allowed now) are answers the API defines for such races, counted as expected; a case update
  or read with no known case lists the open cases instead.
`probe_case_opening` measures, every few seconds, the time from a detractor's accept (ingest's
202) to its case opened (the case's `opened_at`), polled outside the measured requests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from closeloop_devtools.bench import response
from closeloop_devtools.demo_outer_loop import AGENTS
from closeloop_devtools.soak_analysis import (
    E2E_OP,
    NOT_SENT,
    UNREADABLE,
    Outcome,
    RequestRecord,
)
from closeloop_devtools.typeform_bodies import SCORES, SIGNATURE_HEADER, sign, typeform_payload

# One cycle of 20 arrivals: 8 responses in (40 %), 9 reads (45 %), 3 case updates (15 %).
MIX = (
    "webhook",
    "nps",
    "response",
    "cases_list",
    "case_update",
    "webhook",
    "case_read",
    "response",
    "messages",
    "nps_breakdown",
    "webhook",
    "case_update",
    "response",
    "case_read",
    "nps_trend",
    "webhook",
    "cases_list",
    "response",
    "case_update",
    "nps",
)
CASE_STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("claim", {}),  # owner_id filled in per case
    ("contacts", {"channel": "phone", "outcome": "reached", "note": "Rozmowa z klientem."}),
    ("resolve", {"outcome": "solved", "note": "Sprawa wyjaśniona."}),
    ("close", {"note": "Zamknięte.", "resurvey_after_days": 30}),
)
EXPECTED_RACES = {"case_update": {409, 412}}
MAX_KNOWN_CASES = 500


@dataclass
class KnownCase:
    case_id: str
    version: str  # the ETag value, quotes included
    owner_id: str | None  # cases are assigned on opening: that owner claims it
    step: int = 0


@dataclass
class Endpoints:
    ingest: httpx.AsyncClient
    scoring: httpx.AsyncClient
    orchestrator: httpx.AsyncClient
    notifier: httpx.AsyncClient


@dataclass
class MixedLoad:
    clients: Endpoints
    headers: dict[str, dict[str, str]]  # per scope: responses:write, read, cases:write
    webhook_path: str
    webhook_secret: str
    run: str
    records: list[RequestRecord] = field(default_factory=list)
    cases: deque[KnownCase] = field(default_factory=deque)
    _known: set[str] = field(default_factory=set)
    _n: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(2026))

    async def run_open_loop(
        self,
        *,
        rate: float,
        seconds: float,
        max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        start = clock()
        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        while (due := n / rate) < seconds:
            delay = start + due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            op = MIX[n % len(MIX)]
            if len(in_flight) >= max_in_flight:
                self.records.append(RequestRecord(due, op, NOT_SENT, "error", 0.0))
            else:
                task = asyncio.create_task(self._timed(op, due, start + due, clock))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            n += 1
        await asyncio.gather(*in_flight)

    async def _timed(
        self, op: str, due: float, due_clock: float, clock: Callable[[], float]
    ) -> None:
        try:
            op, reply = await self._send(op)
            status = reply.status_code
        except httpx.HTTPError:
            status = 0
        except (KeyError, ValueError, TypeError):  # a 2xx not shaped as the API documents
            status = UNREADABLE
        latency_ms = 1000 * (clock() - due_clock)
        outcome: Outcome = (
            "ok"
            if 200 <= status < 300
            else "expected"
            if status in EXPECTED_RACES.get(op, ())
            else "error"
        )
        self.records.append(RequestRecord(due, op, status, outcome, latency_ms))

    def _next_number(self) -> int:
        self._n += 1
        return self._n

    async def _send(self, op: str) -> tuple[str, httpx.Response]:
        """Send one request of `op`; the operation it really was and its answer."""
        c, read = self.clients, self.headers["read"]
        if op in ("case_update", "case_read") and not self.cases:
            op = "cases_list"
        if op == "webhook":
            n = self._next_number()
            body = orjson.dumps(typeform_payload(run=self.run, n=n, submitted_at=datetime.now(UTC)))
            return op, await c.ingest.post(
                self.webhook_path,
                content=body,
                headers={
                    "content-type": "application/json",
                    SIGNATURE_HEADER: sign(self.webhook_secret, body),
                },
            )
        if op == "response":
            n = self._next_number()
            body_json = response(self.run, n, SCORES[n % len(SCORES)])
            return op, await c.ingest.post(
                "/v1/responses", json=body_json, headers=self.headers["responses:write"]
            )
        if op == "nps":
            return op, await c.scoring.get("/v1/nps", params={"window": "30d"}, headers=read)
        if op == "nps_breakdown":
            params = {"by": "region", "window": "30d"}
            return op, await c.scoring.get("/v1/nps/breakdown", params=params, headers=read)
        if op == "nps_trend":
            params = {"window": "30d", "granularity": "day"}
            return op, await c.scoring.get("/v1/nps/trend", params=params, headers=read)
        if op == "messages":
            return op, await c.notifier.get("/v1/messages", params={"limit": 50}, headers=read)
        if op == "cases_list":
            reply = await c.orchestrator.get(
                "/v1/cases", params={"status": "open", "limit": 50}, headers=read
            )
            if reply.status_code == 200:
                self._learn(reply.json()["cases"])
            return op, reply
        if op == "case_read":
            case = self.cases[self._rng.randrange(len(self.cases))]
            reply = await c.orchestrator.get(f"/v1/cases/{case.case_id}", headers=read)
            if reply.status_code == 200:
                case.version = reply.headers["ETag"]
                owner = reply.json()["owner"]
                case.owner_id = owner["id"] if owner else None
            return op, reply
        return op, await self._update_case()

    def _learn(self, listed: list[dict[str, Any]]) -> None:
        for found in listed:
            if len(self._known) >= MAX_KNOWN_CASES:
                return
            if found["case_type"] != "no_response" and found["case_id"] not in self._known:
                self._known.add(found["case_id"])
                owner = found["owner"]["id"] if found["owner"] else None
                self.cases.append(KnownCase(found["case_id"], f'"{found["version"]}"', owner))

    async def _update_case(self) -> httpx.Response:
        """The next step of the oldest known case; the case goes to the back of the queue, or
        leaves it when closed or when the step is not allowed."""
        case = self.cases.popleft()
        command, body = CASE_STEPS[case.step]
        if command == "claim":
            body = {"owner_id": case.owner_id or self._rng.choice(AGENTS)}
        reply = await self.clients.orchestrator.post(
            f"/v1/cases/{case.case_id}/{command}",
            json=body,
            headers={**self.headers["cases:write"], "If-Match": case.version},
        )
        if "ETag" in reply.headers:
            case.version = reply.headers["ETag"]
        if reply.status_code == 200:
            case.step += 1
        if reply.status_code in (200, 412) and case.step < len(CASE_STEPS):
            self.cases.append(case)
        else:
            self._known.discard(case.case_id)
        return reply


async def probe_case_opening(
    load: MixedLoad, *, every_s: float, until: float, timeout_s: float = 60.0
) -> None:
    """Every `every_s` until the monotonic time `until`: post a new detractor, poll for its case,
    record accept -> `opened_at` as an `e2e_case_opened` record (an error when no case opens
    within `timeout_s`)."""
    start, n = time.monotonic(), 0
    pending: list[asyncio.Task[None]] = []
    while time.monotonic() < until:
        due = start + n * every_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if time.monotonic() >= until:
            break
        pending.append(asyncio.create_task(_one_probe(load, n, due - start, timeout_s)))
        n += 1
    await asyncio.gather(*pending)


async def _one_probe(load: MixedLoad, n: int, at: float, timeout_s: float) -> None:
    run = f"{load.run}p"  # ids of their own, apart from the measured load's
    body = response(run, n, score=2)
    try:
        posted = await load.clients.ingest.post(
            "/v1/responses", json=body, headers=load.headers["responses:write"]
        )
        accepted = time.time()
        if posted.status_code != 202:
            load.records.append(RequestRecord(at, E2E_OP, posted.status_code, "error", 0.0))
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = await load.clients.orchestrator.get(
                "/v1/cases",
                params={"response_id": body["response_id"]},
                headers=load.headers["read"],
            )
            cases = listed.json()["cases"] if listed.status_code == 200 else []
            if cases:
                opened = datetime.fromisoformat(cases[0]["opened_at"]).timestamp()
                delay_ms = max(0.0, 1000 * (opened - accepted))
                load.records.append(RequestRecord(at, E2E_OP, 200, "ok", delay_ms))
                return
            await asyncio.sleep(0.25)
    except (httpx.HTTPError, KeyError, ValueError):  # no answer, or not the documented one
        pass
    load.records.append(RequestRecord(at, E2E_OP, 0, "error", 1000 * timeout_s))
