"""SurveyMonkey: its webhook names a response by id only; the response is then fetched from
`GET /v3/surveys/{survey_id}/responses/{response_id}/details` (`parse_api_response`).

Signature: `Sm-Signature` is the base64 HMAC-SHA1 of the raw body under the key
`<api_key>&<api_secret>` (`Sm-Apikey` carries the API key / client id). A source's secret is
that whole key, `<api_key>&<api_secret>`; several during a rotation.

The NPS question is `FieldRefs.nps_question` (a question id) or else the question SurveyMonkey
marks as NPS (family or subtype `nps`); its score is the chosen choice's text (`simple_text`,
which the details endpoint gives with `simple=true`, or `text`). The comment is
`comment_question` or else the first open-ended answer. JSONPath refs apply to the details
document; defaults read `custom_variables` and `metadata.contact`.

Sources:
- https://github.com/SurveyMonkey/public_api_docs/blob/main/includes/_webhooks.md (callback
  headers, the signature recipe, the callback event body)
- https://github.com/SurveyMonkey/public_api_docs/blob/main/includes/_responses.md (the
  response details resource)
- https://api.surveymonkey.com/v3/docs (webhooks, responses; `simple` answers)
- https://asyncapi.apis.io/asyncapis/surveymonkey/surveymonkey-asyncapi/ (event types, headers)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from closeloop_ingest.domain.sources.base import (
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
)
from closeloop_ingest.domain.sources.digests import verify_body_hmac
from closeloop_ingest.domain.sources.respondent import (
    PartPaths,
    assemble,
    find_respondent,
)

RESPONSE_EVENTS = frozenset({"response_completed", "response_updated"})
_RESOURCE_IDS = ("collector_id", "respondent_id", "recipient_id")
DEFAULTS: PartPaths = {
    "customer_id": ("$.custom_variables.customer_id", "$.metadata.contact.external_id.value"),
    "customer_email": ("$.metadata.contact.email.value", "$.email_address"),
    "locale": ("$.custom_variables.locale", "$.custom_variables.language"),
    "account_id": ("$.custom_variables.account_id",),
}


class SurveyMonkeyAdapter:
    kind: Kind = "surveymonkey"
    content_types: frozenset[str] = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_body_hmac(
            delivery, source, header="Sm-Signature", encoding="base64", algorithm="sha1"
        )

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        if delivery.content_type not in self.content_types:
            raise UnsupportedContentType(f"SurveyMonkey posts JSON, not {delivery.content_type}")
        event = delivery.json()
        if not isinstance(event, dict):
            raise InvalidPayload("body", "a SurveyMonkey callback is a JSON object")
        event_type = event.get("event_type")
        delivery_id = _text(event.get("event_id"))
        if event_type not in RESPONSE_EVENTS or event.get("object_type", "response") != "response":
            return Ignored(f"event {str(event_type)[:60]} carries no answer", delivery_id)
        resources = event.get("resources")
        if not isinstance(resources, dict):
            raise InvalidPayload("resources", "missing: the ids of the response")
        response_id = _text(event.get("object_id"))
        if response_id is None:
            raise InvalidPayload("object_id", "missing: the response id")
        survey_id = _text(resources.get("survey_id"))
        if survey_id is None and event.get("filter_type") == "survey":
            survey_id = _text(event.get("filter_id"))
        if survey_id is None:
            raise InvalidPayload("resources.survey_id", "missing: the survey id")
        ids = {"survey_id": survey_id, "response_id": response_id}
        for name in _RESOURCE_IDS:
            if (value := _text(resources.get(name))) is not None:
                ids[name] = value
        return FetchLater(ids=ids, delivery_id=delivery_id)


ADAPTER = SurveyMonkeyAdapter()


@dataclass(frozen=True, slots=True)
class _Question:
    question: Mapping[str, Any]
    where: str  # its location in the details document

    @property
    def id(self) -> str | None:
        return _text(self.question.get("id"))

    def has(self, attribute: str, value: str) -> bool:
        found = self.question.get(attribute)
        return isinstance(found, str) and found.lower() == value

    def answers(self) -> Iterator[tuple[Mapping[str, Any], str]]:
        answers = self.question.get("answers")
        if not isinstance(answers, list):
            return
        for k, answer in enumerate(answers):
            if isinstance(answer, dict):
                yield answer, f"{self.where}.answers[{k}]"


def parse_api_response(
    document: Any, source: SourceDefinition, ids: Mapping[str, str]
) -> Responses | Ignored:
    """The canonical response in SurveyMonkey's response details, or why there is none."""
    if not isinstance(document, dict) or not isinstance(document.get("pages"), list):
        raise InvalidPayload("pages", "the response details have no pages")
    status = document.get("response_status")
    if status in ("disqualified", "overquota"):
        return Ignored(f"the response is {status}")
    vendor_id = _text(document.get("id")) or ids.get("response_id")
    survey_id = _text(document.get("survey_id")) or ids.get("survey_id")
    if vendor_id is None or survey_id is None:
        raise InvalidPayload("id", "the response details name no response or survey")
    refs = source.refs_for(survey_id)
    questions = list(_questions(document["pages"]))
    nps = _find(
        questions, refs.nps_question, lambda q: q.has("family", "nps") or q.has("subtype", "nps")
    )
    if nps is None:
        return Ignored("the survey has no NPS question")
    chosen = next(iter(nps.answers()), None)
    if chosen is None:
        return Ignored("the NPS question is not answered yet")
    answer, where = chosen
    field = "simple_text" if "simple_text" in answer else "text"
    score = parse_score(answer.get(field), f"{where}.{field}")
    comment_question = _find(
        questions, refs.comment_question, lambda q: q.has("family", "open_ended")
    )
    comment, comment_at = _answer_text(comment_question)
    response_id = f"surveymonkey:{vendor_id}"
    found = find_respondent(document, refs, DEFAULTS, default_locale=source.default_locale)
    response = assemble(
        response_id=response_id,
        survey_id=survey_id,
        customer=found.customer.named(_name(document)),
        account_id=found.account_id,
        score=score,
        comment=comment,
        answered_at=document.get("date_created") or document.get("date_modified") or "",
        updated_at=document.get("date_modified"),
        segments=found.segments,
        attributes=found.attributes,
        at={"comment": comment_at, "answered_at": "date_created", "updated_at": "date_modified"},
    )
    return Responses(submissions=[Submission(response=response)])


