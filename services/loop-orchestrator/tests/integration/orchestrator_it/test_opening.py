"""Opening cases from responses against the real PostgreSQL: each case type with the process's
defaults, one case per response whatever is delivered twice, corrections that re-type an open
case (and leave a settled one's type alone), rules saved over the API applied from the next
batch, and the opened events."""

from __future__ import annotations

from datetime import timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.events import CaseOpenedV1, CaseUpdatedV1
from closeloop_orchestrator.adapters import tables

from .support import (
    NOW,
    H,
    answer,
    command,
    correction,
    emitted,
    feed,
    iso,
    put_setup,
    runtime_of,
)


async def case_of(client: httpx.AsyncClient, headers: dict[str, str], response_id: str) -> dict:  # type: ignore[type-arg]
    listed = await client.get("/v1/cases", params={"response_id": response_id}, headers=headers)
    assert listed.status_code == 200, listed.text
    cases = listed.json()["cases"]
    assert len(cases) == 1, cases
    return cases[0]  # type: ignore[no-any-return]


async def test_each_case_type_opens_with_the_process_defaults(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await feed(
        app,
        tenant,
        answer("r-detractor", score=3),
        answer("r-passive", score=7),
        answer("r-promoter", score=10),
    )

    detractor = await case_of(client, headers, "r-detractor")
    passive = await case_of(client, headers, "r-passive")
    promoter = await case_of(client, headers, "r-promoter")

    expected = {
        "r-detractor": ("detractor", "apology_callback", "high", "phone", 48, 168),
        "r-passive": ("passive", "improvement_ask", "normal", "email", 48, None),
        "r-promoter": ("promoter", "thanks_referral", "low", "email", 48, None),
    }
    for case in (detractor, passive, promoter):
        kind, playbook, priority, channel, first, resolution = expected[case["response_id"]]
        assert (case["case_type"], case["playbook"], case["priority"], case["channel"]) == (
            kind,
            playbook,
            priority,
            channel,
        )
        assert case["status"] == "open"
        assert case["version"] == 1
        assert case["first_contact_due_at"] == iso(NOW + first * H)
        due = case["resolution_due_at"]
        assert due == (None if resolution is None else iso(NOW + resolution * H))
        # The default team rotates: every case has an owner from it.
        assert case["owner"] is not None
        assert case["team_id"] == "customer-care"
    opened = await emitted(app, tenant, CaseOpenedV1.EVENT_TYPE)
    assert sorted(e.response_id for e in opened) == ["r-detractor", "r-passive", "r-promoter"]
    by_response = {e.response_id: e for e in opened}
    assert by_response["r-detractor"].priority == "high"
    assert by_response["r-detractor"].channel == "phone"
    assert by_response["r-detractor"].resolution_due_at == NOW + 168 * H
    # Three cases, three members: round robin gives each one.
    assert len({c["owner"]["id"] for c in (detractor, passive, promoter)}) == 3


async def test_a_response_delivered_again_opens_no_second_case(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    first = answer("r-twice")
    await feed(app, tenant, first, first)
    await feed(app, tenant, first)

    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    assert [c["response_id"] for c in listed] == ["r-twice"]
    assert len(await emitted(app, tenant, CaseOpenedV1.EVENT_TYPE)) == 1


async def test_a_correction_retypes_the_open_case_and_restarts_its_clocks(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    clock: FixedClock,
) -> None:
    first = answer("r-corrected", score=9, comment="Great service")
    await feed(app, tenant, first)
    clock.advance(2 * H)
    await feed(app, tenant, correction(first, score=2))
    await feed(app, tenant, correction(first, score=2))  # redelivered: nothing more

    case = await case_of(client, headers, "r-corrected")
    assert (case["case_type"], case["playbook"], case["priority"], case["channel"]) == (
        "detractor",
        "apology_callback",
        "high",
        "phone",
    )
    assert (case["score"], case["category"], case["version"]) == (2, "detractor", 2)
    # Deadlines count from the opening, not from the correction.
    assert case["resolution_due_at"] == iso(NOW + 168 * H)
    history = (await client.get(f"/v1/cases/{case['case_id']}/history", headers=headers)).json()
    assert [h["transition"] for h in history["history"]] == ["opened", "retyped"]
    assert history["history"][1]["details"]["previous_playbook"] == "thanks_referral"
    updates = await emitted(app, tenant, CaseUpdatedV1.EVENT_TYPE)
    assert [(u.transition, u.version, u.priority) for u in updates] == [("retyped", 2, "high")]


async def test_an_older_correction_arriving_late_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    first = answer("r-late", score=5)
    await feed(app, tenant, first, correction(first, score=10, version=3))
    await feed(app, tenant, correction(first, score=1, version=2))

    case = await case_of(client, headers, "r-late")
    # The response was first seen at version 3 (a promoter): its case opened as one.
    assert (case["score"], case["case_type"], case["version"]) == (10, "promoter", 1)


async def test_a_correction_of_a_settled_case_updates_its_answer_not_its_type(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    first = answer("r-settled", score=4)
    await feed(app, tenant, first)
    case = await case_of(client, headers, "r-settled")
    for name, body in (
        ("claim", {"owner_id": case["owner"]["id"]}),
        ("contacts", {"channel": "phone", "outcome": "reached", "note": "Apologised."}),
        ("resolve", {"outcome": "solved", "note": "Re-sent the parcel."}),
    ):
        done = await command(client, headers, case["case_id"], name, body)
        assert done.status_code == 200, done.text

    await feed(app, tenant, correction(first, score=9))

    after = await case_of(client, headers, "r-settled")
    assert (after["score"], after["case_type"], after["status"]) == (9, "detractor", "resolved")
    assert after["version"] == 4


async def test_rules_saved_over_the_api_apply_from_the_next_batch(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await feed(app, tenant, answer("r-before", score=9))
    rules = {
        "rules": [
            {"name": "no promoter cases", "match": {"categories": ["promoter"]},
             "then": {"open_case": False}},
            {"name": "north fast", "match": {"segments": {"region": ["north"]}},
             "then": {"first_contact_hours": 6, "priority": "urgent"}},
        ]
    }  # fmt: skip
    await put_setup(client, headers, rules=rules)

    await feed(
        app,
        tenant,
        answer("r-after", score=9),
        answer("r-north", score=8, region="north"),
    )

    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    assert sorted(c["response_id"] for c in listed) == ["r-before", "r-north"]
    north = await case_of(client, headers, "r-north")
    assert (north["rule"], north["priority"], north["case_type"]) == (
        "north fast",
        "urgent",
        "passive",
    )
    assert north["first_contact_due_at"] == iso(NOW + 6 * H)
    assert north["first_contact_due_at"] < iso(NOW + timedelta(days=1))


async def test_a_full_consumer_batch_of_one_tenant_opens_every_case(
    app: FastAPI, tenant: str
) -> None:
    # 5,000 is the consumer's default batch: at 33 columns a case, a multi-row VALUES of them
    # would pass asyncpg's 32,767 parameters, and the batch could never commit.
    answers = [answer(f"r-{n:05d}", score=n % 11) for n in range(5000)]
    await feed(app, tenant, *answers)
    await feed(app, tenant, *answers[:100])  # delivered again: nothing more

    opened = await emitted(app, tenant, CaseOpenedV1.EVENT_TYPE)
    assert sorted(event.response_id for event in opened) == [a.response_id for a in answers]
    async with runtime_of(app).sessions() as session:
        timers = await session.scalar(
            sa.select(sa.func.count()).where(tables.timers.c.tenant_id == tenant)
        )
    # Every case: warning, breach and two escalations of first contact; detractors (0-6) also
    # of resolution.
    detractors = sum(a.score <= 6 for a in answers)
    assert timers == 4 * len(answers) + 4 * detractors
