"""orchestrator: the case lifecycle (type, priority, channel, team, version, contact and
resolution state, root causes), its history, tenants' set-up, round-robin turns, account owners,
and the orchestrator's copy of the responses

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "orchestrator"

ACTIVE = sa.text("status IN ('open', 'in_progress', 'contacted')")
NEW_CASE_COLUMNS = (
    sa.Column("segments", postgresql.JSONB, nullable=False, server_default="{}"),
    sa.Column("case_type", sa.Text),
    sa.Column("priority", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("rule", sa.Text),
    sa.Column("team_id", sa.Text),
    sa.Column("queue", sa.Text),
    sa.Column("business_hours", sa.Boolean, nullable=False, server_default="false"),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("resolution_due_at", sa.DateTime(timezone=True)),
    sa.Column("first_contacted_at", sa.DateTime(timezone=True)),
    sa.Column("contact_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolution", sa.Text),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("resurvey_due_at", sa.DateTime(timezone=True)),
    sa.Column("root_causes", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("first_contact_round", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("resolution_round", sa.SmallInteger, nullable=False, server_default="1"),
)


def upgrade() -> None:
    for column in NEW_CASE_COLUMNS:
        op.add_column("cases", column, schema=S)
    # Cases opened before the lifecycle: the process's defaults of their category.
    op.execute(
        """
        UPDATE orchestrator.cases SET
            case_type = category,
            priority = CASE
                WHEN category = 'detractor' OR key_account THEN 'high'
                WHEN category = 'passive' THEN 'normal' ELSE 'low' END,
            channel = CASE WHEN category = 'detractor' THEN 'phone' ELSE 'email' END,
            updated_at = opened_at
        """
    )
    for name in ("case_type", "priority", "channel", "updated_at"):
        op.alter_column("cases", name, nullable=False, schema=S)
    for name in ("owner_id", "owner_name", "owner_email"):
        op.alter_column("cases", name, nullable=True, schema=S)
    op.drop_index("ix_cases_open_due", table_name="cases", schema=S)
    op.create_index(
        "ix_cases_list",
        "cases",
        ["tenant_id", sa.text("(NOT key_account)"), "first_contact_due_at", "case_id"],
        schema=S,
    )
    op.create_index(
        "ix_cases_active_owner",
        "cases",
        ["tenant_id", "owner_id"],
        schema=S,
        postgresql_where=ACTIVE,
    )

    op.create_table(
        "case_history",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("details", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "case_id", "version"),
        schema=S,
    )
    op.execute(
        """
        INSERT INTO orchestrator.case_history (tenant_id, case_id, version, kind, to_status, actor, at, details)
        SELECT tenant_id, case_id, 1, 'opened', 'open', 'system', opened_at,
               jsonb_build_object('owner_id', owner_id, 'playbook', playbook,
                                  'first_contact_due_at', first_contact_due_at)
        FROM orchestrator.cases
        """
    )
    op.create_table(
        "tenant_setup",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", postgresql.JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind"),
        schema=S,
    )
    op.create_table(
        "team_turns",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("team_id", sa.Text, nullable=False),
        sa.Column("turns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "team_id"),
        schema=S,
    )
    op.create_table(
        "account_owners",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "account_id"),
        schema=S,
    )
    op.create_table(
        "responses",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "response_id"),
        schema=S,
    )
    op.create_index("ix_responses_answered", "responses", ["tenant_id", "answered_at"], schema=S)


def downgrade() -> None:
    for table in ("responses", "account_owners", "team_turns", "tenant_setup", "case_history"):
        op.drop_table(table, schema=S)
    op.drop_index("ix_cases_active_owner", table_name="cases", schema=S)
    op.drop_index("ix_cases_list", table_name="cases", schema=S)
    op.execute("DELETE FROM orchestrator.cases WHERE owner_id IS NULL")
    for name in ("owner_id", "owner_name", "owner_email"):
        op.alter_column("cases", name, nullable=False, schema=S)
    for column in reversed(NEW_CASE_COLUMNS):
        op.drop_column("cases", column.name, schema=S)
    op.create_index(
        "ix_cases_open_due",
        "cases",
        ["tenant_id", "first_contact_due_at"],
        schema=S,
        postgresql_where=sa.text("status = 'open'"),
    )
