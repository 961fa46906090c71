"""The canonical survey response the API accepts, and how it becomes a `response.received` event.

Pure: no I/O. Survey-tool webhooks (later) translate their own payloads into this model.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from closeloop_common.emails import normalize_email
from closeloop_common.events import Customer, ResponseReceivedV1, Segments, categorize

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
    answered_at: AwareDatetime
    segments: Segments = Segments()

    @field_validator("customer")
    @classmethod
    def _normalize_email(cls, customer: Customer) -> Customer:
        # Only the normal form is stored and published: the notifier can put it in a To header
        # as it is, and an opt-out matches every spelling of the address.
        if customer.email is None:
            return customer
        return customer.model_copy(update={"email": normalize_email(customer.email)})

    def fingerprint(self) -> str:
        """A digest of the content; the same id with another fingerprint is a conflict.

        The answer time is taken in UTC, so a resend that writes the same instant with another
        offset is the same content."""
        canonical = self.model_copy(update={"answered_at": self.answered_at.astimezone(UTC)})
        return hashlib.sha256(canonical.model_dump_json().encode()).hexdigest()

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
            source=source,
        )
