"""A source declared purely in configuration (`source.custom`): JSONPath expressions for each
canonical field (`CustomFields`) plus the respondent refs of `FieldRefs`, and one of three
authentication schemes:
- `HmacAuth`: an HMAC (sha1/sha256/sha512, hex or base64, after an optional prefix) in a header,
  over the `signed` template: `{body}` is the raw body, `{timestamp}` the value of
  `timestamp_header` (Unix seconds or ISO 8601), which must then be within the tolerance;
- `TokenAuth`: a header value, after an optional prefix, equal to one of the secrets;
- `StandardWebhooksAuth`: the Standard Webhooks scheme.

Response ids are `<source name>:<id>`; the survey id is `FieldRefs.survey_id` or the source name.
A payload with neither a response id nor a score is another event (Ignored); one without the
other is invalid.

Tools this is tested with, configured through `CustomSpec` only:
- Wootric / InMoment: https://docs.wootric.com/webhooks/ (JSON payload, `X-Wootric-Signature:
  sha1=<hex HMAC-SHA1 of the body>`)
- zenloop: https://docs.zenloop.com/docs/alert-webhook (alert JSON; no signature, so a token
  header configured on the webhook)
- Retently: https://help.retently.com/en/articles/4990922-export-survey-data-to-external-systems-via-webhooks
  (JSON body and headers configured in the webhook export)
"""

from __future__ import annotations

import hmac
from typing import Any

from closeloop_ingest.domain.sources.base import (
    BadSignature,
    CustomSpec,
    Delivery,
    HmacAuth,
    Ignored,
    InvalidPayload,
    Kind,
    Parsed,
    Responses,
    SourceDefinition,
    Submission,
    TokenAuth,
    UnsupportedContentType,
    lookup,
    lookup_text,
    parse_score,
)
from closeloop_ingest.domain.sources.digests import (
    check_header_digest,
    check_tolerance,
    digests,
    parse_timestamp,
    verify_standard_webhooks,
)
from closeloop_ingest.domain.sources.respondent import NO_DEFAULTS, assemble, find_respondent


class CustomAdapter:
    kind: Kind = "custom"
    content_types: frozenset[str] = frozenset({"application/json"})

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        auth = _spec(source).auth
        if isinstance(auth, HmacAuth):
            _verify_hmac(delivery, source, auth)
        elif isinstance(auth, TokenAuth):
            _verify_token(delivery, source, auth)
        else:
            verify_standard_webhooks(delivery, source.secret_values(), source.tolerance_seconds)

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        if delivery.content_type not in self.content_types:
            raise UnsupportedContentType(f"this source takes JSON, not {delivery.content_type}")
        spec = _spec(source).fields
        document = delivery.json()
        delivery_id = delivery.header("webhook-id")
        vendor_id = lookup_text(document, spec.response_id)
        raw_score = lookup(document, spec.score)
        if vendor_id is None and raw_score is None:
            return Ignored("no response id and no score: another event", delivery_id)
        if vendor_id is None:
            raise InvalidPayload(spec.response_id, "the response id is missing")
        if raw_score is None:
            raise InvalidPayload(spec.score, "the score is missing")
        score = parse_score(raw_score, spec.score)
        survey_id = lookup_text(document, source.fields.survey_id) or source.name
        refs = source.refs_for(survey_id)
        found = find_respondent(document, refs, NO_DEFAULTS, default_locale=source.default_locale)
        response = assemble(
            response_id=f"{source.name}:{vendor_id}",
            survey_id=survey_id,
            customer=found.customer,
            account_id=found.account_id,
            score=score,
            comment=lookup_text(document, spec.comment),
            answered_at=_instant(document, spec.answered_at) or delivery.received_at,
            updated_at=_instant(document, spec.updated_at),
            segments=found.segments,
            attributes=found.attributes,
            at=_locations(source),
        )
        user_agent = lookup_text(document, spec.user_agent)
        return Responses([Submission(response, user_agent)], delivery_id)


ADAPTER = CustomAdapter()


def _spec(source: SourceDefinition) -> CustomSpec:
    if source.custom is None:
        raise InvalidPayload("source.custom", "a custom source needs its field and auth spec")
    return source.custom


def _verify_hmac(delivery: Delivery, source: SourceDefinition, auth: HmacAuth) -> None:
    timestamp: str | None = None
    if auth.timestamp_header is not None:
        timestamp = delivery.header(auth.timestamp_header)
        if timestamp is None:
            raise BadSignature("signature_missing", f"no {auth.timestamp_header} header")
    elif "{timestamp}" in auth.signed:
        raise BadSignature("signature_invalid", "the signed template needs a timestamp header")
    parts = auth.signed.split("{body}")
    message = delivery.body.join(
        part.replace("{timestamp}", timestamp or "").encode() for part in parts
    )
    expected = digests(source.secret_values(), message, auth.algorithm, auth.encoding)
    check_header_digest(delivery, auth.header, expected, encoding=auth.encoding, prefix=auth.prefix)
    if timestamp is not None:
        sent_at = parse_timestamp(timestamp)
        if sent_at is None:
            raise BadSignature("signature_invalid", f"{auth.timestamp_header} is not a time")
        check_tolerance(sent_at, delivery.received_at, source.tolerance_seconds)


def _verify_token(delivery: Delivery, source: SourceDefinition, auth: TokenAuth) -> None:
    presented = delivery.header(auth.header)
    if presented is None or not presented.startswith(auth.prefix):
        raise BadSignature("signature_missing", f"no token in {auth.header}")
    token = presented[len(auth.prefix) :].strip().encode()
    matched = False
    for secret in source.secret_values():
        matched |= hmac.compare_digest(secret, token)
    if not token or not matched:
        raise BadSignature("signature_invalid", f"the token in {auth.header} does not match")


def _instant(document: Any, path: str | None) -> Any:
    value = lookup(document, path)
    return None if value is None or value == "" else value


def _locations(source: SourceDefinition) -> dict[str, str]:
    """Canonical field -> the configured JSONPath it came from, for error messages."""
    fields = _spec(source).fields
    refs = source.fields
    located = {
        "score": fields.score,
        "comment": fields.comment,
        "answered_at": fields.answered_at,
        "updated_at": fields.updated_at,
        "account_id": refs.account_id,
        "customer.id": refs.customer_id,
        "customer.email": refs.customer_email,
        "customer.name": refs.customer_name,
        "survey_id": refs.survey_id,
    }
    located.update({f"segments.{a}": path for a, path in refs.segments.items()})
    located.update({f"attributes.{name}": path for name, path in refs.attributes.items()})
    return {name: path for name, path in located.items() if path is not None}
