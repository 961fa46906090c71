"""Typeform webhooks: `form_response` events, one response each.

Sources read:
- https://www.typeform.com/developers/webhooks/example-payload/ (payload: `event_id`,
  `event_type`, `form_response` with `form_id`, `token`, `submitted_at`, `hidden`, `definition`
  and `answers`, each answer typed (`number`, `text`, ...) and naming its `field` {id, type, ref})
- https://www.typeform.com/developers/webhooks/secure-your-webhooks/ (header
  `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body keyed with the secret>`)

The NPS answer is the one whose field is of type `nps`, else an `opinion_scale` whose definition
does not show a range other than 0-10; `FieldRefs.nps_question` / `comment_question` name a field
by `ref` or `id`. The comment is the first `long_text` answer, else the first `short_text` one.
Hidden fields give the respondent by default (customer_id, email, name, account_id, locale,
product, region, channel, touchpoint). Typeform sends no updates: `updated_at` stays unset.
"""

from __future__ import annotations

from typing import Any

from closeloop_ingest.domain.sources.base import (
    Delivery,
    FieldRefs,
    Ignored,
    InvalidPayload,
    Kind,
    Parsed,
    Responses,
    SourceDefinition,
    Submission,
    canonical,
    lookup_text,
    parse_score,
    required_text,
    text_of,
)
from closeloop_ingest.domain.sources.digests import verify_body_hmac
from closeloop_ingest.domain.sources.respondent import PartPaths, find_respondent

_HIDDEN = "$.form_response.hidden"
DEFAULTS: PartPaths = {
    "customer_id": (f"{_HIDDEN}.customer_id",),
    "customer_email": (f"{_HIDDEN}.email",),
    "customer_name": (f"{_HIDDEN}.name",),
    "locale": (f"{_HIDDEN}.locale",),
    "account_id": (f"{_HIDDEN}.account_id",),
    "product": (f"{_HIDDEN}.product",),
    "region": (f"{_HIDDEN}.region",),
    "channel": (f"{_HIDDEN}.channel",),
    "touchpoint": (f"{_HIDDEN}.touchpoint",),
}
COMMENT_TYPES = ("long_text", "short_text")


class TypeformAdapter:
    """Typeform's `form_response` webhook."""

    kind: Kind = "typeform"
    content_types = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_body_hmac(
            delivery, source, header="Typeform-Signature", encoding="base64", prefix="sha256="
        )

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        payload = delivery.json()
        if not isinstance(payload, dict):
            raise InvalidPayload("body", "a Typeform webhook is a JSON object")
        event_id = text_of(payload.get("event_id"))
        if payload.get("event_type") != "form_response":
            return Ignored(f"event type {payload.get('event_type')!r:.60}", event_id)
        response = payload.get("form_response")
        if not isinstance(response, dict):
            raise InvalidPayload("form_response", "missing")
        form_id = required_text(response, "form_id", "form_response.")
        token = required_text(response, "token", "form_response.")
        submitted_at = required_text(response, "submitted_at", "form_response.")
        refs = source.refs_for(form_id)
        answers = response.get("answers") or []
        if not isinstance(answers, list):
            raise InvalidPayload("form_response.answers", "a list of answers")
        nps = _nps_answer(answers, response, refs)
        if nps is None:
            return Ignored(f"no NPS answer in form {form_id}", event_id)
        index, answer = nps
        where = f"form_response.answers[{index}]"
        key = "number" if "number" in answer else str(answer.get("type", "number"))
        score = parse_score(answer.get(key), f"{where}.{key}")
        respondent = find_respondent(payload, refs, DEFAULTS, default_locale=source.default_locale)
        response_id = f"typeform:{token}"
        fields = {
            "response_id": response_id,
            "survey_id": lookup_text(payload, refs.survey_id) or form_id,
            "customer": respondent.customer.customer_json(response_id),
            "account_id": respondent.account_id,
            "score": score,
            "comment": _comment(answers, refs),
            "answered_at": submitted_at,
            "segments": dict(respondent.segments),
            "attributes": dict(respondent.attributes),
        }
        at = {
            "response_id": "form_response.token",
            "survey_id": "form_response.form_id",
            "answered_at": "form_response.submitted_at",
            "score": f"{where}.{key}",
        }
        user_agent = lookup_text(payload, "$.form_response.metadata.user_agent")
        return Responses([Submission(canonical(fields, at=at), user_agent)], event_id)


def _nps_answer(
    answers: list[Any], response: dict[str, Any], refs: FieldRefs
) -> tuple[int, dict[str, Any]] | None:
    if refs.nps_question:
        return _answer_to(answers, refs.nps_question)
    ranges = _opinion_scale_ranges(response)
    for wanted in ("nps", "opinion_scale"):
        for index, answer in enumerate(answers):
            field = _field(answer)
            if field.get("type") != wanted:
                continue
            if wanted == "opinion_scale" and ranges.get(str(field.get("id"))) not in (None, 11):
                continue  # a 1-5 (or other) scale is not a likelihood to recommend
            return index, answer
    return None


def _opinion_scale_ranges(response: dict[str, Any]) -> dict[str, int | None]:
    """Field id -> number of steps of a 0-based opinion scale, as far as the definition tells
    (a scale starting at one can never be 0-10: it gets 0 steps)."""
    definition = response.get("definition")
    fields = definition.get("fields") if isinstance(definition, dict) else None
    ranges: dict[str, int | None] = {}
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or field.get("type") != "opinion_scale":
            continue
        properties = field.get("properties") or {}
        steps = properties.get("steps") if isinstance(properties, dict) else None
        starts_at_one = isinstance(properties, dict) and properties.get("start_at_one") is True
        ranges[str(field.get("id"))] = 0 if starts_at_one else steps
    return ranges


def _comment(answers: list[Any], refs: FieldRefs) -> str | None:
    if refs.comment_question:
        found = _answer_to(answers, refs.comment_question)
        return text_of(found[1].get("text")) if found else None
    for wanted in COMMENT_TYPES:
        for answer in answers:
            if _field(answer).get("type") == wanted:
                return text_of(answer.get("text"))
    return None


def _answer_to(answers: list[Any], question: str) -> tuple[int, dict[str, Any]] | None:
    for index, answer in enumerate(answers):
        field = _field(answer)
        if question in (field.get("ref"), field.get("id")):
            return index, answer
    return None


def _field(answer: Any) -> dict[str, Any]:
    field = answer.get("field") if isinstance(answer, dict) else None
    return field if isinstance(field, dict) else {}


ADAPTER = TypeformAdapter()
