"""Delighted: the `X-Delighted-Webhook-Signature` scheme and survey response events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closeloop_ingest.domain.sources.base import BadSignature, Ignored, InvalidPayload
from closeloop_ingest.domain.sources.delighted import ADAPTER

from .signing import (
    OLD_SECRET,
    POLISH_COMMENT,
    SECRET,
    delivery,
    fixture,
    hmac_hex,
    only_response,
    source,
)

SOURCE = source("delighted", SECRET)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Delighted-Webhook-Signature": f"sha256={hmac_hex(secret, body)}"}


def test_signature_over_the_raw_body_verifies() -> None:
    body = fixture("delighted", "promoter")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)


def test_missing_signature_is_refused() -> None:
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(fixture("delighted", "promoter"), {}), SOURCE)
    assert refused.value.reason == "signature_missing"


def test_wrong_signature_is_refused() -> None:
    body = fixture("delighted", "promoter")
    with pytest.raises(BadSignature) as refused:
        ADAPTER.verify(delivery(body, signed(body, "another-secret")), SOURCE)
    assert refused.value.reason == "signature_invalid"


def test_any_secret_of_a_rotation_verifies() -> None:
    body = fixture("delighted", "promoter")
    rotation = source("delighted", SECRET, OLD_SECRET)
    ADAPTER.verify(delivery(body, signed(body, OLD_SECRET)), rotation)


@pytest.mark.parametrize(
    ("name", "score", "customer_id"),
    [
        ("promoter", 10, "cust-3001"),
        ("passive", 7, "cust-3002"),
        ("detractor_created", 4, "cust-3003"),
    ],
)
def test_a_response_becomes_canonical(name: str, score: int, customer_id: str) -> None:
    body = fixture("delighted", name)
    parsed = ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    response = only_response(parsed)
    assert response.score == score
    assert response.response_id.startswith("delighted:")
    assert response.survey_id == "delighted"
    assert response.customer.id == customer_id
    assert response.customer.name is not None
    assert response.customer.locale == "pl"
    assert response.account_id == "acc-42"
    assert response.segments.product == "app"
    assert response.comment is None  # a score comes first, its comment later
    assert parsed.delivery_id is not None


def test_an_update_is_a_later_version_of_the_same_response() -> None:
    created, updated = (
        fixture("delighted", "detractor_created"),
        fixture("delighted", "detractor_updated"),
    )
    first = only_response(ADAPTER.parse(delivery(created, signed(created)), SOURCE))
    second = only_response(ADAPTER.parse(delivery(updated, signed(updated)), SOURCE))
    assert second.response_id == first.response_id == "delighted:5437"
    assert first.updated_at is not None
    assert second.updated_at is not None
    assert second.updated_at > first.updated_at
    assert second.answered_at == first.answered_at == datetime.fromtimestamp(1741601000, UTC)
    assert (second.score, second.comment) == (3, POLISH_COMMENT)


def test_polish_comment_survives_byte_exact() -> None:
    body = fixture("delighted", "detractor_updated")
    ADAPTER.verify(delivery(body, signed(body)), SOURCE)
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).comment == (
        POLISH_COMMENT
    )


def test_a_whole_number_in_a_string_is_a_score() -> None:
    body = fixture("delighted", "passive").replace(b'"score": 7', b'"score": "9"')
    assert only_response(ADAPTER.parse(delivery(body, signed(body)), SOURCE)).score == 9


@pytest.mark.parametrize("value", [b'"9.5"', b"11", b"true"])
def test_a_score_that_is_not_a_whole_number_0_to_10_is_refused(value: bytes) -> None:
    body = fixture("delighted", "passive").replace(b'"score": 7', b'"score": ' + value)
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == "event_data.score"


def test_refs_name_where_the_customer_and_survey_are() -> None:
    mapped = source(
        "delighted",
        SECRET,
        forms={"delighted": {"customer_id": "$.event_data.person.id", "survey_id": "$.x"}},
        fields={"survey_id": "$.event_data.survey_type"},
    )
    body = fixture("delighted", "passive")
    response = only_response(ADAPTER.parse(delivery(body, signed(body)), mapped))
    assert response.customer.id == "5975"
    assert response.survey_id == "delighted"  # the form's own `$.x` finds nothing


@pytest.mark.parametrize(
    "body",
    [
        fixture("delighted", "unsubscribe"),
        fixture("delighted", "passive").replace(b'"survey_type": "nps"', b'"survey_type": "csat"'),
    ],
)
def test_unsubscribes_and_other_survey_types_are_ignored(body: bytes) -> None:
    assert isinstance(ADAPTER.parse(delivery(body, signed(body)), SOURCE), Ignored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (fixture("delighted", "passive").replace(b'"id": "5436"', b'"id": null'), "event_data.id"),
        (
            fixture("delighted", "passive").replace(
                b'"created_at": 1741600950', b'"created_at": "x"'
            ),
            "event_data.created_at",
        ),
    ],
)
def test_a_payload_without_its_required_parts_is_refused(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ADAPTER.parse(delivery(body, signed(body)), SOURCE)
    assert refused.value.field == field