def _questions(pages: list[Any]) -> Iterator[_Question]:
    for i, page in enumerate(pages):
        questions = page.get("questions") if isinstance(page, dict) else None
        if not isinstance(questions, list):
            continue
        for j, question in enumerate(questions):
            if isinstance(question, dict):
                yield _Question(question, f"pages[{i}].questions[{j}]")


def _find(
    questions: list[_Question], explicit: str | None, marked: Callable[[_Question], bool]
) -> _Question | None:
    """The question with the explicit id, else the first the kind recognises."""
    if explicit is not None:
        return next((q for q in questions if q.id == explicit), None)
    return next((q for q in questions if marked(q)), None)


def _answer_text(question: _Question | None) -> tuple[str | None, str]:
    if question is None:
        return None, "comment"
    for answer, where in question.answers():
        for field in ("text", "simple_text"):
            if isinstance(text := answer.get(field), str) and text.strip():
                return text, f"{where}.{field}"
    return None, "comment"


def _name(document: Mapping[str, Any]) -> str | None:
    metadata = document.get("metadata")
    contact = metadata.get("contact") if isinstance(metadata, dict) else None
    parts = []
    for field in ("first_name", "last_name"):
        entry = contact.get(field) if isinstance(contact, dict) else None
        value = entry.get("value") if isinstance(entry, dict) else None
        value = value if isinstance(value, str) else document.get(field)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
    return " ".join(parts) or None


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value).strip() or None
    return None
