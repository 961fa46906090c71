"""orchestrator: SLA timers of the cases

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("clock", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("step", sa.SmallInteger, nullable=False),
        sa.Column("round", sa.SmallInteger, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("to_role", sa.Text, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint(
            "tenant_id", "case_id", "clock", "kind", "step", "round", name="pk_timers"
        ),
        schema="orchestrator",
    )
    op.create_index(
        "ix_timers_pending_due",
        "timers",
        ["due_at"],
        schema="orchestrator",
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("timers", schema="orchestrator")
