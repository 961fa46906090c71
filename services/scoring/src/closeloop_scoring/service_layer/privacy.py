"""Erasure (GDPR article 17) and export (article 15) of a respondent, scoring's part.

Scoring holds no personal data: no customer id, address, name or comment. Per response it keeps
the version counted, its cell, local day, category, account, the themes its comment was tagged
with and whether it is suspected (`responses`), the root-cause tags of its case (`root_causes`)
and, per invitation, its cell, day and account (`invitations`): the state that keeps corrections
exact. Once ingest, the orchestrator and the notifier have replaced the respondent by a pseudonym,
these rows are keyed by opaque ids linked to nobody we know, so they are kept as they are, and
every aggregate keeps its counts. `on_erasure_requested` still answers every erasure (with zero
rows touched) so that ingest's status shows scoring's part done, and the export lists what
scoring keeps under the respondent's response and invitation ids.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.events import CloudEvent, ErasureRequestedV1
from closeloop_common.handlers import HandlerContext
from closeloop_common.privacy import SubjectIdentifiers, exported_row, report_erasure
from closeloop_scoring.adapters.tables import cells, invitations, responses, root_causes


async def on_erasure_requested(ctx: HandlerContext, event: CloudEvent[ErasureRequestedV1]) -> None:
    await report_erasure(ctx, event.data, service="scoring", rows={})


def _cell_columns() -> list[sa.ColumnElement[Any]]:
    return [
        cells.c.survey_id,
        cells.c.product,
        cells.c.region,
        cells.c.channel,
        cells.c.touchpoint,
        cells.c.attributes,
    ]


async def export(
    session: AsyncSession, *, tenant_id: str, ids: SubjectIdentifiers
) -> dict[str, Any]:
    """What scoring keeps under the respondent's response and invitation ids (article 15)."""
    counted = await session.execute(
        sa.select(
            responses.c.response_id,
            responses.c.version,
            responses.c.day,
            responses.c.category,
            responses.c.account_id,
            responses.c.themes,
            responses.c.suspected,
            *_cell_columns(),
        )
        .join(cells, cells.c.cell_id == responses.c.cell_id)
        .where(
            responses.c.tenant_id == tenant_id,
            responses.c.response_id.in_(ids.response_ids),
        )
        .order_by(responses.c.response_id)
    )
    causes = await session.execute(
        sa.select(root_causes.c.response_id, root_causes.c.case_version, root_causes.c.tags)
        .where(
            root_causes.c.tenant_id == tenant_id,
            root_causes.c.response_id.in_(ids.response_ids),
        )
        .order_by(root_causes.c.response_id)
    )
    invited = await session.execute(
        sa.select(invitations.c.invitation_id, invitations.c.day, invitations.c.account_id)
        .where(
            invitations.c.tenant_id == tenant_id,
            invitations.c.invitation_id.in_(ids.invitation_ids),
        )
        .order_by(invitations.c.invitation_id)
    )
    return {
        "responses": [exported_row(row._mapping) for row in counted],
        "root_causes": [exported_row(row._mapping) for row in causes],
        "invitations": [exported_row(row._mapping) for row in invited],
    }
