"""Erasure (GDPR article 17) and export (article 15) of a respondent, the notifier's part.

`Erasure.on_requested` (one `privacy.erasure_requested.v1`, exactly once through the inbox):
- `messages` to the respondent that are not final yet (draft, pending, held, sending) are
  `discarded`: nothing more goes to them;
- every message to or about them (by customer id, address, response, or case: a case's id is
  derived from its response, `closeloop_common.identifiers`) keeps its row, kind, status and times,
  so message counts stay, but its subject and body become `ERASED`, its HTML and webhook payload
  and error go, and a customer message loses its recipient; a team message with no case (the
  overdue digest) is anonymised the same way when its text names the respondent's address or name;
- `case_view`: the customer's name goes, the comment becomes `ERASED`;
- `contacts` (the audience's address book) rows are deleted; `respondents` and `invitations`
  keep their counts with the pseudonym as customer id;
- `opt_outs` of the addresses are deleted and every address is kept instead as a keyed hash in
  `erased_recipients`, which the dispatcher checks before each send: no message reaches an
  erased address again, yet the address itself is gone (docs/privacy.md, "Opt-outs");
- `outbox`: published rows keyed by the customer are deleted (retention would in 7 days).
Then it emits `privacy.erasure_completed.v1` with the rows touched per table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.events import CloudEvent, ErasureRequestedV1
from closeloop_common.handlers import HandlerContext
from closeloop_common.identifiers import case_id_for, no_response_case_id_for
from closeloop_common.privacy import (
    ERASED,
    SubjectIdentifiers,
    exported_row,
    report_erasure,
    rows_touched,
)
from closeloop_notifier.service_layer.policy import remember_erased

_MINIMUM_NAME = 3  # a shorter name would match unrelated digests

_CASES_OF_CUSTOMERS = sa.text(
    "SELECT DISTINCT case_id FROM notifier.messages WHERE tenant_id = :t "
    "AND case_id IS NOT NULL AND (customer_id = ANY(:cids) OR recipient_key = ANY(:emails))"
)
_MATCH = (
    "tenant_id = :t AND (customer_id = ANY(:cids) OR recipient_key = ANY(:emails) "
    "OR response_id = ANY(:rids) OR case_id = ANY(:case_ids))"
)
_RECIPIENT_KEYS = sa.text(
    f"SELECT DISTINCT recipient_key FROM notifier.messages WHERE {_MATCH} "
    "AND audience = 'customer' AND recipient_key IS NOT NULL"
)
_CANCEL = sa.text(
    "UPDATE notifier.messages SET status = 'discarded', next_attempt_at = NULL, "
    f"lease_until = NULL WHERE {_MATCH} AND audience = 'customer' "
    "AND status IN ('draft', 'pending', 'held', 'sending')"
)
_ANONYMISE = (
    "UPDATE notifier.messages SET subject = CAST(:erased AS text), body = CAST(:erased AS text), "
    "html = NULL, payload = NULL, last_error = NULL, "
    "customer_id = CASE WHEN customer_id IS NULL THEN NULL ELSE CAST(:pseudonym AS text) END, "
    "recipient = CASE WHEN audience = 'customer' THEN NULL ELSE recipient END, "
    "recipient_key = CASE WHEN audience = 'customer' THEN NULL ELSE recipient_key END "
)
_ANONYMISE_MESSAGES = sa.text(_ANONYMISE + f"WHERE {_MATCH}")
_ANONYMISE_DIGESTS = sa.text(
    _ANONYMISE + "WHERE tenant_id = :t AND audience = 'team' AND case_id IS NULL "
    "AND body <> CAST(:erased AS text) AND EXISTS (SELECT 1 FROM unnest(CAST(:needles AS text[])) "
    "AS n(needle) WHERE position(n.needle IN lower(body)) > 0 "
    "OR position(n.needle IN lower(coalesce(html, ''))) > 0)"
)
_CASE_NAMES = sa.text(
    "SELECT customer_name FROM notifier.case_view WHERE tenant_id = :t "
    "AND case_id = ANY(:case_ids) AND customer_name IS NOT NULL"
)
_ANONYMISE_CASE_VIEW = sa.text(
    "UPDATE notifier.case_view SET customer_name = NULL, "
    "comment = CASE WHEN comment IS NULL THEN NULL ELSE CAST(:erased AS text) END "
    "WHERE tenant_id = :t AND case_id = ANY(:case_ids)"
)
_DELETE_CONTACTS = sa.text(
    "DELETE FROM notifier.contacts WHERE tenant_id = :t "
    "AND (customer_id = ANY(:cids) OR lower(email) = ANY(:emails)) RETURNING name"
)
_ANONYMISE_RESPONDENTS = sa.text(
    "UPDATE notifier.respondents SET customer_id = CAST(:pseudonym AS text) WHERE tenant_id = :t "
    "AND (customer_id = ANY(:cids) OR response_id = ANY(:rids))"
)
_ANONYMISE_INVITATIONS = sa.text(
    "UPDATE notifier.invitations SET customer_id = CAST(:pseudonym AS text) "
    "WHERE tenant_id = :t AND (customer_id = ANY(:cids) OR invitation_id = ANY(:iids))"
)
_DELETE_OPT_OUTS = sa.text(
    "DELETE FROM notifier.opt_outs WHERE tenant_id = :t AND email = ANY(:emails)"
)
_DELETE_PUBLISHED = sa.text(
    "DELETE FROM notifier.outbox WHERE tenant_id = :t AND published_at IS NOT NULL "
    "AND key = ANY(:keys)"
)


async def case_ids_of(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers
) -> list[uuid.UUID]:
    """The cases of the respondent: derived from their responses and invitations, and those
    of messages to them."""
    derived = {case_id_for(tenant_id=tenant_id, response_id=r) for r in ids.response_ids}
    derived |= {
        no_response_case_id_for(tenant_id=tenant_id, invitation_id=i) for i in ids.invitation_ids
    }
    found = await session.scalars(
        _CASES_OF_CUSTOMERS,
        {"t": tenant_id, "cids": list(ids.customer_ids), "emails": list(ids.emails)},
    )
    return sorted(derived | set(found.all()))


@dataclass(frozen=True, slots=True)
class Erasure:
    """The notifier's erasure handler, with the key of the erased addresses' hashes."""

    erasure_key: bytes

    async def on_requested(
        self, ctx: HandlerContext, event: CloudEvent[ErasureRequestedV1]
    ) -> None:
        data = event.data
        rows = await self.erase(
            ctx.session,
            tenant_id=ctx.tenant_id,
            ids=SubjectIdentifiers.of_event(data),
            pseudonym=data.pseudonym,
            clock=ctx.clock,
        )
        await report_erasure(ctx, data, service="notifier", rows=rows)

    async def erase(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        ids: SubjectIdentifiers,
        pseudonym: str,
        clock: Clock,
    ) -> dict[str, int]:
        """Erase or anonymise what the notifier holds about `ids`; rows touched per table."""
        case_ids = await case_ids_of(session, tenant_id=tenant_id, ids=ids)
        match = {
            "t": tenant_id,
            "cids": list(ids.customer_ids),
            "emails": list(ids.emails),
            "rids": list(ids.response_ids),
            "case_ids": case_ids,
        }
        recipient_keys = set((await session.scalars(_RECIPIENT_KEYS, match)).all())
        cancelled = await session.execute(_CANCEL, match)
        marks = {"erased": ERASED, "pseudonym": pseudonym}
        messages = await session.execute(_ANONYMISE_MESSAGES, {**match, **marks})
        names = set(
            (await session.scalars(_CASE_NAMES, {"t": tenant_id, "case_ids": case_ids})).all()
        )
        case_view = await session.execute(
            _ANONYMISE_CASE_VIEW, {"t": tenant_id, "case_ids": case_ids, "erased": ERASED}
        )
        contacts = (
            await session.scalars(
                _DELETE_CONTACTS,
                {"t": tenant_id, "cids": match["cids"], "emails": match["emails"]},
            )
        ).all()
        names |= {n for n in contacts if n}
        needles = sorted(
            {e.lower() for e in ids.emails}
            | {n.strip().lower() for n in names if len(n.strip()) >= _MINIMUM_NAME}
        )
        digests = await session.execute(
            _ANONYMISE_DIGESTS, {"t": tenant_id, "needles": needles, **marks}
        )
        respondents = await session.execute(
            _ANONYMISE_RESPONDENTS,
            {"t": tenant_id, "cids": match["cids"], "rids": match["rids"], "pseudonym": pseudonym},
        )
        invitations = await session.execute(
            _ANONYMISE_INVITATIONS,
            {
                "t": tenant_id,
                "cids": match["cids"],
                "iids": list(ids.invitation_ids),
                "pseudonym": pseudonym,
            },
        )
        opt_outs = await session.execute(
            _DELETE_OPT_OUTS, {"t": tenant_id, "emails": match["emails"]}
        )
        erased = await remember_erased(
            session=session,
            tenant_id=tenant_id,
            keys=set(ids.emails) | recipient_keys,
            erasure_key=self.erasure_key,
            clock=clock,
        )
        outbox = await session.execute(
            _DELETE_PUBLISHED,
            {"t": tenant_id, "keys": [f"{tenant_id}:{c}" for c in ids.customer_ids]},
        )
        return {
            "messages": rows_touched(messages) + rows_touched(digests),
            "messages_cancelled": rows_touched(cancelled),
            "case_view": rows_touched(case_view),
            "contacts": len(contacts),
            "respondents": rows_touched(respondents),
            "invitations": rows_touched(invitations),
            "opt_outs": rows_touched(opt_outs),
            "erased_recipients": erased,
            "outbox": rows_touched(outbox),
        }


_MESSAGES = sa.text(
    "SELECT message_id, kind, audience, case_id, campaign_id, response_id, customer_id, locale, "
    "channel, recipient, subject, body, status, attempts, created_at, sent_at FROM "
    f"notifier.messages WHERE {_MATCH} ORDER BY created_at, message_id"
)
_CONTACTS = sa.text(
    "SELECT customer_id, email, name, locale, seen_at FROM notifier.contacts WHERE tenant_id = :t "
    "AND (customer_id = ANY(:cids) OR lower(email) = ANY(:emails)) ORDER BY customer_id"
)
_CASE_VIEW = sa.text(
    "SELECT case_id, status, customer_name, category, score, comment, account_id "
    "FROM notifier.case_view WHERE tenant_id = :t AND case_id = ANY(:case_ids) ORDER BY case_id"
)
_OPT_OUTS = sa.text(
    "SELECT email, created_at FROM notifier.opt_outs WHERE tenant_id = :t "
    "AND email = ANY(:emails) ORDER BY email"
)


async def export(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers
) -> dict[str, Any]:
    """Everything the notifier holds about `ids`, as JSON (article 15)."""
    case_ids = await case_ids_of(session, tenant_id=tenant_id, ids=ids)
    match = {
        "t": tenant_id,
        "cids": list(ids.customer_ids),
        "emails": list(ids.emails),
        "rids": list(ids.response_ids),
        "case_ids": case_ids,
    }
    messages = (await session.execute(_MESSAGES, match)).all()
    contacts = (
        await session.execute(
            _CONTACTS, {"t": tenant_id, "cids": match["cids"], "emails": match["emails"]}
        )
    ).all()
    cases = (await session.execute(_CASE_VIEW, {"t": tenant_id, "case_ids": case_ids})).all()
    opt_outs = (await session.execute(_OPT_OUTS, {"t": tenant_id, "emails": match["emails"]})).all()
    return {
        "messages": [exported_row(m._mapping) for m in messages],
        "contacts": [exported_row(c._mapping) for c in contacts],
        "cases": [exported_row(c._mapping) for c in cases],
        "opt_outs": [exported_row(o._mapping) for o in opt_outs],
    }
