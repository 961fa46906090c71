"""Survey tools' webhooks through ingest's HTTP app, against the real PostgreSQL and Kafka: the
sources API, each tool's documented payload signed its own way, every refusal, repeats, updates
that end as one response, secret rotation, replay refusal, suspicion and the canonical batch."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.runtime import ServiceRuntime
from closeloop_ingest.adapters.tables import metadata
from closeloop_ingest.entrypoints.app import create_ingest_app
from services.ingest.tests.integration.test_responses_api import _wait_until_relayed, a_response
from services.ingest.tests.unit.sources.signing import (
    FIXTURES,
    OLD_SECRET,
    OLD_WHSEC,
    POLISH_COMMENT,
    SECRET,
    WHSEC,
    fixture,
    hmac_base64,
    hmac_hex,
    standard_webhooks_headers,
)
from services.ingest.tests.unit.sources.test_custom import ZENLOOP

OUTBOX = metadata.tables["ingest.outbox"]
DELIVERIES = metadata.tables["ingest.deliveries"]
PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
async def app(infra: dict[str, str]) -> AsyncIterator[FastAPI]:
    app = create_ingest_app()
    async with app.router.lifespan_context(app):
        yield app
        runtime = app.state.runtime
        assert isinstance(runtime, ServiceRuntime)
        await _wait_until_relayed(runtime.sessions, runtime.settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    runtime = app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime.sessions


@pytest.fixture
def tenant() -> str:
    return f"it-hook-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(bearer: Callable[..., dict[str, str]], tenant: str) -> dict[str, str]:
    return bearer(tenant, "admin")


async def put_source(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, spec: dict[str, Any]
) -> str:
    answer = await client.put(f"/v1/sources/{name}", json=spec, headers=admin)
    assert answer.status_code in (200, 201), answer.text
    url: str = answer.json()["webhook_url"]
    return url.removeprefix("http://test")


async def events(
    sessions: async_sessionmaker[AsyncSession], tenant: str, kind: str | None = None
) -> list[dict[str, Any]]:
    """The tenant's outbox events (type and data), in order."""
    query = sa.select(OUTBOX.c.event_type, OUTBOX.c.payload).where(OUTBOX.c.tenant_id == tenant)
    if kind is not None:
        query = query.where(OUTBOX.c.event_type == f"dev.closeloop.{kind}.v1")
    async with sessions() as session:
        rows = (await session.execute(query.order_by(OUTBOX.c.seq))).all()
    return [{"type": r.event_type, **json.loads(r.payload)["data"]} for r in rows]


