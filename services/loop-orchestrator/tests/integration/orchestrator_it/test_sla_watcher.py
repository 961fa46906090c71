"""SLA clocks against the real PostgreSQL, driven by a fixed clock the tests move (no sleeps):
the warning at 75 %, the breach at the deadline and the escalation chain (owner, team lead,
manager) each at its time and to its person; contact and resolution stopping their clocks;
business hours skipping nights, weekends and a Polish public holiday; a re-survey coming due;
two watchers at once firing each timer once; a watcher failing mid-scan losing nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from closeloop_common.clock import FixedClock
from closeloop_common.events import CaseResurveyDueV1, CaseSlaAlertV1
from closeloop_common.handlers import Transaction
from closeloop_orchestrator.service_layer.watcher import SlaWatcher, recount

from .support import NOW, H, answer, command, emitted, feed, put_setup, runtime_of, team

ORGANISATION: dict[str, Any] = {
    "teams": [team("support", [("anna", ["pl"]), ("ben", ["en"])], lead="anna", manager="maria")],
    "people": [{"id": "maria", "name": "Maria", "email": "maria@acme.example"}],
}
ROUND_ROBIN_BEN_FIRST = {"defaults": {"assignment": ["least_loaded"], "team_id": "support"}}
WARSAW_WEEK = {
    "time_zone": "Europe/Warsaw",
    "hours": {day: ["08:00-16:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": "PL",
}


async def alerts(app: FastAPI, tenant: str) -> list[tuple[str, str, int, str | None, datetime]]:
    """(clock, kind, step, recipient id, due_at) of the tenant's SLA alerts, in order."""
    return [
        (a.clock, a.kind, a.step, None if a.recipient is None else a.recipient.id, a.due_at)
        for a in await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE)
    ]


async def step_at(app: FastAPI, clock: FixedClock, instant: datetime) -> None:
    clock.set(instant)
    watcher: SlaWatcher = app.state.watcher
    while await watcher.step() >= watcher.limit:
        pass


async def one_case(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    (case,) = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    return case  # type: ignore[no-any-return]


async def test_warning_breach_and_escalations_fire_at_their_times_to_their_people(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=ROUND_ROBIN_BEN_FIRST)
    await feed(app, tenant, answer("r-late", score=2))
    owner = (await one_case(client, headers))["owner"]["id"]

    await step_at(app, clock, NOW + 36 * H - H / 60)
    assert await alerts(app, tenant) == []
    await step_at(app, clock, NOW + 36 * H)
    assert await alerts(app, tenant) == [("first_contact", "warning", 0, owner, NOW + 36 * H)]
    await step_at(app, clock, NOW + 48 * H)
    await step_at(app, clock, NOW + 52 * H)
    await step_at(app, clock, NOW + 72 * H)

    assert await alerts(app, tenant) == [
        ("first_contact", "warning", 0, owner, NOW + 36 * H),
        ("first_contact", "breach", 0, owner, NOW + 48 * H),
        ("first_contact", "escalation", 1, "anna", NOW + 52 * H),
        ("first_contact", "escalation", 2, "maria", NOW + 72 * H),
    ]
    (first, *_), late = await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE), NOW + 48 * H
    assert first.deadline == late
    assert first.priority == "high"
    # The case is overdue now, and listed so.
    overdue = await client.get("/v1/cases", params={"overdue": "true"}, headers=headers)
    assert [c["response_id"] for c in overdue.json()["cases"]] == ["r-late"]


async def test_contact_stops_the_first_contact_clock_and_resolution_the_other(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=ROUND_ROBIN_BEN_FIRST)
    await feed(app, tenant, answer("r-reached", score=1))
    case = await one_case(client, headers)
    clock.set(NOW + 2 * H)
    for name, body in (
        ("claim", {"owner_id": case["owner"]["id"]}),
        ("contacts", {"channel": "phone", "outcome": "reached", "note": "Apologised, agreed a refund."}),
    ):  # fmt: skip
        assert (await command(client, headers, case["case_id"], name, body)).status_code == 200

    await step_at(app, clock, NOW + 130 * H)
    assert [(c, k) for c, k, *_ in await alerts(app, tenant)] == [("resolution", "warning")]

    clock.set(NOW + 131 * H)
    resolved = await command(
        client, headers, case["case_id"], "resolve", {"outcome": "compensated", "note": "Refunded."}
    )
    assert resolved.status_code == 200, resolved.text
    await step_at(app, clock, NOW + 400 * H)
    assert [(c, k) for c, k, *_ in await alerts(app, tenant)] == [("resolution", "warning")]


