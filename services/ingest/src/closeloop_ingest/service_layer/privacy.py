"""Erasure (GDPR article 17) and export (article 15) of a respondent, ingest's part.

`request_erasure` runs in one transaction: it resolves what ingest holds for the tenant about the
person named (every customer id and address linked to the one given, once: a response of
customer `c-1` with address `a@x.pl` links both), erases ingest's own copy, records the erasure
and emits `privacy.erasure_requested.v1` (for the other services) and ingest's own
`privacy.erasure_completed.v1`. What ingest erases:
- `responses` and `invitations`: the stored request (`payload`) keeps its score, segments and
  times; its customer becomes the erasure's pseudonym, its comment `ERASED`, its user agent goes;
  `customer_id` becomes the pseudonym. The fingerprint stays, so a redelivery of the same
  response is still a duplicate (and changes nothing).
- `deliveries`: the raw body and headers of every webhook delivery that carried one of the
  responses (a batch delivery loses the others' raw copy too: it is an audit copy, not a record).
- `outbox`: published rows keyed by the customer (retention deletes them after 7 days anyway).
  Rows not yet published are left: they must reach the broker (see docs/privacy.md, "Window").
`record_completion` keeps what each service reported, for `erasure_status`; once all four have,
it deletes the published request event from the outbox (it names the person).
Nothing here logs an identifier: the log line names the erasure id, the tenant and counts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import (
    MAX_ERASURE_IDENTIFIERS,
    CloudEvent,
    ErasureCompletedV1,
    ErasureRequestedV1,
    PrivacyService,
)
from closeloop_common.handlers import HandlerContext, Transaction
from closeloop_common.privacy import (
    ERASED,
    ErasureByEmail,
    ErasureSubject,
    SubjectIdentifiers,
    address_key,
    anonymised_customer,
    pseudonym_of,
    rows_touched,
)
from closeloop_ingest.adapters.tables import erasures, metadata

outbox = metadata.tables["ingest.outbox"]

log = logging.getLogger(__name__)

SERVICES: tuple[PrivacyService, ...] = ("ingest", "scoring", "orchestrator", "notifier")

_EMAIL = "lower(payload -> 'customer' ->> 'email')"
_CUSTOMERS_BY_EMAIL = sa.text(
    f"SELECT customer_id FROM ingest.responses WHERE tenant_id = :t AND {_EMAIL} = ANY(:emails) "
    f"UNION SELECT customer_id FROM ingest.invitations "
    f"WHERE tenant_id = :t AND {_EMAIL} = ANY(:emails)"
)
_EMAILS_OF_CUSTOMERS = sa.text(
    f"SELECT {_EMAIL} AS email FROM ingest.responses "
    "WHERE tenant_id = :t AND customer_id = ANY(:ids) AND payload -> 'customer' ? 'email' "
    f"UNION SELECT {_EMAIL} FROM ingest.invitations "
    "WHERE tenant_id = :t AND customer_id = ANY(:ids) AND payload -> 'customer' ? 'email'"
)
_RESPONSES = sa.text(
    "SELECT response_id, payload FROM ingest.responses WHERE tenant_id = :t "
    f"AND (customer_id = ANY(:ids) OR {_EMAIL} = ANY(:emails)) ORDER BY response_id"
)
_INVITATIONS = sa.text(
    "SELECT invitation_id, payload FROM ingest.invitations WHERE tenant_id = :t "
    f"AND (customer_id = ANY(:ids) OR {_EMAIL} = ANY(:emails)) ORDER BY invitation_id"
)
_ANONYMISE_RESPONSE = sa.text(
    "UPDATE ingest.responses SET customer_id = :pseudonym, payload = CAST(:payload AS jsonb) "
    "WHERE tenant_id = :t AND response_id = :id"
)
_ANONYMISE_INVITATION = sa.text(
    "UPDATE ingest.invitations SET customer_id = :pseudonym, payload = CAST(:payload AS jsonb) "
    "WHERE tenant_id = :t AND invitation_id = :id"
)
_ERASE_DELIVERIES = sa.text(
    "UPDATE ingest.deliveries SET body = ''::bytea, headers = '{}'::jsonb "
    "WHERE tenant_id = :t AND response_ids && CAST(:ids AS text[]) "
    "AND (body <> ''::bytea OR headers <> '{}'::jsonb)"
)
_DELETE_PUBLISHED = sa.text(
    "DELETE FROM ingest.outbox WHERE tenant_id = :t AND published_at IS NOT NULL "
    "AND key = ANY(:keys)"
)
_DELIVERIES = sa.text(
    "SELECT id, source, delivery_id, received_at, content_type, headers, body, outcome "
    "FROM ingest.deliveries WHERE tenant_id = :t AND response_ids && CAST(:ids AS text[]) "
    "ORDER BY id"
)
_FULL_RESPONSES = sa.text(
    "SELECT response_id, status, version, received_at, source, payload FROM ingest.responses "
    "WHERE tenant_id = :t AND response_id = ANY(:ids) ORDER BY response_id"
)
_FULL_INVITATIONS = sa.text(
    "SELECT invitation_id, received_at, payload FROM ingest.invitations "
    "WHERE tenant_id = :t AND invitation_id = ANY(:ids) ORDER BY invitation_id"
)


async def resolve(
    session: AsyncSession, *, tenant_id: str, subject: ErasureSubject
) -> SubjectIdentifiers:
    """Every identifier ingest links to `subject` for the tenant (the given one included)."""
    if isinstance(subject, ErasureByEmail):
        emails = {address_key(subject.email)}
        found = await session.scalars(_CUSTOMERS_BY_EMAIL, {"t": tenant_id, "emails": [*emails]})
        customer_ids = set(found.all())
    else:
        customer_ids = {subject.customer_id}
        emails = set()
    if customer_ids:
        linked = await session.scalars(
            _EMAILS_OF_CUSTOMERS, {"t": tenant_id, "ids": sorted(customer_ids)}
        )
        emails |= {e for e in linked.all() if e}
    keys = {"t": tenant_id, "ids": sorted(customer_ids), "emails": sorted(emails)}
    responses = (await session.execute(_RESPONSES, keys)).all()
    invitations = (await session.execute(_INVITATIONS, keys)).all()
    return SubjectIdentifiers.model_construct(
        customer_ids=tuple(sorted(customer_ids)),
        emails=tuple(sorted(emails)),
        response_ids=tuple(r.response_id for r in responses),
        invitation_ids=tuple(i.invitation_id for i in invitations),
    )


class TooManyIdentifiers(Exception):
    """The person has more responses or invitations than one erasure event may name."""


def too_many(ids: SubjectIdentifiers) -> bool:
    """Whether `ids` is beyond what `privacy.erasure_requested.v1` carries (10,000 of a kind)."""
    return any(
        len(found) > MAX_ERASURE_IDENTIFIERS
        for found in (ids.customer_ids, ids.emails, ids.response_ids, ids.invitation_ids)
    )


def anonymised_payload(payload: dict[str, Any], pseudonym: str) -> dict[str, Any]:
    """A stored response or invitation request with nothing left that names the person."""
    kept = {k: v for k, v in payload.items() if k not in ("user_agent",)}
    kept["customer"] = anonymised_customer(pseudonym)
    if kept.get("comment") is not None:
        kept["comment"] = ERASED
    return kept


async def erase_own(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers, pseudonym: str
) -> dict[str, int]:
    """Erase what ingest holds about `ids`; rows touched per table."""
    keys = {"t": tenant_id, "ids": list(ids.customer_ids), "emails": list(ids.emails)}
    responses = (await session.execute(_RESPONSES, keys)).all()
    for row in responses:
        await session.execute(
            _ANONYMISE_RESPONSE,
            {
                "t": tenant_id,
                "id": row.response_id,
                "pseudonym": pseudonym,
                "payload": orjson.dumps(anonymised_payload(row.payload, pseudonym)).decode(),
            },
        )
    invitations = (await session.execute(_INVITATIONS, keys)).all()
    for row in invitations:
        await session.execute(
            _ANONYMISE_INVITATION,
            {
                "t": tenant_id,
                "id": row.invitation_id,
                "pseudonym": pseudonym,
                "payload": orjson.dumps(anonymised_payload(row.payload, pseudonym)).decode(),
            },
        )
    deliveries = await session.execute(
        _ERASE_DELIVERIES, {"t": tenant_id, "ids": list(ids.response_ids)}
    )
    outbox = await session.execute(
        _DELETE_PUBLISHED,
        {"t": tenant_id, "keys": [f"{tenant_id}:{c}" for c in ids.customer_ids]},
    )
    return {
        "responses": len(responses),
        "invitations": len(invitations),
        "deliveries": rows_touched(deliveries),
        "outbox": rows_touched(outbox),
    }


async def request_erasure(
    tx: Transaction, *, tenant_id: str, subject: ErasureSubject, requested_by: str
) -> uuid.UUID:
    """Resolve, erase ingest's copy, record the erasure and ask the other services (one
    transaction: the request is durable exactly when ingest's part is done)."""
    session = tx.session
    erasure_id = uuid.uuid4()
    pseudonym = pseudonym_of(erasure_id)
    ids = await resolve(session, tenant_id=tenant_id, subject=subject)
    if too_many(ids):
        raise TooManyIdentifiers()
    now = tx.clock.now()
    rows = await erase_own(session, tenant_id=tenant_id, ids=ids, pseudonym=pseudonym)
    await session.execute(
        sa.insert(erasures).values(
            tenant_id=tenant_id,
            erasure_id=erasure_id,
            requested_at=now,
            requested_by=requested_by,
            services={"ingest": _completion(rows, now)},
        )
    )
    await tx.emit(
        ErasureRequestedV1(
            erasure_id=erasure_id,
            customer_ids=ids.customer_ids,
            emails=ids.emails,
            response_ids=ids.response_ids,
            invitation_ids=ids.invitation_ids,
            pseudonym=pseudonym,
            requested_at=now,
        ),
        tenant_id=tenant_id,
    )
    await tx.emit(
        ErasureCompletedV1(erasure_id=erasure_id, service="ingest", rows=rows, completed_at=now),
        tenant_id=tenant_id,
    )
    log.info(
        "erasure requested",
        extra={"erasure_id": str(erasure_id), "tenant_id": tenant_id, "rows": rows},
    )
    return erasure_id


