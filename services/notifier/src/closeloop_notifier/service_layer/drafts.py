"""Drafts: customer replies held for their owner (the tenant's approval rules for detractors).

The owner reads the draft, may edit its subject and text, then approves it (it is sent at once,
quiet hours and the frequency cap still applying) or discards it (`discarded`, with a
`notification.failed` of reason `discarded`). An edited text is the plain-text part; the HTML
part is made from it, escaped, so an owner's edit cannot inject markup either.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from markupsafe import escape

from closeloop_common.handlers import Transaction
from closeloop_notifier.adapters.tables import messages
from closeloop_notifier.domain.rendering import one_line
from closeloop_notifier.service_layer.messages import publish_failed


class DraftNotFound(Exception):
    pass


class NotADraft(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the message is {status}, not a draft")
        self.status = status


def html_of_text(text: str, locale: str) -> str:
    """A plain HTML part for an edited text: paragraphs, line breaks, everything escaped."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "\n".join(
        f"<p>{'<br>'.join(str(escape(line)) for line in p.split(chr(10)))}</p>" for p in paragraphs
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(locale)}"><head><meta charset="utf-8"></head>'
        f'<body style="font-family:Arial,sans-serif;font-size:15px;line-height:1.5">\n'
        f"{body}\n</body></html>\n"
    )


async def _draft(tx: Transaction, tenant_id: str, message_id: uuid.UUID) -> sa.Row[Any]:
    row = (
        await tx.session.execute(
            sa.select(messages)
            .where(messages.c.tenant_id == tenant_id, messages.c.message_id == message_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise DraftNotFound(str(message_id))
    if row.status != "draft":
        raise NotADraft(row.status)
    return row


def _where(row: sa.Row[Any]) -> sa.Update:
    return sa.update(messages).where(
        messages.c.tenant_id == row.tenant_id, messages.c.message_id == row.message_id
    )


async def edit(
    tx: Transaction,
    tenant_id: str,
    message_id: uuid.UUID,
    *,
    subject: str | None,
    text: str | None,
    actor: str,
) -> sa.Row[Any]:
    row = await _draft(tx, tenant_id, message_id)
    values: dict[str, Any] = {"edited": True, "reviewed_by": actor}
    if subject is not None:
        values["subject"] = one_line(subject)
    if text is not None:
        values["body"] = text
        values["html"] = html_of_text(text, row.locale)
    edited: sa.Row[Any] = (
        await tx.session.execute(_where(row).values(**values).returning(messages))
    ).one()
    return edited


async def approve(
    tx: Transaction,
    tenant_id: str,
    message_id: uuid.UUID,
    *,
    subject: str | None,
    text: str | None,
    actor: str,
) -> sa.Row[Any]:
    if subject is not None or text is not None:
        await edit(tx, tenant_id, message_id, subject=subject, text=text, actor=actor)
    row = await _draft(tx, tenant_id, message_id)
    now = tx.clock.now()
    approved: sa.Row[Any] = (
        await tx.session.execute(
            _where(row)
            .values(status="pending", next_attempt_at=now, reviewed_by=actor, reviewed_at=now)
            .returning(messages)
        )
    ).one()
    return approved


async def discard(
    tx: Transaction, tenant_id: str, message_id: uuid.UUID, *, actor: str
) -> sa.Row[Any]:
    row = await _draft(tx, tenant_id, message_id)
    now = tx.clock.now()
    discarded: sa.Row[Any] = (
        await tx.session.execute(
            _where(row)
            .values(status="discarded", reviewed_by=actor, reviewed_at=now)
            .returning(messages)
        )
    ).one()
    publish_failed(tx, discarded, "discarded", f"discarded by {actor}", now)
    return discarded
