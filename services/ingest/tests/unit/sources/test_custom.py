"""A configuration-only source: Wootric/InMoment, zenloop and Retently payloads (as their docs
show them, in tests/fixtures/custom) read through `CustomSpec` alone, and the three
authentication schemes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from closeloop_ingest.domain.sources.base import (
    BadSignature,
    Delivery,
    Ignored,
    InvalidPayload,
    Responses,
    SourceDefinition,
    UnsupportedContentType,
)
from closeloop_ingest.domain.sources.custom import ADAPTER

FIXTURES = Path(__file__).parents[2] / "fixtures" / "custom"
RECEIVED_AT = datetime(2024, 5, 8, 10, 16, tzinfo=UTC)
JSON = "application/json"

WOOTRIC: dict[str, Any] = {
    "tenant_id": "acme",
    "name": "wootric",
    "kind": "custom",
    "secrets": ["09dfb1b73af998743fb011f8bfda8912"],
    "fields": {
        "survey_id": "$.response.survey_id",
        "customer_id": "$.response.external_id",
        "customer_email": "$.response.email",
        "segments": {"product": "$.response.end_user_properties.product_plan"},
    },
    "custom": {
        "fields": {
            "response_id": "$.response.id",
            "score": "$.response.score",
            "comment": "$.response.text",
            "answered_at": "$.response.created_at",
            "updated_at": "$.response.updated_at",
        },
        "auth": {
            "type": "hmac",
            "algorithm": "sha1",
            "header": "X-Wootric-Signature",
            "prefix": "sha1=",
        },
    },
}
ZENLOOP: dict[str, Any] = {
    "tenant_id": "acme",
    "name": "zenloop",
    "kind": "custom",
    "secrets": ["zl-token-1"],
    "default_locale": "de",
    "fields": {
        "survey_id": "$.survey.id",
        "customer_id": "$.recipient.identity",
        "customer_email": "$.recipient.email",
        "customer_name": "$.recipient.last_name",
        "account_id": "$.properties[?@.name == 'account'].value",
        "locale": "$.properties[?@.name == 'language'].value",
        "segments": {"channel": "$.survey.channel_type"},
    },
    "custom": {
        "fields": {
            "response_id": "$.answer.id",
            "score": "$.answer.score",
            "comment": "$.answer.comment",
            "answered_at": "$.answer.inserted_at",
            "updated_at": "$.answer.updated_at",
        },
        "auth": {"type": "token", "header": "Authorization", "prefix": "Bearer "},
    },
}
RETENTLY: dict[str, Any] = {
    "tenant_id": "acme",
    "name": "retently",
    "kind": "custom",
    "secrets": ["whsec_" + base64.b64encode(b"retently-signing-key-32-bytes!!!").decode()],
    "fields": {
        "survey_id": "$.campaign",
        "customer_id": "$.customerId",
        "customer_email": "$.email",
        "account_id": "$.companyId",
    },
    "custom": {
        "fields": {
            "response_id": "$.id",
            "score": "$.score",
            "comment": "$.comment",
            "answered_at": "$.createdDate",
            "user_agent": "$.userAgent",
        },
        "auth": {"type": "standard-webhooks"},
    },
}


def source(definition: dict[str, Any], **changes: Any) -> SourceDefinition:
    return SourceDefinition.model_validate(definition | changes)


def body_of(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def delivery(body: bytes, headers: dict[str, str], at: datetime = RECEIVED_AT) -> Delivery:
    return Delivery(body, {k.lower(): v for k, v in headers.items()}, JSON, at)


def wootric_signed(body: bytes, key: str = "09dfb1b73af998743fb011f8bfda8912") -> Delivery:
    digest = hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
    return delivery(body, {"X-Wootric-Signature": f"sha1={digest}"})


def retently_signed(body: bytes, sent_at: datetime = RECEIVED_AT) -> Delivery:
    webhook = Webhook(RETENTLY["secrets"][0])
    signature = webhook.sign("msg_2Lx7", sent_at, body.decode())
    headers = {
        "webhook-id": "msg_2Lx7",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }
    return delivery(body, headers)


def only_response(parsed: object) -> Any:
    assert isinstance(parsed, Responses)
    assert len(parsed.submissions) == 1
    return parsed.submissions[0].response


def test_a_wootric_promoter_signed_with_sha1_verifies_and_parses() -> None:
    signed = wootric_signed(body_of("wootric_response_created.json"))
    ADAPTER.verify(signed, source(WOOTRIC))
    response = only_response(ADAPTER.parse(signed, source(WOOTRIC)))
    assert response.response_id == "wootric:1128"
    assert response.survey_id == "1146"
    assert response.score == 9
    assert response.comment == "Bardzo dobra aplikacja."
    assert response.customer.id == "cust-1042"
    assert response.customer.email == "anna.nowak@example.com"
    assert response.segments.product == "Web App"
    assert response.answered_at == datetime(2024, 5, 6, 7, 0, 26, 558000, tzinfo=UTC)


def test_a_wootric_decline_is_another_event() -> None:
    parsed = ADAPTER.parse(wootric_signed(body_of("wootric_decline_created.json")), source(WOOTRIC))
    assert isinstance(parsed, Ignored)


def test_a_wootric_body_changed_or_signed_with_another_key_is_refused() -> None:
    body = body_of("wootric_response_created.json")
    changed = wootric_signed(body)
    changed = delivery(body.replace(b'"score": 9', b'"score": 0'), dict(changed.headers))
    for wrong in (changed, wootric_signed(body, "another")):
        with pytest.raises(BadSignature) as caught:
            ADAPTER.verify(wrong, source(WOOTRIC))
        assert caught.value.reason == "signature_invalid"
    with pytest.raises(BadSignature) as missing:
        ADAPTER.verify(delivery(body, {}), source(WOOTRIC))
    assert missing.value.reason == "signature_missing"


def test_a_zenloop_detractor_with_a_token_and_filtered_properties() -> None:
    alert = delivery(body_of("zenloop_alert.json"), {"Authorization": "Bearer zl-token-1"})
    ADAPTER.verify(alert, source(ZENLOOP))
    response = only_response(ADAPTER.parse(alert, source(ZENLOOP)))
    assert response.response_id.startswith("zenloop:QWNGbzdk")
    assert response.score == 3
    assert response.comment == "Obsługa była powolna, żółć zażółcona gęślą jaźń"
    assert response.customer.email == "jan.kowalski@example.com"
    assert response.customer.locale == "pl-PL"
    assert response.account_id == "acc-77"
    assert response.segments.channel == "email"
    assert response.updated_at == datetime(2024, 5, 7, 12, 31, 41, tzinfo=UTC)


def test_a_token_is_checked_against_every_secret_of_a_rotation() -> None:
    alert = delivery(body_of("zenloop_alert.json"), {"Authorization": "Bearer zl-token-2"})
    ADAPTER.verify(alert, source(ZENLOOP, secrets=["zl-token-1", "zl-token-2"]))
    with pytest.raises(BadSignature) as wrong:
        ADAPTER.verify(alert, source(ZENLOOP))
    assert wrong.value.reason == "signature_invalid"
    assert "zl-token" not in str(wrong.value)
    with pytest.raises(BadSignature) as missing:
        ADAPTER.verify(delivery(b"{}", {}), source(ZENLOOP))
    assert missing.value.reason == "signature_missing"


def test_a_retently_passive_scored_as_text_under_standard_webhooks() -> None:
    signed = retently_signed(body_of("retently_feedback.json"))
    ADAPTER.verify(signed, source(RETENTLY))
    parsed = ADAPTER.parse(signed, source(RETENTLY))
    response = only_response(parsed)
    assert isinstance(parsed, Responses)
    assert parsed.delivery_id == "msg_2Lx7"
    assert response.response_id == "retently:5d1a4a7e8f3b2c0012a3b4c5"
    assert response.survey_id == "Relationship NPS"
    assert response.score == 7
    assert response.account_id == "60444db01eeeb6bf89799999"


def test_a_standard_webhooks_delivery_out_of_tolerance_is_refused() -> None:
    late = retently_signed(body_of("retently_feedback.json"), RECEIVED_AT - timedelta(minutes=10))
    with pytest.raises(BadSignature) as caught:
        ADAPTER.verify(late, source(RETENTLY))
    assert caught.value.reason == "timestamp_out_of_tolerance"


def test_an_hmac_over_timestamp_and_body_checks_the_tolerance() -> None:
    spec = json.loads(json.dumps(WOOTRIC))
    spec["custom"]["auth"] = {
        "type": "hmac",
        "header": "X-Signature",
        "encoding": "base64",
        "signed": "{timestamp}.{body}",
        "timestamp_header": "X-Timestamp",
    }
    body = body_of("wootric_response_created.json")

    def signed_at(sent_at: datetime) -> Delivery:
        stamp = str(int(sent_at.timestamp()))
        mac = hmac.new(WOOTRIC["secrets"][0].encode(), stamp.encode() + b"." + body, "sha256")
        headers = {"X-Signature": base64.b64encode(mac.digest()).decode(), "X-Timestamp": stamp}
        return delivery(body, headers)

    ADAPTER.verify(signed_at(RECEIVED_AT - timedelta(seconds=30)), source(spec))
    with pytest.raises(BadSignature) as late:
        ADAPTER.verify(signed_at(RECEIVED_AT - timedelta(hours=1)), source(spec))
    assert late.value.reason == "timestamp_out_of_tolerance"
    no_stamp = delivery(body, {"X-Signature": "abc"})
    with pytest.raises(BadSignature) as missing:
        ADAPTER.verify(no_stamp, source(spec))
    assert missing.value.reason == "signature_missing"


def test_a_score_that_is_not_a_whole_number_names_the_configured_path() -> None:
    payload = json.loads(body_of("retently_feedback.json")) | {"score": "7.5"}
    with pytest.raises(InvalidPayload) as caught:
        ADAPTER.parse(delivery(json.dumps(payload).encode(), {}), source(RETENTLY))
    assert caught.value.field == "$.score"


def test_a_response_without_a_score_is_invalid_and_without_time_takes_the_time_received() -> None:
    payload = json.loads(body_of("retently_feedback.json"))
    del payload["createdDate"]
    response = only_response(
        ADAPTER.parse(delivery(json.dumps(payload).encode(), {}), source(RETENTLY))
    )
    assert response.answered_at == RECEIVED_AT
    del payload["score"]
    with pytest.raises(InvalidPayload) as caught:
        ADAPTER.parse(delivery(json.dumps(payload).encode(), {}), source(RETENTLY))
    assert caught.value.field == "$.score"


def test_a_bad_email_names_its_configured_path() -> None:
    payload = json.loads(body_of("retently_feedback.json")) | {"email": "not an address"}
    with pytest.raises(InvalidPayload) as caught:
        ADAPTER.parse(delivery(json.dumps(payload).encode(), {}), source(RETENTLY))
    assert caught.value.field == "$.email"


def test_form_posts_are_not_accepted() -> None:
    form = Delivery(b"a=1", {}, "application/x-www-form-urlencoded", RECEIVED_AT)
    with pytest.raises(UnsupportedContentType):
        ADAPTER.parse(form, source(WOOTRIC))
