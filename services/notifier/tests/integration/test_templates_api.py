"""The templates API against the real PostgreSQL: built-in templates until a tenant saves its
own, versions and If-Match (428, 412), templates that do not render refused with their
problems, size limits, delete back to the built-in one, previews of drafts with sample data,
scopes, tenants kept apart, and the template messages are rendered with (cached for a few
seconds, at once in the replica that saved)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from closeloop_common.clock import FixedClock
from closeloop_common.db import transaction
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import create_app
from closeloop_notifier.adapters.tables import metadata, templates
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.builtin_templates import builtin
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import Renderer, TemplateRenderError, TemplateSource
from closeloop_notifier.entrypoints.templates_api import build_templates_router
from closeloop_notifier.service_layer import template_store
from closeloop_notifier.service_layer.template_store import TemplateCache, effective_template

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
PROBLEM = "application/problem+json"
APOLOGY = "/v1/templates/apology/pl"
MINE = {
    "subject": "Przepraszamy, {{ tenant.company_name }}",
    "text": "{{ greeting }}\n\n{% if case.comment %}{{ case.comment | quote }}{% endif +%}\n",
    "html": '<html lang="pl"><p>{{ greeting }}</p><p>{{ case.comment or "" }}</p></html>',
}


class Moment:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cache() -> TemplateCache:
    return TemplateCache(ttl_seconds=5, monotonic=Moment())


@pytest.fixture(scope="module")
async def app(settings: NotifierSettings, cache: TemplateCache) -> AsyncIterator[FastAPI]:
    runtime = ServiceRuntime(
        name="notifier", settings=settings, metadata=metadata, clock=FixedClock(NOW)
    )
    router = build_templates_router(runtime, Renderer(), cache=cache)
    yield create_app(title="templates test", runtime=runtime, routers=[router])
    await runtime.engine.dispose()
    await runtime.worker_engine.dispose()


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def runtime_of(app: FastAPI) -> ServiceRuntime:
    runtime: ServiceRuntime = app.state.runtime
    return runtime


@pytest.fixture
async def tenant(app: FastAPI) -> AsyncIterator[str]:
    tenant = f"it-templates-{uuid.uuid4().hex[:12]}"
    yield tenant
    async with transaction(runtime_of(app).sessions) as session:
        await session.execute(sa.delete(templates).where(templates.c.tenant_id == tenant))


@pytest.fixture
def admin(tenant: str, bearer: Callable[..., dict[str, str]]) -> dict[str, str]:
    return bearer(tenant, "admin", subject="admin-ola")


@pytest.fixture
def reader(tenant: str, bearer: Callable[..., dict[str, str]]) -> dict[str, str]:
    return bearer(tenant, "read")


def refused(response: httpx.Response, kind: str, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:closeloop:problem:{kind}"
    return body


async def test_a_tenant_has_the_built_in_templates_until_it_saves_its_own(
    client: httpx.AsyncClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    before = (await client.get("/v1/templates", headers=reader)).json()["templates"]
    built_in = await client.get(APOLOGY, headers=reader)
    saved = await client.put(APOLOGY, json=MINE, headers=admin)
    after = (await client.get("/v1/templates", headers=reader)).json()["templates"]
    mine = await client.get(APOLOGY, headers=reader)

    assert len(before) == len(Kind) * 2
    assert {(t["source"], t["version"]) for t in before} == {("builtin", 0)}
    assert built_in.headers["ETag"] == '"0"'
    assert built_in.json()["text"] == builtin(Kind.APOLOGY, "pl").text
    assert saved.status_code == 200, saved.text
    assert saved.headers["ETag"] == '"1"'
    assert [(t["kind"], t["locale"]) for t in after if t["source"] == "tenant"] == [
        ("apology", "pl")
    ]
    assert mine.headers["ETag"] == '"1"'
    assert mine.json() | {"updated_at": None} == {
        "kind": "apology",
        "locale": "pl",
        "source": "tenant",
        "version": 1,
        "updated_at": None,
        "updated_by": "admin-ola",
        **MINE,
    }


async def test_a_stored_template_changes_only_with_the_version_last_read(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await client.put(APOLOGY, json=MINE, headers=admin)
    changed = MINE | {"subject": "Nowy temat"}

    without = await client.put(APOLOGY, json=changed, headers=admin)
    stale = await client.put(APOLOGY, json=changed, headers=admin | {"If-Match": '"0"'})
    garbled = await client.put(APOLOGY, json=changed, headers=admin | {"If-Match": "abc"})
    stored = await client.put(APOLOGY, json=changed, headers=admin | {"If-Match": '"1"'})
    again = await client.put(APOLOGY, json=changed, headers=admin | {"If-Match": '"1"'})

    assert refused(without, "precondition-required", 428)
    assert without.headers["ETag"] == '"1"'
    assert refused(stale, "version-conflict", 412)["current_version"] == 1
    assert refused(garbled, "precondition-failed", 412)
    assert stored.status_code == 200
    assert (stored.headers["ETag"], stored.json()["subject"]) == ('"2"', "Nowy temat")
    assert refused(again, "version-conflict", 412)["current_version"] == 2
    assert again.headers["ETag"] == '"2"'


async def test_a_template_that_does_not_render_is_refused_with_its_problems(
    client: httpx.AsyncClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    broken = {
        "subject": "{{ case.score }",
        "text": "{{ greeting }}\n\nProwadzi: {{ case.owner.name }}",  # no owner: fails
        "html": "<p>\n{{ ''.__class__.__mro__ }}</p>",
    }

    response = await client.put(APOLOGY, json=broken, headers=admin)
    still = await client.get(APOLOGY, headers=reader)

    body = refused(response, "template-refused")
    assert [(e["part"], e["line"]) for e in body["errors"]] == [
        ("subject", 1),
        ("text", 3),
        ("html", 2),
    ]
    assert "unsafe" in body["errors"][2]["message"]
    assert still.json()["source"] == "builtin"


@pytest.mark.parametrize(
    ("part", "size"), [("subject", 1_001), ("text", 100_001), ("html", 100_001)]
)
async def test_parts_over_their_limit_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], part: str, size: int
) -> None:
    response = await client.put(APOLOGY, json=MINE | {part: "x" * size}, headers=admin)

    assert refused(response, "validation")["errors"][0]["location"] == ["body", part]


async def test_deleting_brings_the_built_in_template_back(
    client: httpx.AsyncClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    await client.put(APOLOGY, json=MINE, headers=admin)

    without = await client.delete(APOLOGY, headers=admin)
    stale = await client.delete(APOLOGY, headers=admin | {"If-Match": '"7"'})
    deleted = await client.delete(APOLOGY, headers=admin | {"If-Match": '"1"'})
    again = await client.delete(APOLOGY, headers=admin)
    now = await client.get(APOLOGY, headers=reader)

    assert refused(without, "precondition-required", 428)
    assert refused(stale, "version-conflict", 412)
    assert (deleted.status_code, again.status_code) == (204, 204)
    assert (now.json()["source"], now.headers["ETag"]) == ("builtin", '"0"')


async def test_reading_needs_the_read_scope_and_writing_the_admin_scope(
    client: httpx.AsyncClient, reader: dict[str, str]
) -> None:
    anonymous = await client.get(APOLOGY)
    put = await client.put(APOLOGY, json=MINE, headers=reader)
    delete = await client.delete(APOLOGY, headers=reader)
    preview = await client.post(f"{APOLOGY}/preview", headers=reader)

    assert refused(anonymous, "unauthorized", 401)
    assert refused(put, "forbidden", 403)["required_scope"] == "admin"
    assert refused(delete, "forbidden", 403)
    assert preview.status_code == 200


async def test_unknown_kinds_and_languages_are_refused(
    client: httpx.AsyncClient, reader: dict[str, str]
) -> None:
    assert (await client.get("/v1/templates/welcome/pl", headers=reader)).status_code == 422
    assert (await client.get("/v1/templates/apology/de", headers=reader)).status_code == 422


async def test_one_tenants_template_is_not_anothers(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    await client.put(APOLOGY, json=MINE, headers=admin)
    other = bearer(f"it-templates-{uuid.uuid4().hex[:12]}", "read")

    assert (await client.get(APOLOGY, headers=other)).json()["source"] == "builtin"


async def test_a_preview_renders_the_template_in_force_or_a_draft_with_sample_data(
    client: httpx.AsyncClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    preview = f"{APOLOGY}/preview"

    built_in = await client.post(preview, headers=reader)
    sparse = await client.post(preview, params={"sample": "sparse"}, headers=reader)
    draft = await client.post(
        preview,
        json={
            "subject": "{{ customer.name }}: {{ format_date(case.first_contact_due_at) }}",
            "context": {
                "customer": {"first_name": "Anna", "name": "Anna Nowak"},
                "case": {"first_contact_due_at": "2027-01-15T10:00:00+00:00"},
            },
        },
        headers=reader,
    )
    hostile = await client.post(
        preview,
        json={"context": {"case": {"comment": "<script>alert(1)</script>"}}},
        headers=reader,
    )
    broken = await client.post(preview, json={"text": "{% if %}"}, headers=reader)
    naive = await client.post(
        preview, json={"context": {"now": "2027-01-15T10:00:00"}}, headers=reader
    )
    await client.put(APOLOGY, json=MINE, headers=admin)
    mine = await client.post(preview, headers=reader)

    assert built_in.json()["source"] == "builtin"
    assert built_in.json()["subject"] == "Przepraszamy i chcemy to naprawić"
    assert "Napisali Państwo:\n> Zamówione nasiona" in built_in.json()["text"]
    assert "Napisali Państwo" not in sparse.json()["text"]
    assert draft.json()["source"] == "draft"
    assert draft.json()["subject"] == "Anna Nowak: 15 stycznia 2027"
    assert "najpóźniej 15 stycznia 2027 o godz. 11:00" in draft.json()["text"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile.json()["html"]
    assert refused(broken, "template-refused")["errors"][0]["part"] == "text"
    assert refused(naive, "validation")
    assert (mine.json()["source"], mine.json()["subject"]) == (
        "tenant",
        "Przepraszamy, Zielony Ogród",
    )


async def test_messages_use_the_saved_template_within_the_cache_time_in_every_replica(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    tenant: str,
    cache: TemplateCache,
) -> None:
    moment = Moment()
    other_replica = TemplateCache(ttl_seconds=5, monotonic=moment)
    sessions = runtime_of(app).sessions

    async def in_force(through: TemplateCache, locale: str = "pl") -> TemplateSource:
        async with sessions() as session:
            return await effective_template(session, tenant, Kind.APOLOGY, locale, cache=through)

    assert await in_force(cache) == builtin(Kind.APOLOGY, "pl")
    assert await in_force(other_replica) == builtin(Kind.APOLOGY, "pl")
    await client.put(APOLOGY, json=MINE, headers=admin)

    here = await in_force(cache)
    there_before = await in_force(other_replica)
    moment.now += 5
    there_after = await in_force(other_replica)

    assert here.subject == MINE["subject"]
    assert there_before == builtin(Kind.APOLOGY, "pl")
    assert there_after.subject == MINE["subject"]
    assert await in_force(other_replica, "de") == builtin(Kind.APOLOGY, "en")


async def test_a_template_is_validated_against_the_samples_of_its_own_kind(
    app: FastAPI, tenant: str
) -> None:
    digest_only = TemplateSource(subject="{{ digest.count }}", text="t", html="h")

    async def save(kind: Kind) -> template_store.StoredTemplate:
        async with transaction(runtime_of(app).sessions) as session:
            return await template_store.save(
                session, Renderer(), tenant_id=tenant, kind=kind, locale="en",
                source=digest_only, expected_version=None, actor="test", now=NOW,
            )  # fmt: skip

    stored = await save(Kind.OVERDUE_DIGEST)
    with pytest.raises(TemplateRenderError, match="'digest' is undefined"):
        await save(Kind.APOLOGY)

    assert (stored.origin, stored.version) == ("tenant", 1)


def test_the_limits_are_in_the_openapi_document(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    parts = schemas["TemplateBody"]["properties"]

    limits = {name: part["maxLength"] for name, part in parts.items()}
    assert limits == {"subject": 1_000, "text": 100_000, "html": 100_000}
