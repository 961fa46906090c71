"""Typeform: the `Typeform-Signature` scheme and `form_response` payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closeloop_ingest.domain.sources.base import BadSignature, Ignored, InvalidPayload
from closeloop_ingest.domain.sources.typeform import ADAPTER

from .signing import (
    OLD_SECRET,
    POLISH_COMMENT,
    SECRET,
    delivery,
    fixture,
    hmac_base64,
    only_response,
    source,
)

SOURCE = source("typeform", SECRET)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Typeform-Signature": f"sha256={hmac_base64(secret, body)}"}


def test_signature_over_the_raw_body_verifies() -> None:
    body = fixture("typeform", "promoter")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)


def test_missing_signature_is_refused() -> None:
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(fixture("typeform", "promoter"), {}), SOURCE)
    assert refused.value.reason == "signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        f"sha256={hmac_base64('another-secret', fixture('typeform', 'promoter'))}",
        hmac_base64(SECRET, fixture("typeform", "promoter")),  # no sha256= prefix
        f"sha256={hmac_base64(SECRET, fixture('typeform', 'passive'))}",  # another body
    ],
)
def test_wrong_signature_is_refused_without_naming_the_secret(header: str) -> None:
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(
            delivery(fixture("typeform", "promoter"), {"Typeform-Signature": header}), SOURCE
        )
    assert refused.value.reason == "signature_invalid"
    assert SECRET not in str(refused.value)


def test_any_secret_of_a_rotation_verifies() -> None:
    body = fixture("typeform", "promoter")
    ADAPTER.verify(delivery(body, signed(body, OLD_SECRET)), source("typeform", SECRET, OLD_SECRET))


@pytest.mark.parametrize(
    ("name", "score", "customer_id"),
    [("promoter", 10, "cust-1001"), ("passive", 8, "cust-1002"), ("detractor", 3, "cust-1003")],
)
def test_a_response_becomes_canonical(name: str, score: int, customer_id: str) -> None:
    body = fixture("typeform", name)
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    response = only_response(parsed)
    assert response.score == score
    assert response.response_id.startswith("typeform:")
    assert response.survey_id == "lT4Z3j"
    assert response.customer.id == customer_id
    assert response.customer.locale == "pl-PL"
    assert response.account_id == "acc-42"
    assert response.segments.product == "app"
    assert response.answered_at == datetime(2025, 3, 10, 10, 2, 41, tzinfo=UTC)
    assert response.updated_at is None
    assert parsed.delivery_id is not None


def test_polish_comment_survives_byte_exact() -> None:
    body = fixture("typeform", "detractor")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)
    response = only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE))
    assert response.comment == POLISH_COMMENT
    assert response.response_id == "typeform:c5c34ae89c3587149210c828329cbe37"


def test_a_whole_number_in_a_string_is_a_score() -> None:
    body = fixture("typeform", "detractor").replace(b'"number": 3', b'"number": "9"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


@pytest.mark.parametrize("value", [b'"9.5"', b"11", b"true", b"9.0"])
def test_a_score_that_is_not_a_whole_number_0_to_10_is_refused(value: bytes) -> None:
    body = fixture("typeform", "detractor").replace(b'"number": 3', b'"number": ' + value)
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == "form_response.answers[0].number"


def test_per_form_refs_name_the_questions_and_where_the_customer_is() -> None:
    mapped = source(
        "typeform",
        SECRET,
        forms={
            "lT4Z3j": {
                "nps_question": "Ab12Cd34Ef56",
                "comment_question": "first_name",
                "customer_id": "$.form_response.hidden.email",
            },
            "other": {"comment_question": "what_to_improve"},
        },
    )
    body = fixture("typeform", "passive")
    response = only_response(ADAPTER.parse(delivery(body, signed(body)), mapped))
    assert (response.score, response.comment) == (8, "Anna")
    assert response.customer.id == "piotr@example.com"


def test_a_form_whose_named_nps_question_is_unanswered_is_ignored() -> None:
    mapped = source("typeform", SECRET, fields={"nps_question": "no_such_question"})
    body = fixture("typeform", "promoter")
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), mapped), Ignored)


def test_an_opinion_scale_of_one_to_five_is_not_taken_for_nps() -> None:
    body = (
        fixture("typeform", "promoter")
        .replace(b'"type": "nps"', b'"type": "opinion_scale"')
        .replace(b'"properties": {}', b'"properties": {"steps": 5, "start_at_one": true}', 1)
    )
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


def test_a_zero_to_ten_opinion_scale_is_taken_for_nps() -> None:
    body = fixture("typeform", "promoter").replace(b'"type": "nps"', b'"type": "opinion_scale"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 10


def test_other_event_types_are_ignored() -> None:
    body = fixture("typeform", "promoter").replace(b'"form_response",', b'"form_partial",', 1)
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert isinstance(parsed, Ignored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (fixture("typeform", "promoter").replace(b'"token"', b'"tokenx"'), "form_response.token"),
        (
            fixture("typeform", "promoter").replace(b'"submitted_at"', b'"sent_at"'),
            "form_response.submitted_at",
        ),
    ],
)
def test_a_payload_without_its_required_parts_is_refused(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == field
