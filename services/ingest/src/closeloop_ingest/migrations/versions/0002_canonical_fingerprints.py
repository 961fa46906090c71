"""ingest: fingerprints of stored responses in the canonical form

Revision ID: 0002
Revises: 0001

Version 1 fingerprinted a dump of the whole model, which changes whenever a field is added. The
canonical form (`closeloop_ingest.domain.responses.fingerprint_of`) lists its fields explicitly;
this rewrites every stored fingerprint from the stored payload, so a resend of a response accepted
before the upgrade is still recognised as a duplicate rather than a 409 conflict.
Downgrading leaves the canonical fingerprints: version 1 would then call such a resend a conflict.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from closeloop_ingest.domain.responses import fingerprint_of

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000
responses = sa.table(
    "responses",
    sa.column("tenant_id", sa.Text),
    sa.column("response_id", sa.Text),
    sa.column("fingerprint", sa.Text),
    sa.column("payload", postgresql.JSONB),
    schema="ingest",
)


def rewrite_fingerprints(connection: sa.Connection) -> int:
    """Set every row's fingerprint from its payload, in batches of keys; returns rows changed."""
    changed = 0
    after: tuple[str, str] = ("", "")
    while True:
        rows = connection.execute(
            sa.select(
                responses.c.tenant_id,
                responses.c.response_id,
                responses.c.fingerprint,
                responses.c.payload,
            )
            .where(sa.tuple_(responses.c.tenant_id, responses.c.response_id) > after)
            .order_by(responses.c.tenant_id, responses.c.response_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return changed
        updates = [
            {"t": row.tenant_id, "r": row.response_id, "f": fingerprint}
            for row in rows
            if (fingerprint := fingerprint_of(row.payload)) != row.fingerprint
        ]
        if updates:
            connection.execute(
                sa.update(responses)
                .where(
                    responses.c.tenant_id == sa.bindparam("t"),
                    responses.c.response_id == sa.bindparam("r"),
                )
                .values(fingerprint=sa.bindparam("f")),
                updates,
            )
            changed += len(updates)
        after = (rows[-1].tenant_id, rows[-1].response_id)


def upgrade() -> None:
    rewrite_fingerprints(op.get_bind())


def downgrade() -> None:
    pass
