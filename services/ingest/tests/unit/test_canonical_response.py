"""The canonical response: what the API accepts, its fingerprint, and the event it becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_common.events import Category, Customer, Segments, categorize
from closeloop_ingest.domain.responses import FUTURE_TOLERANCE, CanonicalResponse, fingerprint_of

ANSWERED_AT = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
RECEIVED_AT = datetime(2024, 5, 6, 9, 1, tzinfo=UTC)


def payload(**changes: Any) -> dict[str, Any]:
    """A valid API body, as JSON would give it, with `changes` applied on top."""
    body: dict[str, Any] = {
        "response_id": "r-1",
        "survey_id": "s-2024",
        "customer": {"id": "c-42", "email": "anna@example.com", "name": "Anna Nowak"},
        "account_id": "acc-7",
        "score": 9,
        "comment": "Great support.",
        "answered_at": ANSWERED_AT.isoformat(),
        "segments": {"product": "api", "region": "eu"},
    }
    body.update(changes)
    return body


def test_a_valid_payload_parses_into_typed_fields() -> None:
    response = CanonicalResponse.model_validate(payload())
    assert response.response_id == "r-1"
    assert response.score == 9
    assert response.customer == Customer(id="c-42", email="anna@example.com", name="Anna Nowak")
    assert response.answered_at == ANSWERED_AT
    assert response.segments == Segments(product="api", region="eu")


def test_optional_fields_can_be_left_out() -> None:
    body = payload()
    for optional in ("account_id", "comment", "segments"):
        del body[optional]
    response = CanonicalResponse.model_validate(body)
    assert response.account_id is None
    assert response.comment is None
    assert response.segments == Segments()


@pytest.mark.parametrize("score", [11, -1, "7", 7.5, 7.0, True, None])
def test_a_score_that_is_not_an_integer_from_0_to_10_is_rejected(score: object) -> None:
    with pytest.raises(ValidationError, match="score"):
        CanonicalResponse.model_validate(payload(score=score))


def test_a_naive_answered_at_is_rejected() -> None:
    with pytest.raises(ValidationError, match="answered_at"):
        CanonicalResponse.model_validate(payload(answered_at="2024-05-06T09:00:00"))


def test_an_unknown_top_level_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CanonicalResponse.model_validate(payload(nps=42))


def test_an_unknown_customer_field_is_rejected() -> None:
    customer = {"id": "c-42", "nickname": "Ania"}
    with pytest.raises(ValidationError, match="extra"):
        CanonicalResponse.model_validate(payload(customer=customer))


def test_surrounding_whitespace_is_stripped_from_text_fields() -> None:
    response = CanonicalResponse.model_validate(
        payload(response_id="  r-1 ", comment="  Great support.\n")
    )
    assert response.response_id == "r-1"
    assert response.comment == "Great support."


# --- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_is_the_same_for_equal_content() -> None:
    first = CanonicalResponse.model_validate(payload())
    again = CanonicalResponse.model_validate(payload())
    assert first.fingerprint() == again.fingerprint()
    assert len(first.fingerprint()) == 64


def test_fingerprint_changes_when_the_comment_changes() -> None:
    original = CanonicalResponse.model_validate(payload(comment="Great support."))
    edited = CanonicalResponse.model_validate(payload(comment="Great support!"))
    assert original.fingerprint() != edited.fingerprint()


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=10))
def test_fingerprint_changes_exactly_when_the_score_changes(first: int, second: int) -> None:
    a = CanonicalResponse.model_validate(payload(score=first))
    b = CanonicalResponse.model_validate(payload(score=second))
    assert (a.fingerprint() == b.fingerprint()) == (first == second)


def test_fingerprint_is_the_same_for_the_same_instant_written_in_another_offset() -> None:
    in_utc = CanonicalResponse.model_validate(payload(answered_at="2024-05-06T09:00:00+00:00"))
    in_warsaw = CanonicalResponse.model_validate(payload(answered_at="2024-05-06T11:00:00+02:00"))
    assert in_utc == in_warsaw
    assert in_utc.fingerprint() == in_warsaw.fingerprint()


def test_fingerprint_of_a_fixed_body_never_changes() -> None:
    # Stored fingerprints decide 409 versus duplicate for every later resend: this digest is the
    # SHA-256 of the canonical text
    # {"account_id":"acc-7","answered_at":"2024-05-06T09:00:00+00:00","comment":"Dostawa spóźniła
    # się o tydzień.","customer":{"email":"anna@example.com","id":"c-42","name":"Anna Nowak"},
    # "response_id":"r-1","score":9,"segments":{"product":"api","region":"eu"},"survey_id":"s-2024"}
    response = CanonicalResponse.model_validate(
        payload(comment="Dostawa spóźniła się o tydzień.", answered_at="2024-05-06T11:00:00+02:00")
    )
    assert (
        response.fingerprint() == "7f37399d0f69e5215b520a7ecafb71dd8bc99df3c2378b2c5f85fa1fe54ec6cd"
    )


class CustomerWithPhone(Customer):
    phone: str | None = None


class ResponseWithLaterFields(CanonicalResponse):
    """The canonical response as a later version might have it: new optional fields."""

    customer: CustomerWithPhone
    language: str | None = None


def test_new_optional_fields_left_at_their_default_keep_the_fingerprint_of_an_existing_body() -> (
    None
):
    body = payload()

    later = ResponseWithLaterFields.model_validate(body)

    assert later.fingerprint() == CanonicalResponse.model_validate(body).fingerprint()


def test_an_empty_comment_is_the_same_content_as_no_comment() -> None:
    without = payload()
    del without["comment"]

    empty = CanonicalResponse.model_validate(payload(comment="  "))

    assert empty.fingerprint() == CanonicalResponse.model_validate(without).fingerprint()


def test_fingerprint_of_the_stored_payload_is_the_fingerprint_of_the_response() -> None:
    response = CanonicalResponse.model_validate(payload(answered_at="2024-05-06T11:00:00+02:00"))

    assert fingerprint_of(response.model_dump(mode="json")) == response.fingerprint()


# --- answered_in_future ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead", "in_future"),
    [
        (timedelta(0), False),
        (timedelta(minutes=-30), False),
        (timedelta(minutes=4, seconds=59), False),
        (FUTURE_TOLERANCE, False),
        (FUTURE_TOLERANCE + timedelta(microseconds=1), True),
        (timedelta(minutes=6), True),
    ],
)
def test_answered_in_future_tolerates_five_minutes_of_clock_drift(
    ahead: timedelta, in_future: bool
) -> None:
    response = CanonicalResponse.model_validate(payload(answered_at=ANSWERED_AT + ahead))
    assert response.answered_in_future(now=ANSWERED_AT) is in_future


def test_answered_in_future_compares_instants_across_offsets() -> None:
    warsaw = timezone(timedelta(hours=2))
    # 11:04 in Warsaw is 09:04 UTC: within tolerance of 09:00 UTC although the wall clock says 11.
    response = CanonicalResponse.model_validate(
        payload(answered_at=datetime(2024, 5, 6, 11, 4, tzinfo=warsaw))
    )
    assert response.answered_in_future(now=ANSWERED_AT) is False


# --- to_event --------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10))
def test_to_event_sets_the_category_from_the_score(score: int) -> None:
    event = CanonicalResponse.model_validate(payload(score=score)).to_event(
        received_at=RECEIVED_AT, source="api"
    )
    assert event.score == score
    assert event.category is categorize(score)


def test_to_event_copies_the_response_and_adds_receipt_and_source() -> None:
    response = CanonicalResponse.model_validate(payload(score=3))
    event = response.to_event(received_at=RECEIVED_AT, source="typeform")
    assert event.category is Category.DETRACTOR
    assert event.response_id == "r-1"
    assert event.survey_id == "s-2024"
    assert event.customer == response.customer
    assert event.account_id == "acc-7"
    assert event.comment == "Great support."
    assert event.answered_at == ANSWERED_AT
    assert event.received_at == RECEIVED_AT
    assert event.segments == Segments(product="api", region="eu")
    assert event.source == "typeform"


@pytest.mark.parametrize("comment", ["", "   \n"])
def test_to_event_turns_an_empty_comment_into_no_comment(comment: str) -> None:
    event = CanonicalResponse.model_validate(payload(comment=comment)).to_event(
        received_at=RECEIVED_AT, source="api"
    )
    assert event.comment is None
