"""The unsubscribe link against the real PostgreSQL: the page, the one-click POST (RFC 8058),
idempotence, refused tokens, and routes that stay public while the others stay protected.

The app is driven in-process through httpx's ASGI transport without its lifespan, so no broker
is involved; the notifier's schema is migrated first.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter

import closeloop_notifier
from closeloop_common.clock import FixedClock
from closeloop_common.db import upgrade
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import ReadTenant, create_app
from closeloop_notifier.adapters.tables import SCHEMA, metadata, opt_outs
from closeloop_notifier.config import NotifierSettings
from closeloop_notifier.domain.unsubscribe import make_token
from closeloop_notifier.entrypoints.unsubscribe_api import build_unsubscribe_router
from closeloop_notifier.service_layer.policy import is_opted_out, opt_out_key

SECRET = "unsubscribe secret of this test run"
ANNA = "anna.nowak@klient.example.pl"
NOW = datetime(2026, 6, 10, 8, 30, tzinfo=UTC)
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def migrated() -> None:
    """The notifier's schema in the test database (DATABASE_URL, set by the root conftest)."""
    migrations = Path(closeloop_notifier.__file__).resolve().parent / "migrations"
    upgrade(migrations, os.environ["DATABASE_URL"], SCHEMA)


@pytest.fixture(scope="module")
async def runtime(migrated: None) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime(
        name="notifier", settings=NotifierSettings(), metadata=metadata, clock=FixedClock(NOW)
    )
    yield runtime
    await runtime.engine.dispose()
    await runtime.worker_engine.dispose()


@pytest.fixture
async def api(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    """The unsubscribe routes next to a protected route, in one app built as the service's."""
    protected = APIRouter(prefix="/v1")

    @protected.get("/protected")
    async def read_something(tenant: ReadTenant) -> dict[str, str]:
        return {"tenant": tenant}

    app = create_app(
        title="notifier under test",
        runtime=runtime,
        routers=[build_unsubscribe_router(runtime, SECRET), protected],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as client:
        yield client


@pytest.fixture
def tenant() -> str:
    return f"it-unsub-{uuid.uuid4().hex[:12]}"


async def opt_outs_of(runtime: ServiceRuntime, tenant: str) -> list[tuple[str, datetime]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            sa.select(opt_outs.c.email, opt_outs.c.created_at).where(opt_outs.c.tenant_id == tenant)
        )
        return [(row.email, row.created_at) for row in rows]


def link(tenant: str, email_key: str = ANNA) -> str:
    return f"/v1/unsubscribe/{make_token(SECRET, tenant, email_key)}"


async def test_page_asks_to_confirm_without_unsubscribing_and_without_showing_the_address(
    api: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str
) -> None:
    page = await api.get(link(tenant))

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "a…@klient.example.pl" in page.text
    assert ANNA not in page.text
    assert "Wypisz mnie" in page.text
    assert "Unsubscribe me" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert await opt_outs_of(runtime, tenant) == []  # a GET changes nothing


async def test_one_click_post_records_the_opt_out(
    api: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str
) -> None:
    done = await api.post(link(tenant), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert done.status_code == 200
    assert "Nie będziemy już wysyłać" in done.text
    assert await opt_outs_of(runtime, tenant) == [(opt_out_key(ANNA), NOW)]
    async with runtime.sessions() as session:
        assert await is_opted_out(session, tenant, "Anna.Nowak@KLIENT.example.pl")
        assert not await is_opted_out(session, f"{tenant}-other", ANNA)


async def test_unsubscribing_twice_or_from_the_page_button_is_idempotent(
    api: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str
) -> None:
    first = await api.post(link(tenant), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    again = await api.post(link(tenant))  # the page's form, or a client that sends no body
    also = await api.post(link(tenant), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert [first.status_code, again.status_code, also.status_code] == [200, 200, 200]
    assert again.text == first.text
    assert await opt_outs_of(runtime, tenant) == [(opt_out_key(ANNA), NOW)]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_tampered_truncated_or_foreign_token_is_refused_with_an_html_404(
    api: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str, method: str
) -> None:
    token = make_token(SECRET, tenant, ANNA)
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    foreign = make_token("another deployment's secret", tenant, ANNA)

    for bad in (flipped, token[:-6], foreign, "garbage", "x" * 5000):
        answer = await api.request(
            method, f"/v1/unsubscribe/{bad}", content=b"List-Unsubscribe=One-Click"
        )
        assert answer.status_code == 404, bad
        assert answer.headers["content-type"].startswith("text/html")
        assert "Nieprawidłowy link" in answer.text
        assert "Invalid link" in answer.text

    assert await opt_outs_of(runtime, tenant) == []


async def test_unsubscribe_routes_are_public_while_the_others_stay_protected(
    api: httpx.AsyncClient, tenant: str
) -> None:
    assert (await api.get(link(tenant))).status_code == 200
    assert (await api.get("/v1/protected")).status_code == 401
    schema = (await api.get("/openapi.json")).json()
    assert "security" not in schema["paths"]["/v1/unsubscribe/{token}"]["post"]


async def test_whatever_a_token_carries_is_escaped_on_the_page(
    api: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str
) -> None:
    hostile = '<img src=x onerror=alert(1)>@"><script>alert(2)</script>'
    page = await api.get(link(tenant, hostile))

    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "<img" not in page.text
    assert "&lt;…@&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page.text

    # Not an address: nothing can be recorded for it.
    refused = await api.post(link(tenant, hostile))
    assert refused.status_code == 404
    assert await opt_outs_of(runtime, tenant) == []
