"""Recording what arrives, a batch at a time: responses (new, duplicate, corrected, stale,
conflicting, suspected), the raw deliveries they came in, and vendor fetches to run later.

`record(tx, intakes)` is the `process` of ingest's `BatchCommitter`: many HTTP requests share one
transaction and each statement covers the whole batch (its rows as one JSON document), so a batch
of a hundred webhooks costs a handful of round trips and one COMMIT. The same function serves a single canonical
POST, a batch POST of 1,000 and a vendor fetch.

Several batches may be in flight at once (`GROUP_COMMIT_CONCURRENCY`): each takes its row locks
in (tenant, response id) order, new rows first and then the known ones, so two batches that share
ids wait for each other but can never deadlock.

Within one batch the same response id may come twice (a tool's retry racing its first try): the
batch is processed in passes, each holding an id at most once, in arrival order, so the second is
judged against the first exactly as if it had come later.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common import tracing
from closeloop_common.events import (
    Category,
    CloudEvent,
    EventData,
    ResponseCorrectedV1,
    ResponseSuspectedV1,
    ResponseVersion,
    Segments,
    SuspicionReason,
    categorize,
)
from closeloop_common.handlers import Transaction
from closeloop_ingest.domain.responses import CanonicalResponse, fingerprint_of
from closeloop_ingest.domain.sources.base import FetchLater, Submission
from closeloop_ingest.domain.versions import suspicion, verdict, version_time

Status = Literal["accepted", "suspected", "duplicate", "corrected", "stale", "conflict"]
NEW_STATUSES: frozenset[Status] = frozenset({"accepted", "suspected", "corrected"})


@dataclass(frozen=True, slots=True)
class RawDelivery:
    """A webhook request as it arrived (what `deliveries` keeps)."""

    delivery_id: str | None
    received_at: datetime
    content_type: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Intake:
    """One request's worth of input: its responses, or ids to fetch, or nothing (ignored)."""

    tenant_id: str
    source: str
    submissions: Sequence[Submission] = ()
    delivery: RawDelivery | None = None
    fetch: FetchLater | None = None
    ignored: str | None = None
    trace: tracing.Carrier | None = None  # the request's trace context, for its events


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    response_id: str
    version: int
    category: Category
    event_id: str


@dataclass(frozen=True, slots=True)
class IntakeResult:
    outcomes: list[Outcome] = field(default_factory=list)
    fetch_queued: bool = False


@dataclass(slots=True)
class _Pending:
    """One submission on its way through a pass."""

    tenant_id: str
    source: str
    submission: Submission
    payload: dict[str, Any]
    fingerprint: str
    version_at: datetime
    category: Category
    reasons: tuple[SuspicionReason, ...] = ()
    outcome: Outcome | None = None
    trace: tracing.Carrier | None = None

    @property
    def response(self) -> CanonicalResponse:
        return self.submission.response

    @property
    def key(self) -> tuple[str, str]:
        return self.tenant_id, self.response.response_id