def typeform(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {**JSON, "Typeform-Signature": f"sha256={hmac_base64(secret, body)}"}


def counted(source: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "closeloop_ingest_deliveries_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


# --- the sources API --------------------------------------------------------------------------


async def test_a_source_is_created_read_replaced_and_deleted_without_showing_its_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], tenant: str
) -> None:
    spec = {"kind": "typeform", "secrets": ["top-secret-value"], "default_locale": "pl-PL"}

    created = await client.put("/v1/sources/typeform-nps", json=spec, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == f"http://test/v1/webhooks/{tenant}.typeform-nps"
    replaced = await client.put(
        "/v1/sources/typeform-nps", json={**spec, "secrets": ["a", "b"]}, headers=admin
    )
    assert replaced.status_code == 200
    read = await client.get("/v1/sources/typeform-nps", headers=admin)
    listed = await client.get("/v1/sources", headers=admin)

    for answer in (created, replaced, read, listed):
        assert "top-secret-value" not in answer.text
        assert '"secrets"' not in answer.text
    assert read.json()["secret_count"] == 2
    assert [s["name"] for s in listed.json()["sources"]] == ["typeform-nps"]

    assert (await client.delete("/v1/sources/typeform-nps", headers=admin)).status_code == 204
    assert (await client.get("/v1/sources/typeform-nps", headers=admin)).status_code == 404
    body = fixture("typeform", "promoter")
    gone = await client.post(
        f"/v1/webhooks/{tenant}.typeform-nps", content=body, headers=typeform(body)
    )
    assert gone.status_code == 404
    assert gone.json()["type"] == "urn:closeloop:problem:unknown-source"


async def test_sources_need_the_admin_scope_and_a_valid_definition(
    client: httpx.AsyncClient,
    bearer: Callable[..., dict[str, str]],
    admin: dict[str, str],
    tenant: str,
) -> None:
    writer = bearer(tenant, "responses:write", "read")
    spec = {"kind": "typeform", "secrets": ["s"]}
    assert (await client.put("/v1/sources/x", json=spec, headers=writer)).status_code == 403
    assert (await client.put("/v1/sources/x", json=spec)).status_code == 401
    no_api = await client.put(
        "/v1/sources/sm", json={"kind": "surveymonkey", "secrets": ["k&s"]}, headers=admin
    )
    assert no_api.status_code == 422
    bad_name = await client.put("/v1/sources/Bad.Name", json=spec, headers=admin)
    assert bad_name.status_code == 422


async def test_another_tenant_s_token_cannot_see_or_change_a_source(
    client: httpx.AsyncClient,
    bearer: Callable[..., dict[str, str]],
    admin: dict[str, str],
) -> None:
    await put_source(client, admin, "tf", {"kind": "typeform", "secrets": ["s"]})
    other = bearer(f"it-other-{uuid.uuid4().hex[:8]}", "admin")
    assert (await client.get("/v1/sources/tf", headers=other)).status_code == 404
    assert (await client.delete("/v1/sources/tf", headers=other)).status_code == 404
    assert (await client.get("/v1/sources/tf", headers=admin)).status_code == 200


# --- each tool, documented payloads -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "score", "category"),
    [("promoter", 10, "promoter"), ("passive", 8, "passive"), ("detractor", 3, "detractor")],
)
async def test_typeform_responses_are_accepted_and_published(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
    name: str,
    score: int,
    category: str,
) -> None:
    url = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    body = fixture("typeform", name)
    token = json.loads(body)["form_response"]["token"]

    answer = await client.post(url, content=body, headers=typeform(body))

    assert answer.status_code == 202, answer.text
    assert answer.json()["response_id"] == f"typeform:{token}"
    assert answer.json()["category"] == category
    (event,) = await events(sessions, tenant, "response.received")
    assert event["score"] == score
    assert event["source"] == "tf"
    async with sessions() as session:
        stored = (
            await session.execute(
                sa.select(DELIVERIES.c.body, DELIVERIES.c.outcome, DELIVERIES.c.response_ids).where(
                    DELIVERIES.c.tenant_id == tenant
                )
            )
        ).one()
    assert stored.body == body  # the raw bytes, as they arrived
    assert stored.outcome == "accepted"
    assert stored.response_ids == [f"typeform:{token}"]


async def test_a_polish_comment_survives_byte_exact_from_each_tool(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[str, str, str, Callable[[bytes], dict[str, str]]]] = [
        ("typeform", SECRET, "detractor", lambda b: typeform(b)),
        (
            "tally",
            SECRET,
            "detractor",
            lambda b: {**JSON, "Tally-Signature": hmac_base64(SECRET, b)},
        ),
        (
            "delighted",
            SECRET,
            "detractor_updated",
            lambda b: {**JSON, "X-Delighted-Webhook-Signature": f"sha256={hmac_hex(SECRET, b)}"},
        ),
        (
            "formbricks",
            WHSEC,
            "detractor_finished",
            lambda b: {**JSON, **standard_webhooks_headers(WHSEC, b, sent_at=now)},
        ),
    ]
    for kind, secret, name, sign in cases:
        spec: dict[str, Any] = {"kind": kind, "secrets": [secret]}
        if kind == "formbricks":
            # Formbricks' payload does not say which question is which type: the source says.
            spec["fields"] = {"nps_question": "npsq", "comment_question": "commentq"}
        url = await put_source(client, admin, kind, spec)
        body = fixture(kind, name)
        answer = await client.post(url, content=body, headers=sign(body))
        assert answer.status_code == 202, (kind, answer.text)

    comments = {
        e["source"]: e["comment"] for e in await events(sessions, tenant, "response.received")
    }
    assert comments == {kind: POLISH_COMMENT for kind, *_ in cases}


