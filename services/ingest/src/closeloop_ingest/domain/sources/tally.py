"""Tally webhooks: `FORM_RESPONSE` events, one submission each.

Sources read:
- https://tally.so/help/webhooks (payload: `eventId`, `eventType`, `createdAt`, `data` with
  `responseId`, `submissionId`, `respondentId`, `formId`, `formName`, `createdAt` and `fields`,
  each {key, label, type, value}; hidden fields are fields of type `HIDDEN_FIELDS` named by their
  `label`; signing: header `Tally-Signature`, the base64 HMAC-SHA256 of the raw body keyed with
  the webhook's signing secret, no timestamp)
- https://developers.tally.so/api-reference/endpoint/webhooks/post.md (the `signingSecret`)

The NPS answer is the first `LINEAR_SCALE` field (Tally's NPS block is a 0-10 linear scale), else
the first `RATING`; `FieldRefs.nps_question` / `comment_question` name a field by `key` (or
`label`). The comment is the first `TEXTAREA`, else the first `INPUT_TEXT`. Tally sends no
updates.
"""

from __future__ import annotations

from typing import Any

from closeloop_ingest.domain.sources.base import (
    Delivery,
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


def _hidden(name: str) -> str:
    return f"$.data.fields[?@.type == 'HIDDEN_FIELDS' && @.label == '{name}'].value"


DEFAULTS: PartPaths = {
    "customer_id": (_hidden("customer_id"),),
    "customer_email": (_hidden("email"), "$.data.fields[?@.type == 'INPUT_EMAIL'].value"),
    "customer_name": (_hidden("name"),),
    "locale": (_hidden("locale"),),
    "account_id": (_hidden("account_id"),),
    "product": (_hidden("product"),),
    "region": (_hidden("region"),),
    "channel": (_hidden("channel"),),
    "touchpoint": (_hidden("touchpoint"),),
}
NPS_TYPES = ("LINEAR_SCALE", "RATING")
COMMENT_TYPES = ("TEXTAREA", "INPUT_TEXT")


class TallyAdapter:
    """Tally's `FORM_RESPONSE` webhook."""

    kind: Kind = "tally"
    content_types = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_body_hmac(delivery, source, header="Tally-Signature", encoding="base64")

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        payload = delivery.json()
        if not isinstance(payload, dict):
            raise InvalidPayload("body", "a Tally webhook is a JSON object")
        event_id = text_of(payload.get("eventId"))
        if payload.get("eventType") != "FORM_RESPONSE":
            return Ignored(f"event type {payload.get('eventType')!r:.60}", event_id)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise InvalidPayload("data", "missing")
        form_id = required_text(data, "formId", "data.")
        response_token = required_text(data, "responseId", "data.")
        created_at = required_text(data, "createdAt", "data.")
        fields_list = data.get("fields") or []
        if not isinstance(fields_list, list):
            raise InvalidPayload("data.fields", "a list of fields")
        refs = source.refs_for(form_id)
        nps = _field_for(fields_list, refs.nps_question, NPS_TYPES)
        if nps is None or nps[1].get("value") is None:
            return Ignored(f"no NPS answer in form {form_id}", event_id)
        where = f"data.fields[{nps[0]}].value"
        score = parse_score(nps[1]["value"], where)
        comment_field = _field_for(fields_list, refs.comment_question, COMMENT_TYPES)
        comment = text_of(comment_field[1].get("value")) if comment_field else None
        respondent = find_respondent(payload, refs, DEFAULTS, default_locale=source.default_locale)
        response_id = f"tally:{response_token}"
        fields = {
            "response_id": response_id,
            "survey_id": lookup_text(payload, refs.survey_id) or form_id,
            "customer": respondent.customer.customer_json(response_id),
            "account_id": respondent.account_id,
            "score": score,
            "comment": comment,
            "answered_at": created_at,
            "segments": dict(respondent.segments),
            "attributes": dict(respondent.attributes),
        }
        at = {
            "response_id": "data.responseId",
            "survey_id": "data.formId",
            "answered_at": "data.createdAt",
            "score": where,
        }
        return Responses([Submission(canonical(fields, at=at))], event_id)


def _field_for(
    fields: list[Any], question: str | None, types: tuple[str, ...]
) -> tuple[int, dict[str, Any]] | None:
    """The field `question` names (by key, then label), else the first of `types` in order."""
    candidates = [(i, f) for i, f in enumerate(fields) if isinstance(f, dict)]
    if question:
        for attribute in ("key", "label"):
            for index, field in candidates:
                if field.get(attribute) == question:
                    return index, field
        return None
    for wanted in types:
        for index, field in candidates:
            if field.get("type") == wanted:
                return index, field
    return None


ADAPTER = TallyAdapter()
