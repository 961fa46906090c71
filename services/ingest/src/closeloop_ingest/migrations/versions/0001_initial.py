"""ingest: responses, outbox, inbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from closeloop_common.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables("ingest")
    op.create_table(
        "responses",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("survey_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("score", sa.SmallInteger, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "response_id", name="pk_responses"),
        sa.CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
        schema="ingest",
    )


def downgrade() -> None:
    op.drop_table("responses", schema="ingest")
    op.drop_table("inbox", schema="ingest")
    op.drop_table("outbox", schema="ingest")