async def test_a_standard_webhooks_batch_from_an_in_house_form(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    url = await put_source(client, admin, "forms", {"kind": "standard", "secrets": [WHSEC]})
    body = fixture("standard", "batch")
    headers = {**JSON, **standard_webhooks_headers(WHSEC, body, sent_at=datetime.now(UTC))}

    answer = await client.post(url, content=body, headers=headers)

    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert len(results) == len(json.loads(body)["responses"]) > 1
    assert {r["status"] for r in results} == {"accepted"}
    assert len(await events(sessions, tenant, "response.received")) == len(results)


# --- refusals -----------------------------------------------------------------------------------


async def test_bad_missing_and_replayed_signatures_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    tf = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    std = await put_source(client, admin, "forms", {"kind": "standard", "secrets": [WHSEC]})
    body = fixture("typeform", "promoter")
    std_body = fixture("standard", "promoter")
    old = datetime.now(UTC) - timedelta(minutes=6)
    ahead = datetime.now(UTC) + timedelta(minutes=6)
    before = counted("typeform", "signature_invalid")

    wrong = await client.post(tf, content=body, headers=typeform(body, "not-the-secret"))
    missing = await client.post(tf, content=body, headers=JSON)
    tampered = await client.post(
        tf, content=body.replace(b'"number": 10', b'"number": 0'), headers=typeform(body)
    )
    replayed = await client.post(
        std,
        content=std_body,
        headers={**JSON, **standard_webhooks_headers(WHSEC, std_body, sent_at=old)},
    )
    early = await client.post(
        std,
        content=std_body,
        headers={**JSON, **standard_webhooks_headers(WHSEC, std_body, sent_at=ahead)},
    )

    reasons = [
        (a.status_code, a.json()["reason"]) for a in (wrong, missing, tampered, replayed, early)
    ]
    assert reasons == [
        (401, "signature_invalid"),
        (401, "signature_missing"),
        (401, "signature_invalid"),
        (401, "timestamp_out_of_tolerance"),
        (401, "timestamp_out_of_tolerance"),
    ]
    assert all(a.headers["content-type"] == PROBLEM for a in (wrong, missing, replayed))
    assert counted("typeform", "signature_invalid") == before + 2
    assert await events(sessions, tenant) == []
    async with sessions() as session:
        stored = await session.scalar(
            sa.select(sa.func.count())
            .select_from(DELIVERIES)
            .where(DELIVERIES.c.tenant_id == tenant)
        )
    assert stored == 0


async def test_every_secret_of_a_rotation_verifies_and_a_removed_one_no_longer_does(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    url = await put_source(
        client, admin, "tf", {"kind": "typeform", "secrets": [SECRET, OLD_SECRET]}
    )
    promoter, passive = fixture("typeform", "promoter"), fixture("typeform", "passive")
    assert (
        await client.post(url, content=promoter, headers=typeform(promoter, OLD_SECRET))
    ).status_code == 202
    assert (
        await client.post(url, content=passive, headers=typeform(passive, SECRET))
    ).status_code == 202

    await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    detractor = fixture("typeform", "detractor")
    retired = await client.post(url, content=detractor, headers=typeform(detractor, OLD_SECRET))
    assert retired.status_code == 401

    std = await put_source(client, admin, "forms", {"kind": "standard", "secrets": [WHSEC]})
    body = fixture("standard", "promoter")
    now = datetime.now(UTC)
    both = standard_webhooks_headers(WHSEC, body, sent_at=now)
    stale = standard_webhooks_headers(OLD_WHSEC, body, sent_at=now)["webhook-signature"]
    both["webhook-signature"] = f"{stale} {both['webhook-signature']}"  # sender mid-rotation
    assert (await client.post(std, content=body, headers={**JSON, **both})).status_code == 202


async def test_unknown_source_wrong_content_type_too_large_and_invalid_payloads(
    client: httpx.AsyncClient, admin: dict[str, str], tenant: str
) -> None:
    url = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    body = fixture("typeform", "promoter")

    unknown = await client.post(f"/v1/webhooks/{tenant}.nope", content=body, headers=typeform(body))
    text = await client.post(
        url, content=body, headers={**typeform(body), "content-type": "text/plain"}
    )
    huge_body = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    huge = await client.post(url, content=huge_body, headers=typeform(huge_body))
    half = body.replace(b'"number": 10', b'"number": "9.5"')
    half_score = await client.post(url, content=half, headers=typeform(half))
    as_text = body.replace(b'"number": 10', b'"number": "9"')
    text_score = await client.post(url, content=as_text, headers=typeform(as_text))
    not_json = b"{not json"
    broken = await client.post(url, content=not_json, headers=typeform(not_json))

    assert unknown.status_code == 404
    assert text.status_code == 415
    assert huge.status_code == 413
    assert half_score.status_code == 422
    assert "number" in half_score.json()["field"]
    assert text_score.status_code == 202, text_score.text  # "9" is a whole number
    assert broken.status_code == 422
    assert broken.json()["field"] == "body"
    for answer in (unknown, text, huge, half_score, broken):
        assert answer.headers["content-type"] == PROBLEM


# --- repeats, updates, suspicion --------------------------------------------------------------


async def test_a_repeated_delivery_answers_200_with_the_same_id_and_publishes_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    url = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    body = fixture("typeform", "detractor")

    first = await client.post(url, content=body, headers=typeform(body))
    again = await client.post(url, content=body, headers=typeform(body))

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert again.json()["response_id"] == first.json()["response_id"]
    assert again.json()["event_id"] == first.json()["event_id"]
    assert len(await events(sessions, tenant)) == 1


async def test_delighted_updates_end_as_one_response_in_its_latest_version(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
) -> None:
    url = await put_source(client, admin, "dl", {"kind": "delighted", "secrets": [SECRET]})

    def post(body: bytes) -> Any:
        return client.post(
            url,
            content=body,
            headers={**JSON, "X-Delighted-Webhook-Signature": f"sha256={hmac_hex(SECRET, body)}"},
        )

    created, updated = (
        fixture("delighted", "detractor_created"),
        fixture("delighted", "detractor_updated"),
    )
    first = await post(created)
    second = await post(updated)
    repeat = await post(updated)
    late = await post(created)  # the older version arriving after the newer one

    assert [a.status_code for a in (first, second, repeat, late)] == [202, 202, 200, 200]
    assert [a.json()["status"] for a in (first, second, repeat, late)] == [
        "accepted",
        "corrected",
        "duplicate",
        "stale",
    ]
    assert second.json()["version"] == 2
    published = await events(sessions, tenant)
    assert [e["type"] for e in published] == [
        "dev.closeloop.response.received.v1",
        "dev.closeloop.response.corrected.v1",
    ]
    correction = published[1]
    assert correction["version"] == 2
    assert correction["previous"]["version"] == 1
    assert correction["previous"]["score"] == published[0]["score"]
    read = await client.get(
        f"/v1/responses/{first.json()['response_id']}", headers=bearer(tenant, "read")
    )
    assert read.json()["version"] == 2
    assert read.json()["response"]["score"] == correction["score"]


async def test_a_scanner_click_right_after_the_invitation_is_held_back_until_confirmed(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
    admin: dict[str, str],
    tenant: str,
) -> None:
    writer = bearer(tenant, "responses:write", "read")
    invited_at = datetime.now(UTC) - timedelta(seconds=30)
    customer = {"id": "cust-scan", "email": "it@firma.example.pl"}
    invitation = {
        "invitation_id": "inv-1",
        "survey_id": "relationship-2026",
        "customer": customer,
        "channel": "email",
        "invited_at": invited_at.isoformat(),
    }
    assert (
        await client.post("/v1/invitations", json=invitation, headers=writer)
    ).status_code == 202
    clicked = a_response(
        customer=customer,
        comment=None,
        score=10,
        answered_at=(invited_at + timedelta(seconds=3)).isoformat(),
    )
    human = a_response(
        customer=customer,
        comment="Świetna obsługa",
        score=10,
        answered_at=(invited_at + timedelta(seconds=3)).isoformat(),
    )

    scanner = a_response(
        comment=None,
        user_agent="Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    )

    held = await client.post("/v1/responses", json=clicked, headers=writer)
    kept = await client.post("/v1/responses", json=human, headers=writer)
    scanned = await client.post("/v1/responses", json=scanner, headers=writer)
    assert scanned.json()["status"] == "suspected"

    assert held.status_code == 202
    assert held.json()["status"] == "suspected"
    assert kept.json()["status"] == "accepted"
    types = [(e["type"], e.get("response_id")) for e in await events(sessions, tenant)]
    assert ("dev.closeloop.response.suspected.v1", clicked["response_id"]) in types
    assert ("dev.closeloop.response.received.v1", clicked["response_id"]) not in types

    confirmed = await client.post(f"/v1/responses/{clicked['response_id']}/confirm", headers=admin)
    assert confirmed.status_code == 200, confirmed.text
    again = await client.post(f"/v1/responses/{clicked['response_id']}/confirm", headers=admin)
    assert again.status_code == 409
    received = await events(sessions, tenant, "response.received")
    assert [e["response_id"] for e in received].count(clicked["response_id"]) == 1
    read = await client.get(f"/v1/responses/{clicked['response_id']}", headers=writer)
    assert read.json()["status"] == "accepted"
    assert read.json()["suspicion"] == ["answered_right_after_invitation"]


# --- canonical batches and invitations ----------------------------------------------------------


async def test_a_canonical_batch_accepts_the_valid_entries_and_names_each_invalid_one(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
) -> None:
    writer = bearer(tenant, "responses:write")
    known = a_response()
    assert (await client.post("/v1/responses", json=known, headers=writer)).status_code == 202
    batch = {"responses": [a_response(), known, a_response(score=11), a_response()]}

    answer = await client.post("/v1/responses", json=batch, headers=writer)

    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "duplicate", "invalid", "accepted"]
    assert results[2]["errors"][0]["location"] == ["body", "responses", 2, "score"]
    assert len(await events(sessions, tenant, "response.received")) == 3

    too_many = {"responses": [a_response() for _ in range(1001)]}
    assert (await client.post("/v1/responses", json=too_many, headers=writer)).status_code == 422
    all_new = {"responses": [a_response() for _ in range(1000)]}
    big = await client.post("/v1/responses", json=all_new, headers=writer)
    assert big.status_code == 202, big.text
    assert len(await events(sessions, tenant, "response.received")) == 1003


async def test_invitations_are_recorded_once_and_published(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    bearer: Callable[..., dict[str, str]],
    tenant: str,
) -> None:
    writer = bearer(tenant, "responses:write")
    invitation = {
        "invitation_id": "inv-7",
        "survey_id": "relationship-2026",
        "customer": {"id": "c-7", "email": "Anna.Nowak@Example.PL", "locale": "pl-PL"},
        "account_id": "acc-7",
        "channel": "email",
        "invited_at": datetime.now(UTC).isoformat(),
        "segments": {"region": "PL"},
    }
    first = await client.post("/v1/invitations", json=invitation, headers=writer)
    again = await client.post("/v1/invitations", json=invitation, headers=writer)
    changed = await client.post(
        "/v1/invitations", json={**invitation, "channel": "sms"}, headers=writer
    )
    batch = await client.post(
        "/v1/invitations",
        json={"invitations": [{**invitation, "invitation_id": f"inv-b{i}"} for i in range(3)]},
        headers=writer,
    )

    assert [a.status_code for a in (first, again, changed, batch)] == [202, 200, 409, 202]
    (published, *rest) = await events(sessions, tenant, "invitation.sent")
    assert published["invitation_id"] == "inv-7"
    assert published["customer"]["email"] == "Anna.Nowak@example.pl"  # domain lower-cased
    assert len(rest) == 3


async def test_a_tool_onboarded_by_configuration_alone(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    """zenloop: no code for it anywhere; JSON paths and a token header in the source."""
    spec = {key: value for key, value in ZENLOOP.items() if key not in ("tenant_id", "name")}
    url = await put_source(client, admin, "zenloop", spec)
    body = (FIXTURES / "custom" / "zenloop_alert.json").read_bytes()
    token = ZENLOOP["secrets"][0]

    refused = await client.post(
        url, content=body, headers={**JSON, "Authorization": "Bearer not-the-token"}
    )
    accepted = await client.post(
        url, content=body, headers={**JSON, "Authorization": f"Bearer {token}"}
    )

    assert refused.status_code == 401
    assert accepted.status_code == 202, accepted.text
    (event,) = await events(sessions, tenant, "response.received")
    assert event["response_id"].startswith("zenloop:")
    assert event["comment"] == POLISH_COMMENT
    async with sessions() as session:
        headers = await session.scalar(
            sa.select(DELIVERIES.c.headers).where(DELIVERIES.c.tenant_id == tenant)
        )
    assert headers is not None
    assert "authorization" not in headers  # the tool's credential is not kept


async def test_a_nul_character_in_a_webhook_is_a_validation_problem_and_nothing_is_stored(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    url = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    body = fixture("typeform", "detractor").replace(b"Obs\\u0142uga", b"Obs\\u0000uga", 1)
    body = body if b"\\u0000" in body else body.replace(b'"token": "', b'"token": "\\u0000', 1)

    answer = await client.post(url, content=body, headers=typeform(body))

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["kind"] == "nul_character"
    assert answer.json()["errors"][0]["location"][0] == "body"
    assert await events(sessions, tenant) == []


async def test_the_same_deliveries_racing_each_other_are_accepted_once_each(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    tenant: str,
) -> None:
    """A tool retrying while its first tries are still in flight: the copies land in different
    batches committing at the same time, and in different orders, without a deadlock."""
    url = await put_source(client, admin, "tf", {"kind": "typeform", "secrets": [SECRET]})
    template = json.loads(fixture("typeform", "detractor"))
    bodies = []
    for n in range(20):
        template["form_response"]["token"] = f"race-{n:02d}"
        bodies.append(json.dumps(template, ensure_ascii=False).encode())
    copies = [body for body in bodies for _ in range(8)]
    random.Random(7).shuffle(copies)

    answers = await asyncio.gather(
        *(client.post(url, content=body, headers=typeform(body)) for body in copies)
    )

    statuses = [a.json().get("status") for a in answers]
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers][:3]
    assert statuses.count("accepted") == 20
    assert statuses.count("duplicate") == len(copies) - 20
    published = await events(sessions, tenant, "response.received")
    assert sorted(e["response_id"] for e in published) == [
        f"typeform:race-{n:02d}" for n in range(20)
    ]