async def test_business_hours_skip_nights_weekends_and_a_public_holiday(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    organisation = ORGANISATION | {"calendar": WARSAW_WEEK}
    rules = ROUND_ROBIN_BEN_FIRST | {
        "rules": [
            {
                "name": "detractors in six business hours",
                "match": {"categories": ["detractor"]},
                "then": {"first_contact_hours": 6, "business_hours": True},
            }
        ]
    }
    await put_setup(client, headers, organisation=organisation, rules=rules)
    # Tuesday 10 November 2026, 15:00 in Warsaw; Wednesday the 11th is Independence Day.
    clock.set(datetime.fromisoformat("2026-11-10T15:00:00+01:00"))
    await feed(app, tenant, answer("r-holiday", score=0))
    # Friday 13 November, 15:00: the deadline falls on Monday.
    clock.set(datetime.fromisoformat("2026-11-13T15:00:00+01:00"))
    await feed(app, tenant, answer("r-weekend", score=0))

    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    due = {c["response_id"]: datetime.fromisoformat(c["first_contact_due_at"]) for c in listed}
    # One hour on Tuesday, none on the holiday, five on Thursday: Thursday 13:00.
    assert due["r-holiday"] == datetime.fromisoformat("2026-11-12T13:00:00+01:00")
    # One hour on Friday, none at the weekend, five on Monday.
    assert due["r-weekend"] == datetime.fromisoformat("2026-11-16T13:00:00+01:00")

    await step_at(app, clock, datetime.fromisoformat("2026-11-30T00:00:00+01:00"))
    holiday_case = [
        (kind, step, due_at)
        for _, kind, step, _, due_at in await alerts(app, tenant)
        if kind != "escalation" and due_at < datetime.fromisoformat("2026-11-13T12:00:00+01:00")
    ]
    warsaw = datetime.fromisoformat
    assert holiday_case == [
        ("warning", 0, warsaw("2026-11-12T11:30:00+01:00")),  # 4.5 business hours
        ("breach", 0, warsaw("2026-11-12T13:00:00+01:00")),
    ]
    escalations = sorted(d for _, k, s, _, d in await alerts(app, tenant) if k == "escalation")
    # Four business hours after Thursday 13:00: three on Thursday, one on Friday.
    assert escalations[0] == warsaw("2026-11-13T09:00:00+01:00")


async def test_a_closed_cases_resurvey_comes_due_after_its_days(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    await feed(app, tenant, answer("r-again", score=6))
    case = await one_case(client, headers)
    for name, body in (
        ("claim", {"owner_id": case["owner"]["id"]}),
        ("contacts", {"channel": "email", "outcome": "reached", "note": "Talked it through."}),
        ("resolve", {"outcome": "explained", "note": "Explained the new delivery times."}),
        ("close", {"note": "Customer satisfied.", "resurvey_after_days": 30}),
    ):
        assert (await command(client, headers, case["case_id"], name, body)).status_code == 200

    await step_at(app, clock, NOW + 29 * 24 * H)
    assert await emitted(app, tenant, CaseResurveyDueV1.EVENT_TYPE) == []
    await step_at(app, clock, NOW + 31 * 24 * H)
    (due,) = await emitted(app, tenant, CaseResurveyDueV1.EVENT_TYPE)
    assert (due.response_id, due.survey_id, due.due_at) == (
        "r-again",
        "relationship-2026",
        NOW + 30 * 24 * H,
    )
    assert await alerts(app, tenant) == []  # every clock stopped before its first timer


async def test_two_watchers_at_once_fire_each_timer_once(
    app: FastAPI, tenant: str, clock: FixedClock
) -> None:
    await feed(app, tenant, *(answer(f"r-{i}", score=i % 11) for i in range(150)))
    clock.set(NOW + 400 * H)
    runtime = runtime_of(app)
    store = app.state.setup_store
    replicas = [SlaWatcher(runtime, store, limit=40, interval=1) for _ in range(2)]

    async def drain(watcher: SlaWatcher) -> int:
        total = 0
        while fired := await watcher.step():
            total += fired
        return total

    fired = await asyncio.gather(*(drain(w) for w in replicas))

    found = await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE)
    keys = Counter((a.case_id, a.clock, a.kind, a.step) for a in found)
    assert keys
    assert max(keys.values()) == 1
    # Detractors (0-6: 7 of 11 scores) have two clocks, the others one; 4 timers a clock.
    detractors = sum(1 for i in range(150) if i % 11 <= 6)
    assert len(found) == 4 * (150 + detractors)
    assert sum(fired) >= len(found)  # other tenants' due timers may be fired too
    assert all(f > 0 for f in fired), "both watchers took a share"


class _DyingWatcher(SlaWatcher):
    """Fails after emitting part of its scan, as a process killed mid-step would."""

    async def _fire(self, tx: Transaction, due: Any, now: datetime) -> None:
        await super()._fire(tx, due[: len(due) // 2], now)
        raise RuntimeError("killed mid-scan")


async def test_a_watcher_failing_mid_scan_loses_nothing_and_fires_nothing_twice(
    app: FastAPI, tenant: str, clock: FixedClock
) -> None:
    await feed(app, tenant, *(answer(f"r-{i}", score=3) for i in range(20)))
    clock.set(NOW + 400 * H)
    runtime = runtime_of(app)
    dying = _DyingWatcher(runtime, app.state.setup_store, limit=1000, interval=1)

    with pytest.raises(RuntimeError, match="killed mid-scan"):
        await dying.step()
    assert await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE) == []

    await step_at(app, clock, NOW + 400 * H)
    found = await emitted(app, tenant, CaseSlaAlertV1.EVENT_TYPE)
    assert len(found) == 20 * 8
    assert len({(a.case_id, a.clock, a.kind, a.step) for a in found}) == 20 * 8


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_metrics_count_alerts_contacts_and_open_cases(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    breaches = sample("closeloop_case_sla_alerts_total", clock="first_contact", kind="breach")
    in_time = sample(
        "closeloop_case_first_contacts_total", case_type="detractor", within_sla="true"
    )
    await feed(app, tenant, answer("r-a", score=1), answer("r-b", score=2))
    made = await client.post(
        "/v1/issues",
        json={"title": "Late", "source": "theme", "theme": "delivery", "cost": 1},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    await recount(runtime_of(app))
    assert sample("closeloop_cases_open", case_type="detractor", priority="high") >= 2
    # Lack-of-response cases are open cases too (a series even while there is none).
    no_response = {"case_type": "no_response", "priority": "high"}
    assert REGISTRY.get_sample_value("closeloop_cases_open", no_response) is not None
    assert sample("closeloop_structural_issues", status="proposed") >= 1
    first = (await client.get("/v1/cases", headers=headers)).json()["cases"][0]
    clock.set(NOW + H)
    for name, body in (
        ("claim", {"owner_id": first["owner"]["id"]}),
        ("contacts", {"channel": "phone", "outcome": "reached", "note": "Sorted."}),
    ):
        assert (await command(client, headers, first["case_id"], name, body)).status_code == 200

    await step_at(app, clock, NOW + 49 * H)

    assert sample("closeloop_case_sla_alerts_total", clock="first_contact", kind="breach") >= (
        breaches + 1
    )
    assert sample(
        "closeloop_case_first_contacts_total", case_type="detractor", within_sla="true"
    ) == (in_time + 1)
    assert sample("closeloop_case_time_to_first_contact_seconds_count", case_type="detractor") >= 1
