"""Qualtrics: an event subscription (`surveyengine.completedResponse.<SurveyID>`) posts form
fields naming the response; it is then fetched from
`GET /API/v3/surveys/{surveyId}/responses/{responseId}` (`parse_api_response`).

Signature: a subscription created with a `sharedKey` posts three form fields, `Topic`, `MSG`
(the event, as JSON text: `Status`, `SurveyID`, `ResponseID`, `CompletedDate`, `BrandID`, ...)
and `HMAC`, the hex HMAC-SHA512 of the `MSG` value under the shared key. There is no signature
header: the HMAC signs the `MSG` text exactly as posted (form-decoded, never re-serialised).
A source's secrets are the subscription's shared keys. Unsigned posts (fields at the top level,
no `HMAC`) are refused as `signature_missing`.

NPS: `FieldRefs.nps_question` (a QID) or else the question Qualtrics groups as NPS (a
`<QID>_NPS_GROUP` value next to `<QID>`). Comment: `comment_question` (a QID; its `_TEXT`) or the
first `QIDn_TEXT` answer. JSONPath refs apply to the whole API answer
(`$.result.values.<embedded data field>`).

Sources:
- https://community.qualtrics.com/qualtrics-api-13/hmac-signatures-for-webhook-subscriptions-12167
  (a signed post: `Topic`, `HMAC` of 128 hex digits, `MSG`)
- https://github.com/kyma-incubator/connector-tools/tree/master/qualtrics-event-gw (a gateway
  that checks `HMAC` as HMAC-SHA512 over the `MSG` form value with the shared key)
- https://raw.githubusercontent.com/api-evangelist/qualtrics/refs/heads/main/json-schema/subscribetoeventbody.json
  (topics `surveyengine.completedResponse.[SurveyID]`, form-encoded hook)
- https://api.qualtrics.com/ (Get Response: `result.values`, `labels`; `X-API-TOKEN`)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from closeloop_ingest.domain.sources.base import (
    BadSignature,
    Delivery,
    FetchLater,
    Ignored,
    InvalidPayload,
    Kind,
    Parsed,
    Responses,
    SourceDefinition,
    Submission,
    UnsupportedContentType,
    parse_score,
    text_of,
)
from closeloop_ingest.domain.sources.digests import check_digest, digests
from closeloop_ingest.domain.sources.respondent import (
    PartPaths,
    assemble,
    find_respondent,
)

FORM = "application/x-www-form-urlencoded"
_COMPLETED = re.compile(r"(?:^|\.)surveyengine\.completedResponse\.")
_TEXT_ANSWER = re.compile(r"^QID\d+(?:_\d+)*_TEXT$")
_NPS_GROUP = "_NPS_GROUP"
DEFAULTS: PartPaths = {
    "customer_id": ("$.result.values.customer_id", "$.result.values.externalDataReference"),
    "customer_email": ("$.result.values.recipientEmail", "$.result.values.email"),
    "locale": ("$.result.values.userLanguage",),
    "account_id": ("$.result.values.account_id",),
    "channel": ("$.result.values.distributionChannel",),
}


class QualtricsAdapter:
    kind: Kind = "qualtrics"
    content_types: frozenset[str] = frozenset({FORM})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        try:
            form = _form(delivery)
        except InvalidPayload as exc:
            raise BadSignature("signature_missing", "the body is not form fields") from exc
        message = form.get("MSG")
        if message is None:
            raise BadSignature("signature_missing", "no MSG form field to check HMAC over")
        expected = digests(source.secret_values(), message.encode(), "sha512", "hex")
        check_digest(form.get("HMAC"), expected, encoding="hex", where="the HMAC form field")

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        if delivery.content_type not in self.content_types:
            raise UnsupportedContentType(
                f"Qualtrics posts form fields, not {delivery.content_type}"
            )
        form = _form(delivery)
        event: Mapping[str, Any] = form
        if (message := form.get("MSG")) is not None:
            try:
                event = orjson.loads(message)
            except orjson.JSONDecodeError as exc:
                raise InvalidPayload("MSG", f"not valid JSON: {exc}") from exc
            if not isinstance(event, dict):
                raise InvalidPayload("MSG", "the event is a JSON object")
        topic = form.get("Topic") or ""
        if not _COMPLETED.search(topic):
            return Ignored(f"topic {topic[:80]!r} is not a completed response")
        ids = {}
        for name, field in (("survey_id", "SurveyID"), ("response_id", "ResponseID")):
            value = event.get(field)
            if not isinstance(value, str) or not value.strip():
                raise InvalidPayload(f"MSG.{field}" if message else field, "missing")
            ids[name] = value.strip()
        return FetchLater(ids=ids)


ADAPTER = QualtricsAdapter()


def parse_api_response(
    document: Any, source: SourceDefinition, ids: Mapping[str, str]
) -> Responses | Ignored:
    """The canonical response in Qualtrics' Get Response answer, or why there is none."""
    result = document.get("result") if isinstance(document, dict) else None
    values = result.get("values") if isinstance(result, dict) else None
    if not isinstance(result, dict) or not isinstance(values, dict):
        raise InvalidPayload("result.values", "the answer has no response values")
    vendor_id = text_of(result.get("responseId")) or ids.get("response_id")
    survey_id = ids.get("survey_id")
    if vendor_id is None or survey_id is None:
        raise InvalidPayload("result.responseId", "no response or survey id")
    refs = source.refs_for(survey_id)
    qid = refs.nps_question or _nps_question(values)
    if qid is None:
        return Ignored("the survey has no NPS question")
    if values.get(qid) is None:
        return Ignored("the NPS question is not answered yet")
    score = parse_score(values[qid], f"result.values.{qid}")
    comment, comment_at = _comment(values, refs.comment_question)
    found = find_respondent(document, refs, DEFAULTS, default_locale=source.default_locale)
    response = assemble(
        response_id=f"qualtrics:{vendor_id}",
        survey_id=survey_id,
        customer=found.customer.named(_name(values)),
        account_id=found.account_id,
        score=score,
        comment=comment,
        answered_at=values.get("recordedDate") or values.get("endDate") or "",
        updated_at=None,
        segments=found.segments,
        attributes=found.attributes,
        at={"comment": comment_at, "answered_at": "result.values.recordedDate"},
    )
    return Responses(submissions=[Submission(response=response)])


def _form(delivery: Delivery) -> dict[str, str]:
    try:
        text = delivery.body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload("body", "not form fields (application/x-www-form-urlencoded)") from exc


def _nps_question(values: Mapping[str, Any]) -> str | None:
    """The QID Qualtrics groups as NPS (`QID3_NPS_GROUP` next to `QID3`)."""
    for key in values:
        if key.endswith(_NPS_GROUP) and key != _NPS_GROUP:
            return key[: -len(_NPS_GROUP)]
    return None


def _comment(values: Mapping[str, Any], explicit: str | None) -> tuple[str | None, str]:
    if explicit is not None:
        candidates = [f"{explicit}_TEXT", explicit]
    else:
        candidates = [key for key in values if _TEXT_ANSWER.match(key)]
    for key in candidates:
        if isinstance(text := values.get(key), str) and text.strip():
            return text, f"result.values.{key}"
    return None, "comment"


def _name(values: Mapping[str, Any]) -> str | None:
    parts = [values.get("recipientFirstName"), values.get("recipientLastName")]
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None
