"""Erasure and export of a respondent in the orchestrator (real PostgreSQL): the erased
customer's cases keep their count, status and score but lose name, address, comment and notes;
another customer's case is untouched; the export shows what is held before and after."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.events import (
    Customer,
    ErasureCompletedV1,
    ErasureRequestedV1,
    ResponseReceivedV1,
    categorize,
    new_event,
)
from closeloop_common.privacy import ERASED, pseudonym_of
from closeloop_orchestrator.adapters.tables import case_history, cases, responses
from closeloop_orchestrator.service_layer.privacy import on_erasure_requested

from .support import NOW, command, emitted, feed, put_setup, runtime_of, team

ORGANISATION: dict[str, Any] = {"teams": [team("support", [("anna", ["pl"])], lead="anna")]}
RULES = {"defaults": {"assignment": ["round_robin"], "team_id": "support"}}
ANNA = "anna.kowalska@klient.example.pl"
JAN = "jan.nowak@klient.example.pl"


def response(response_id: str, customer_id: str, email: str, name: str) -> ResponseReceivedV1:
    at = NOW - timedelta(minutes=5)
    return ResponseReceivedV1(
        response_id=response_id,
        survey_id="relationship-2026",
        customer=Customer(id=customer_id, email=email, name=name, locale="pl-PL"),
        score=2,
        category=categorize(2),
        comment=f"{name} says the courier was rude.",
        answered_at=at,
        received_at=at + timedelta(seconds=1),
        source="api",
    )


async def erase(app: FastAPI, tenant: str, data: ErasureRequestedV1) -> None:
    runtime = runtime_of(app)
    async with runtime.transaction() as tx:
        event = new_event(data, tenant_id=tenant, source="/closeloop/ingest", clock=runtime.clock)
        await on_erasure_requested(tx.context(tenant), event)


def erasure_of_anna() -> ErasureRequestedV1:
    erasure_id = uuid.uuid4()
    return ErasureRequestedV1(
        erasure_id=erasure_id,
        customer_ids=("c-anna",),
        emails=(ANNA,),
        response_ids=("r-anna",),
        invitation_ids=(),
        pseudonym=pseudonym_of(erasure_id),
        requested_at=NOW,
    )


async def test_erasure_anonymises_the_customers_cases_and_keeps_their_count(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    await put_setup(client, headers, organisation=ORGANISATION, rules=RULES)
    await feed(
        app,
        tenant,
        response("r-anna", "c-anna", ANNA, "Anna Kowalska"),
        response("r-jan", "c-jan", JAN, "Jan Nowak"),
    )
    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    anna_case = next(c for c in listed if c["response_id"] == "r-anna")
    claimed = await command(
        client, headers, anna_case["case_id"], "claim", {"owner_id": anna_case["owner"]["id"]}
    )
    assert claimed.status_code == 200, claimed.text
    reached = await command(
        client,
        headers,
        anna_case["case_id"],
        "contacts",
        {"channel": "phone", "outcome": "reached", "note": "Anna Kowalska wants a refund."},
    )
    assert reached.status_code == 200, reached.text
    exported = await client.post("/v1/privacy/export", json={"email": ANNA}, headers=headers)
    assert exported.status_code == 200, exported.text
    [before] = exported.json()["cases"]
    assert before["comment"] == "Anna Kowalska says the courier was rude."
    assert before["customer"]["email"] == ANNA

    data = erasure_of_anna()
    await erase(app, tenant, data)

    after = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    assert len(after) == 2  # the count is kept
    async with runtime_of(app).sessions() as session:
        rows = {
            r.response_id: r
            for r in await session.execute(sa.select(cases).where(cases.c.tenant_id == tenant))
        }
        notes = (
            await session.scalars(
                sa.select(case_history.c.note).where(
                    case_history.c.tenant_id == tenant,
                    case_history.c.case_id == rows["r-anna"].case_id,
                    case_history.c.note.is_not(None),
                )
            )
        ).all()
        copies = {
            r.response_id: r.body
            for r in await session.execute(
                sa.select(responses).where(responses.c.tenant_id == tenant)
            )
        }
    anna, jan = rows["r-anna"], rows["r-jan"]
    assert (anna.customer_id, anna.customer, anna.comment) == (
        data.pseudonym,
        {"id": data.pseudonym},
        ERASED,
    )
    assert (anna.score, anna.category, anna.status) == (2, "detractor", "contacted")
    assert notes == [ERASED]
    assert copies["r-anna"]["customer"] == {"id": data.pseudonym}
    assert copies["r-anna"]["comment"] == ERASED
    assert jan.customer == {"id": "c-jan", "email": JAN, "name": "Jan Nowak", "locale": "pl-PL"}
    assert jan.comment == "Jan Nowak says the courier was rude."
    assert copies["r-jan"]["customer"]["email"] == JAN
    [completed] = await emitted(app, tenant, ErasureCompletedV1.EVENT_TYPE)
    assert completed.service == "orchestrator"
    assert completed.rows == {
        "cases": 1,
        "case_history": 1,
        "responses": 1,
        "invitations": 0,
        "structural_issue_cases": 0,
        "outbox": 0,
    }
    gone = await client.post("/v1/privacy/export", json={"email": ANNA}, headers=headers)
    assert gone.json()["cases"] == []
    by_pseudonym = await client.post(
        "/v1/privacy/export", json={"customer_id": data.pseudonym}, headers=headers
    )
    [anonymous] = by_pseudonym.json()["cases"]
    assert anonymous["comment"] == ERASED
    assert ANNA not in by_pseudonym.text
    assert "Kowalska" not in by_pseudonym.text


async def test_export_and_erasure_are_refused_without_the_admin_scope(
    client: httpx.AsyncClient, tenant: str, bearer: Any
) -> None:
    answer = await client.post(
        "/v1/privacy/export", json={"email": ANNA}, headers=bearer(tenant, "read", "cases:write")
    )
    assert answer.status_code == 403
    both = await client.post(
        "/v1/privacy/export",
        json={"email": ANNA, "customer_id": "c-anna"},
        headers=bearer(tenant, "admin"),
    )
    assert both.status_code == 422
