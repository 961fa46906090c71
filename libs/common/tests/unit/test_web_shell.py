"""The HTTP shell every service shares: bearer authentication per scope (401/403 problems), the
tenant taken from the token only, the request body limit (413) and `/metrics` on its own port.

The app here is `create_app` with a runtime whose start and stop do nothing (no broker, no
database): what is tested is the shell, not a service.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from closeloop_common.messaging_tables import inbox_table, outbox_table
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.web import (
    PROBLEM_CONTENT_TYPE,
    CasesWriteTenant,
    ReadTenant,
    ResponsesWriteTenant,
    create_app,
)

PROBLEM = "urn:closeloop:problem:"


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test run's own AUTH_PUBLIC_KEY_FILE would clash with the keys these tests configure."""
    monkeypatch.delenv("AUTH_PUBLIC_KEY_FILE", raising=False)


class IdleRuntime(ServiceRuntime):
    """A runtime that starts nothing: the shell's own behaviour is under test."""

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        return None


class Note(BaseModel):
    text: str


def shell_app(**settings: Any) -> FastAPI:
    metadata = sa.MetaData(schema="shelltest")
    outbox_table(metadata)
    inbox_table(metadata)
    runtime = IdleRuntime(
        name="shelltest", settings=CommonSettings(environment="test", **settings), metadata=metadata
    )
    router = APIRouter(prefix="/v1")

    @router.get("/things")
    async def read_things(tenant: ReadTenant) -> dict[str, str]:
        return {"tenant": tenant}

    @router.post("/things")
    async def write_thing(note: Note, tenant: ResponsesWriteTenant) -> dict[str, Any]:
        return {"tenant": tenant, "length": len(note.text)}

    @router.delete("/things/{thing}")
    async def delete_thing(thing: str, tenant: CasesWriteTenant) -> dict[str, str]:
        return {"tenant": tenant, "deleted": thing}

    return create_app(title="shell test", runtime=runtime, routers=[router])


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def public_key(key: ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def bearer(key: ed25519.Ed25519PrivateKey, tenant: str, scope: str, **extra: Any) -> dict[str, str]:
    now = int(time.time())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    claims = {
        "iss": "closeloop",
        "aud": "closeloop",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "tenant": tenant,
        "scope": scope,
        **extra,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, pem, algorithm='EdDSA')}"}


