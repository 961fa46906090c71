"""orchestrator: cases, outbox, inbox

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
    create_messaging_tables("orchestrator")
    op.create_table(
        "cases",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("survey_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("customer", postgresql.JSONB, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("score", sa.SmallInteger, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("playbook", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("owner_name", sa.Text, nullable=False),
        sa.Column("owner_email", sa.Text, nullable=False),
        sa.Column("key_account", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_contact_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "case_id", name="pk_cases"),
        sa.UniqueConstraint("tenant_id", "response_id", name="uq_cases_tenant_id_response_id"),
        schema="orchestrator",
    )
    op.create_index(
        "ix_cases_open_due",
        "cases",
        ["tenant_id", "first_contact_due_at"],
        schema="orchestrator",
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_table("cases", schema="orchestrator")
    op.drop_table("inbox", schema="orchestrator")
    op.drop_table("outbox", schema="orchestrator")
