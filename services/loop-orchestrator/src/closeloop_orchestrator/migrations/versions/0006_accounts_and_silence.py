"""orchestrator: invitations (for silence and the loop's impact), lack-of-response cases (a case
without an answer), the actions agreed with an account, and the responses a structural issue's
theme was found in

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "orchestrator"


def upgrade() -> None:
    op.add_column(
        "structural_issues",
        sa.Column(
            "theme_responses",
            postgresql.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        schema=S,
    )
    # A lack-of-response case has no answer: no score, no category.
    op.alter_column("cases", "score", nullable=True, schema=S)
    op.alter_column("cases", "category", nullable=True, schema=S)
    op.add_column("cases", sa.Column("invitation_id", sa.Text), schema=S)
    op.create_check_constraint(
        "ck_cases_answer_or_no_response",
        "cases",
        "CASE WHEN case_type = 'no_response' THEN invitation_id IS NOT NULL "
        "ELSE score IS NOT NULL AND category IS NOT NULL END",
        schema=S,
    )
    # An account's cases (its review pack, `GET /v1/cases?account_id=`).
    op.create_index(
        "ix_cases_account",
        "cases",
        ["tenant_id", "account_id", "opened_at"],
        schema=S,
        postgresql_where=sa.text("account_id IS NOT NULL"),
    )
    op.create_index(
        "ix_responses_customer",
        "responses",
        ["tenant_id", sa.text("(body -> 'customer' ->> 'id')")],
        schema=S,
    )
    op.create_table(
        "invitations",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("invitation_id", sa.Text, nullable=False),
        sa.Column("survey_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("customer", postgresql.JSONB, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("attributes", postgresql.JSONB, nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("response_id", sa.Text),
        sa.Column("silence_due_at", sa.DateTime(timezone=True)),
        sa.Column("silence_case_id", postgresql.UUID(as_uuid=True)),
        sa.PrimaryKeyConstraint("tenant_id", "invitation_id", name="pk_invitations"),
        schema=S,
    )
    op.create_index(
        "ix_invitations_customer",
        "invitations",
        ["tenant_id", "customer_id", "invited_at"],
        schema=S,
    )
    op.create_index(
        "ix_invitations_silence_due",
        "invitations",
        ["silence_due_at"],
        schema=S,
        postgresql_where=sa.text(
            "silence_due_at IS NOT NULL AND answered_at IS NULL AND silence_case_id IS NULL"
        ),
    )
    op.create_table(
        "account_actions",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("action_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("owner", postgresql.JSONB),
        sa.Column("due_on", sa.Date),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("issue_id", postgresql.UUID(as_uuid=True)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("agreed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "action_id", name="pk_account_actions"),
        sa.CheckConstraint(
            "status IN ('agreed', 'in_progress', 'done', 'dropped')",
            name="ck_account_actions_status_known",
        ),
        schema=S,
    )
    op.create_index(
        "ix_account_actions_account",
        "account_actions",
        ["tenant_id", "account_id", "agreed_at"],
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("ix_account_actions_account", table_name="account_actions", schema=S)
    op.drop_table("account_actions", schema=S)
    op.drop_index("ix_invitations_silence_due", table_name="invitations", schema=S)
    op.drop_index("ix_invitations_customer", table_name="invitations", schema=S)
    op.drop_table("invitations", schema=S)
    op.drop_index("ix_responses_customer", table_name="responses", schema=S)
    op.drop_index("ix_cases_account", table_name="cases", schema=S)
    op.execute(
        f"DELETE FROM {S}.timers WHERE case_id IN "
        f"(SELECT case_id FROM {S}.cases WHERE case_type = 'no_response')"
    )
    op.execute(
        f"DELETE FROM {S}.case_history WHERE case_id IN "
        f"(SELECT case_id FROM {S}.cases WHERE case_type = 'no_response')"
    )
    op.execute(f"DELETE FROM {S}.cases WHERE case_type = 'no_response'")
    op.drop_constraint("ck_cases_answer_or_no_response", "cases", schema=S)
    op.drop_column("cases", "invitation_id", schema=S)
    op.alter_column("cases", "category", nullable=False, schema=S)
    op.alter_column("cases", "score", nullable=False, schema=S)
    op.drop_column("structural_issues", "theme_responses", schema=S)
