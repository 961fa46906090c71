"""Erasure (GDPR article 17) and export (article 15) of a respondent: what every service shares.

- `ErasureSubject` is what an admin names: an address or a customer id, exactly one (in a POST
  body, never in a URL, since URLs reach access logs).
- `SubjectIdentifiers` is what ingest resolved from it (every customer id and address linked to
  it, their responses and invitations) and what every service looks its rows up by; it travels
  in `privacy.erasure_requested.v1` and in the body of each service's export.
- Anonymise, do not delete, where a row carries a count: a removed comment, note or body becomes
  `ERASED`, a customer id `pseudonym_of(erasure id)`, names and addresses become null.
- `keyed_hash` (HMAC-SHA256 under a service's secret) remembers an address without keeping it:
  the notifier suppresses every future message to an erased address by it.
An erasure's log lines (`report_erasure`) name its id, the tenant, the service and counts only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.events import (
    EMAIL_PATTERN,
    ErasureCompletedV1,
    ErasureRequestedV1,
    PrivacyService,
)
from closeloop_common.handlers import HandlerContext

log = logging.getLogger(__name__)

ERASED = "[erased]"
"""What replaces erased free text (comments, notes, bodies) where the column must keep a value."""
PSEUDONYM_PREFIX = "erased:"
MAX_IDENTIFIERS = 10_000

Identifier = Annotated[str, Field(min_length=1, max_length=320, pattern=r"^[^\x00]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErasureByEmail(_Body):
    email: str = Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)


class ErasureByCustomer(_Body):
    customer_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")


ErasureSubject = ErasureByEmail | ErasureByCustomer
"""The respondent an admin names: `{"email": ...}` or `{"customer_id": ...}`, exactly one."""


class SubjectIdentifiers(_Body):
    """Every identifier of one respondent that ingest resolved (see the module docstring)."""

    customer_ids: tuple[Identifier, ...] = Field((), max_length=MAX_IDENTIFIERS)
    emails: tuple[Identifier, ...] = Field((), max_length=MAX_IDENTIFIERS)
    response_ids: tuple[Identifier, ...] = Field((), max_length=MAX_IDENTIFIERS)
    invitation_ids: tuple[Identifier, ...] = Field((), max_length=MAX_IDENTIFIERS)

    @model_validator(mode="after")
    def _names_someone(self) -> SubjectIdentifiers:
        if not (self.customer_ids or self.emails or self.response_ids or self.invitation_ids):
            raise ValueError("name at least one identifier")
        return self

    @classmethod
    def of(cls, subject: ErasureSubject | SubjectIdentifiers) -> SubjectIdentifiers:
        """The identifiers of `subject` as given (a service's export takes either form)."""
        if isinstance(subject, SubjectIdentifiers):
            return subject.model_copy(update={"emails": address_keys(subject.emails)})
        if isinstance(subject, ErasureByEmail):
            return cls(emails=address_keys([subject.email]))
        return cls(customer_ids=(subject.customer_id,))

    @classmethod
    def of_event(cls, data: ErasureRequestedV1) -> SubjectIdentifiers:
        return cls(
            customer_ids=data.customer_ids,
            emails=data.emails,
            response_ids=data.response_ids,
            invitation_ids=data.invitation_ids,
        )


ExportRequest = ErasureByEmail | ErasureByCustomer | SubjectIdentifiers
"""The body of a service's `POST /v1/privacy/export`."""


def address_key(email: str) -> str:
    """How an address is compared: its normal form lower-cased (as the notifier keys opt-outs),
    or, for an address no service would have stored, the text stripped and lower-cased."""
    try:
        return normalize_email(email).lower()
    except InvalidEmailAddress:
        return email.strip().lower()


def address_keys(emails: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({address_key(e) for e in emails}))


def pseudonym_of(erasure_id: uuid.UUID) -> str:
    """What replaces an erased respondent's customer id where a row must keep one: the same
    within one erasure (so their rows still count as one respondent), linked to nobody."""
    return f"{PSEUDONYM_PREFIX}{erasure_id}"


def keyed_hash(secret: bytes, value: str) -> str:
    """HMAC-SHA256 of `value` under `secret`, hex: recognises a value later without keeping it
    (a plain hash of an address could be reversed by hashing guesses)."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()


def anonymised_customer(pseudonym: str) -> dict[str, Any]:
    """A contract's `customer` object with nothing left but the pseudonym."""
    return {"id": pseudonym}


async def report_erasure(
    ctx: HandlerContext,
    data: ErasureRequestedV1,
    *,
    service: PrivacyService,
    rows: dict[str, int],
) -> None:
    """Emit `service`'s `privacy.erasure_completed.v1` (same transaction as its erasure) and log
    it, naming the erasure, the tenant and the counts: never an identifier of the person."""
    await ctx.emit(
        ErasureCompletedV1(
            erasure_id=data.erasure_id, service=service, rows=rows, completed_at=ctx.clock.now()
        )
    )
    log.info(
        "erasure done",
        extra={
            "erasure_id": str(data.erasure_id),
            "tenant_id": ctx.tenant_id,
            "service": service,
            "rows": rows,
        },
    )


def exported_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A database row (`row._mapping`) as plain JSON values, for an export (article 15)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        elif isinstance(value, list | tuple):
            out[key] = list(value)
        elif value is not None and not isinstance(value, str | int | float | bool | dict):
            out[key] = str(value)  # uuids, decimals
        else:
            out[key] = value
    return out


def rows_touched(result: Any) -> int:
    """The rows an UPDATE or DELETE changed (its `rowcount`), for an erasure's report."""
    return int(result.rowcount or 0)
