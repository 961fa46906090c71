"""Storing messages and publishing their outcomes: the only writers of new `messages` rows and
the only builders of `notification.*` events.

`store` inserts rendered messages; a row whose dedup key the tenant already has is left alone
(never twice), so the same event or campaign page handled again stores nothing new. Rows that
are final at once (no address, opted out, an unsendable address) get their failure event in the
same transaction; pending ones are sent by the dispatcher.

Every outcome is published once, on the notifications topic: `notification.sent.v2` /
`notification.failed.v2` for every message, and beside them the v1 events for the messages v1
can describe (a case's message to its customer, by email), which CRMs built on v1 still read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa

from closeloop_common import tracing
from closeloop_common.emails import InvalidEmailAddress, normalize_email
from closeloop_common.events import (
    EventData,
    NotificationFailedV1,
    NotificationFailedV2,
    NotificationSentV1,
    NotificationSentV2,
)
from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import messages
from closeloop_notifier.domain.kinds import Kind, audience_of

InitialStatus = Literal["draft", "pending", "suppressed", "no_recipient", "failed"]
FailureReason = Literal[
    "opted_out", "frequency_capped", "discarded", "no_recipient", "delivery_failed"
]
V1_KINDS = frozenset({"thanks", "apology", "improvement_ask"})
V1_REASONS = frozenset({"opted_out", "no_recipient", "delivery_failed"})
INITIAL_FAILURES: dict[str, FailureReason] = {
    "suppressed": "opted_out",
    "no_recipient": "no_recipient",
    "failed": "delivery_failed",
}


@dataclass(frozen=True, slots=True)
class Address:
    """Where a customer message goes: the normalised address and its opt-out key, or why not."""

    recipient: str | None
    key: str | None
    problem: Literal["no_recipient", "invalid"] | None = None
    detail: str | None = None


def customer_address(email: str | None) -> Address:
    if not email:
        return Address(None, None, "no_recipient")
    try:
        normalised = normalize_email(email)
    except InvalidEmailAddress as exc:
        return Address(None, None, "invalid", str(exc))
    return Address(normalised, normalised.lower())


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A rendered message to store (see `store`)."""

    dedup_key: str
    kind: Kind
    channel: Literal["email", "webhook"]
    locale: str
    subject: str
    body: str
    status: InitialStatus
    next_attempt_at: datetime | None
    html: str | None = None
    recipient: str | None = None
    recipient_key: str | None = None
    reply_to: str | None = None
    time_zone: str | None = None
    case_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    response_id: str | None = None
    customer_id: str | None = None
    payload: dict[str, Any] | None = None
    last_error: str | None = None
    traceparent: str | None = None
    """The trace the message is sent in (`store` takes the current one when not given)."""


# A message's row without its content (the parts and the webhook body): what events and
# callers read back, a few hundred bytes instead of several kilobytes a message.
WITHOUT_CONTENT = tuple(c for c in messages.c if c.name not in ("body", "html", "payload"))


# The stored columns and their PostgreSQL types; `store` sends each as one array (`unnest`):
# one fixed statement whatever the number of messages, where a multi-row VALUES list had 24
# bind parameters a message (24,000 for a campaign page) to render and bind.
_STORED: tuple[tuple[str, str], ...] = (
    ("tenant_id", "text"),
    ("message_id", "uuid"),
    ("dedup_key", "text"),
    ("kind", "text"),
    ("audience", "text"),
    ("case_id", "uuid"),
    ("campaign_id", "uuid"),
    ("response_id", "text"),
    ("customer_id", "text"),
    ("locale", "text"),
    ("time_zone", "text"),
    ("channel", "text"),
    ("recipient", "text"),
    ("recipient_key", "text"),
    ("reply_to", "text"),
    ("subject", "text"),
    ("body", "text"),
    ("html", "text"),
    ("payload", "text"),  # JSON text, made jsonb by the statement
    ("status", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "timestamptz"),
    ("last_error", "text"),
    ("created_at", "timestamptz"),
    ("traceparent", "text"),
)
_STORE = sa.text(
    f"INSERT INTO notifier.messages ({', '.join(name for name, _ in _STORED)}) "
    f"SELECT {', '.join('v.payload::jsonb' if n == 'payload' else f'v.{n}' for n, _ in _STORED)} "
    f"FROM unnest({', '.join(f'CAST(:{n} AS {t}[])' for n, t in _STORED)}) "
    f"AS v({', '.join(name for name, _ in _STORED)}) "
    "ON CONFLICT (tenant_id, dedup_key) DO NOTHING "
    f"RETURNING {', '.join(c.name for c in WITHOUT_CONTENT)}"
).columns(*WITHOUT_CONTENT)


