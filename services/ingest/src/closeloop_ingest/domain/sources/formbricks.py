"""Formbricks webhooks: `responseCreated`, `responseUpdated` and `responseFinished` events,
signed with Standard Webhooks.

Sources read:
- https://formbricks.com/docs/xm-and-surveys/core-features/integrations/webhooks (the triggers;
  headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
  `{id}.{timestamp}.{body}` with the `whsec_` secret; example payloads: `webhookId`, `event` and
  `data` with `id`, `createdAt`, `updatedAt`, `surveyId`, `contact`, `contactAttributes`,
  `finished`, `data` (answers by question id), `variables`, `meta` {userAgent, url, country},
  `language`, `survey` {title, status, type, ...}; the documented examples wrap the event in a
  JSON array, so a list of events is accepted as well as one)
- https://github.com/standard-webhooks/standard-webhooks (the signing scheme)

The payload names questions by id only and does not carry their types, so the NPS question is
`FieldRefs.nps_question` (a question id) unless the payload's `survey` includes its questions
(`questions[]` or `blocks[].elements[]` with type `nps`); the comment is `comment_question`, else
the first `openText` question the survey shows. A response without its NPS answer yet (a partial
`responseCreated`) is ignored; later events of the same response carry `updatedAt`, so each is a
later version of `formbricks:<id>`. Hidden fields are answers in `data.data` under their names;
JSONPath refs apply to one event (`$.data.contactAttributes.email`), also in a list.
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
)
from closeloop_ingest.domain.sources.digests import verify_standard_webhooks
from closeloop_ingest.domain.sources.respondent import PartPaths, find_respondent

EVENTS = frozenset({"responseCreated", "responseUpdated", "responseFinished"})
_ANSWERS = "$.data.data"
_ATTRIBUTES = "$.data.contactAttributes"
DEFAULTS: PartPaths = {
    "customer_id": (
        f"{_ANSWERS}.customer_id",
        f"{_ATTRIBUTES}.userId",
        "$.data.contact.userId",
        "$.data.contact.id",
    ),
    "customer_email": (f"{_ANSWERS}.email", f"{_ATTRIBUTES}.email"),
    "customer_name": (f"{_ANSWERS}.name", f"{_ATTRIBUTES}.name", f"{_ATTRIBUTES}.firstName"),
    "locale": (f"{_ANSWERS}.locale", f"{_ATTRIBUTES}.language", "$.data.language"),
    "account_id": (f"{_ANSWERS}.account_id", f"{_ATTRIBUTES}.account_id"),
    "product": (f"{_ANSWERS}.product", f"{_ATTRIBUTES}.product"),
    "region": (f"{_ANSWERS}.region", f"{_ATTRIBUTES}.region", "$.data.meta.country"),
    "channel": (f"{_ANSWERS}.channel", f"{_ATTRIBUTES}.channel", "$.data.meta.source"),
    "touchpoint": (f"{_ANSWERS}.touchpoint", f"{_ATTRIBUTES}.touchpoint"),
}


class FormbricksAdapter:
    """Formbricks' response webhooks."""

    kind: Kind = "formbricks"
    content_types = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_standard_webhooks(delivery, source.secret_values(), source.tolerance_seconds)

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        payload = delivery.json()
        delivery_id = delivery.header("webhook-id")
        events = payload if isinstance(payload, list) else [payload]
        submissions: list[Submission] = []
        reasons: list[str] = []
        for index, event in enumerate(events):
            at = f"[{index}]." if isinstance(payload, list) else ""
            outcome = _parse_event(event, at, source)
            if isinstance(outcome, str):
                reasons.append(outcome)
            else:
                submissions.append(outcome)
        if not submissions:
            return Ignored("; ".join(reasons) or "no events", delivery_id)
        return Responses(submissions, delivery_id)


def _parse_event(event: Any, at: str, source: SourceDefinition) -> Submission | str:
    """The submission in one event, or why there is none."""
    if not isinstance(event, dict):
        raise InvalidPayload(at.rstrip(".") or "body", "a Formbricks event is a JSON object")
    if event.get("event") not in EVENTS:
        return f"event type {event.get('event')!r:.60}"
    data = event.get("data")
    if not isinstance(data, dict):
        raise InvalidPayload(f"{at}data", "missing")
    vendor_id = required_text(data, "id", f"{at}data.")
    survey_id = required_text(data, "surveyId", f"{at}data.")
    created_at = required_text(data, "createdAt", f"{at}data.")
    answers = data.get("data") or {}
    if not isinstance(answers, dict):
        raise InvalidPayload(f"{at}data.data", "answers by question id")
    refs = source.refs_for(survey_id)
    nps_question = refs.nps_question or _question_of_type(data, "nps")
    if nps_question is None:
        return f"survey {survey_id} has no NPS question configured (nps_question)"
    if answers.get(nps_question) in (None, ""):
        return f"response {vendor_id} has no NPS answer yet"
    where = f"{at}data.data.{nps_question}"
    score = parse_score(answers[nps_question], where)
    comment_question = refs.comment_question or _question_of_type(data, "openText")
    comment = answers.get(comment_question) if comment_question else None
    respondent = find_respondent(event, refs, DEFAULTS, default_locale=source.default_locale)
    response_id = f"formbricks:{vendor_id}"
    fields = {
        "response_id": response_id,
        "survey_id": lookup_text(event, refs.survey_id) or survey_id,
        "customer": respondent.customer.customer_json(response_id),
        "account_id": respondent.account_id,
        "score": score,
        "comment": comment if isinstance(comment, str) else None,
        "answered_at": created_at,
        "updated_at": data.get("updatedAt"),
        "segments": dict(respondent.segments),
        "attributes": dict(respondent.attributes),
    }
    locations = {
        "response_id": f"{at}data.id",
        "survey_id": f"{at}data.surveyId",
        "answered_at": f"{at}data.createdAt",
        "updated_at": f"{at}data.updatedAt",
        "score": where,
    }
    return Submission(canonical(fields, at=locations), _user_agent(data))


def _question_of_type(data: dict[str, Any], wanted: str) -> str | None:
    """The first question of a type, when the payload's survey lists its questions."""
    survey = data.get("survey")
    if not isinstance(survey, dict):
        return None
    questions = list(survey.get("questions") or [])
    for block in survey.get("blocks") or []:
        if isinstance(block, dict):
            questions.extend(block.get("elements") or [])
    for question in questions:
        if isinstance(question, dict) and question.get("type") == wanted:
            question_id = question.get("id")
            return question_id if isinstance(question_id, str) else None
    return None


def _user_agent(data: dict[str, Any]) -> str | None:
    """`meta.userAgent`: a string, or Formbricks' parsed {browser, device, os}."""
    meta = data.get("meta")
    agent = meta.get("userAgent") if isinstance(meta, dict) else None
    if isinstance(agent, str):
        return agent or None
    if isinstance(agent, dict):
        parts = [str(agent[k]) for k in ("browser", "os", "device") if agent.get(k)]
        return "; ".join(parts) or None
    return None


ADAPTER = FormbricksAdapter()
