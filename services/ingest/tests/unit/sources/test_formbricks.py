"""Formbricks: Standard Webhooks signatures and response events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeloop_ingest.domain.sources.base import BadSignature, Ignored, InvalidPayload, Responses
from closeloop_ingest.domain.sources.formbricks import ADAPTER

from .signing import (
    OLD_WHSEC,
    POLISH_COMMENT,
    RECEIVED_AT,
    WHSEC,
    delivery,
    fixture,
    only_response,
    source,
    standard_webhooks_headers,
)

SURVEY = "clx8survey0001"
SOURCE = source(
    "formbricks", WHSEC, forms={SURVEY: {"nps_question": "npsq", "comment_question": "commentq"}}
)


def signed(body: bytes, secret: str = WHSEC) -> dict[str, str]:
    return standard_webhooks_headers(secret, body)


def test_signature_over_the_raw_body_verifies() -> None:
    body = fixture("formbricks", "promoter")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_a_missing_signature(header: str) -> None:
    body = fixture("formbricks", "promoter")
    headers = signed(body)
    del headers[header]
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason == "signature_missing"


def test_wrong_signature_is_refused() -> None:
    body = fixture("formbricks", "promoter")
    headers = signed(fixture("formbricks", "passive"))
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason == "signature_invalid"


def test_any_secret_of_a_rotation_verifies() -> None:
    body = fixture("formbricks", "promoter")
    ADAPTER.verify(delivery(body, signed(body, OLD_WHSEC)), source("formbricks", WHSEC, OLD_WHSEC))


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=301)])
def test_a_timestamp_out_of_tolerance_is_refused(offset: timedelta) -> None:
    body = fixture("formbricks", "promoter")
    headers = standard_webhooks_headers(WHSEC, body, sent_at=RECEIVED_AT + offset)
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, headers), SOURCE)
    assert refused.value.reason == "timestamp_out_of_tolerance"


def test_a_timestamp_within_tolerance_verifies() -> None:
    body = fixture("formbricks", "promoter")
    headers = standard_webhooks_headers(WHSEC, body, sent_at=RECEIVED_AT - timedelta(seconds=299))
    ADAPTER.verify(delivery(body, headers), SOURCE)


@pytest.mark.parametrize(
    ("name", "score", "customer_id"),
    [
        ("promoter", 9, "cust-4001"),
        ("passive", 8, "cust-4002"),
        ("detractor_finished", 4, "cust-4003"),
    ],
)
def test_a_response_becomes_canonical(name: str, score: int, customer_id: str) -> None:
    body = fixture("formbricks", name)
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert isinstance(parsed, Responses)
    (submission,) = parsed.submissions
    response = submission.response
    assert response.score == score
    assert response.response_id.startswith("formbricks:")
    assert response.survey_id == SURVEY
    assert response.customer.id == customer_id
    assert response.customer.email is not None
    assert response.customer.locale == "pl"
    assert response.segments.region == "PL"
    assert response.updated_at is not None
    assert submission.user_agent == "Firefox; Linux; desktop"
    assert parsed.delivery_id == "msg_2tYb1"


def test_a_partial_response_without_the_nps_answer_yet_is_ignored() -> None:
    body = fixture("formbricks", "detractor_created")
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


def test_each_update_is_a_later_version_of_the_same_response() -> None:
    versions = [
        only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE))
        for body in (
            fixture("formbricks", "detractor_updated"),
            fixture("formbricks", "detractor_finished"),
        )
    ]
    updated, finished = versions
    assert updated.response_id == finished.response_id == "formbricks:clx8resp0003"
    assert updated.updated_at is not None
    assert finished.updated_at is not None
    assert finished.updated_at > updated.updated_at
    assert (updated.score, updated.comment) == (5, None)
    assert (finished.score, finished.comment) == (4, POLISH_COMMENT)


def test_polish_comment_survives_byte_exact() -> None:
    body = fixture("formbricks", "detractor_finished")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).comment == (
        POLISH_COMMENT
    )


def test_a_whole_number_in_a_string_is_a_score() -> None:
    body = fixture("formbricks", "passive").replace(b'"npsq": 8', b'"npsq": "9"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


@pytest.mark.parametrize("value", [b'"9.5"', b"11", b"true"])
def test_a_score_that_is_not_a_whole_number_0_to_10_is_refused(value: bytes) -> None:
    body = fixture("formbricks", "passive").replace(b'"npsq": 8', b'"npsq": ' + value)
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == "[0].data.data.npsq"


def test_without_a_named_or_typed_nps_question_the_response_is_ignored() -> None:
    body = fixture("formbricks", "promoter")
    parsed = ADAPTER.parse(delivery(body, signed(body)), source("formbricks", WHSEC))
    assert isinstance(parsed, Ignored)


def test_a_survey_listing_its_questions_marks_the_nps_and_open_text_ones() -> None:
    questions = b'"questions": [{"id": "npsq", "type": "nps"}, {"id": "commentq", "type": "openText"}], "status"'
    body = fixture("formbricks", "passive").replace(b'"status"', questions, 1)
    response = only_response(
        ADAPTER.parse(delivery(body, signed(body)), source("formbricks", WHSEC))
    )
    assert (response.score, response.comment) == (8, "Może być.")


def test_refs_name_where_the_customer_is() -> None:
    mapped = source(
        "formbricks",
        WHSEC,
        forms={SURVEY: {"nps_question": "npsq", "customer_id": "$.data.contact.id"}},
    )
    body = fixture("formbricks", "promoter")
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), mapped)).customer.id == (
        "clx8contact0001"
    )


def test_a_single_event_object_is_accepted_too() -> None:
    body = fixture("formbricks", "promoter").strip()[1:-1]  # the event without its array
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


def test_other_event_types_are_ignored() -> None:
    body = fixture("formbricks", "promoter").replace(b'"responseFinished"', b'"surveyClosed"')
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"nope", "body"),
        (
            fixture("formbricks", "promoter").replace(b'"id": "clx8resp0001"', b'"id": ""'),
            "[0].data.id",
        ),
        (
            fixture("formbricks", "promoter").replace(b'"createdAt": "2025-03-10T10:00', b'"x": "'),
            "[0].data.createdAt",
        ),
    ],
)
def test_a_payload_without_its_required_parts_is_refused(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == field
