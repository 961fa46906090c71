"""Qualtrics: the signed event subscription post (HMAC-SHA512 of `MSG`), its ids to fetch, and
the Get Response answer made canonical (documented payloads in tests/fixtures/qualtrics)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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
    UnsupportedContentType,
)
from closeloop_ingest.domain.sources.qualtrics import ADAPTER, FORM, parse_api_response

FIXTURES = Path(__file__).parents[2] / "fixtures" / "qualtrics"
SHARED_KEY = "qualtrics-shared-key"
TOPIC = "acmebrand.surveyengine.completedResponse.SV_cVn9uBwheR9hz01"
IDS = {"survey_id": "SV_cVn9uBwheR9hz01", "response_id": "R_suq806jn8LGzhx7"}
RECEIVED_AT = datetime(2024, 5, 6, 9, 1, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def source(**changes: Any) -> SourceDefinition:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "name": "qx",
        "kind": "qualtrics",
        "secrets": [SHARED_KEY],
        "api": {"base_url": "https://ca1.qualtrics.com", "token": "qualtrics-api-token"},
    }
    return SourceDefinition.model_validate(fields | changes)


def post(
    msg: str, *, key: str = SHARED_KEY, topic: str = TOPIC, hmac_field: bool = True
) -> Delivery:
    fields = {"Topic": topic}
    if hmac_field:
        fields["HMAC"] = hmac.new(key.encode(), msg.encode(), hashlib.sha512).hexdigest()
    fields["MSG"] = msg
    return Delivery(urlencode(fields).encode(), {"content-type": FORM}, FORM, RECEIVED_AT)


MSG = (FIXTURES / "event_msg.json").read_text(encoding="utf-8").strip()


def test_the_hmac_of_msg_under_the_shared_key_verifies() -> None:
    ADAPTER.verify(post(MSG), source())
    ADAPTER.verify(post(MSG, key="rotated"), source(secrets=[SHARED_KEY, "rotated"]))


def test_a_wrong_key_or_a_changed_msg_is_signature_invalid() -> None:
    delivery = post(MSG)
    tampered = Delivery(
        delivery.body.replace(b"R_suq806", b"R_xxx806"), delivery.headers, FORM, RECEIVED_AT
    )
    for wrong in (post(MSG, key="guess"), tampered):
        with pytest.raises(BadSignature) as caught:
            ADAPTER.verify(wrong, source())
        assert caught.value.reason == "signature_invalid"


def test_an_unsigned_post_is_signature_missing() -> None:
    unsigned = urlencode({"Topic": TOPIC, "Status": "Complete", "ResponseID": "R_1"}).encode()
    for delivery in (post(MSG, hmac_field=False), Delivery(unsigned, {}, FORM, RECEIVED_AT)):
        with pytest.raises(BadSignature) as caught:
            ADAPTER.verify(delivery, source())
        assert caught.value.reason == "signature_missing"


def test_a_completed_response_is_fetched_later_by_survey_and_response_id() -> None:
    parsed = ADAPTER.parse(post(MSG), source())
    assert parsed == FetchLater(ids=IDS)


def test_unsigned_form_fields_at_the_top_level_parse_too() -> None:
    body = urlencode({"Topic": TOPIC, "SurveyID": "SV_1", "ResponseID": "R_1"}).encode()
    parsed = ADAPTER.parse(Delivery(body, {}, FORM, RECEIVED_AT), source())
    assert parsed == FetchLater(ids={"survey_id": "SV_1", "response_id": "R_1"})


def test_other_topics_are_ignored() -> None:
    parsed = ADAPTER.parse(post(MSG, topic="surveyengine.partialResponse.SV_1"), source())
    assert isinstance(parsed, Ignored)


def test_an_event_without_a_response_id_is_invalid() -> None:
    msg = json.dumps({k: v for k, v in json.loads(MSG).items() if k != "ResponseID"})
    with pytest.raises(InvalidPayload) as caught:
        ADAPTER.parse(post(msg), source())
    assert caught.value.field == "MSG.ResponseID"


def test_json_is_not_what_qualtrics_posts() -> None:
    delivery = Delivery(b"{}", {}, "application/json", RECEIVED_AT)
    with pytest.raises(UnsupportedContentType):
        ADAPTER.parse(delivery, source())


def test_a_promoter_becomes_a_canonical_response() -> None:
    parsed = parse_api_response(fixture("response_promoter.json"), source(), IDS)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert response.response_id == "qualtrics:R_suq806jn8LGzhx7"
    assert response.survey_id == "SV_cVn9uBwheR9hz01"
    assert response.score == 10
    assert response.comment == "Świetna obsługa, szybka dostawa."
    assert response.customer.id == "cust-1042"
    assert response.customer.email == "anna.nowak@example.com"
    assert response.customer.name == "Anna Nowak"
    assert response.customer.locale == "pl"
    assert response.account_id == "acc-77"
    assert response.segments.channel == "email"
    assert response.answered_at == datetime(2024, 5, 6, 9, 0, 41, 123000, tzinfo=UTC)


def test_a_detractor_scored_as_text_keeps_its_polish_comment() -> None:
    ids = {"survey_id": "SV_other", "response_id": "R_2fTq9Lk0mWx8yZa"}
    parsed = parse_api_response(fixture("response_detractor.json"), source(), ids)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert response.score == 2
    assert response.comment == "Obsługa była powolna, żółć zażółcona gęślą jaźń"
    assert response.customer.id == "qualtrics:R_2fTq9Lk0mWx8yZa"  # anonymous: its own customer
    assert response.customer.locale == "en-GB"


def test_a_passive_from_explicit_questions_and_embedded_data_refs() -> None:
    document = fixture("response_promoter.json")
    values = document["result"]["values"]
    del values["QID1_NPS_GROUP"]
    values |= {"QID7": 8, "QID8_TEXT": "OK.", "crm_id": "crm-9"}
    refs = FieldRefs(
        nps_question="QID7", comment_question="QID8", customer_id="$.result.values.crm_id"
    )
    parsed = parse_api_response(document, source(forms={IDS["survey_id"]: refs}), IDS)
    assert isinstance(parsed, Responses)
    response = parsed.submissions[0].response
    assert (response.score, response.comment, response.customer.id) == (8, "OK.", "crm-9")


def test_a_score_out_of_range_names_the_question() -> None:
    document = fixture("response_promoter.json")
    document["result"]["values"]["QID1"] = 11
    with pytest.raises(InvalidPayload) as caught:
        parse_api_response(document, source(), IDS)
    assert caught.value.field == "result.values.QID1"


def test_no_nps_question_or_no_answer_is_ignored() -> None:
    document = fixture("response_promoter.json")
    unanswered = copy.deepcopy(document)
    del unanswered["result"]["values"]["QID1"]
    del document["result"]["values"]["QID1_NPS_GROUP"]
    assert isinstance(parse_api_response(document, source(), IDS), Ignored)
    assert isinstance(parse_api_response(unanswered, source(), IDS), Ignored)


def test_an_answer_without_values_is_invalid() -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_api_response({"meta": {}}, source(), IDS)
    assert caught.value.field == "result.values"
