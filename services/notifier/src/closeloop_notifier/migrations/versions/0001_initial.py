"""notifier: messages, opt_outs, outbox, inbox

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
    create_messaging_tables("notifier")
    op.create_table(
        "messages",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("locale", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text),
        sa.Column("reply_to", sa.Text),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "message_id", name="pk_messages"),
        sa.UniqueConstraint(
            "tenant_id", "case_id", "template", name="uq_messages_tenant_id_case_id_template"
        ),
        schema="notifier",
    )
    op.create_index(
        "ix_messages_due",
        "messages",
        ["next_attempt_at"],
        schema="notifier",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "opt_outs",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "email", name="pk_opt_outs"),
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_table("opt_outs", schema="notifier")
    op.drop_table("messages", schema="notifier")
    op.drop_table("inbox", schema="notifier")
    op.drop_table("outbox", schema="notifier")