# Batches travel as one JSON document (`jsonb_to_recordset`): one parameter to encode, where an
# array per column costs asyncpg a Python check per element.
_INSERT_RESPONSES = sa.text(
    "INSERT INTO ingest.responses (tenant_id, response_id, survey_id, customer_id, account_id, "
    "score, category, answered_at, received_at, source, fingerprint, event_id, payload, version, "
    "version_at, status, suspicion) "
    "SELECT t, r, s, c, a, sc, cat, ans, :now, src, fp, ev, p, 1, va, st, sus "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(t text, r text, s text, c text, "
    "a text, sc smallint, cat text, ans timestamptz, src text, fp text, ev text, p jsonb, "
    "va timestamptz, st text, sus text[]) ORDER BY t, r "
    "ON CONFLICT DO NOTHING RETURNING tenant_id, response_id"
)

_LOCK_EXISTING = sa.text(
    "SELECT x.tenant_id, x.response_id, x.fingerprint, x.version, x.version_at, x.status, "
    "x.event_id, x.payload, x.category FROM ingest.responses x "
    "JOIN unnest(CAST(:t AS text[]), CAST(:r AS text[])) AS u(t, r) "
    "ON x.tenant_id = u.t AND x.response_id = u.r "
    "ORDER BY x.tenant_id, x.response_id FOR UPDATE OF x"
)

_UPDATE_RESPONSE = sa.text(
    "UPDATE ingest.responses SET survey_id = :s, customer_id = :c, account_id = :a, score = :sc, "
    "category = :cat, answered_at = :ans, received_at = :now, source = :src, fingerprint = :fp, "
    "event_id = :ev, payload = CAST(:p AS jsonb), version = :v, version_at = :va, status = :st, "
    "suspicion = CAST(:sus AS text[]) WHERE tenant_id = :t AND response_id = :r"
)

_LATEST_INVITATIONS = sa.text(
    "SELECT u.i, (SELECT max(v.invited_at) FROM ingest.invitations v WHERE v.tenant_id = u.t "
    "AND v.customer_id = u.c AND v.survey_id = u.s AND v.invited_at <= u.a) FROM unnest("
    "CAST(:i AS int[]), CAST(:t AS text[]), CAST(:c AS text[]), CAST(:s AS text[]), "
    "CAST(:a AS timestamptz[])) AS u(i, t, c, s, a)"
)

_INSERT_DELIVERIES = sa.text(
    "INSERT INTO ingest.deliveries (tenant_id, source, delivery_id, received_at, content_type, "
    "headers, body, outcome, response_ids) "
    "SELECT t, s, d, ra, ct, h, decode(b, 'base64'), o, ids "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(t text, s text, d text, "
    "ra timestamptz, ct text, h jsonb, b text, o text, ids text[])"
)

_INSERT_FETCHES = sa.text(
    "INSERT INTO ingest.fetches (tenant_id, source, key, ids, status, next_attempt_at, "
    "created_at) SELECT t, s, k, i::jsonb, 'pending', :now, :now FROM unnest("
    "CAST(:t AS text[]), CAST(:s AS text[]), CAST(:k AS text[]), CAST(:i AS text[])) "
    "AS u(t, s, k, i) ON CONFLICT (tenant_id, source, key) WHERE status = 'pending' DO NOTHING"
)


def fetch_key(ids: Mapping[str, str]) -> str:
    """The identity of a fetch: its ids, sorted (a repeated webhook queues no second fetch)."""
    return orjson.dumps(dict(sorted(ids.items()))).decode()


async def record(
    tx: Transaction, intakes: Sequence[Intake], *, window: timedelta
) -> list[IntakeResult]:
    """Write a batch of intakes in `tx` (queueing their events); one result per intake."""
    now = tx.clock.now()
    pending: list[list[_Pending]] = [
        [_prepare(intake, submission) for submission in intake.submissions] for intake in intakes
    ]
    flat = [p for per_intake in pending for p in per_intake]
    while flat:
        seen: set[tuple[str, str]] = set()
        this_pass: list[_Pending] = []
        later: list[_Pending] = []
        for p in flat:
            (later if p.key in seen else this_pass).append(p)
            seen.add(p.key)
        await _one_pass(tx, this_pass, now=now, window=window)
        flat = later

    await _record_deliveries(tx.session, intakes, pending)
    fetches = [(i, intake) for i, intake in enumerate(intakes) if intake.fetch is not None]
    if fetches:
        await tx.session.execute(
            _INSERT_FETCHES,
            {
                "now": now,
                "t": [intake.tenant_id for _, intake in fetches],
                "s": [intake.source for _, intake in fetches],
                "k": [fetch_key(intake.fetch.ids) for _, intake in fetches if intake.fetch],
                "i": [
                    orjson.dumps(intake.fetch.ids).decode() for _, intake in fetches if intake.fetch
                ],
            },
        )
    await tx.flush()
    return [
        IntakeResult(
            outcomes=[p.outcome for p in per_intake if p.outcome is not None],
            fetch_queued=intake.fetch is not None,
        )
        for intake, per_intake in zip(intakes, pending, strict=True)
    ]


def _prepare(intake: Intake, submission: Submission) -> _Pending:
    response = submission.response
    payload = response.model_dump(mode="json", exclude_none=True)
    return _Pending(
        tenant_id=intake.tenant_id,
        source=intake.source,
        submission=submission,
        payload=payload,
        fingerprint=fingerprint_of(payload),
        version_at=version_time(response),
        category=categorize(response.score),
        trace=intake.trace,
    )


async def _one_pass(
    tx: Transaction, batch: list[_Pending], *, now: datetime, window: timedelta
) -> None:
    """Judge a batch holding each response id at most once."""
    await _judge_suspicion(tx.session, batch, window=window)
    events = [_first_event(tx, p, now) for p in batch]
    rows = [
        {
            "t": p.tenant_id,
            "r": p.response.response_id,
            "s": p.response.survey_id,
            "c": p.response.customer.id,
            "a": p.response.account_id,
            "sc": p.response.score,
            "cat": p.category.value,
            # In UTC: PostgreSQL parses this JSON text and refuses offsets over 15:59, which
            # ISO 8601 and Python allow (`...+19:21` was a 500); the instant is the same.
            "ans": p.response.answered_at.astimezone(UTC),
            "src": p.source,
            "fp": p.fingerprint,
            "ev": event.id,
            "p": p.payload,
            "va": p.version_at.astimezone(UTC),
            "st": "suspected" if p.reasons else "accepted",
            "sus": p.reasons,
        }
        for p, event in zip(batch, events, strict=True)
    ]
    inserted = await tx.session.execute(
        _INSERT_RESPONSES, {"now": now, "rows": orjson.dumps(rows).decode()}
    )
    new_keys = {(row.tenant_id, row.response_id) for row in inserted}
    seen_before: list[_Pending] = []
    for p, event in zip(batch, events, strict=True):
        if p.key in new_keys:
            tx.add(event)
            status: Status = "suspected" if p.reasons else "accepted"
            p.outcome = Outcome(status, p.response.response_id, 1, p.category, event.id)
        else:
            seen_before.append(p)
    if seen_before:
        await _judge_seen_before(tx, seen_before, now=now)


async def _judge_suspicion(
    session: AsyncSession, batch: list[_Pending], *, window: timedelta
) -> None:
    """Set `reasons` of every submission that looks automated."""
    candidates = [i for i, p in enumerate(batch) if not p.response.comment]
    if not candidates:
        return
    rows = await session.execute(
        _LATEST_INVITATIONS,
        {
            "i": candidates,
            "t": [batch[i].tenant_id for i in candidates],
            "c": [batch[i].response.customer.id for i in candidates],
            "s": [batch[i].response.survey_id for i in candidates],
            "a": [batch[i].response.answered_at for i in candidates],
        },
    )
    invited = {index: invited_at for index, invited_at in rows}
    for i in candidates:
        p = batch[i]
        p.reasons = suspicion(
            p.response, user_agent=p.submission.user_agent, invited_at=invited.get(i), window=window
        )


def _first_event(tx: Transaction, p: _Pending, now: datetime) -> CloudEvent[Any]:
    data: EventData
    if p.reasons:
        data = _suspected(p, version=1, now=now)
    else:
        data = p.response.to_event(received_at=now, source=p.source)
    return tx.envelope(data, tenant_id=p.tenant_id, subject=p.response.response_id, trace=p.trace)


def _suspected(p: _Pending, *, version: int, now: datetime) -> ResponseSuspectedV1:
    r = p.response
    return ResponseSuspectedV1(
        response_id=r.response_id,
        version=version,
        survey_id=r.survey_id,
        customer=r.customer,
        account_id=r.account_id,
        score=r.score,
        category=p.category,
        answered_at=r.answered_at,
        received_at=now,
        segments=r.segments,
        attributes=r.attributes,
        source=p.source,
        reasons=p.reasons,
    )


async def _judge_seen_before(tx: Transaction, batch: list[_Pending], *, now: datetime) -> None:
    rows = await tx.session.execute(
        _LOCK_EXISTING,
        {"t": [p.tenant_id for p in batch], "r": [p.response.response_id for p in batch]},
    )
    stored = {(row.tenant_id, row.response_id): row for row in rows}
    for p in batch:
        row = stored[p.key]
        judged = verdict(
            stored_fingerprint=row.fingerprint,
            stored_version_at=row.version_at,
            fingerprint=p.fingerprint,
            version_at=p.version_at,
        )
        category = Category(row.category)
        if judged != "correction":
            status: Status = "duplicate" if judged == "duplicate" else judged
            p.outcome = Outcome(status, p.response.response_id, row.version, category, row.event_id)
            continue
        await _correct(tx, p, row, now=now)


async def _correct(tx: Transaction, p: _Pending, row: Any, *, now: datetime) -> None:
    """Store the next version and publish it (corrected, or for a response still held back as
    suspected, suspected again; one that no longer looks automated is released as received)."""
    version = row.version + 1
    r = p.response
    data: EventData
    if row.status == "suspected" and p.reasons:
        data = _suspected(p, version=version, now=now)
        status: Status = "suspected"
    elif row.status == "suspected":
        data = r.to_event(received_at=now, source=p.source)
        status = "accepted"
    else:
        data = ResponseCorrectedV1(
            response_id=r.response_id,
            version=version,
            survey_id=r.survey_id,
            customer=r.customer,
            account_id=r.account_id,
            score=r.score,
            category=p.category,
            comment=r.comment or None,
            answered_at=r.answered_at,
            updated_at=p.version_at,
            received_at=now,
            segments=r.segments,
            attributes=r.attributes,
            source=p.source,
            previous=_version_of(row),
        )
        status = "corrected"
    event = tx.envelope(data, tenant_id=p.tenant_id, subject=r.response_id, trace=p.trace)
    await tx.session.execute(
        _UPDATE_RESPONSE,
        {
            "t": p.tenant_id,
            "r": r.response_id,
            "s": r.survey_id,
            "c": r.customer.id,
            "a": r.account_id,
            "sc": r.score,
            "cat": p.category.value,
            "ans": r.answered_at,
            "now": now,
            "src": p.source,
            "fp": p.fingerprint,
            "ev": event.id,
            "p": orjson.dumps(p.payload).decode(),
            "v": version,
            "va": p.version_at,
            "st": "suspected" if status == "suspected" else "accepted",
            "sus": list(p.reasons) if status == "suspected" else [],
        },
    )
    tx.add(event)
    p.outcome = Outcome(status, r.response_id, version, p.category, event.id)


def _version_of(row: Any) -> ResponseVersion:
    stored = CanonicalResponse.model_validate(row.payload)
    return ResponseVersion(
        version=row.version,
        survey_id=stored.survey_id,
        account_id=stored.account_id,
        score=stored.score,
        category=Category(row.category),
        answered_at=stored.answered_at,
        segments=stored.segments or Segments(),
        attributes=stored.attributes,
    )


def delivery_outcome(intake: Intake, outcomes: Sequence[Outcome]) -> str:
    """One word for a delivery: what happened to it as a whole."""
    if intake.fetch is not None:
        return "fetch_queued"
    if intake.ignored is not None:
        return "ignored"
    statuses = {o.status for o in outcomes}
    for status in ("corrected", "accepted", "suspected", "conflict", "stale"):
        if status in statuses:
            return status
    return "duplicate"


async def _record_deliveries(
    session: AsyncSession, intakes: Sequence[Intake], pending: list[list[_Pending]]
) -> None:
    rows = [
        (intake, intake.delivery, [p.outcome for p in per_intake if p.outcome is not None])
        for intake, per_intake in zip(intakes, pending, strict=True)
        if intake.delivery is not None
    ]
    if not rows:
        return
    documents = [
        {
            "t": intake.tenant_id,
            "s": intake.source,
            "d": delivery.delivery_id,
            "ra": delivery.received_at,
            "ct": delivery.content_type,
            "h": {k: v for k, v in delivery.headers.items() if "\x00" not in k + v},
            "b": base64.b64encode(delivery.body).decode(),
            "o": delivery_outcome(intake, outcomes),
            "ids": [o.response_id for o in outcomes],
        }
        for intake, delivery, outcomes in rows
    ]
    await session.execute(_INSERT_DELIVERIES, {"rows": orjson.dumps(documents).decode()})
