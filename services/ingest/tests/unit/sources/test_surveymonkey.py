"""SurveyMonkey: the callback's signature, its ids to fetch, and the response details made
canonical (documented payloads in tests/fixtures/surveymonkey)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop_ingest.domain.sources.base import (
    BadSignature,
    Delivery,
    FetchLater,
    FieldRefs,
    Ignored,
    InvalidPayload,
    Responses,
    SourceDefinition,
)
from closeloop_ingest.domain.sources.surveymonkey import ADAPTER, parse_api_response

FIXTURES = Path(__file__).parents[2] / "fixtures" / "surveymonkey"
KEY = "sm-api-key&sm-api-secret"
IDS = {"survey_id": "508117423", "response_id": "118823455901"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def source(**changes: Any) -> SourceDefinition:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "name": "sm-main",
        "kind": "surveymonkey",
        "secrets": [KEY],
        "default_locale": "en",
        "api": {"base_url": "https://api.surveymonkey.com", "token": "sm-api-token"},
    }
    return SourceDefinition.model_validate(fields | changes)


def signed(body: bytes, key: str = KEY) -> Delivery:
    digest = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha1).digest()).decode()
    headers = {
        "sm-signature": digest,
        "sm-apikey": "sm-api-key",
        "content-type": "application/json",
    }
    return Delivery(body, headers, "application/json", datetime(2024, 5, 6, 9, 1, tzinfo=UTC))


def test_a_body_signed_with_the_api_key_and_secret_verifies() -> None:
    body = (FIXTURES / "webhook_response_completed.json").read_bytes()
    ADAPTER.verify(signed(body), source())


def test_any_secret_of_a_rotation_verifies() -> None:
    body = (FIXTURES / "webhook_response_completed.json").read_bytes()
    ADAPTER.verify(signed(body, "new-key&new-secret"), source(secrets=[KEY, "new-key&new-secret"]))


def test_a_changed_body_or_wrong_key_is_signature_invalid() -> None:
    body = (FIXTURES / "webhook_response_completed.json").read_bytes()
    tampered = signed(body)
    tampered = Delivery(body + b" ", tampered.headers, "application/json", tampered.received_at)
    for delivery in (tampered, signed(body, "other&key")):
        with pytest.raises(BadSignature) as caught:
            ADAPTER.verify(delivery, source())
        assert caught.value.reason == "signature_invalid"
        assert "secret" not in str(caught.value)


def test_no_signature_header_is_signature_missing() -> None:
    body = b"{}"
    delivery = Delivery(body, {}, "application/json", datetime(2024, 5, 6, tzinfo=UTC))
    with pytest.raises(BadSignature) as caught:
        ADAPTER.verify(delivery, source())
    assert caught.value.reason == "signature_missing"


def test_a_completed_response_is_fetched_later_by_its_ids() -> None:
    body = (FIXTURES / "webhook_response_completed.json").read_bytes()
    parsed = ADAPTER.parse(signed(body), source())
    assert isinstance(parsed, FetchLater)
    assert parsed.ids["survey_id"] == "508117423"
    assert parsed.ids["response_id"] == "118823455901"
    assert parsed.ids["collector_id"] == "431592847"
    assert parsed.delivery_id == "10203040506"


@pytest.mark.parametrize(
    "event_type", ["response_created", "response_deleted", "collector_updated"]
)
def test_events_without_a_finished_answer_are_ignored(event_type: str) -> None:
    event = fixture("webhook_response_completed.json") | {"event_type": event_type}
    parsed = ADAPTER.parse(signed(json.dumps(event).encode()), source())
    assert isinstance(parsed, Ignored)


def test_a_callback_without_the_survey_id_is_invalid() -> None:
    event = fixture("webhook_response_completed.json")
    del event["resources"]["survey_id"]
    with pytest.raises(InvalidPayload) as caught:
        ADAPTER.parse(signed(json.dumps(event).encode()), source())
    assert caught.value.field == "resources.survey_id"


def test_a_promoter_becomes_a_canonical_response() -> None:
    parsed = parse_api_response(fixture("details_promoter.json"), source(), IDS)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert response.response_id == "surveymonkey:118823455901"
    assert response.survey_id == "508117423"
    assert response.score == 9
    assert response.comment == "Fast delivery and friendly support."
    assert response.customer.id == "cust-1042"
    assert response.customer.email == "anna.nowak@example.com"
    assert response.customer.name == "Anna Nowak"
    assert response.customer.locale == "pl-PL"
    assert response.account_id == "acc-77"
    assert response.answered_at == datetime(2024, 5, 6, 8, 57, 14, tzinfo=UTC)
    assert response.updated_at == datetime(2024, 5, 6, 9, 0, 38, tzinfo=UTC)


def test_a_detractor_keeps_its_polish_comment_and_the_default_locale() -> None:
    parsed = parse_api_response(fixture("details_detractor.json"), source(), IDS)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert response.score == 3
    assert response.comment == "Obsługa była powolna, żółć zażółcona gęślą jaźń"
    assert response.customer.locale == "en"


def test_a_passive_given_by_explicit_question_ids() -> None:
    document = fixture("details_promoter.json")
    for question in document["pages"][0]["questions"]:
        question.pop("family")
    document["pages"][0]["questions"][0]["answers"] = [{"choice_id": "1", "text": "7"}]
    refs = FieldRefs(nps_question="319352786", comment_question="319352787")
    parsed = parse_api_response(document, source(forms={"508117423": refs}), IDS)
    assert isinstance(parsed, Responses)
    assert parsed.submissions[0].response.score == 7
    assert parsed.submissions[0].response.comment == "Fast delivery and friendly support."


def test_jsonpath_refs_override_the_defaults() -> None:
    refs = FieldRefs(customer_id="$.recipient_id", segments={"region": "$.custom_variables.locale"})
    parsed = parse_api_response(fixture("details_promoter.json"), source(fields=refs), IDS)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert response.customer.id == "98237465"
    assert response.segments.region == "pl_PL"


def test_a_score_that_is_not_a_whole_number_names_its_location() -> None:
    document = fixture("details_promoter.json")
    document["pages"][0]["questions"][0]["answers"][0]["simple_text"] = "Extremely likely"
    with pytest.raises(InvalidPayload) as caught:
        parse_api_response(document, source(), IDS)
    assert caught.value.field == "pages[0].questions[0].answers[0].simple_text"


def test_a_survey_without_an_nps_question_or_answer_is_ignored() -> None:
    document = fixture("details_promoter.json")
    unanswered = copy.deepcopy(document)
    unanswered["pages"][0]["questions"][0]["answers"] = []
    del document["pages"][0]["questions"][0]
    assert isinstance(parse_api_response(document, source(), IDS), Ignored)
    assert isinstance(parse_api_response(unanswered, source(), IDS), Ignored)


def test_details_without_pages_are_invalid() -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_api_response({"id": "1"}, source(), IDS)
    assert caught.value.field == "pages"
