"""The `standard` source: an in-house tool posting our canonical response JSON, signed with the
Standard Webhooks scheme (verified by `digests.verify_standard_webhooks`, which Formbricks and
custom sources use too).

Body: one `CanonicalResponse` object, or `{"responses": [...]}` with 1 to 1,000 of them. Response
ids are taken as given (no kind prefix). A score given as a whole number in a string ("9") is
accepted, like every other kind.

Standard Webhooks (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
https://www.standardwebhooks.com/): headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` (several during the
sender's key rotation). The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is
the secret after its `whsec_` prefix, base64-decoded.
"""

from __future__ import annotations

from typing import Any

from closeloop_ingest.domain.sources.base import (
    Delivery,
    InvalidPayload,
    Kind,
    Parsed,
    Responses,
    SourceDefinition,
    Submission,
    canonical,
    parse_score,
)
from closeloop_ingest.domain.sources.digests import verify_standard_webhooks

MAX_RESPONSES = 1_000


class StandardAdapter:
    """Canonical responses signed with Standard Webhooks."""

    kind: Kind = "standard"
    content_types = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        verify_standard_webhooks(delivery, source.secret_values(), source.tolerance_seconds)

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        payload = delivery.json()
        if isinstance(payload, dict) and "responses" in payload:
            items = payload["responses"]
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_RESPONSES:
                raise InvalidPayload("responses", f"a list of 1 to {MAX_RESPONSES} responses")
            submissions = [_submission(item, f"responses[{i}]") for i, item in enumerate(items)]
        else:
            submissions = [_submission(payload, "")]
        return Responses(submissions, delivery_id=delivery.header("webhook-id"))


def _submission(item: Any, at: str) -> Submission:
    prefix = f"{at}." if at else ""
    if not isinstance(item, dict):
        raise InvalidPayload(at or "body", "a response is a JSON object")
    fields = dict(item)
    if "score" in fields:
        fields["score"] = parse_score(fields["score"], f"{prefix}score")
    try:
        response = canonical(fields)
    except InvalidPayload as exc:
        raise InvalidPayload(f"{prefix}{exc.field}", exc.detail.split(": ", 1)[-1]) from exc
    return Submission(response, user_agent=response.user_agent)


ADAPTER = StandardAdapter()
