"""The HTTP shell's own log lines carry no personal data: an unexpected error is logged with the
route's template, never the request's path (a path can hold an email: DELETE
/v1/opt-outs/{email})."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import APIRouter

from closeloop_common.logging import JsonFormatter
from closeloop_common.messaging_tables import inbox_table, outbox_table
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import mint_token
from closeloop_common.web import ReadTenant, create_app


class IdleRuntime(ServiceRuntime):
    async def start(self) -> None:
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        return None


async def test_an_unexpected_error_is_logged_with_the_route_template_not_the_path(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTH_PUBLIC_KEY_FILE", raising=False)
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    metadata = sa.MetaData(schema="privacytest")
    outbox_table(metadata)
    inbox_table(metadata)
    runtime = IdleRuntime(
        name="privacytest",
        settings=CommonSettings(environment="test", auth_public_key=public.decode()),
        metadata=metadata,
    )
    router = APIRouter(prefix="/v1")

    @router.get("/people/{email}")
    async def broken(email: str, tenant: ReadTenant) -> None:
        raise RuntimeError("a bug")

    app = create_app(title="privacy test", runtime=runtime, routers=[router])
    email = f"someone.{uuid.uuid4().hex[:8]}@example.com"
    token = mint_token(private, tenant="acme", scopes=["read"], ttl_seconds=60)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.ERROR):
            reply = await client.get(
                f"/v1/people/{email}", headers={"Authorization": f"Bearer {token}"}
            )

    assert reply.status_code == 500
    assert reply.json()["type"] == "urn:closeloop:problem:internal"
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    line = JsonFormatter("privacytest").format(record)
    assert json.loads(line)["route"] == "/v1/people/{email}"
    assert email not in line
    assert token not in line
