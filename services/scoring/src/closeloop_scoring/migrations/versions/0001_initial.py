"""scoring: segment_daily, outbox, inbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from closeloop_common.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables("scoring")
    op.create_table(
        "segment_daily",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("promoters", sa.Integer, nullable=False, server_default="0"),
        sa.Column("passives", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detractors", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "dimension", "segment", "day", name="pk_segment_daily"
        ),
        schema="scoring",
    )


def downgrade() -> None:
    op.drop_table("segment_daily", schema="scoring")
    op.drop_table("inbox", schema="scoring")
    op.drop_table("outbox", schema="scoring")