def _completion(rows: dict[str, int], at: datetime) -> dict[str, Any]:
    return {"rows": rows, "completed_at": at.isoformat()}


async def record_completion(ctx: HandlerContext, event: CloudEvent[ErasureCompletedV1]) -> None:
    """Keep a service's report on an erasure (the same report again changes nothing)."""
    data = event.data
    entry = sa.literal(_completion(data.rows, data.completed_at), type_=erasures.c.services.type)
    await ctx.session.execute(
        sa.update(erasures)
        .where(erasures.c.tenant_id == ctx.tenant_id, erasures.c.erasure_id == data.erasure_id)
        .values(
            services=erasures.c.services.op("||")(sa.func.jsonb_build_object(data.service, entry))
        )
    )
    log.info(
        "erasure completed by a service",
        extra={"erasure_id": str(data.erasure_id), "service": data.service, "rows": data.rows},
    )
    reported = await ctx.session.scalar(
        sa.select(erasures.c.services).where(
            erasures.c.tenant_id == ctx.tenant_id, erasures.c.erasure_id == data.erasure_id
        )
    )
    if reported is not None and set(SERVICES) <= set(reported):
        # Every service has done its part: the request event, which names the person, need not
        # wait in the outbox for its retention (the topic keeps it for its own; docs/privacy.md).
        await ctx.session.execute(
            sa.delete(outbox).where(
                outbox.c.tenant_id == ctx.tenant_id,
                outbox.c.key == f"{ctx.tenant_id}:erasure:{data.erasure_id}",
                outbox.c.event_type == ErasureRequestedV1.EVENT_TYPE,
                outbox.c.published_at.is_not(None),
            )
        )


