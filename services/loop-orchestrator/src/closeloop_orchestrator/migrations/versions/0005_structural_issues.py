"""orchestrator: the structural issues backlog (issues with their estimated impact, cost, owner
and status), the cases each concerns, and every transition of an issue

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "orchestrator"


def upgrade() -> None:
    op.create_table(
        "structural_issues",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("issue_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("theme", sa.Text),
        sa.Column("filters", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("owner", postgresql.JSONB),
        sa.Column("cost", sa.Numeric(14, 3), nullable=False),
        sa.Column("cost_unit", sa.Text, nullable=False),
        sa.Column("impact", postgresql.JSONB),
        sa.Column("locale", sa.Text),
        sa.Column("customer_text", postgresql.JSONB),
        sa.Column("notify_segment", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "issue_id", name="pk_structural_issues"),
        sa.CheckConstraint("cost > 0", name="ck_structural_issues_cost_positive"),
        sa.CheckConstraint(
            "source IN ('theme', 'cases')", name="ck_structural_issues_source_known"
        ),
        sa.CheckConstraint(
            "status IN ('proposed', 'prioritised', 'in_progress', 'done', 'rejected')",
            name="ck_structural_issues_status_known",
        ),
        sa.CheckConstraint(
            "status <> 'rejected' OR reason IS NOT NULL",
            name="ck_structural_issues_rejection_has_reason",
        ),
        schema=S,
    )
    op.create_index(
        "ix_structural_issues_tenant_id_status",
        "structural_issues",
        ["tenant_id", "status"],
        schema=S,
    )
    op.create_table(
        "structural_issue_cases",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("issue_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.PrimaryKeyConstraint(
            "tenant_id", "issue_id", "case_id", name="pk_structural_issue_cases"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "issue_id"],
            ["orchestrator.structural_issues.tenant_id", "orchestrator.structural_issues.issue_id"],
            name="fk_structural_issue_cases_tenant_id_structural_issues",
            ondelete="CASCADE",
        ),
        schema=S,
    )
    op.create_table(
        "structural_issue_history",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("issue_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "issue_id", "version", name="pk_structural_issue_history"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "issue_id"],
            ["orchestrator.structural_issues.tenant_id", "orchestrator.structural_issues.issue_id"],
            name="fk_structural_issue_history_tenant_id_structural_issues",
            ondelete="CASCADE",
        ),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("structural_issue_history", schema=S)
    op.drop_table("structural_issue_cases", schema=S)
    op.drop_index("ix_structural_issues_tenant_id_status", table_name="structural_issues", schema=S)
    op.drop_table("structural_issues", schema=S)