@pytest.fixture
async def client(public_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = shell_app(auth_public_key=public_key, max_request_body_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = reply.json()
    assert problem["type"] == PROBLEM + kind
    assert problem["status"] == status
    return problem


# -- authentication ----------------------------------------------------------------------------


async def test_a_request_without_a_token_is_a_401_problem_with_a_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/v1/things")

    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == 'Bearer realm="closeloop"'


async def test_a_basic_credential_is_no_bearer_token(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/things", auth=("admin", "admin"))

    assert_problem(reply, 401, "unauthorized")


async def test_a_bad_token_is_a_401_invalid_token(
    client: httpx.AsyncClient, public_key: str
) -> None:
    forger = ed25519.Ed25519PrivateKey.generate()

    reply = await client.get("/v1/things", headers=bearer(forger, "acme", "admin"))

    problem = assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"].startswith(
        'Bearer realm="closeloop", error="invalid_token"'
    )
    assert "signature" in problem["detail"]


async def test_a_token_with_odd_characters_in_its_header_is_a_401_not_a_crash(
    client: httpx.AsyncClient,
) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": '€\r\n"x'}).encode()).rstrip(b"=")

    reply = await client.get(
        "/v1/things", headers={"Authorization": f"Bearer {header.decode()}.e30.c2ln"}
    )

    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"].isascii()


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/v1/things", "read"),
        ("POST", "/v1/things", "responses:write"),
        ("DELETE", "/v1/things/t-1", "cases:write"),
    ],
)
async def test_a_token_without_the_route_scope_is_a_403_insufficient_scope(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey, method: str, path: str, needed: str
) -> None:
    others = " ".join(s for s in ("read", "responses:write", "cases:write") if s != needed)

    reply = await client.request(
        method, path, json={"text": "hi"}, headers=bearer(key, "acme", others)
    )

    problem = assert_problem(reply, 403, "forbidden")
    assert problem["required_scope"] == needed
    assert reply.headers["www-authenticate"] == (
        f'Bearer realm="closeloop", error="insufficient_scope", scope="{needed}"'
    )


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/things"), ("POST", "/v1/things"), ("DELETE", "/v1/things/x")]
)
async def test_admin_may_call_every_route(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey, method: str, path: str
) -> None:
    reply = await client.request(
        method, path, json={"text": "hi"}, headers=bearer(key, "acme", "admin")
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["tenant"] == "acme"


async def test_the_tenant_is_the_token_s_whatever_header_the_caller_adds(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey
) -> None:
    headers = {**bearer(key, "acme", "read"), "X-Tenant-Id": "globex"}

    reply = await client.get("/v1/things", headers=headers)

    assert reply.status_code == 200, reply.text
    assert reply.json() == {"tenant": "acme"}


async def test_operations_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    # Not ready (nothing started here), but answered without a token.
    assert (await client.get("/readyz")).status_code == 503


async def test_without_a_configured_key_every_protected_request_is_refused(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    transport = httpx.ASGITransport(app=shell_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/v1/things", headers=bearer(key, "acme", "admin"))

    problem = assert_problem(reply, 401, "unauthorized")
    assert "no key" in problem["detail"]


async def test_a_service_started_without_a_key_says_so(caplog: pytest.LogCaptureFixture) -> None:
    app = shell_app()

    with caplog.at_level(logging.WARNING, logger="closeloop_common.web"):
        async with app.router.lifespan_context(app):
            pass

    assert any("every API request will be refused" in r.getMessage() for r in caplog.records)


async def test_the_openapi_document_declares_the_bearer_scheme_on_protected_routes(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    [name] = schemes
    assert spec["paths"]["/v1/things"]["get"]["security"] == [{name: []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


# -- request body limit ------------------------------------------------------------------------


async def test_a_body_declared_larger_than_the_limit_is_refused_with_413(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey
) -> None:
    body = b'{"text": "' + b"x" * (65 * 1024) + b'"}'

    reply = await client.post(
        "/v1/things",
        content=body,
        headers={**bearer(key, "acme", "responses:write"), "content-type": "application/json"},
    )

    problem = assert_problem(reply, 413, "payload-too-large")
    assert problem["max_bytes"] == 64 * 1024


async def test_a_streamed_body_over_the_limit_is_refused_without_being_read_whole(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey
) -> None:
    chunks_read = 0

    async def endless_json() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        yield b'{"text": "'
        for _ in range(1000):  # 16 MiB if read to the end
            chunks_read += 1
            yield b"x" * (16 * 1024)

    reply = await client.post(
        "/v1/things",
        content=endless_json(),
        headers={**bearer(key, "acme", "responses:write"), "content-type": "application/json"},
    )

    assert_problem(reply, 413, "payload-too-large")
    assert chunks_read < 10


async def test_a_body_under_the_limit_is_accepted(
    client: httpx.AsyncClient, key: ed25519.Ed25519PrivateKey
) -> None:
    reply = await client.post(
        "/v1/things", json={"text": "x" * 60_000}, headers=bearer(key, "acme", "responses:write")
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["length"] == 60_000


# -- metrics port ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_metrics_move_to_their_own_port_when_one_is_set() -> None:
    metrics_port = free_port()
    app = shell_app(metrics_port=metrics_port)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as api,
    ):
        await api.get("/healthz")
        on_api_port = await api.get("/metrics")
        async with httpx.AsyncClient() as scraper:
            scraped = await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")

    assert on_api_port.status_code == 404
    assert scraped.status_code == 200
    assert 'closeloop_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        scraped.text
    )
    # Stopped with the service.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as scraper:
            await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")
