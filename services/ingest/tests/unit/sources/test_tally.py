"""Tally: the `Tally-Signature` scheme and `FORM_RESPONSE` payloads."""

from __future__ import annotations

import pytest

from closeloop_ingest.domain.sources.base import BadSignature, Ignored, InvalidPayload
from closeloop_ingest.domain.sources.tally import ADAPTER

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

SOURCE = source("tally", SECRET)
SCORE_FIELD = "data.fields[3].value"


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Tally-Signature": hmac_base64(secret, body)}


def test_signature_over_the_raw_body_verifies() -> None:
    body = fixture("tally", "promoter")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)


def test_missing_signature_is_refused() -> None:
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(fixture("tally", "promoter"), {}), SOURCE)
    assert refused.value.reason == "signature_missing"


def test_wrong_signature_is_refused() -> None:
    body = fixture("tally", "promoter")
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, signed(fixture("tally", "passive"))), SOURCE)
    assert refused.value.reason == "signature_invalid"


def test_any_secret_of_a_rotation_verifies() -> None:
    body = fixture("tally", "promoter")
    ADAPTER.verify(delivery(body, signed(body, OLD_SECRET)), source("tally", SECRET, OLD_SECRET))


@pytest.mark.parametrize(
    ("name", "score", "customer_id"),
    [("promoter", 9, "cust-2001"), ("passive", 7, "cust-2002"), ("detractor", 2, "cust-2003")],
)
def test_a_response_becomes_canonical(name: str, score: int, customer_id: str) -> None:
    body = fixture("tally", name)
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    response = only_response(parsed)
    assert response.score == score
    assert response.response_id.startswith("tally:")
    assert response.survey_id == "VwbNEw"
    assert response.customer.id == customer_id
    assert response.customer.email is not None
    assert response.customer.locale == "pl-PL"
    assert response.account_id == "acc-42"
    assert parsed.delivery_id is not None
    assert parsed.delivery_id.startswith("a4cb511e")


def test_polish_comment_survives_byte_exact() -> None:
    body = fixture("tally", "detractor")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)
    response = only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE))
    assert response.comment == POLISH_COMMENT
    assert response.response_id == "tally:4yiz6p"


def test_a_whole_number_in_a_string_is_a_score() -> None:
    body = fixture("tally", "detractor").replace(b'"value": 2', b'"value": "9"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


@pytest.mark.parametrize("value", [b'"9.5"', b"11", b"true"])
def test_a_score_that_is_not_a_whole_number_0_to_10_is_refused(value: bytes) -> None:
    body = fixture("tally", "detractor").replace(b'"value": 2', b'"value": ' + value)
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == SCORE_FIELD


def test_per_form_refs_name_the_questions_and_where_the_customer_is() -> None:
    hidden_account = "$.data.fields[?@.label == 'account_id'].value"
    mapped = source(
        "tally",
        SECRET,
        forms={
            "VwbNEw": {
                "nps_question": "question_3EKz4n",
                "comment_question": "question_w4Q4Xn",
                "customer_id": hidden_account,
            }
        },
    )
    body = fixture("tally", "passive")
    response = only_response(ADAPTER.parse(delivery(body, signed(body)), mapped))
    assert (response.score, response.comment) == (7, "piotr@example.com")
    assert response.customer.id == "acc-42"


def test_a_form_without_a_scale_answer_is_ignored() -> None:
    body = fixture("tally", "promoter").replace(b'"LINEAR_SCALE"', b'"INPUT_NUMBER"')
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


def test_other_event_types_are_ignored() -> None:
    body = fixture("tally", "promoter").replace(b'"FORM_RESPONSE"', b'"FORM_DELETED"')
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[1, 2", "body"),
        (fixture("tally", "promoter").replace(b'"responseId"', b'"rid"'), "data.responseId"),
        (
            fixture("tally", "promoter").replace(
                b'"createdAt": "2025-03-10T10:02:41.000Z"', b'"created": "2025-03-10T10:02:41Z"'
            ),
            "data.createdAt",
        ),
    ],
)
def test_a_payload_without_its_required_parts_is_refused(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == field