async def erasure_status(
    session: AsyncSession, *, tenant_id: str, erasure_id: uuid.UUID
) -> dict[str, Any] | None:
    """The erasure and each service's part (`pending` until it reported), or None."""
    row = (
        await session.execute(
            sa.select(erasures).where(
                erasures.c.tenant_id == tenant_id, erasures.c.erasure_id == erasure_id
            )
        )
    ).first()
    if row is None:
        return None
    services: dict[str, Any] = {}
    for name in SERVICES:
        reported = row.services.get(name)
        services[name] = (
            {"status": "completed", **reported} if reported is not None else {"status": "pending"}
        )
    done = all(s["status"] == "completed" for s in services.values())
    return {
        "erasure_id": str(row.erasure_id),
        "requested_at": row.requested_at.isoformat(),
        "status": "completed" if done else "in_progress",
        "services": services,
    }


async def export_own(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers
) -> dict[str, Any]:
    """Everything ingest holds about `ids`, as JSON (article 15)."""
    responses = (
        await session.execute(_FULL_RESPONSES, {"t": tenant_id, "ids": list(ids.response_ids)})
    ).all()
    invitations = (
        await session.execute(_FULL_INVITATIONS, {"t": tenant_id, "ids": list(ids.invitation_ids)})
    ).all()
    deliveries = (
        await session.execute(_DELIVERIES, {"t": tenant_id, "ids": list(ids.response_ids)})
    ).all()
    return {
        "responses": [
            {
                "response_id": r.response_id,
                "status": r.status,
                "version": r.version,
                "received_at": r.received_at.isoformat(),
                "source": r.source,
                "request": r.payload,
            }
            for r in responses
        ],
        "invitations": [
            {
                "invitation_id": i.invitation_id,
                "received_at": i.received_at.isoformat(),
                "request": i.payload,
            }
            for i in invitations
        ],
        "webhook_deliveries": [
            {
                "source": d.source,
                "delivery_id": d.delivery_id,
                "received_at": d.received_at.isoformat(),
                "content_type": d.content_type,
                "outcome": d.outcome,
                "headers": d.headers,
                "body": bytes(d.body).decode("utf-8", "replace"),
            }
            for d in deliveries
        ],
    }
