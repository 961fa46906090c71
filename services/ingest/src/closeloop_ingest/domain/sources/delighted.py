"""Delighted webhooks: `survey_response.created` and `survey_response.updated` events.

Sources read:
- https://app.delighted.com/docs/api/webhooks (payload: `event_type`, `event_id`, `event_data`
  with `id`, `person` {id, email, name}, `survey_type`, `score`, `comment`, `created_at` and
  `updated_at` in Unix seconds, `person_properties`; a response usually arrives with a score
  first and gets its comment in a later `survey_response.updated`; `unsubscribe.created` also
  exists)
- Signature: header `X-Delighted-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw request
  body>`, keyed with the account's private API key. Delighted's page did not come up whole in
  our search; this is the scheme as Delighted integrations verify it (an open-source Go client's
  `verifyWebhook`, found by code search, and an integration guide stating "an HMAC SHA-256
  digest generated using your private API key over the request body"). To be checked against a
  real delivery before relying on it.

The score is the response's `score` (only `survey_type` `nps` is taken: CSAT/CES scales are
not 0-10 likelihoods); the comment is `comment`. The survey id is `delighted` unless
`FieldRefs.survey_id` says otherwise; per-form refs use the form id `delighted`. The respondent
comes from `person` and `person_properties` (Delighted's special `locale` property included).
Each event carries the response's `updated_at`, so an update is a later version of the same
`delighted:<id>`.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
)
from closeloop_ingest.domain.sources.digests import verify_body_hmac
from closeloop_ingest.domain.sources.respondent import PartPaths, find_respondent

SURVEY_ID = "delighted"
EVENTS = frozenset({"survey_response.created", "survey_response.updated"})
_PROPERTIES = "$.event_data.person_properties"
DEFAULTS: PartPaths = {
    "customer_id": (f"{_PROPERTIES}.customer_id", f"{_PROPERTIES}['Customer ID']"),
    "customer_email": ("$.event_data.person.email",),
    "customer_name": ("$.event_data.person.name",),
    "locale": (f"{_PROPERTIES}.locale", f"{_PROPERTIES}.Locale"),
    "account_id": (f"{_PROPERTIES}.account_id", f"{_PROPERTIES}['Account ID']"),
    "product": (f"{_PROPERTIES}.product", f"{_PROPERTIES}.Product"),
    "region": (f"{_PROPERTIES}.region", f"{_PROPERTIES}.Region"),
    "channel": (f"{_PROPERTIES}.channel", f"{_PROPERTIES}.Channel"),
    "touchpoint": (f"{_PROPERTIES}.touchpoint", f"{_PROPERTIES}.Touchpoint"),
}


class DelightedAdapter:
    """Delighted's survey response webhooks."""

    kind: Kind = "delighted"
    content_types = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_body_hmac(
            delivery,
            source,
            header="X-Delighted-Webhook-Signature",
            encoding="hex",
            prefix="sha256=",
        )

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        payload = delivery.json()
        if not isinstance(payload, dict):
            raise InvalidPayload("body", "a Delighted webhook is a JSON object")
        event_id = payload.get("event_id") if isinstance(payload.get("event_id"), str) else None
        if payload.get("event_type") not in EVENTS:
            return Ignored(f"event type {payload.get('event_type')!r:.60}", event_id)
        data = payload.get("event_data")
        if not isinstance(data, dict):
            raise InvalidPayload("event_data", "missing")
        survey_type = data.get("survey_type", "nps")
        if survey_type != "nps":
            return Ignored(f"survey type {survey_type!r:.40} is not NPS", event_id)
        vendor_id = data.get("id")
        if isinstance(vendor_id, int) and not isinstance(vendor_id, bool):
            vendor_id = str(vendor_id)
        if not isinstance(vendor_id, str) or not vendor_id.strip():
            raise InvalidPayload("event_data.id", "missing")
        if data.get("score") is None:
            return Ignored("response without a score", event_id)
        score = parse_score(data["score"], "event_data.score")
        refs = source.refs_for(SURVEY_ID)
        respondent = find_respondent(payload, refs, DEFAULTS, default_locale=source.default_locale)
        response_id = f"delighted:{vendor_id.strip()}"
        comment = data.get("comment")
        fields = {
            "response_id": response_id,
            "survey_id": lookup_text(payload, refs.survey_id) or SURVEY_ID,
            "customer": respondent.customer.customer_json(response_id),
            "account_id": respondent.account_id,
            "score": score,
            "comment": comment if isinstance(comment, str) else None,
            "answered_at": _instant(data, "created_at", required=True),
            "updated_at": _instant(data, "updated_at", required=False),
            "segments": dict(respondent.segments),
            "attributes": dict(respondent.attributes),
        }
        at = {
            "response_id": "event_data.id",
            "answered_at": "event_data.created_at",
            "updated_at": "event_data.updated_at",
            "comment": "event_data.comment",
            "score": "event_data.score",
        }
        return Responses([Submission(canonical(fields, at=at))], event_id)


def _instant(data: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    """Delighted's times are Unix seconds."""
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayload(f"event_data.{name}", "Unix seconds expected")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidPayload(f"event_data.{name}", "not a usable time") from exc


ADAPTER = DelightedAdapter()
