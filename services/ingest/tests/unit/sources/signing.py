"""Test helpers for source adapters: fixtures as raw bytes, a source definition, deliveries
signed the way each tool signs them (over the raw bytes, never re-serialised)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.domain.sources.base import (
    Delivery,
    Kind,
    Parsed,
    Responses,
    SourceDefinition,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECEIVED_AT = datetime(2025, 3, 10, 10, 5, tzinfo=UTC)
SECRET = "current-signing-secret"
OLD_SECRET = "previous-signing-secret"
WHSEC = "whsec_" + base64.b64encode(b"current standard webhooks key").decode()
OLD_WHSEC = "whsec_" + base64.b64encode(b"previous standard webhooks key").decode()
POLISH_COMMENT = "Obsługa była powolna, żółć zażółcona gęślą jaźń"


def fixture(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / f"{name}.json").read_bytes()


def source(kind: Kind, *secrets: str, **overrides: Any) -> SourceDefinition:
    return SourceDefinition.model_validate(
        {"tenant_id": "acme", "name": f"{kind}-main", "kind": kind, "secrets": secrets} | overrides
    )


def hmac_base64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_webhooks_headers(
    secret: str, body: bytes, *, msg_id: str = "msg_2tYb1", sent_at: datetime = RECEIVED_AT
) -> dict[str, str]:
    """Signed by the `standardwebhooks` package: an implementation independent of ours."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, sent_at, body.decode()),
    }


def delivery(
    body: bytes, headers: dict[str, str], *, received_at: datetime = RECEIVED_AT
) -> Delivery:
    return Delivery(
        body=body,
        headers={name.lower(): value for name, value in headers.items()},
        content_type="application/json",
        received_at=received_at,
    )


def responses_of(parsed: Parsed) -> list[CanonicalResponse]:
    assert isinstance(parsed, Responses), parsed
    return [submission.response for submission in parsed.submissions]


def only_response(parsed: Parsed) -> CanonicalResponse:
    (response,) = responses_of(parsed)
    return response
