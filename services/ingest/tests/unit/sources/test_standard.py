"""The standard source: canonical responses signed with Standard Webhooks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeloop_ingest.domain.sources.base import BadSignature, InvalidPayload
from closeloop_ingest.domain.sources.standard import ADAPTER

from .signing import (
    OLD_WHSEC,
    POLISH_COMMENT,
    RECEIVED_AT,
    WHSEC,
    delivery,
    fixture,
    only_response,
    responses_of,
    source,
    standard_webhooks_headers,
)

SOURCE = source("standard", WHSEC)


def signed(body: bytes, secret: str = WHSEC) -> dict[str, str]:
    return standard_webhooks_headers(secret, body)


def test_signature_over_the_raw_body_verifies() -> None:
    body = fixture("standard", "promoter")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)


def test_missing_signature_is_refused() -> None:
    body = fixture("standard", "promoter")
    headers = signed(body)
    del headers["webhook-signature"]
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason == "signature_missing"


@pytest.mark.parametrize("signature", ["v1,bm90IGl0", "v2,abc", "", "garbage", "v1a,xyz"], ids=str)
def test_wrong_or_malformed_signature_is_refused(signature: str) -> None:
    body = fixture("standard", "promoter")
    headers = signed(body) | {"webhook-signature": signature or " "}
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason in {"signature_invalid", "signature_missing"}


def test_several_signatures_of_the_senders_rotation_verify_if_one_matches() -> None:
    body = fixture("standard", "promoter")
    headers = signed(body)
    old = signed(body, OLD_WHSEC)["webhook-signature"]
    headers["webhook-signature"] = f"{old} v1,bm90IGl0 {headers['webhook-signature']}"
    ADAPTER.verify(delivery(body, headers), SOURCE)


def test_any_secret_of_our_rotation_verifies() -> None:
    body = fixture("standard", "promoter")
    ADAPTER.verify(delivery(body, signed(body, OLD_WHSEC)), source("standard", WHSEC, OLD_WHSEC))


def test_a_secret_without_base64_padding_verifies() -> None:
    unpadded = "whsec_" + "c2VjcmV0IGtleQ"  # "secret key"
    body = fixture("standard", "promoter")
    ADAPTER.verify(delivery(body, signed(body, unpadded)), source("standard", unpadded))


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_timestamp_out_of_tolerance_is_refused(offset: timedelta) -> None:
    body = fixture("standard", "promoter")
    headers = standard_webhooks_headers(WHSEC, body, sent_at=RECEIVED_AT + offset)
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason == "timestamp_out_of_tolerance"


def test_the_sources_tolerance_applies() -> None:
    body = fixture("standard", "promoter")
    headers = standard_webhooks_headers(WHSEC, body, sent_at=RECEIVED_AT - timedelta(minutes=6))
    ADAPTER.verify(delivery(body, headers), source("standard", WHSEC, tolerance_seconds=600))


def test_one_response_is_taken_as_given() -> None:
    body = fixture("standard", "promoter")
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    response = only_response(parsed)
    assert response.response_id == "crm-5001"  # no kind prefix
    assert (response.score, response.survey_id, response.customer.id) == (
        9,
        "onboarding-nps",
        "cust-5001",
    )
    assert parsed.delivery_id == "msg_2tYb1"


def test_a_batch_gives_every_response_and_the_polish_comment_byte_exact() -> None:
    body = fixture("standard", "batch")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)
    passive, detractor = responses_of(ADAPTER.parse(delivery(body, signed(body)), SOURCE))
    assert (passive.score, detractor.score) == (7, 1)
    assert detractor.comment == POLISH_COMMENT


def test_a_correction_is_a_later_version_of_the_same_response() -> None:
    batch, correction = fixture("standard", "batch"), fixture("standard", "detractor_corrected")
    original = responses_of(ADAPTER.parse(delivery(batch, signed(batch)), SOURCE))[1]
    corrected = only_response(ADAPTER.parse(delivery(correction, signed(correction)), SOURCE))
    assert corrected.response_id == original.response_id == "crm-5003"
    assert corrected.updated_at is not None
    assert corrected.updated_at > original.answered_at
    assert corrected.score == 2


def test_a_whole_number_in_a_string_is_a_score() -> None:
    body = fixture("standard", "promoter").replace(b'"score": 9', b'"score": "9"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


@pytest.mark.parametrize("value", [b'"9.5"', b"11", b"true"])
def test_a_score_that_is_not_a_whole_number_0_to_10_is_refused(value: bytes) -> None:
    body = fixture("standard", "batch").replace(b'"score": 1', b'"score": ' + value)
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == "responses[1].score"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "body"),
        (b'{"responses": []}', "responses"),
        (b'{"responses": [' + b",".join([b"{}"] * 1001) + b"]}", "responses"),
        (fixture("standard", "promoter").replace(b'"response_id"', b'"id"'), "response_id"),
        (
            fixture("standard", "batch").replace(b'"ola@', b'"ola').replace(b'"zofia@', b'"zofia'),
            "responses[1].customer.email",
        ),
    ],
)
def test_a_body_that_is_not_canonical_is_refused(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == field
