"""Invitations: who was asked to answer which survey, when, and through which channel.

Each is stored once per (tenant, invitation id) and published as `invitation.sent.v1`; a resend
with the same content is a duplicate, one with other content a conflict (an invitation does not
change: a new one has a new id). Stored invitations also tell the suspicion check when a
respondent was invited."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
import sqlalchemy as sa
from pydantic import Field, field_validator

from closeloop_common.events import Attributes, Contract, Customer, InvitationSentV1, Segments
from closeloop_common.handlers import Transaction
from closeloop_common.storable import Instant
from closeloop_ingest.domain.responses import normal_customer


class CanonicalInvitation(Contract):
    """One invitation to answer a survey."""

    invitation_id: str = Field(min_length=1, max_length=200, description="the deduplication key")
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=100, examples=["email", "sms", "in-app"])
    invited_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = Field(default_factory=dict)

    @field_validator("customer")
    @classmethod
    def _normalize_customer(cls, customer: Customer) -> Customer:
        return normal_customer(customer)

    def fingerprint(self) -> str:
        content = self.model_dump(mode="json", exclude_none=True)
        content["invited_at"] = self.invited_at.isoformat()
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


InvitationStatus = Literal["accepted", "duplicate", "conflict"]


@dataclass(frozen=True, slots=True)
class InvitationOutcome:
    status: InvitationStatus
    invitation_id: str
    event_id: str


_INSERT = sa.text(
    "INSERT INTO ingest.invitations (tenant_id, invitation_id, survey_id, customer_id, channel, "
    "invited_at, received_at, fingerprint, event_id, payload) "
    "SELECT :t, i, s, c, ch, ia, :now, fp, ev, p::jsonb FROM unnest("
    "CAST(:i AS text[]), CAST(:s AS text[]), CAST(:c AS text[]), CAST(:ch AS text[]), "
    "CAST(:ia AS timestamptz[]), CAST(:fp AS text[]), CAST(:ev AS text[]), CAST(:p AS text[])) "
    "AS u(i, s, c, ch, ia, fp, ev, p) ON CONFLICT DO NOTHING RETURNING invitation_id"
)
_EXISTING = sa.text(
    "SELECT invitation_id, fingerprint, event_id FROM ingest.invitations "
    "WHERE tenant_id = :t AND invitation_id = ANY(CAST(:i AS text[]))"
)


async def record_invitations(
    tx: Transaction, *, tenant_id: str, invitations: Sequence[CanonicalInvitation]
) -> list[InvitationOutcome]:
    """Store and publish new invitations; one outcome per given invitation, in order. The same
    id twice in one call: the first is judged, the second compared with it."""
    now = tx.clock.now()
    first: dict[str, CanonicalInvitation] = {}
    for invitation in invitations:
        first.setdefault(invitation.invitation_id, invitation)
    unique = list(first.values())
    events = {
        inv.invitation_id: tx.envelope(
            InvitationSentV1(
                invitation_id=inv.invitation_id,
                survey_id=inv.survey_id,
                customer=inv.customer,
                account_id=inv.account_id,
                channel=inv.channel,
                invited_at=inv.invited_at,
                segments=inv.segments,
                attributes=inv.attributes,
            ),
            tenant_id=tenant_id,
            subject=inv.invitation_id,
        )
        for inv in unique
    }
    inserted = set(
        (
            await tx.session.execute(
                _INSERT,
                {
                    "t": tenant_id,
                    "now": now,
                    "i": [inv.invitation_id for inv in unique],
                    "s": [inv.survey_id for inv in unique],
                    "c": [inv.customer.id for inv in unique],
                    "ch": [inv.channel for inv in unique],
                    "ia": [inv.invited_at for inv in unique],
                    "fp": [inv.fingerprint() for inv in unique],
                    "ev": [events[inv.invitation_id].id for inv in unique],
                    "p": [inv.model_dump_json() for inv in unique],
                },
            )
        ).scalars()
    )
    for inv in unique:
        if inv.invitation_id in inserted:
            tx.add(events[inv.invitation_id])
    stored = {
        row.invitation_id: row
        for row in await tx.session.execute(
            _EXISTING, {"t": tenant_id, "i": [inv.invitation_id for inv in unique]}
        )
    }
    outcomes: list[InvitationOutcome] = []
    judged: set[str] = set()
    for inv in invitations:
        row = stored[inv.invitation_id]
        if inv.invitation_id in inserted and inv.invitation_id not in judged:
            status: InvitationStatus = "accepted"
        elif inv.fingerprint() == row.fingerprint:
            status = "duplicate"
        else:
            status = "conflict"
        judged.add(inv.invitation_id)
        outcomes.append(InvitationOutcome(status, inv.invitation_id, row.event_id))
    return outcomes
