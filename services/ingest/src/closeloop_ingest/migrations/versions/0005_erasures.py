"""ingest: erasure requests (GDPR article 17) and each service's answer

Revision ID: 0005
Revises: 0004

- `erasures`: one row per erasure an admin asked for: who asked (the token's subject), when, and
  per service (`services`: {service: {rows: {table: count}, completed_at}}) what it reported in
  `privacy.erasure_completed.v1`. It holds no identifier of the person erased.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "ingest"


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("erasure_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column(
            "services",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "erasure_id", name="pk_erasures"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("erasures", schema=S)
