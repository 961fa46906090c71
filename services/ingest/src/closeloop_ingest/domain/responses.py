"""The canonical survey response the API accepts, and how it becomes a `response.received` event.

Pure: no I/O. Survey-tool webhooks (later) translate their own payloads into this model.

The fingerprint decides, for a response id seen before, between "duplicate" and "conflict"
(409), for every resend for as long as the response is stored, so it must not change when the
model does. It is the SHA-256 of a canonical text of the fields that make the content, listed
explicitly below (not a dump of whatever fields the model has):
- response_id, survey_id, account_id, score, comment, answered_at, the customer's id, email,
  name and locale, every segment attribute, and the custom attributes;
- unset fields (null, an empty comment, no segment, no custom attribute) are left out, so a field added later, unset,
  leaves earlier fingerprints as they were; answered_at is written in UTC (ISO 8601), so the same
  instant with another offset is the same content;
- JSON with keys sorted, no spaces, UTF-8.
It is computed from the JSON form the API stores (`payload`), so a stored row can always be
fingerprinted again (migration 0002 did so once, when this replaced a dump of the whole model).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from closeloop_common.emails import normalize_email
from closeloop_common.events import (
    SEGMENT_ATTRIBUTES,
    Attributes,
    Customer,
    ResponseReceivedV1,
    Segments,
    categorize,
)
from closeloop_common.storable import Instant

# Clocks of survey tools drift; an answer more than this far in the future is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)


class CanonicalResponse(BaseModel):
    """One answer to "How likely are you to recommend us? (0-10)" plus the open comment."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    response_id: str = Field(
        min_length=1, max_length=200, description="the survey tool's id; the deduplication key"
    )
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    score: StrictInt = Field(ge=0, le=10)
    comment: str | None = Field(None, max_length=10_000)
    answered_at: Instant
    updated_at: Instant | None = Field(
        None,
        description="when the survey tool last changed this answer: a later `updated_at` with "
        "other content is a correction (a new version), an earlier one is ignored",
    )
    segments: Segments = Segments()
    attributes: Attributes = {}
    user_agent: str | None = Field(
        None,
        max_length=1000,
        description="the respondent's browser user agent, when the survey tool recorded it: "
        "used only to spot email link scanners, not part of the response's content",
    )

    @field_validator("customer")
    @classmethod
    def _normalize_customer(cls, customer: Customer) -> Customer:
        return normal_customer(customer)

    def fingerprint(self) -> str:
        """A digest of the content; the same id with another fingerprint is a conflict."""
        return fingerprint_of(self.model_dump(mode="json"))

    def answered_in_future(self, now: datetime) -> bool:
        return self.answered_at > now + FUTURE_TOLERANCE

    def to_event(self, *, received_at: datetime, source: str) -> ResponseReceivedV1:
        comment = self.comment or None  # an empty comment is no comment
        return ResponseReceivedV1(
            response_id=self.response_id,
            survey_id=self.survey_id,
            customer=self.customer,
            account_id=self.account_id,
            score=self.score,
            category=categorize(self.score),
            comment=comment,
            answered_at=self.answered_at,
            received_at=received_at,
            segments=self.segments,
            attributes=self.attributes,
            source=source,
        )


CUSTOMER_FIELDS = ("id", "email", "name", "locale")
# Unicode Cc, Zl and Zp: line breaks, tabs, NUL and the other control characters.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def normal_customer(customer: Customer) -> Customer:
    """The customer as stored and published. The email in its normal form: the notifier can put
    it in a To header as it is, and an opt-out matches every spelling of the address. The name
    on one line: each run of line breaks and control characters becomes one space, so a name
    cannot add lines (a fake `Bcc:` one, say) to the emails and pages that show it."""
    changes: dict[str, str] = {}
    if customer.email is not None:
        changes["email"] = normalize_email(customer.email)
    if customer.name is not None and _BREAKS.search(customer.name):
        changes["name"] = _BREAKS.sub(" ", customer.name).strip()
    return customer.model_copy(update=changes) if changes else customer


def fingerprint_of(body: Mapping[str, Any]) -> str:
    """The fingerprint of a canonical response in its JSON form (see the module docstring)."""
    customer = body["customer"]
    segments = body.get("segments") or {}
    content = {
        "response_id": body["response_id"],
        "survey_id": body["survey_id"],
        "account_id": body.get("account_id"),
        "score": body["score"],
        "comment": body.get("comment") or None,
        "answered_at": datetime.fromisoformat(body["answered_at"]).astimezone(UTC).isoformat(),
        "customer": _set_only({f: customer.get(f) for f in CUSTOMER_FIELDS}),
        "segments": _set_only({a: segments.get(a) for a in SEGMENT_ATTRIBUTES}),
        "attributes": dict(body.get("attributes") or {}),
    }
    canonical = json.dumps(
        _set_only(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _set_only(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None and value != {}}