async def store(tx: Transaction, tenant_id: str, new: Sequence[NewMessage]) -> list[sa.Row[Any]]:
    """Insert `new` (keys already stored are skipped) and publish the failures of rows final at
    once; returns the rows inserted, without their content (`WITHOUT_CONTENT`)."""
    if not new:
        return []
    now = tx.clock.now()
    columns: dict[str, list[Any]] = {
        "tenant_id": [tenant_id] * len(new),
        "message_id": [uuid.uuid4() for _ in new],
        "kind": [m.kind.value for m in new],
        "audience": [audience_of(m.kind) for m in new],
        "payload": [None if m.payload is None else json.dumps(m.payload) for m in new],
        "attempts": [0] * len(new),
        "created_at": [now] * len(new),
        "last_error": [m.last_error[:2000] if m.last_error else None for m in new],
        "traceparent": _traceparents(new),
    }
    for name, _ in _STORED:
        if name not in columns:
            columns[name] = [getattr(m, name) for m in new]
    inserted = (await tx.session.execute(_STORE, columns)).all()
    for row in inserted:
        reason = INITIAL_FAILURES.get(row.status)
        if reason is not None:
            publish_failed(tx, row, reason, row.last_error, now)
    return list(inserted)


def in_current_trace(new: Sequence[NewMessage]) -> list[NewMessage]:
    """`new`, each sent in the current trace unless it names its own (a batch handler stores
    after its loop over events, so it stamps each event's messages inside the loop)."""
    traced = tracing.carrier_of()
    if traced is None:
        return list(new)
    return [m if m.traceparent else replace(m, traceparent=traced[0]) for m in new]


def _traceparents(new: Sequence[NewMessage]) -> list[str | None]:
    current = tracing.carrier_of()
    fallback = None if current is None else current[0]
    return [m.traceparent or fallback for m in new]


def _v2_identity(message: sa.Row[Any]) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "kind": message.kind,
        "audience": message.audience,
        "channel": message.channel,
        "case_id": message.case_id,
        "campaign_id": message.campaign_id,
        "response_id": message.response_id,
        "customer_id": message.customer_id,
        "locale": message.locale,
    }


def _v1_applies(message: sa.Row[Any]) -> bool:
    return (
        message.kind in V1_KINDS
        and message.channel == "email"
        and message.case_id is not None
        and message.response_id is not None
        and message.customer_id is not None
    )


def shown_recipient(message: sa.Row[Any]) -> str:
    """The recipient as events show it: a webhook's host only (its URL may hold a token)."""
    if message.channel == "webhook":
        return urlsplit(message.recipient or "").hostname or ""
    return str(message.recipient or "")


def publish_sent(tx: Transaction, message: sa.Row[Any], sent_at: datetime) -> None:
    events: list[EventData] = [
        NotificationSentV2(
            **_v2_identity(message),
            recipient=shown_recipient(message),
            subject=message.subject,
            attempts=message.attempts,
            sent_at=sent_at,
        )
    ]
    if _v1_applies(message):
        events.append(
            NotificationSentV1(
                message_id=message.message_id,
                case_id=message.case_id,
                response_id=message.response_id,
                customer_id=message.customer_id,
                template=message.kind,
                locale=message.locale,
                channel="email",
                recipient=message.recipient,
                subject=message.subject,
                attempts=message.attempts,
                sent_at=sent_at,
            )
        )
    _emit(tx, message, events)


def publish_failed(
    tx: Transaction,
    message: sa.Row[Any],
    reason: FailureReason,
    detail: str | None,
    at: datetime,
) -> None:
    short = detail[:500] if detail else None
    events: list[EventData] = [
        NotificationFailedV2(
            **_v2_identity(message),
            reason=reason,
            detail=short,
            attempts=message.attempts,
            failed_at=at,
        )
    ]
    if _v1_applies(message) and reason in V1_REASONS:
        events.append(
            NotificationFailedV1(
                message_id=message.message_id,
                case_id=message.case_id,
                response_id=message.response_id,
                customer_id=message.customer_id,
                template=message.kind,
                channel="email",
                reason=reason,
                detail=short,
                attempts=message.attempts,
                failed_at=at,
            )
        )
    _emit(tx, message, events)


def _emit(tx: Transaction, message: sa.Row[Any], events: Sequence[EventData]) -> None:
    for data in events:
        tx.add(tx.envelope(data, tenant_id=message.tenant_id))
